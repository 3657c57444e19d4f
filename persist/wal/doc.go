// Package wal is the write-ahead log of a member: the Raft hard state, log
// entries and snapshot markers, made durable before Raft is told they are.
// All I/O goes through persist/fsx, so tests can run it on CrashFS.
//
// # Contract
//
// The Raft node owns the WAL. At start it calls Exist, then Open (restart)
// or Create (new member); the ...WithOptions forms take the file system,
// segment size, logger, --max-wals and a sync observer. For each Ready
// that carries a hard state or entries it calls Save before sending
// messages that depend on them, and only from the Raft goroutine. Save
// returns once the data is durable. SaveSnapshot (after the snapshot
// itself is durable) and PurgeBefore may be called from another goroutine;
// a mutex orders them with Save. A failed write or sync is returned and
// poisons the WAL (every later Save, SaveSnapshot and PurgeBefore fails
// with ErrFailed); the caller must stop the process, never retry: after a
// failed fsync the page cache can no longer be trusted. Stats, Locate,
// Release and ReadValue may be called from any goroutine (see Values).
//
// # Files
//
// A WAL is a directory of segment files named
//
//	%016x-%016x.wal    (sequence, raft index the log continued at when it was cut)
//
// with consecutive sequence numbers, the first one 0000000000000000-0000000000000000.wal,
// plus a free pool that Open does not replay:
//
//	%016x.next         the next segment, prepared ahead of the cut (sequence it is for)
//	%016x.free         a purged segment waiting to be reused (its old sequence)
//
// and value segments, which Open does not replay either:
//
//	%016x.vlog         a segment the log no longer needs, kept for the values
//	                   that still point into it (its sequence; see Values)
//
// A value segment is older than every segment of the log (Open refuses
// one that is not: ErrCorrupt), so the sequence rules of the log are those
// of the .wal files alone.
//
// Every segment file is preallocated to the segment size (fallocate), so a
// write inside it never changes the file size and fdatasync has no size
// to update. Create writes segment 0 in "<dir>.tmp", syncs it and the
// temporary directory, renames the directory to dir and syncs dir's parent
// (creating and syncing missing parents first). The tail segment is held
// with an exclusive flock while open (ErrLocked otherwise).
//
// Recycling. After Create, Open and every cut, the next segment is
// prepared in the background: a file is taken from the free pool (a
// purged segment: its blocks are already allocated and written, which on
// flash and on ext4 means no allocation at all) or, if the pool is empty,
// created and preallocated; the metadata header for its sequence is
// written at offset 0 and synced (fsync if the size changed, fdatasync
// otherwise), and the file is named "<seq>.next". A Save that would not
// fit in the tail cuts first: it renames "<seq>.next" to its segment name
// and syncs the directory, so the cut costs no write. PurgeBefore renames
// purged segments to "<seq>.free" (or, if Options.Pinned holds them, to
// "<seq>.vlog"; see Values) and syncs the directory once; beyond 2 pool
// files it deletes them instead. The pool's leftovers after a crash (a
// ".next" never renamed, a ".free") are pooled again by Open.
//
// # Records
//
// A segment is a sequence of records, from offset 0:
//
//	offset  size  field
//	0       4     length, u32 little-endian: bytes of type + payload (1 .. 64 MiB)
//	4       4     CRC-32C (Castagnoli) of seq + type + payload, u32 little-endian
//	8       1     type
//	9       n-1   payload: one CBOR value, encoded by core/codec (deterministic)
//
// seq is the segment's sequence number as 8 bytes little-endian, the same
// for every record of a segment: the CRC register is seeded with it. A
// record left in a recycled file by an older segment is therefore never
// valid in the new one: for two sequence numbers below 2^32, the CRCs of
// any one type + payload differ (the seeds differ by a non-zero polynomial
// of degree < 32, which x^k times it cannot make a multiple of the
// generator), so stale data reads as "not a record", never as data.
//
// Record types and their payloads (CBOR arrays, positional):
//
//	1 metadata       [name, member_id, cluster_id, token]   offset 0 of every segment, only there
//	2 entries        [[term, index, type, data], ...]       one or more, consecutive indexes
//	3 hard state     [term, vote, commit]
//	4 snapshot mark  [index, term]                          entries up to index are in a snapshot
//	5 link           [prev_end]                             where the previous segment's data ends
//	6 padding        zeros                                  fills a write up to a sector boundary
//
// Writes. Each write ends on a 512-byte sector boundary with a padding
// record (if not already on one; at least 9 bytes, so possibly one sector
// further) and is followed by 8 zero bytes, the terminator: a zero header
// marks the end of data. The next write starts on the terminator. So every
// Save starts on a sector boundary, and after every completed write the
// end of data is a zero header. The header a segment is prepared with is
// the metadata record, padding and the terminator. The first write into a
// segment starts with the carry: a link record (the end of the previous
// segment's data), the last hard state and the last snapshot marker, so
// that the segments before it can be purged.
//
// Direct I/O. Save writes the tail with O_DIRECT (a second handle on the
// tail segment), extended to whole sectors: the terminator's sector is
// written whole, with zeros after the terminator (a write that starts
// inside a sector, after Open repaired a torn tail there, writes the
// sector's earlier bytes again, unchanged). Through the page cache, each
// Save would re-dirty the page the last one ended in and the kernel
// would write whole 4 KiB pages back, about twice the bytes of the
// records at the group commits of a small cluster; direct writes send
// only their sectors and keep the log, which is read only at start, out
// of the page cache. Durability is unchanged: only fdatasync makes a
// write durable. Where the file system has no direct I/O (tmpfs) or the
// device refuses a sector-aligned direct write (logical blocks larger
// than 512 bytes), the WAL logs it once and writes through the page cache
// from then on; Options.BufferedIO asks for that from the start. The
// header writes of segment preparation and Open's repair stay buffered.
//
// One Save writes, in a single write(2), its entries records (split so that
// none passes the record limit), its hard state record, the padding and the
// terminator, then calls fdatasync once, unless the Save carries only a
// hard state whose term and vote are unchanged (Raft's MustSync): a commit
// index need not be durable before Raft goes on, since the leader tells it
// again after a crash, so such a hard state is not written at all then: it
// goes out with the next write (the next Save with entries, a snapshot
// marker, or Close), which saves a sector write per commit on flash.
// Recovery may then find an older commit index, never older entries, term
// or vote.
//
// # Sync counts
//
//	Save, SaveSnapshot         1 write + 1 fdatasync, however many entries
//	  ... commit index only    nothing (written and synced with the next one)
//	  ... that cuts            + 1 rename + 1 directory fsync (no extra write),
//	                           + 1 fdatasync of the old tail if it has an unsynced write
//	preparing a segment        1 write of the header (one sector for small metadata) +
//	(background, per cut)      1 fdatasync (recycled) or fallocate + 1 fsync (new);
//	                           its name becomes durable with the cut's directory fsync
//	PurgeBefore                renames (+ deletes beyond the pool) + 1 directory fsync
//	Open                       1 fdatasync of the tail + 1 directory fsync, so that what
//	                           it read is durable before Raft acts on it (after a crash
//	                           of the process alone it may have been in the page cache);
//	                           + 1 write if it repairs a torn tail
//
// Stats counts the Save path (Syncs, Writes, BytesWritten, Cuts) apart from
// the preparation (SegmentsCreated, SegmentsRecycled, PrepareSyncs,
// PrepareBytes). Options.OnSync sees the duration of every fdatasync of
// Save and SaveSnapshot (etcd_disk_wal_fsync_duration_seconds), and one
// over a second is logged as "slow fdatasync", as etcd does.
//
// # Replay
//
// Open reads the segments in order. All metadata records must be equal
// (ErrMetadataMismatch). The last hard state record wins. Entries records
// append in index order; one whose first index is at or below the last
// index read replaces everything from that index on (Raft overwrote a
// conflicting suffix); one that starts past the next index is a gap, which
// is corruption, except for the first entries record after purged segments
// (the marker it follows may be older than one further on). A snapshot
// marker drops the entries at or below its index; markers never move
// back. If the oldest segment is not segment 0, it must carry a link, and
// the entries must start right after the last snapshot marker: otherwise
// segments that were still needed are missing (ErrCorrupt).
//
// # Recovery
//
// The data of a segment ends at its first record that does not decode: a
// zero header (the terminator), a short header, a length of 0 or over the
// limit or past the end of the file, or a CRC that fails (with this
// segment's seed; stale records of a recycled file fail it). Then:
//
//   - Every segment but the tail: the next segment's link says where its
//     data ends. Ending anywhere else is corruption (a bad record in the
//     middle or at the end of a full segment). If the next segment has no
//     link yet (it was cut, and power failed before its first write), the
//     rules of the tail apply, without repair.
//   - The tail: if a record of this segment starts at any sector boundary
//     after the end, the bad record is corruption: every later Save starts
//     on a sector boundary, so a damaged record (even its length field) with
//     acknowledged data after it is found, and Open refuses it. Otherwise
//     the end of data is where the last Save ended, or inside a Save that
//     never returned: if the 8 bytes there are not zeros, that Save was torn;
//     Open writes the terminator over them, syncs, logs a warning naming file
//     and offset, and goes on. The next Save starts there.
//
// Corruption is an error wrapping ErrCorrupt that names the file and
// offset; the member must not start. A record whose CRC holds but whose
// content is wrong (undecodable payload, unknown type, index gap) was
// written that way and is always corruption.
//
// Limits. Recovery assumes a torn write leaves a prefix of its sectors
// (the fsx.CrashFS model): sectors written out of order within one write,
// with a later one surviving a lost earlier one, are refused as
// corruption when a later sector holds a record start, which is the safe
// way to be wrong. A bad record in the last Save of the log cannot be told
// from a torn write and is dropped (that Save is then lost, as etcd's WAL
// would lose it). Entry data that happens to contain a valid record of the
// tail's sequence at a sector boundary past a torn tail makes Open refuse
// to start rather than lose data.
//
// # Values
//
// The data of an entry lies verbatim in its entries record (the CBOR byte
// string of [term, index, type, data]), and records never span segments,
// so each entry's data is a run of bytes of one segment file that never
// changes while the file is not recycled. Save (once the entries are
// durable) and Open (for the entries it returns) record, for each entry,
// its Loc {Seq, Off, Len}: the segment, the file offset of the data's first
// byte, and its length; a later record of the same index replaces it, and
// the entries of a dropped suffix lose theirs. Locate returns it until
// Release(upTo) (the server calls it once it has applied upTo). The offsets
// are read off the record's bytes as written (a small walker over the
// CBOR heads), not computed apart from them.
//
// The server stores, for a large value, a pointer into those bytes instead
// of a copy in the backend (core/mvcc "Value pointers"), so a value is
// written once. ReadValue(seq, off, n, crc) reads such bytes back: a
// pread on a read-only handle of the segment, opened at the first read
// and cached, checked against the CRC-32C the pointer carries; a missing
// segment, a short read or a mismatch is an error wrapping ErrCorrupt
// naming the file and offset, never other bytes. It runs concurrently
// with Save, cuts and purges (its own read-write lock; Save's mutex is
// never taken).
//
// Retention. Options.Pinned tells PurgeBefore which segments values still
// live in. A segment the log lets go of that is pinned is renamed
// "<seq>.vlog" (the directory is synced with the purge's other renames)
// instead of joining the free pool; every PurgeBefore asks again about
// the value segments, and recycles (".free", or deletes beyond the pool)
// those no longer pinned. A segment is handed to the pool only when Pinned
// says false, after its cached read handle is closed: Pinned must say true
// while any pointer into it may still be read, on disk (a backend commit
// that dropped the pointer must be durable first) or in memory (a read in
// progress). Reclaimable lists the segments Raft no longer needs, for the
// server to move the few values left in mostly dead ones back into the
// backend (core/mvcc Migrate) before it purges.
//
// Durability. A Loc is handed out only for entries whose Save returned,
// that is, after their fdatasync: a backend commit holding a pointer never
// reaches the disk before the bytes it points at. The crash test checks
// that every Loc handed out for an acknowledged entry reads back its data
// after power loss and Open.
//
// # Sizes
//
// DefaultSegmentSize is 16 MiB, a quarter of etcd's 64 MiB: on an SD card
// the WAL directory holds --max-wals (5) segments, the prepared one and up
// to 2 in the pool, 128 MiB at most instead of 512 MiB; Open reads the
// tail whole (at 20-40 MB/s, under a second) and of the others only their
// data; and a cut every 16 MiB is still rare (one per thousands of Saves).
// Board profiles can lower it further with --wal-segment-size.
package wal
