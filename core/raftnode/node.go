package raftnode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Errors returned to callers of Node.
var (
	// ErrStopped is returned once the node has stopped.
	ErrStopped = errors.New("raftnode: stopped")
	// ErrProposalDropped is returned when Raft refuses a proposal, typically
	// because there is no leader to forward it to.
	ErrProposalDropped = raft.ErrProposalDropped
)

// Storage is the durable half of the Raft log: the write-ahead log and the
// snapshot files. Both methods are called from the Raft goroutine only and
// must make their data durable before they return. Any error is fatal.
type Storage interface {
	// Save persists a Ready's hard state and entries.
	Save(hs *raftpb.HardState, ents []*raftpb.Entry) error
	// SaveSnapshot persists a snapshot received from the leader, before the
	// entries of the same Ready.
	SaveSnapshot(snap *raftpb.Snapshot) error
}

// Config configures a Node. Hooks are called from the Raft goroutine and
// must not call back into the Node synchronously.
type Config struct {
	ID            uint64
	TickInterval  time.Duration // one Raft tick; --heartbeat-interval
	ElectionTick  int           // ticks per election timeout
	HeartbeatTick int           // ticks per heartbeat

	// Ticks, if set, replaces the wall-clock ticker (tests use a fake clock).
	Ticks <-chan time.Time

	Storage   Storage
	Log       *raft.MemoryStorage // the in-memory log, loaded from Storage on restart
	Transport Transport
	Applied   uint64 // the last applied index that Raft may assume (0 replays all committed entries)

	// Bootstrap lists the initial members of a brand-new cluster. It is
	// empty when restarting from an existing log.
	Bootstrap []raft.Peer

	Logger *slog.Logger
	// Fatal is called when persisting fails; the default logs and exits the
	// process. It must not return to the Raft loop (fail-stop).
	Fatal func(error)

	// OnConfChange is called for each committed configuration change after
	// Raft has applied it, before OnCommitted sees the entry.
	OnConfChange func(index uint64, cc *raftpb.ConfChange, cs *raftpb.ConfState)
	// OnCommitted receives committed entries in log order, after they are
	// durable locally. It may block to apply back-pressure.
	OnCommitted func(ents []*raftpb.Entry)
	// OnReadState receives the results of ReadIndex requests.
	OnReadState func(rs raft.ReadState)
	// OnSnapshot receives a snapshot from the leader once it is persisted,
	// before any committed entry that follows it; the application installs
	// it on its apply goroutine, in order with the entries.
	OnSnapshot func(snap *raftpb.Snapshot)
	// OnLeaderChange is told each time the known leader changes (0: none).
	OnLeaderChange func(lead uint64)
	// OnSendSnapshot receives each outgoing MsgSnap instead of the
	// Transport: the application attaches its backend and sends it on a
	// snapshot stream, then reports the outcome with ReportSnapshot.
	OnSendSnapshot func(m *raftpb.Message)
}

// Node drives a raft.RawNode from a single goroutine. All exported methods
// are safe for concurrent use.
type Node struct {
	cfg Config
	rn  *raft.RawNode
	log *slog.Logger

	propc    chan proposal
	recvc    chan *raftpb.Message
	readc    chan []byte
	reportc  chan func(*raft.RawNode)
	stopc    chan struct{}
	donec    chan struct{}
	stopOnce sync.Once

	// Published after every Ready for readers on other goroutines.
	lead   atomic.Uint64
	term   atomic.Uint64
	commit atomic.Uint64
}

type proposal struct {
	data []byte
	cc   *raftpb.ConfChange // a configuration change instead of data
	errc chan error
}

// New creates a node. Call Start to run it.
func New(cfg Config) (*Node, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Fatal == nil {
		lg := cfg.Logger
		cfg.Fatal = func(err error) {
			lg.Error("fatal storage error, stopping member", "err", err)
			panic(fmt.Sprintf("raftnode: fatal storage error: %v", err))
		}
	}
	rc := &raft.Config{
		ID:                        cfg.ID,
		ElectionTick:              cfg.ElectionTick,
		HeartbeatTick:             cfg.HeartbeatTick,
		Storage:                   cfg.Log,
		Applied:                   cfg.Applied,
		MaxSizePerMsg:             1 << 20,
		MaxCommittedSizePerReady:  8 << 20,
		MaxUncommittedEntriesSize: 1 << 30,
		MaxInflightMsgs:           512,
		CheckQuorum:               true,
		PreVote:                   true,
		ReadOnlyOption:            raft.ReadOnlySafe,
		Logger:                    &raftLogger{l: cfg.Logger.With("component", "raft")},
	}
	rn, err := raft.NewRawNode(rc)
	if err != nil {
		return nil, err
	}
	if len(cfg.Bootstrap) > 0 {
		if err := rn.Bootstrap(cfg.Bootstrap); err != nil {
			return nil, fmt.Errorf("raftnode: bootstrap: %w", err)
		}
	}
	return &Node{
		cfg:     cfg,
		rn:      rn,
		log:     cfg.Logger,
		propc:   make(chan proposal, 1024),
		recvc:   make(chan *raftpb.Message, 4096),
		readc:   make(chan []byte, 64),
		reportc: make(chan func(*raft.RawNode), 256),
		stopc:   make(chan struct{}),
		donec:   make(chan struct{}),
	}, nil
}

// Start runs the Raft goroutine.
func (n *Node) Start() { go n.run() }

// Stop stops the Raft goroutine and waits for it to exit.
func (n *Node) Stop() {
	n.stopOnce.Do(func() { close(n.stopc) })
	<-n.donec
}

// Done is closed when the Raft goroutine has exited.
func (n *Node) Done() <-chan struct{} { return n.donec }

// Propose submits data for replication. It returns once Raft has accepted or
// refused the proposal, not when it commits.
func (n *Node) Propose(ctx context.Context, data []byte) error {
	return n.submit(ctx, proposal{data: data, errc: make(chan error, 1)})
}

// ProposeConfChange submits a membership change, like Propose.
func (n *Node) ProposeConfChange(ctx context.Context, cc *raftpb.ConfChange) error {
	return n.submit(ctx, proposal{cc: cc, errc: make(chan error, 1)})
}

// submit hands p to the Raft goroutine and waits for Raft's answer.
func (n *Node) submit(ctx context.Context, p proposal) error {
	select {
	case n.propc <- p:
	case <-ctx.Done():
		return ctx.Err()
	case <-n.stopc:
		return ErrStopped
	}
	select {
	case err := <-p.errc:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-n.stopc:
		return ErrStopped
	}
}

// ReadIndex requests a read index tagged with rctx; the result arrives via
// Config.OnReadState.
func (n *Node) ReadIndex(ctx context.Context, rctx []byte) error {
	select {
	case n.readc <- rctx:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-n.stopc:
		return ErrStopped
	}
}

// Process implements Raft: it hands an inbound message to the Raft goroutine.
func (n *Node) Process(ctx context.Context, m *raftpb.Message) error {
	select {
	case n.recvc <- m:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-n.stopc:
		return ErrStopped
	}
}

// ReportUnreachable implements Raft.
func (n *Node) ReportUnreachable(id uint64) {
	n.report(func(rn *raft.RawNode) { rn.ReportUnreachable(id) })
}

// ReportSnapshot implements Raft.
func (n *Node) ReportSnapshot(id uint64, status raft.SnapshotStatus) {
	n.report(func(rn *raft.RawNode) { rn.ReportSnapshot(id, status) })
}

// report queues fn without blocking; reports are hints, so dropping one
// when the queue is full is harmless.
func (n *Node) report(fn func(*raft.RawNode)) {
	select {
	case n.reportc <- fn:
	default:
	}
}

// Leader returns the current leader's ID, 0 if unknown.
func (n *Node) Leader() uint64 { return n.lead.Load() }

// Term returns the current term.
func (n *Node) Term() uint64 { return n.term.Load() }

// CommitIndex returns the highest index known to be committed.
func (n *Node) CommitIndex() uint64 { return n.commit.Load() }

var _ Raft = (*Node)(nil)

func (n *Node) run() {
	defer close(n.donec)
	ticks := n.cfg.Ticks
	if ticks == nil {
		t := time.NewTicker(n.cfg.TickInterval)
		defer t.Stop()
		ticks = t.C
	}
	for {
		select {
		case <-ticks:
			n.rn.Tick()
		case m := <-n.recvc:
			n.step(m)
			n.drainRecv()
		case p := <-n.propc:
			n.propose(p)
			n.drainProposals()
		case rctx := <-n.readc:
			n.rn.ReadIndex(rctx)
		case fn := <-n.reportc:
			fn(n.rn)
		case <-n.stopc:
			return
		}
		for n.rn.HasReady() {
			if !n.handleReady(n.rn.Ready()) {
				return
			}
		}
	}
}

func (n *Node) step(m *raftpb.Message) {
	// Local message types must never arrive from the network.
	if raft.IsLocalMsg(m.GetType()) {
		n.log.Warn("dropping local message type from peer", "type", m.GetType(), "from", m.GetFrom())
		return
	}
	if err := n.rn.Step(m); err != nil && !errors.Is(err, raft.ErrStepPeerNotFound) {
		n.log.Debug("step failed", "err", err, "type", m.GetType(), "from", m.GetFrom())
	}
}

// drainRecv steps every message already queued, so that a burst of inbound
// traffic produces one Ready (one fsync) rather than one per message.
func (n *Node) drainRecv() {
	for i := 0; i < 4096; i++ {
		select {
		case m := <-n.recvc:
			n.step(m)
		default:
			return
		}
	}
}

func (n *Node) propose(p proposal) {
	if p.cc != nil {
		p.errc <- n.rn.ProposeConfChange(p.cc)
		return
	}
	p.errc <- n.rn.Propose(p.data)
}

// drainProposals batches queued proposals into the same Ready.
func (n *Node) drainProposals() {
	for i := 0; i < 1024; i++ {
		select {
		case p := <-n.propc:
			n.propose(p)
		default:
			return
		}
	}
}

// handleReady follows the Ready contract of go.etcd.io/raft/v3: persist the
// hard state and entries, send messages (a leader may send before its own
// write, a follower only after), hand committed entries to the application,
// then Advance. It returns false if the node must stop.
func (n *Node) handleReady(rd raft.Ready) bool {
	if rd.SoftState != nil {
		if old := n.lead.Swap(rd.SoftState.Lead); old != rd.SoftState.Lead && n.cfg.OnLeaderChange != nil {
			n.cfg.OnLeaderChange(rd.SoftState.Lead)
		}
	}
	isLeader := n.rn.BasicStatus().RaftState == raft.StateLeader
	if isLeader {
		n.send(rd.Messages)
	}
	if !raft.IsEmptySnap(rd.Snapshot) {
		if err := n.cfg.Storage.SaveSnapshot(rd.Snapshot); err != nil {
			n.cfg.Fatal(fmt.Errorf("saving snapshot: %w", err))
			return false
		}
		if err := n.cfg.Log.ApplySnapshot(rd.Snapshot); err != nil {
			n.cfg.Fatal(fmt.Errorf("applying snapshot to the raft log: %w", err))
			return false
		}
		md := rd.Snapshot.GetMetadata()
		n.commit.Store(max(n.commit.Load(), md.GetIndex()))
		if n.cfg.OnSnapshot != nil {
			n.cfg.OnSnapshot(rd.Snapshot)
		}
	}
	hs := rd.HardState
	if hs != nil && raft.IsEmptyHardState(hs) {
		hs = nil
	}
	if hs != nil || len(rd.Entries) > 0 {
		if err := n.cfg.Storage.Save(hs, rd.Entries); err != nil {
			n.cfg.Fatal(fmt.Errorf("saving raft state: %w", err))
			return false
		}
	}
	if hs != nil {
		if err := n.cfg.Log.SetHardState(hs); err != nil {
			n.cfg.Fatal(err)
			return false
		}
		n.term.Store(hs.GetTerm())
		n.commit.Store(hs.GetCommit())
	}
	if len(rd.Entries) > 0 {
		if err := n.cfg.Log.Append(rd.Entries); err != nil {
			n.cfg.Fatal(err)
			return false
		}
	}
	if !isLeader {
		n.send(rd.Messages)
	}
	for _, rs := range rd.ReadStates {
		if n.cfg.OnReadState != nil {
			n.cfg.OnReadState(rs)
		}
	}
	if len(rd.CommittedEntries) > 0 {
		for _, e := range rd.CommittedEntries {
			if e.GetType() == raftpb.EntryConfChange {
				n.applyConfChange(e)
			}
		}
		if n.cfg.OnCommitted != nil {
			n.cfg.OnCommitted(rd.CommittedEntries)
		}
	}
	n.rn.Advance(rd)
	return true
}

// send hands messages to the transport, and snapshots to OnSendSnapshot.
func (n *Node) send(msgs []*raftpb.Message) {
	if n.cfg.OnSendSnapshot == nil {
		n.cfg.Transport.Send(msgs)
		return
	}
	plain := msgs[:0:0]
	for _, m := range msgs {
		if m.GetType() == raftpb.MsgSnap {
			n.cfg.OnSendSnapshot(m)
		} else {
			plain = append(plain, m)
		}
	}
	if len(plain) > 0 {
		n.cfg.Transport.Send(plain)
	}
}

func (n *Node) applyConfChange(e *raftpb.Entry) {
	cc := &raftpb.ConfChange{}
	if err := proto.Unmarshal(e.GetData(), cc); err != nil {
		// The entry was committed by a quorum; failing to decode it means
		// this binary cannot follow the log.
		n.cfg.Fatal(fmt.Errorf("decoding committed conf change at index %d: %w", e.GetIndex(), err))
		return
	}
	cs := n.rn.ApplyConfChange(cc)
	if n.cfg.OnConfChange != nil {
		n.cfg.OnConfChange(e.GetIndex(), cc, cs)
	}
}

// raftLogger adapts slog to raft.Logger.
type raftLogger struct{ l *slog.Logger }

func (r *raftLogger) Debug(v ...any)                 { r.l.Debug(fmt.Sprint(v...)) }
func (r *raftLogger) Debugf(format string, v ...any) { r.l.Debug(fmt.Sprintf(format, v...)) }
func (r *raftLogger) Error(v ...any)                 { r.l.Error(fmt.Sprint(v...)) }
func (r *raftLogger) Errorf(format string, v ...any) { r.l.Error(fmt.Sprintf(format, v...)) }
func (r *raftLogger) Info(v ...any)                  { r.l.Info(fmt.Sprint(v...)) }
func (r *raftLogger) Infof(format string, v ...any)  { r.l.Info(fmt.Sprintf(format, v...)) }
func (r *raftLogger) Warning(v ...any)               { r.l.Warn(fmt.Sprint(v...)) }
func (r *raftLogger) Warningf(format string, v ...any) {
	r.l.Warn(fmt.Sprintf(format, v...))
}
func (r *raftLogger) Fatal(v ...any) { r.l.Error(fmt.Sprint(v...)); panic(fmt.Sprint(v...)) }
func (r *raftLogger) Fatalf(format string, v ...any) {
	s := fmt.Sprintf(format, v...)
	r.l.Error(s)
	panic(s)
}
func (r *raftLogger) Panic(v ...any) { s := fmt.Sprint(v...); r.l.Error(s); panic(s) }
func (r *raftLogger) Panicf(format string, v ...any) {
	s := fmt.Sprintf(format, v...)
	r.l.Error(s)
	panic(s)
}
