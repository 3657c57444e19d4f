// Package wal is the write-ahead log of a member: the Raft hard state and
// log entries, made durable before Raft is told they are.
//
// # Contract
//
// The Raft node owns the WAL. At start it calls Exist, then Open (restart)
// or Create (new member). For each Ready that carries a hard state or
// entries it calls Save before sending messages that depend on them, and
// only from the Raft goroutine. Save returns once the data is durable: one
// write(2) and one fdatasync per call (group commit), so the flash sees one
// sync per Ready. A failed write or sync is returned and poisons the WAL
// (every later Save fails with ErrFailed); the caller must stop the
// process, never retry: after a failed fsync the page cache can no longer
// be trusted. Stats may be read from any goroutine.
//
// # Files
//
// A WAL is a directory of segment files named
//
//	%016x-%016x.wal    (sequence, first raft index of the segment)
//
// with consecutive sequence numbers. The first is 0000000000000000-0000000000000000.wal.
// Create writes it in "<dir>.tmp", syncs it and the temporary directory,
// renames the directory to dir and syncs dir's parent. Save cuts a new
// segment after a write that takes the tail past SegmentSize: the new file
// gets the metadata record and the last hard state, is synced under the
// name "<segment>.tmp", renamed, and the directory is synced. Open removes
// leftover "<segment>.tmp" files. The tail segment is held with an
// exclusive flock while open (ErrLocked otherwise).
//
// # Records
//
// A segment is a sequence of records, from offset 0:
//
//	offset  size  field
//	0       4     length, u32 little-endian: bytes of type + payload (1 .. 64 MiB)
//	4       4     CRC-32C (Castagnoli) of type + payload, u32 little-endian
//	8       1     type
//	9       n-1   payload: one CBOR value, encoded by core/codec (deterministic)
//
// Record types and their payloads (CBOR arrays, positional):
//
//	1 metadata       [name, member_id, cluster_id, token]   first record of every segment, only there
//	2 entries        [[term, index, type, data], ...]       one or more, consecutive indexes
//	3 hard state     [term, vote, commit]
//	4 snapshot mark  [index, term]                          decoded on replay; not written yet
//
// One Save writes its entries records (split so that none passes the
// record limit) and then its hard state record, in a single write. A
// length of 0 marks the end of data: the rest of the file must be zeros
// (room for preallocation).
//
// # Replay
//
// Open reads every segment in order. All metadata records must be equal
// (ErrMetadataMismatch). The last hard state record wins. Entries records
// append in index order; one whose first index is at or below the last
// index read replaces everything from that index on (Raft overwrote a
// conflicting suffix); one that starts past the next index is a gap, which
// is corruption. A snapshot marker drops the entries at or below its index.
//
// # Recovery
//
// A record is bad if its header is cut short, its length is 0 or over the
// limit, it runs past the end of the file, or its CRC fails. In the last
// segment, a bad record followed only by zeros or the end of the file is a
// torn write from a Save that never returned: Open truncates the file at
// the start of that record, syncs it, logs a warning naming file and
// offset, and goes on. "Followed" means after the extent the record's
// length claims; when the length is over the limit, after its header. Any
// other bad record (valid-looking bytes after it, or in an earlier
// segment, all of whose data was synced before the next was cut) is
// corruption: Open fails with an error wrapping ErrCorrupt that names the
// file and offset, and the member must not start. A record whose CRC holds
// but whose content is wrong (undecodable payload, unknown type, index gap)
// was written that way and is always corruption.
//
// Limits: recovery assumes a torn write leaves a prefix of the write,
// followed by zeros or nothing, as appends on Linux file systems do. A
// write torn in the middle (a zero hole with later sectors on disk) is
// refused as corruption, which is the safe way to be wrong. A length
// field corrupted in the last segment so that it points past the end of
// the file is indistinguishable from a torn append and truncates there.
package wal
