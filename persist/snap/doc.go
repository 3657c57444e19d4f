// Package snap stores Raft snapshots: the snapshot metadata (index, term,
// configuration) and the application's small snapshot data (membership).
// The key-value state itself is not in these files: it is the bbolt backend,
// which a leader streams to a follower beside the MsgSnap and which the
// follower keeps as "<index>.snap.db" here until it replaces its backend.
//
// Files in the snapshot directory:
//
//	%016x-%016x.snap   term, index: one snapshot
//	%016x.snap.db      index: a received backend, before it is installed
//
// A .snap file is
//
//	offset  size  field
//	0       4     CRC-32C (Castagnoli) of the payload, u32 little-endian
//	4       n     payload: CBOR [index, term, [voters, learners, voters_outgoing,
//	              learners_next, auto_leave], data]
//
// Save writes "<name>.tmp", fdatasyncs it, renames it into place and syncs
// the directory, so a crash leaves either the old set of files or the new.
// Decode never trusts its input: the CRC is checked first and the CBOR
// decoder is bounded (core/codec).
//
// Snapshotter methods are safe for concurrent use.
package snap
