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
// Snapshots (snapshot.go): every --snapshot-count applied entries the apply
// goroutine commits the backend, saves a snapshot file (membership and Raft
// metadata) and a WAL marker, compacts the in-memory log keeping
// --snapshot-catchup-entries, and recycles old WAL segments. A follower that
// needs entries the leader no longer has gets the leader's backend as it is
// (Raft metadata rewritten to the backend's applied index, as etcd's merged
// snapshot) on its own QUIC stream; it stores it under snap/ before Raft sees
// the message, and installs it on its apply goroutine.
//
// Membership changes (reconfig.go): MemberAdd derives the new member's ID
// from its peer URLs and the token, so the new member, started with
// --initial-cluster-state existing, knows its ID; it learns the cluster ID
// from a running member (Config.DiscoverClusterID) and catches up from the
// leader.
//
// Goroutines: the Raft goroutine (raftnode), the apply loop, the read loop
// and the publisher, all stopped by Stop. A storage failure calls
// Config.Fatal, which by default exits the process (fail-stop).
//
// A data directory records the member's name, ID, cluster ID and token in
// its WAL metadata; New refuses to start a member over a data directory
// that belongs to another member or cluster (ErrDataDirConflict).
package server
