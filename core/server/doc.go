// Package server is one edgekv member. It composes the Raft node
// (core/raftnode), the write-ahead log (persist/wal), the MVCC store
// (core/mvcc) and a peer transport given to it by cmd, and offers the etcd
// operations that core/rpc translates to gRPC.
//
// A write: the caller's request (etcd protobuf) is wrapped in a CBOR envelope
// with a cluster-unique ID and proposed to Raft; the caller waits on that ID.
// The apply goroutine applies each batch of committed entries to the MVCC
// store in one backend transaction (which also records the consistent
// index), then wakes the waiters with their results.
//
// A linearizable read joins the current ReadIndex round (concurrent reads
// share one round), waits until the applied index reaches the read index,
// and then reads the MVCC store locally. Serializable reads skip the round.
//
// Membership comes from the log: the bootstrap configuration changes carry
// each member's name and peer URLs (CBOR Member in the ConfChange context),
// and each member publishes its client URLs through Raft after it starts,
// as etcd does. On restart the WAL is replayed from its last snapshot;
// entries the backend already holds (index <= consistent index) are skipped.
//
// Watch (watch.go): after each backend transaction the apply goroutine hands
// the watch hub (core/watch) the events of every request that changed
// something, one revision each, in order, before it wakes the waiting
// requests; after installing a snapshot it tells the hub to re-read the
// history (Restore). core/rpc serves the Watch service over the hub.
//
// Snapshots (snapshot.go): every --snapshot-count applied entries the apply
// goroutine takes the snapshot's Raft metadata and membership and goes on
// applying, while the snapshot goroutine commits the backend, saves a
// snapshot file and a WAL marker, compacts the in-memory log keeping
// --snapshot-catchup-entries, and recycles old WAL segments; then the
// apply goroutine moves values out of the segments Raft no longer needs.
// A follower that needs entries the leader no longer has gets the leader's
// backend as it is (Raft metadata rewritten to the backend's applied
// index, as etcd's merged snapshot) on its own QUIC stream; it stores it
// under snap/ before Raft sees the message, and installs it on its apply
// goroutine.
//
// Values written once (values.go): for a put entry, apply finds where the
// value's bytes lie in the WAL (the entry's Loc, plus the offset of the
// PutRequest body in the CBOR envelope, plus that of its value field) and
// the store keeps a pointer there instead of a second copy. The WAL is
// opened before the store, which reads values through it; it keeps the
// segments values still live in (Options.Pinned is the store's Pinned) as
// .vlog files, and before each purge the values of mostly dead segments
// move back into the backend (mvcc Migrate) so that those can be recycled.
//
// Membership changes (reconfig.go): MemberAdd derives the new member's ID
// from its peer URLs and the token, so the new member, started with
// --initial-cluster-state existing, knows its ID; it learns the cluster ID
// from a running member (Config.DiscoverClusterID) and catches up from the
// leader.
//
// Leases (lease.go, core/lease): grants, revokes and checkpoints are
// replicated requests. The apply loop applies the entries before a lease
// entry first, so that the lessor decides from exactly the state those
// left; a revoke deletes every attached key in one txn (one revision) with
// the lease record, in the backend transaction of its consistent index. A
// grant without an ID gets one from the proposing member. The lessor
// follows keys' leases through the store's events and is reloaded from
// the "lease" bucket and the keys at start and after a snapshot. The leader
// promotes its lessor when it applies the empty entry of its term, and a
// lease loop proposes revokes of expired leases and checkpoints of
// remaining TTLs after confirming its leadership. Keep-alives and
// time-to-live are answered by the leader: a follower forwards them to the
// leader's client URL over gRPC, as etcd forwards them over its peer URLs.
//
// Goroutines: the Raft goroutine (raftnode), the apply loop, the read loop,
// the publisher and the lease loop, all stopped by Stop. A storage failure calls
// Config.Fatal, which by default exits the process (fail-stop).
//
// A data directory records the member's name, ID, cluster ID and token in
// its WAL metadata; New refuses to start a member over a data directory
// that belongs to another member or cluster (ErrDataDirConflict).
package server
