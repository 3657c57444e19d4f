// Package raftnode drives a go.etcd.io/raft/v3 RawNode. One goroutine (run)
// owns the RawNode, and a second one (appendLoop) writes its log;
// everything else talks to it through channels: Propose, ReadIndex and
// Process queue work for it, ReportUnreachable and
// ReportSnapshot queue hints. PreVote and CheckQuorum are on, and reads use
// ReadOnlySafe (a quorum confirms leadership for each ReadIndex round).
//
// Storage writes are asynchronous (raft's AsyncStorageWrites, described in
// its doc.go), so that the Raft goroutine never waits for the disk: on an
// SD card, where a sync takes 20 ms, the next batch of proposals forms and
// is replicated while the last one syncs. Before making a Ready, the Raft
// goroutine yields once and then takes what the goroutines that ran
// meanwhile queued (gather), so that work arriving together makes one
// Ready. Per Ready, on the Raft goroutine:
//
//  1. Queue the MsgStorageAppend for the append goroutine (bounded: a full
//     queue makes the Raft goroutine wait, which is the back-pressure of a
//     slow disk).
//  2. Send the messages for peers. Raft holds back whatever promises a
//     local write (votes, append responses) as responses of that write; a
//     leader replicates before its own write is durable. The peers'
//     writers are woken after the append goroutine because the goroutine
//     woken last runs next on the same thread, and the round trip to a
//     follower is the longer path.
//  3. Hand rd.ReadStates to Config.OnReadState.
//  4. For the MsgStorageApply, apply committed configuration changes to the
//     RawNode (Config.OnConfChange for each), hand the committed entries,
//     which Raft releases only once they are durable here, in log order to
//     Config.OnCommitted (the application applies them on its own
//     goroutine; OnCommitted may block to push back), and step the
//     responses.
//
// The append goroutine takes every MsgStorageAppend queued, in order:
//
//  1. A snapshot from the leader is persisted first with
//     Storage.SaveSnapshot, applied to the in-memory log, and handed to
//     Config.OnSnapshot so the application installs it in order.
//  2. Runs of contiguous entries, with the last hard state, are persisted
//     with one Storage.Save: one write and one fdatasync for everything that
//     queued up during the previous sync. A failed save calls Config.Fatal
//     and the node stops (fail-stop): going on after a lost write is how
//     data is corrupted. Then the same goes into the in-memory log
//     (raft.MemoryStorage).
//  3. The responses are delivered: to this node through a queue that never
//     blocks, stepped by the Raft goroutine, then to peers through the
//     Transport. A follower's accepting MsgAppResps to the leader from one
//     sync are sent as one, the one with the highest index, which says
//     what all of them say; and one that only repeats the last it sent, in
//     answer to the leader's update of the commit index, is not sent at
//     all until a heartbeat has come in between (ackFilter).
//
// Outgoing MsgSnap messages never reach the Transport: they go to
// Config.OnSendSnapshot, because the application must attach its backend
// and send it on a snapshot stream. The application takes snapshots and
// compacts the in-memory log itself (it owns Log).
//
// Transport is the interface this package consumes for peer traffic, and Raft
// the one it offers to transports; both are defined here (transport.go).
package raftnode
