// Package lease is edgekv's lessor: the lease table with etcd's semantics.
// A lease has an ID, a granted TTL, the remaining TTL of its last
// checkpoint, the keys attached to it, and, on the leader only, an expiry.
// A lease ends only through Raft: the leader finds it expired and proposes
// its revoke, and every member deletes its keys when it applies the revoke.
//
// The package decides; it starts no goroutine, reads no clock but the one
// it is given (Config.Clock), and does no I/O. core/server applies its
// decisions to the backend and runs the timers.
//
// # Applied state: the apply goroutine
//
// Grant, Revoke, Checkpoint, Attach, Detach and Recover change what every
// member agrees on. core/server calls them from its apply goroutine, in log
// order, and only for entries above the backend's consistent index (a
// replayed entry is already in the records Recover loaded), so they give
// the same result on every member:
//
//   - Grant and Checkpoint return the Record to write into the "lease"
//     bucket, in the same backend transaction as the entry's consistent
//     index;
//   - Revoke returns the attached keys, sorted, which the server deletes in
//     one transaction (one revision) with the record;
//   - Attach and Detach follow the MVCC store's events (a put with a
//     lease attaches its key to it, which takes the key from the lease it
//     carried; a put without one and a delete detach it). A key carries at
//     most one lease, and the lessor knows which (LeaseOf), as etcd's
//     itemMap does, so the events need no PrevKv. They are not persisted:
//     Recover's caller rebuilds them from the keys' leases.
//
// Exists is the MVCC store's CheckLease, called from inside Apply. Leases
// may be called from any goroutine.
//
// # Leader duties
//
// Only the primary lessor (the leader's) has expiries. The server calls
// Promote(election timeout) once its member is leader and has applied every
// entry of earlier terms (the leader's empty entry of its term), and Demote
// as soon as it is not leader. Promote counts every lease from its last
// checkpointed remaining TTL, or its full TTL, plus the extension, and
// spreads the expiries of many leases (etcd #9395); a new leader therefore
// never ends a lease early, and a kept-alive lease survives leader changes
// and full restarts with at most one checkpoint interval of extra life.
//
// Renew (from keep-alive streams) restarts a lease's TTL and says when a
// checkpointed remaining TTL must be cleared through Raft (etcd #13508).
// TimeToLive reads the remaining TTL. Every 500 ms the server's lease loop
// asks Expired for up to half of RevokeRate expired leases, each reported
// once and again after ExpiredRetryInterval if its revoke did not land,
// and DueCheckpoints for checkpoints in batches of at most
// MaxCheckpointBatch. Only leases whose TTL exceeds the checkpoint interval
// (default 5 minutes) are checkpointed, once per interval, so the disk
// writes checkpoints cost stay bounded. The server proposes revokes and
// checkpoints only after confirming its leadership with a quorum, so that a
// stalled or deposed leader revokes nothing (etcd #15247).
//
// # Bytes
//
// The "lease" bucket of the backend holds one entry per lease:
//
//	key    lease ID, 8 bytes big endian (two's complement)
//	value  CBOR array [ID, TTL, RemainingTTL] (core/codec, deterministic);
//	       TTL in [1, MaxLeaseTTL] seconds, RemainingTTL in [0, TTL],
//	       0 meaning no checkpoint since the grant or the last renewal
//
// DecodeEntry checks all of it: the bucket may come from a snapshot sent
// by another member.
package lease
