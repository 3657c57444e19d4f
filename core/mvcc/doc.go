// Package mvcc is edgekv's multi-version key-value store, with etcd's
// semantics: revisions, versions, ranges with every etcd option, put,
// delete-range, txn (nested included) and compaction, answering with the
// etcd protobuf responses.
//
// # What it owns
//
// The backend file (<data-dir>/member/db, bbolt, through persist/backend)
// and the in-memory key index (a google/btree of keys, each with its
// revisions grouped in generations, as etcd's treeIndex). It creates the
// buckets "lease", "auth", "members" and "wasm" empty and never touches
// them.
//
// # Who calls it
//
//   - Apply is called by core/server's apply loop, one goroutine, with
//     committed Raft entries in order. It writes a batch into the backend's
//     batch transaction, together with the consistent index and term, and
//     publishes it to readers before it returns; it does not wait for the
//     disk (see Durability). Entries with Index <= ConsistentIndex are
//     skipped, so replaying entries after a crash is idempotent. An error
//     from Apply is a disk or corruption error, this batch's or an earlier
//     background commit's: the caller must stop the process.
//   - Range, ReadTxn, History, HashKV and the getters may be called from any
//     goroutine, concurrently with Apply and with commits. They see the
//     applied state, committed or not: a linearizable read that waited for
//     the applied index sees the write it waited for. Apply works on a
//     copy-on-write clone of the index and publishes it together with its
//     backend writes.
//   - ForceCommit, Snapshot and Pinned may be called from any goroutine;
//     Restore and Migrate only from the apply goroutine, between Applies.
//   - The Validate functions are etcd's request checks at the gRPC
//     boundary; core/rpc calls them before proposing.
//
// # Durability
//
// Applied writes are committed to disk in batches: Options.BatchInterval
// after the first uncommitted write (default 100 ms), started by Apply once
// Options.BatchLimit backend writes are pending (default 10000), and on
// ForceCommit, Snapshot and Close (which wait until it is on disk). A
// commit runs in the background (persist/backend): Apply never waits for
// it, except when BatchLimit is reached while the previous commit still
// runs. An idle store never writes. The
// consistent index goes into the same bbolt transaction as the writes it
// covers, so a crash loses both together: after a restart ConsistentIndex
// is the one on disk and the server replays the Raft entries above it,
// which rebuilds exactly the same state. Until then those entries must
// stay in the Raft log: CommittedIndex is the consistent index on disk
// (captured when a commit takes its writes, published when it is on disk,
// so never ahead of the disk even while Apply runs during a commit), and
// the server calls ForceCommit before it drops entries (Raft snapshot, log
// compaction). Snapshot streams the backend file as of a commit to a
// follower, which installs it with Restore.
//
// Leases are not this package's business: Options.CheckLease lets the
// lessor veto puts, and Result.Events tell it which keys gained or lost a
// lease.
//
// # Revisions
//
// A fresh store is at revision 1. Every write request that changes
// something (a put, a delete that deletes, a txn with such writes) takes
// the next main revision; its writes take sub-revisions 0, 1, ... in order.
// A key's version is 1 when created and grows by one per put; a delete ends
// the key's generation, and the next put creates it again at version 1.
//
// # Value pointers
//
// A put's value is already on disk in its Raft entry, in the WAL. With
// Options.Values (the WAL) set, Apply stores for a put request whose op
// carries the value's location (Op.ValueAt, found by the server) and
// whose value has at least PointerMin bytes (default 64: below that the
// value inline is about as small as the pointer) a pointer [segment,
// offset, length, crc32c] instead of the value: each value is written
// once. The puts of a txn, a put with ignore_value and small values are
// stored inline, as before.
//
// Every read resolves pointers through Options.Values (ReadValue, which
// checks the CRC): Range, ReadTxn, History, txn compares and sorts on
// VALUE, the PrevKv of events, HashKV. Events carry the request's value
// without reading it. A small cache (Options.ValueCacheBytes, default 4
// MiB) keeps the values recently written or read, so that the previous
// value an overwrite reports is not read back from the disk. A read error
// is returned, never a wrong value; in Apply it fails the batch.
//
// Members need not store the same values the same way: HashKV hashes a
// pointer record as the inline record it stands for, and Snapshot streams
// a self-contained copy (a temporary bbolt file next to the backend, in
// which every value is inline, removed on Close). Restore refuses a file
// that holds pointers: they would name another member's WAL.
//
// Liveness. The store counts, per WAL segment, the pointers into it and
// their bytes: + at a put, - when a compaction deletes a revision holding
// one, rebuilt by Open's scan, reset by Restore. Pinned(seq), the WAL's
// Options.Pinned, is true while a pointer into seq is stored (committed
// or not), while a write that removed one is not committed yet (a crash
// would bring it back), and while a read view that began before the last
// one was removed is open (every read registers the publish generation it
// began at). Migrate, called by the server on segments Raft no longer
// needs, rewrites inline the values of the mostly dead ones (more than
// half of the value bytes stored into them are dead, or the live ones are
// under a floor the server sets at a quarter of a segment), in one batch
// that it commits, so that they can be recycled; a segment whose values
// mostly live stays, its values written once. The bytes stored into a
// segment are counted from Open (the ones alive then, plus the ones put
// since): they are not on disk. So is the range of revisions its values
// were put at (a segment holds consecutive Raft entries, so consecutive
// revisions): Migrate reads only that part of the key bucket, not all of
// it, so the apply goroutine it runs on waits for the segment's
// revisions, however large the store.
//
// # Bucket layout
//
//	key      revision -> CBOR KeyValue
//	         key:   main revision (8 bytes, big endian) | '_' |
//	                sub revision (8 bytes, big endian) [| 't' for a tombstone]
//	         value: CBOR array [key, create_rev, mod_rev, version, value, lease]
//	                (deterministic, byte for byte as core/codec encodes it:
//	                shortest heads, nil or empty value as null; kv.go
//	                writes and reads it by hand); a tombstone stores
//	                [key, 0, mod_rev, 0, null, 0]; a value stored as a pointer
//	                [key, create_rev, mod_rev, version, null, lease,
//	                 [wal_segment, offset, length, crc32c]] (7 items: the first
//	                byte, 0x86 or 0x87, tells the two apart)
//	meta     "consistent_index" -> CBOR uint (Raft index of the last applied entry)
//	         "term"             -> CBOR uint (term given with that batch)
//	         "compact_rev"      -> CBOR int  (last compaction; absent: never)
//	lease, auth, members, wasm: reserved for other packages, created empty
//
// Compaction at rev keeps, for each key, its newest revision <= rev unless
// that is a tombstone older than rev, and runs inside Apply.
package mvcc
