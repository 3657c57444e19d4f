// Package raftnode drives a go.etcd.io/raft/v3 RawNode. One goroutine (run)
// owns the RawNode; everything else talks to it through channels: Propose,
// ReadIndex and Process queue work for it, ReportUnreachable and
// ReportSnapshot queue hints. PreVote and CheckQuorum are on, and reads use
// ReadOnlySafe (a quorum confirms leadership for each ReadIndex round).
//
// The Ready contract, in the order raft's doc.go requires, per Ready:
//
//  1. If this member is the leader, send rd.Messages now: a leader may
//     replicate before its own write is durable.
//  2. If rd.Snapshot is set (from the leader), persist it first with
//     Storage.SaveSnapshot, apply it to the in-memory log, and hand it to
//     Config.OnSnapshot so the application installs it in order.
//  3. Persist rd.HardState and rd.Entries with Storage.Save: one write and
//     one fdatasync. A failed save calls Config.Fatal and the loop exits
//     (fail-stop): going on after a lost write is how data is corrupted.
//     Then append the same to the in-memory log (raft.MemoryStorage).
//  4. If this member is not the leader, send rd.Messages now, after the
//     write, because they may promise what was just persisted (votes,
//     append responses).
//  5. Hand rd.ReadStates to Config.OnReadState.
//  6. Apply committed configuration changes to the RawNode, calling
//     Config.OnConfChange for each, then hand all committed entries, in log
//     order, to Config.OnCommitted (the application applies them on its own
//     goroutine; OnCommitted may block to push back).
//  7. Advance.
//
// Outgoing MsgSnap messages never reach the Transport: they go to
// Config.OnSendSnapshot, because the application must attach its backend
// and send it on a snapshot stream. The application takes snapshots and
// compacts the in-memory log itself (it owns Log).
//
// Transport is the interface this package consumes for peer traffic, and Raft
// the one it offers to transports; both are defined here (transport.go).
package raftnode
