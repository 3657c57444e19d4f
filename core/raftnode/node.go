package raftnode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
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
	batch    []proposal // proposeQueued's, reused
	recvc    chan *raftpb.Message
	readc    chan []byte
	reportc  chan func(*raft.RawNode)
	stopc    chan struct{}
	donec    chan struct{}
	stopOnce sync.Once

	// Asynchronous storage writes (raft's AsyncStorageWrites): the Raft
	// goroutine hands each MsgStorageAppend to the append goroutine, which
	// persists it and delivers its responses; those addressed to this node
	// come back through local, in order.
	appendc  chan *raftpb.Message
	appendWG sync.WaitGroup
	failc    chan struct{} // closed when the append goroutine has failed
	local    localQueue
	acks     ackFilter // the append goroutine's
	// beats counts the heartbeats stepped (ackFilter's clock).
	beats atomic.Uint64

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
		AsyncStorageWrites:        true,
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
		appendc: make(chan *raftpb.Message, appendQueueLen),
		failc:   make(chan struct{}),
		local:   localQueue{ready: make(chan struct{}, 1)},
	}, nil
}

// appendQueueLen bounds the appends waiting for the append goroutine; when
// it is full the Raft goroutine waits (back-pressure on a slow disk).
const appendQueueLen = 1024

// maxAppendBatch bounds how many queued appends share one write and sync.
const maxAppendBatch = 1024

// Start runs the Raft goroutine and the append goroutine.
func (n *Node) Start() {
	n.appendWG.Add(1)
	go n.appendLoop()
	go n.run()
}

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
	defer func() {
		n.stopOnce.Do(func() { close(n.stopc) })
		n.appendWG.Wait()
		close(n.donec)
	}()
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
			n.step(m) // gather steps those queued behind it
		case p := <-n.propc:
			n.proposeQueued(p)
		case rctx := <-n.readc:
			n.rn.ReadIndex(rctx)
		case fn := <-n.reportc:
			fn(n.rn)
		case <-n.local.ready:
			n.stepLocalQueued()
		case <-n.failc:
			return
		case <-n.stopc:
			return
		}
		n.gather()
		for n.rn.HasReady() {
			if !n.handleReady(n.rn.Ready()) {
				return
			}
		}
	}
}

// gather lets the goroutines that are ready to run have their turn, then
// takes what they queued (messages, proposals, storage responses) into the
// Ready about to be made. Under load the client handlers about to propose
// and the transport's readers about to deliver are usually among them, and
// their work then joins this Ready instead of making one of its own: at
// 256 clients a quarter as many Readies, and with them a quarter as many
// WAL appends and a third as many MsgApps (bench/README.md). With nothing
// else ready, Gosched returns at once.
func (n *Node) gather() {
	runtime.Gosched()
	n.drainRecv()
	select {
	case p := <-n.propc:
		n.proposeQueued(p)
	default:
	}
	select {
	case <-n.local.ready:
		n.stepLocalQueued()
	default:
	}
}

// stepLocalQueued steps the messages in the local queue.
func (n *Node) stepLocalQueued() {
	for _, m := range n.local.take() {
		n.stepLocal(m)
	}
}

// stepLocal steps a message this node sent itself: a storage response or
// a leader's acknowledgement of its own append.
func (n *Node) stepLocal(m *raftpb.Message) {
	if err := n.rn.Step(m); err != nil {
		n.log.Debug("step of a local message failed", "err", err, "type", m.GetType())
	}
}

func (n *Node) step(m *raftpb.Message) {
	// Local message types must never arrive from the network.
	if raft.IsLocalMsg(m.GetType()) {
		n.log.Warn("dropping local message type from peer", "type", m.GetType(), "from", m.GetFrom())
		return
	}
	if m.GetType() == raftpb.MsgHeartbeat {
		n.beats.Add(1)
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

// maxBatchBytes bounds the data of the proposals proposed together.
const maxBatchBytes = 1 << 20

// proposeQueued proposes p and the proposals queued behind it (up to 1024,
// and maxBatchBytes of data) in order: the data proposals in a row go to
// Raft as one MsgProp, so that the leader appends them together and sends
// each follower one MsgApp for the lot, a follower forwards one message,
// and every member then handles one append and one response instead of
// one per proposal. They share Raft's answer (a dropped batch is dropped
// whole). A configuration change goes on its own, in its place.
func (n *Node) proposeQueued(p proposal) {
	batch := n.batch[:0]
	size := 0
	flush := func() {
		if len(batch) == 0 {
			return
		}
		ents := make([]*raftpb.Entry, len(batch))
		for i, q := range batch {
			ents[i] = &raftpb.Entry{Data: q.data}
		}
		err := n.rn.Step(&raftpb.Message{Type: raftpb.MsgProp.Enum(), From: new(n.cfg.ID), Entries: ents})
		for _, q := range batch {
			q.errc <- err
		}
		clear(batch)
		batch, size = batch[:0], 0
	}
	add := func(p proposal) {
		if p.cc != nil {
			flush()
			p.errc <- n.rn.ProposeConfChange(p.cc)
			return
		}
		if size+len(p.data) > maxBatchBytes {
			flush()
		}
		batch = append(batch, p)
		size += len(p.data)
	}
	add(p)
queued:
	for range 1024 {
		select {
		case p := <-n.propc:
			add(p)
		default:
			break queued
		}
	}
	flush()
	n.batch = batch
}

// handleReady follows the Ready contract of go.etcd.io/raft/v3 with
// asynchronous storage writes (its doc.go): messages to peers go out at
// once (Raft puts those that must wait for a local write among the
// responses of that write); the MsgStorageAppend goes to the append
// goroutine; the MsgStorageApply hands committed entries, which Raft
// releases only once they are durable here, to the application. Nothing
// waits for the disk on this goroutine, so the next batch of proposals
// forms while the last one syncs. It returns false if the node must stop.
func (n *Node) handleReady(rd raft.Ready) bool {
	if rd.SoftState != nil {
		if old := n.lead.Swap(rd.SoftState.Lead); old != rd.SoftState.Lead && n.cfg.OnLeaderChange != nil {
			n.cfg.OnLeaderChange(rd.SoftState.Lead)
		}
	}
	var peers []*raftpb.Message
	var appends, applies []*raftpb.Message
	for _, m := range rd.Messages {
		switch m.GetTo() {
		case raft.LocalAppendThread:
			appends = append(appends, m)
		case raft.LocalApplyThread:
			applies = append(applies, m)
		case n.cfg.ID:
			n.local.push([]*raftpb.Message{m})
		default:
			peers = append(peers, m)
		}
	}
	// The append goroutine is woken before the peers' writers: the
	// goroutine woken last runs next on this thread, without waking
	// another, and the round trip to a follower, which must sync as well,
	// is longer than the local write (1-client puts here: the leader's own
	// sync done 0.67 ms after its MsgApp went out, the first follower's
	// answer back after 1.2 ms).
	for _, m := range appends {
		select {
		case n.appendc <- m:
		case <-n.failc:
			return false
		case <-n.stopc:
			return false
		}
	}
	if len(peers) > 0 {
		n.send(peers)
	}
	for _, rs := range rd.ReadStates {
		if n.cfg.OnReadState != nil {
			n.cfg.OnReadState(rs)
		}
	}
	for _, m := range applies {
		n.applyCommitted(m)
	}
	return true
}

// applyCommitted hands a MsgStorageApply's entries to the application and
// steps its responses. Configuration changes take effect in Raft here, as
// they are handed over, and the application applies entries in order on
// its own goroutine (OnCommitted may block for back-pressure).
func (n *Node) applyCommitted(m *raftpb.Message) {
	ents := m.GetEntries()
	if len(ents) > 0 {
		for _, e := range ents {
			if e.GetType() == raftpb.EntryConfChange {
				n.applyConfChange(e)
			}
		}
		n.commit.Store(max(n.commit.Load(), ents[len(ents)-1].GetIndex()))
		if n.cfg.OnCommitted != nil {
			n.cfg.OnCommitted(ents)
		}
	}
	for _, r := range m.GetResponses() {
		n.stepLocal(r)
	}
}

// appendLoop persists MsgStorageAppends in order. What queued up while
// the last sync ran is written together, with one sync; then the
// responses of every message are delivered in order: to this node through
// the local queue, to peers through the transport.
func (n *Node) appendLoop() {
	defer n.appendWG.Done()
	batch := make([]*raftpb.Message, 0, maxAppendBatch)
	for {
		batch = batch[:0]
		select {
		case m := <-n.appendc:
			batch = append(batch, m)
		case <-n.stopc:
			return
		}
	drain:
		for len(batch) < maxAppendBatch {
			select {
			case m := <-n.appendc:
				batch = append(batch, m)
			default:
				break drain
			}
		}
		if err := n.persist(batch); err != nil {
			n.cfg.Fatal(err)
			close(n.failc)
			return
		}
		var peers, local []*raftpb.Message
		beats := n.beats.Load()
		for _, m := range batch {
			for _, r := range m.GetResponses() {
				switch {
				case r.GetTo() == n.cfg.ID:
					local = append(local, r)
				case !n.acks.repeats(m, r, beats):
					peers = appendPeerResponse(peers, r)
				}
			}
		}
		n.acks.sent(peers, beats)
		// Local responses first, for the same reason as in handleReady:
		// the peer's writer, woken last, runs next on this thread.
		n.local.push(local)
		if len(peers) > 0 {
			n.cfg.Transport.Send(peers)
		}
	}
}

// ackFilter keeps a follower from acknowledging the leader's commit
// updates. When the leader commits, it sends each follower an empty MsgApp
// with the new commit index, and Raft answers each with a MsgAppResp that
// repeats the follower's last acknowledgement: with one client, 2 of the
// 8 peer messages of a put (the entry's MsgApp and MsgAppResp to each
// follower, then the commit's). The leader learns nothing from such a
// repeat, so the append goroutine drops it: an accepting MsgAppResp with
// the term, index and leader of the last one it sent, answering a message
// that brought no entries and no snapshot but a new commit index, when no
// heartbeat came from the leader since that last one was sent.
//
// Raft is safe when messages are lost, and the heartbeat condition keeps
// it live: if the last acknowledgement did not arrive (a connection lost
// it), the leader, whose record of the follower then lags, sends an append
// on each heartbeat response, and the answer to one that follows a
// heartbeat stepped after the lost acknowledgement went out is never
// dropped: one or two heartbeats later the leader knows. A leader probing
// the follower (after ReportUnreachable) with nothing new to send may miss
// the answer to a probe that carries a commit as well, and then resumes
// at the next heartbeat response, as Raft does when a probe is lost.
type ackFilter struct {
	to, term, index uint64 // of the last accepting MsgAppResp sent; to 0: none
	beats           uint64 // Node.beats when it was sent
}

// repeats reports whether r, a response of the MsgStorageAppend m, is an
// acknowledgement to drop.
func (f *ackFilter) repeats(m, r *raftpb.Message, beats uint64) bool {
	return r.GetType() == raftpb.MsgAppResp && !r.GetReject() &&
		len(m.GetEntries()) == 0 && m.GetSnapshot() == nil && m.Commit != nil &&
		f.to != 0 && r.GetTo() == f.to && r.GetTerm() == f.term && r.GetIndex() == f.index &&
		beats == f.beats
}

// sent records the last accepting MsgAppResp of msgs, which are being sent.
func (f *ackFilter) sent(msgs []*raftpb.Message, beats uint64) {
	for _, r := range msgs {
		if r.GetType() == raftpb.MsgAppResp && !r.GetReject() {
			*f = ackFilter{to: r.GetTo(), term: r.GetTerm(), index: r.GetIndex(), beats: beats}
		}
	}
}

// appendPeerResponse appends r to msgs, the responses one sync made
// durable, unless it only repeats an acknowledgement: a follower answers
// every MsgApp, and the leader's commit updates are MsgApps too, so one
// sync typically covers several (9 per sync at 64 clients here). An
// accepting MsgAppResp tells the leader the follower's log matches up to
// its Index; of several to one leader in one term, the one with the
// highest Index says all the others say, and the leader learns it as
// early, so it replaces the one before it when nothing else to that
// member came between. Rejections and other types are kept as they are.
func appendPeerResponse(msgs []*raftpb.Message, r *raftpb.Message) []*raftpb.Message {
	if r.GetType() == raftpb.MsgAppResp && !r.GetReject() {
		for i := len(msgs) - 1; i >= 0; i-- {
			prev := msgs[i]
			if prev.GetTo() != r.GetTo() {
				continue
			}
			if prev.GetType() == raftpb.MsgAppResp && !prev.GetReject() && prev.GetTerm() == r.GetTerm() {
				if r.GetIndex() < prev.GetIndex() {
					r = prev
				}
				msgs[i] = r
				return msgs
			}
			break
		}
	}
	return append(msgs, r)
}

// persist makes the snapshots, entries and hard states of msgs durable,
// in order, and then visible in the in-memory log. Runs of contiguous
// entries share one Save (one write and one sync); only the last hard
// state of a run is written, since each supersedes the one before.
func (n *Node) persist(msgs []*raftpb.Message) error {
	var ents []*raftpb.Entry
	var hs *raftpb.HardState
	flush := func() error {
		if hs == nil && len(ents) == 0 {
			return nil
		}
		if err := n.cfg.Storage.Save(hs, ents); err != nil {
			return fmt.Errorf("saving raft state: %w", err)
		}
		if len(ents) > 0 {
			if err := n.cfg.Log.Append(ents); err != nil {
				return err
			}
		}
		if hs != nil {
			if err := n.cfg.Log.SetHardState(hs); err != nil {
				return err
			}
			n.term.Store(hs.GetTerm())
			n.commit.Store(max(n.commit.Load(), hs.GetCommit()))
		}
		ents, hs = nil, nil
		return nil
	}
	for _, m := range msgs {
		if snap := m.GetSnapshot(); snap != nil && !raft.IsEmptySnap(snap) {
			if err := flush(); err != nil {
				return err
			}
			if err := n.cfg.Storage.SaveSnapshot(snap); err != nil {
				return fmt.Errorf("saving snapshot: %w", err)
			}
			if err := n.cfg.Log.ApplySnapshot(snap); err != nil {
				return fmt.Errorf("applying snapshot to the raft log: %w", err)
			}
			n.commit.Store(max(n.commit.Load(), snap.GetMetadata().GetIndex()))
			if n.cfg.OnSnapshot != nil {
				n.cfg.OnSnapshot(snap)
			}
		}
		if me := m.GetEntries(); len(me) > 0 {
			if len(ents) > 0 && me[0].GetIndex() != ents[len(ents)-1].GetIndex()+1 {
				// Raft replaced part of the log: write the run so far first.
				if err := flush(); err != nil {
					return err
				}
			}
			ents = append(ents, me...)
		}
		if m.Term != nil || m.Vote != nil || m.Commit != nil {
			h := &raftpb.HardState{Term: new(m.GetTerm()), Vote: new(m.GetVote()), Commit: new(m.GetCommit())}
			if !raft.IsEmptyHardState(h) {
				hs = h
			}
		}
	}
	return flush()
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

// routineInfo are raft's Info lines that report normal operation under
// load. With asynchronous storage writes, a sync that only carries a new
// HardState answers with the last entry still being written, and when an
// earlier sync has made it stable already, raft says so at Info: on a
// loaded leader here, 70 lines a second, each a write to the log (on an SD
// card, wear for nothing). They are logged at Debug.
var routineInfo = map[string]bool{
	"entry at index %d missing from unstable log; ignoring": true,
}

func (r *raftLogger) Debug(v ...any) {
	if r.l.Enabled(context.Background(), slog.LevelDebug) {
		r.l.Debug(fmt.Sprint(v...))
	}
}

func (r *raftLogger) Debugf(format string, v ...any) {
	if r.l.Enabled(context.Background(), slog.LevelDebug) {
		r.l.Debug(fmt.Sprintf(format, v...))
	}
}

func (r *raftLogger) Error(v ...any)                 { r.l.Error(fmt.Sprint(v...)) }
func (r *raftLogger) Errorf(format string, v ...any) { r.l.Error(fmt.Sprintf(format, v...)) }
func (r *raftLogger) Info(v ...any)                  { r.l.Info(fmt.Sprint(v...)) }

func (r *raftLogger) Infof(format string, v ...any) {
	if routineInfo[format] {
		r.Debugf(format, v...)
		return
	}
	r.l.Info(fmt.Sprintf(format, v...))
}

func (r *raftLogger) Warning(v ...any) { r.l.Warn(fmt.Sprint(v...)) }
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

// localQueue holds messages for this node's Raft goroutine without ever
// blocking the sender, so the append goroutine cannot wait on the Raft
// goroutine while the Raft goroutine waits on it.
type localQueue struct {
	mu    sync.Mutex
	msgs  []*raftpb.Message
	ready chan struct{} // holds a token while msgs is not empty
}

func (q *localQueue) push(msgs []*raftpb.Message) {
	if len(msgs) == 0 {
		return
	}
	q.mu.Lock()
	q.msgs = append(q.msgs, msgs...)
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

func (q *localQueue) take() []*raftpb.Message {
	q.mu.Lock()
	defer q.mu.Unlock()
	msgs := q.msgs
	q.msgs = nil
	return msgs
}
