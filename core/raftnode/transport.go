package raftnode

import (
	"context"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// Transport carries Raft messages to peers. It is implemented by package
// transport (QUIC) and by in-memory fakes in tests.
//
// Send is called from the Raft goroutine only and must not block on the
// network: an implementation queues the messages per peer and drops (and
// reports the peer unreachable) when a queue is full. Messages to the same
// peer are delivered in the order they were passed to Send, or not at all.
type Transport interface {
	Send(msgs []*raftpb.Message)
}

// Raft is what a Transport delivers inbound traffic to. It is implemented by
// *Node. All three methods are safe to call from any goroutine.
type Raft interface {
	// Process hands one inbound message to Raft. It blocks until the
	// message is accepted by the Raft goroutine or ctx is done.
	Process(ctx context.Context, m *raftpb.Message) error
	// ReportUnreachable tells Raft that the last send to id failed.
	ReportUnreachable(id uint64)
	// ReportSnapshot tells Raft the outcome of sending a snapshot to id.
	ReportSnapshot(id uint64, status raft.SnapshotStatus)
}
