// Package mvcc is edgekv's multi-version key-value store, with etcd's
// semantics: revisions, versions, ranges with every etcd option, put,
// delete-range, txn (nested included) and compaction, answering with the
// etcd protobuf responses.
//
// # What it owns
//
// The backend file (<data-dir>/member/db, bbolt) and the in-memory key
// index (a google/btree of keys, each with its revisions grouped in
// generations, as etcd's treeIndex). It creates the buckets "lease",
// "auth", "members" and "wasm" empty and never touches them.
//
// # Who calls it
//
//   - Apply is called by core/server's apply loop, one goroutine, with
//     committed Raft entries in order. It applies a batch in one bbolt write
//     transaction that also stores the consistent index and term, so that
//     replaying entries after a crash is idempotent (entries with Index <=
//     ConsistentIndex are skipped). An error from Apply is a disk or
//     corruption error: the caller must stop the process.
//   - Range, ReadTxn, History, HashKV and the getters may be called from any
//     goroutine, concurrently with Apply. They see committed state only:
//     Apply works on a copy-on-write clone of the index and publishes it
//     after the commit.
//   - The Validate functions are etcd's request checks at the gRPC
//     boundary; core/rpc calls them before proposing.
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
// # Bucket layout
//
//	key      revision -> CBOR KeyValue
//	         key:   main revision (8 bytes, big endian) | '_' |
//	                sub revision (8 bytes, big endian) [| 't' for a tombstone]
//	         value: CBOR array [key, create_rev, mod_rev, version, value, lease]
//	                (core/codec, deterministic); a tombstone stores
//	                [key, 0, mod_rev, 0, null, 0]
//	meta     "consistent_index" -> CBOR uint (Raft index of the last applied entry)
//	         "term"             -> CBOR uint (term given with that batch)
//	         "compact_rev"      -> CBOR int  (last compaction; absent: never)
//	lease, auth, members, wasm: reserved for other packages, created empty
//
// Compaction at rev keeps, for each key, its newest revision <= rev unless
// that is a tombstone older than rev, and runs inside Apply.
package mvcc
