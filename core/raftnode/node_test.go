package raftnode

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
)

// memNet is an in-memory network: Send delivers to the peer's Process on
// one goroutine per link, so that, as on a QUIC stream, messages from one
// member to another arrive in the order they were sent.
type memNet struct {
	mu    sync.Mutex
	nodes map[uint64]*Node
	cut   map[uint64]bool // isolated members
	// drop, if set, is asked about each message sent; true loses it.
	drop  func(m *raftpb.Message) bool
	links map[[2]uint64]chan *raftpb.Message
}

// connect starts the delivery goroutine of every link between the
// members; they end with the test.
func (n *memNet) connect(t *testing.T) {
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	for from := range n.nodes {
		for to, peer := range n.nodes {
			if from == to {
				continue
			}
			// Far more than tests send before the peer takes them.
			q := make(chan *raftpb.Message, 1<<14)
			n.links[[2]uint64{from, to}] = q
			go func() {
				for {
					select {
					case m := <-q:
						peer.Process(context.Background(), m)
					case <-done:
						return
					}
				}
			}()
		}
	}
}

type memTransport struct {
	net  *memNet
	from uint64
}

func (t *memTransport) Send(msgs []*raftpb.Message) {
	t.net.mu.Lock()
	defer t.net.mu.Unlock()
	for _, m := range msgs {
		if t.net.cut[t.from] || t.net.cut[m.GetTo()] || t.net.drop != nil && t.net.drop(m) {
			continue
		}
		q, ok := t.net.links[[2]uint64{t.from, m.GetTo()}]
		if !ok {
			continue
		}
		select {
		case q <- m:
		default: // a full queue drops, as the real transport does
		}
	}
}

type memStorage struct {
	mu    sync.Mutex
	saves int
	fail  error
	hold  chan struct{} // if set, Save waits until it is closed
}

func (s *memStorage) SaveSnapshot(*raftpb.Snapshot) error { return nil }

func (s *memStorage) Save(hs *raftpb.HardState, ents []*raftpb.Entry) error {
	s.mu.Lock()
	s.saves++
	hold, err := s.hold, s.fail
	s.mu.Unlock()
	if hold != nil {
		<-hold
	}
	return err
}

type testNode struct {
	*Node
	ticks     chan time.Time
	storage   *memStorage
	committed chan *raftpb.Entry
	fatal     chan error
	sent      *countingTransport
}

func newTestCluster(t *testing.T, n int) (*memNet, []*testNode) {
	t.Helper()
	net := &memNet{nodes: map[uint64]*Node{}, cut: map[uint64]bool{}, links: map[[2]uint64]chan *raftpb.Message{}}
	var peers []raft.Peer
	for i := 1; i <= n; i++ {
		peers = append(peers, raft.Peer{ID: uint64(i)})
	}
	var nodes []*testNode
	for i := 1; i <= n; i++ {
		tn := &testNode{
			ticks:     make(chan time.Time),
			storage:   &memStorage{},
			committed: make(chan *raftpb.Entry, 1024),
			fatal:     make(chan error, 1),
		}
		tn.sent = newCountingTransport(&memTransport{net: net, from: uint64(i)})
		node, err := New(Config{
			ID: uint64(i), ElectionTick: 10, HeartbeatTick: 1,
			Ticks:     tn.ticks,
			Storage:   tn.storage,
			Log:       raft.NewMemoryStorage(),
			Transport: tn.sent,
			Bootstrap: peers,
			Logger:    slog.New(slog.DiscardHandler),
			Fatal:     func(err error) { tn.fatal <- err },
			OnCommitted: func(ents []*raftpb.Entry) {
				for _, e := range ents {
					if e.GetType() == raftpb.EntryNormal && len(e.GetData()) > 0 {
						tn.committed <- e
					}
				}
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		tn.Node = node
		net.nodes[uint64(i)] = node
		nodes = append(nodes, tn)
	}
	net.connect(t)
	for _, tn := range nodes {
		tn.Start()
		t.Cleanup(tn.Stop)
	}
	return net, nodes
}

// tickUntil advances the fake clock of every node until cond holds.
func tickUntil(t *testing.T, nodes []*testNode, cond func() bool) {
	t.Helper()
	for i := 0; i < 2000; i++ {
		if cond() {
			return
		}
		for _, n := range nodes {
			select {
			case n.ticks <- time.Time{}:
			case <-n.Done():
			}
		}
		time.Sleep(time.Millisecond) // let messages settle between ticks
	}
	t.Fatal("condition not reached after 2000 ticks")
}

func leaderOf(nodes []*testNode) uint64 {
	l := nodes[0].Leader()
	for _, n := range nodes[1:] {
		if n.Leader() != l {
			return 0
		}
	}
	return l
}

func TestNode_ElectsLeaderAndReplicatesProposals(t *testing.T) {
	_, nodes := newTestCluster(t, 3)
	tickUntil(t, nodes, func() bool { return leaderOf(nodes) != 0 })

	// Propose through a follower: it forwards to the leader.
	var follower *testNode
	for _, n := range nodes {
		if n.Leader() != n.cfg.ID {
			follower = n
			break
		}
	}
	if err := follower.Propose(context.Background(), []byte("hello")); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		select {
		case e := <-n.committed:
			if string(e.GetData()) != "hello" {
				t.Fatalf("node %d committed %q", n.cfg.ID, e.GetData())
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("node %d did not commit the proposal", n.cfg.ID)
		}
	}
}

func TestNode_ReadIndexIsAnsweredByQuorum(t *testing.T) {
	_, nodes := newTestCluster(t, 3)
	states := make(chan raft.ReadState, 1)
	nodes[1].cfg.OnReadState = func(rs raft.ReadState) { states <- rs }
	tickUntil(t, nodes, func() bool { return leaderOf(nodes) != 0 })
	// The leader serves reads only once it has committed in its term.
	if err := nodes[0].Propose(context.Background(), []byte("x")); err != nil {
		t.Fatal(err)
	}
	<-nodes[1].committed
	if err := nodes[1].ReadIndex(context.Background(), []byte("r1")); err != nil {
		t.Fatal(err)
	}
	select {
	case rs := <-states:
		if string(rs.RequestCtx) != "r1" || rs.Index == 0 {
			t.Fatalf("read state %+v", rs)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no read state")
	}
}

func TestNode_FailedSaveStopsTheNode(t *testing.T) {
	_, nodes := newTestCluster(t, 1)
	nodes[0].storage.mu.Lock()
	nodes[0].storage.fail = errors.New("disk on fire")
	nodes[0].storage.mu.Unlock()
	go func() {
		for {
			select {
			case nodes[0].ticks <- time.Time{}:
			case <-nodes[0].Done():
				return
			}
		}
	}()
	select {
	case err := <-nodes[0].fatal:
		if err == nil {
			t.Fatal("nil fatal error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("failed save did not reach Fatal")
	}
	select {
	case <-nodes[0].Done():
	case <-time.After(10 * time.Second):
		t.Fatal("node kept running after a failed save")
	}
}

func TestNode_LocalMessagesFromPeersAreDropped(t *testing.T) {
	_, nodes := newTestCluster(t, 1)
	// MsgHup from the network must not trigger an election.
	err := nodes[0].Process(context.Background(), &raftpb.Message{Type: raftpb.MsgHup.Enum(), From: new(uint64(9)), To: new(uint64(1))})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if nodes[0].Leader() != 0 {
		t.Fatal("a MsgHup from the network started an election")
	}
}

type recordingStorage struct {
	saves [][]uint64 // entry indexes per Save
	hs    []uint64   // commit of each Save's hard state, 0 for none
	snaps []uint64
}

func (s *recordingStorage) SaveSnapshot(sn *raftpb.Snapshot) error {
	s.snaps = append(s.snaps, sn.GetMetadata().GetIndex())
	return nil
}

func (s *recordingStorage) Save(hs *raftpb.HardState, ents []*raftpb.Entry) error {
	var idx []uint64
	for _, e := range ents {
		idx = append(idx, e.GetIndex())
	}
	s.saves = append(s.saves, idx)
	s.hs = append(s.hs, hs.GetCommit())
	return nil
}

func TestNode_PersistSharesOneSavePerContiguousRun(t *testing.T) {
	ents := func(term uint64, idx ...uint64) []*raftpb.Entry {
		var out []*raftpb.Entry
		for _, i := range idx {
			out = append(out, &raftpb.Entry{Term: new(term), Index: new(i)})
		}
		return out
	}
	app := func(e []*raftpb.Entry, commit uint64) *raftpb.Message {
		m := &raftpb.Message{Type: raftpb.MsgStorageAppend.Enum(), Entries: e}
		if commit > 0 {
			m.Term, m.Vote, m.Commit = new(uint64(2)), new(uint64(0)), new(commit)
		}
		return m
	}
	st := &recordingStorage{}
	log := raft.NewMemoryStorage()
	n := &Node{cfg: Config{Storage: st, Log: log}}
	// Two contiguous appends, a commit-only hard state, then Raft replacing
	// the tail from index 3 (a new term): two saves, each with the last
	// hard state seen before it was written.
	err := n.persist([]*raftpb.Message{
		app(ents(1, 1, 2), 0),
		app(ents(1, 3, 4), 1),
		app(nil, 2),
		app(ents(2, 3), 3),
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := [][]uint64{{1, 2, 3, 4}, {3}}; !slices.EqualFunc(st.saves, want, slices.Equal[[]uint64]) {
		t.Fatalf("saves %v, want %v", st.saves, want)
	}
	if want := []uint64{2, 3}; st.hs[0] != want[0] || st.hs[1] != want[1] {
		t.Fatalf("hard state commits %v, want %v", st.hs, want)
	}
	last, _ := log.LastIndex()
	if term, _ := log.Term(3); last != 3 || term != 2 {
		t.Fatalf("in-memory log ends at %d with term %d at 3; want 3 and 2", last, term)
	}
	if n.CommitIndex() != 3 || n.Term() != 2 {
		t.Fatalf("commit %d term %d, want 3 and 2", n.CommitIndex(), n.Term())
	}
}

// countingTransport counts the messages with entries of each type a node
// sends, and the entries; the messages of each type to each member; and
// the most of each type one Send carried.
type countingTransport struct {
	Transport
	mu      sync.Mutex
	msgs    map[raftpb.MessageType]int // with entries
	entries map[raftpb.MessageType]int
	to      map[countKey]int
	most    map[raftpb.MessageType]int
}

type countKey struct {
	typ raftpb.MessageType
	to  uint64
}

func newCountingTransport(tr Transport) *countingTransport {
	return &countingTransport{Transport: tr, msgs: map[raftpb.MessageType]int{}, entries: map[raftpb.MessageType]int{},
		to: map[countKey]int{}, most: map[raftpb.MessageType]int{}}
}

func (c *countingTransport) Send(msgs []*raftpb.Message) {
	c.mu.Lock()
	this := map[raftpb.MessageType]int{}
	for _, m := range msgs {
		c.to[countKey{m.GetType(), m.GetTo()}]++
		this[m.GetType()]++
		if len(m.GetEntries()) > 0 {
			c.msgs[m.GetType()]++
			c.entries[m.GetType()] += len(m.GetEntries())
		}
	}
	for typ, n := range this {
		c.most[typ] = max(c.most[typ], n)
	}
	c.mu.Unlock()
	c.Transport.Send(msgs)
}

func (c *countingTransport) count(t raftpb.MessageType) (msgs, entries int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.msgs[t], c.entries[t]
}

// countTo is the number of messages of type t sent to member to.
func (c *countingTransport) countTo(t raftpb.MessageType, to uint64) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.to[countKey{t, to}]
}

// maxPerSend is the most messages of type t that one Send carried.
func (c *countingTransport) maxPerSend(t raftpb.MessageType) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.most[t]
}

// onRaft runs fn on n's Raft goroutine and returns what it returns.
func onRaft[T any](n *testNode, fn func(*raft.RawNode) T) T {
	c := make(chan T, 1)
	n.reportc <- func(rn *raft.RawNode) { c <- fn(rn) }
	return <-c
}

// commit is n's commit index, read on its Raft goroutine.
func commit(n *testNode) uint64 {
	return onRaft(n, func(rn *raft.RawNode) uint64 { return rn.Status().GetCommit() })
}

// electedCluster starts 3 nodes and ticks them until one leads; it returns
// them, the leader and a follower.
func electedCluster(t *testing.T) (nodes []*testNode, leader, follower *testNode) {
	_, nodes = newTestCluster(t, 3)
	tickUntil(t, nodes, func() bool { return leaderOf(nodes) != 0 })
	for _, n := range nodes {
		if n.Leader() == n.cfg.ID {
			leader = n
		} else {
			follower = n
		}
	}
	return nodes, leader, follower
}

// A follower answers the MsgApps one sync made durable with one
// MsgAppResp, not one each: here its disk is held while the leader sends
// it five appends, one at a time, and the commit updates after them.
func TestNode_FollowerAcknowledgesOneSyncOnce(t *testing.T) {
	_, leader, follower := electedCluster(t)
	deadline := time.Now().Add(10 * time.Second)
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatal(what)
			}
			time.Sleep(time.Millisecond)
		}
	}
	// Replicating (not probing, which sends one append at a time) and
	// caught up, before its disk stops.
	waitFor("the follower did not catch up", func() bool {
		return onRaft(leader, func(rn *raft.RawNode) bool {
			st := rn.Status()
			pr := st.Progress[follower.cfg.ID]
			return pr.State == tracker.StateReplicate && pr.Match >= st.GetCommit()
		})
	})
	hold := make(chan struct{})
	release := sync.OnceFunc(func() { close(hold) })
	t.Cleanup(release) // before the nodes stop: cleanups run last first
	follower.storage.mu.Lock()
	follower.storage.hold = hold
	follower.storage.mu.Unlock()
	apps0 := leader.sent.countTo(raftpb.MsgApp, follower.cfg.ID)
	const k = 5
	for i := range k {
		c := commit(leader)
		if err := leader.Propose(context.Background(), []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		// Committed by the other follower, so each goes on its own.
		waitFor("the leader did not commit", func() bool { return commit(leader) > c })
	}
	last := commit(leader)
	// The held follower learns of the commit only when its Raft goroutine
	// has stepped every append before it.
	waitFor("the held follower did not receive the appends", func() bool { return commit(follower) >= last })
	if apps := leader.sent.countTo(raftpb.MsgApp, follower.cfg.ID) - apps0; apps < 3 {
		t.Fatalf("the leader sent the held follower %d MsgApps, want at least 3 (one for the held sync, two after it)", apps)
	}
	release()
	waitFor("the leader did not learn the held follower's log", func() bool {
		return onRaft(leader, func(rn *raft.RawNode) uint64 { return rn.Status().Progress[follower.cfg.ID].Match }) >= last
	})
	if got := follower.sent.maxPerSend(raftpb.MsgAppResp); got != 1 {
		t.Errorf("the follower sent %d MsgAppResps in one Send, want 1", got)
	}
}

func TestAppendPeerResponse(t *testing.T) {
	resp := func(to, term, index uint64, reject bool) *raftpb.Message {
		return &raftpb.Message{Type: raftpb.MsgAppResp.Enum(), To: &to, Term: &term, Index: &index, Reject: &reject}
	}
	vote := func(to, term uint64) *raftpb.Message {
		return &raftpb.Message{Type: raftpb.MsgVoteResp.Enum(), To: &to, Term: &term}
	}
	for _, tc := range []struct {
		name string
		in   []*raftpb.Message
		want []int // indexes into in
	}{
		{"later replaces earlier", []*raftpb.Message{resp(1, 2, 5, false), resp(1, 2, 7, false)}, []int{1}},
		{"a stale lower one keeps the higher", []*raftpb.Message{resp(1, 2, 7, false), resp(1, 2, 5, false)}, []int{0}},
		{"other peers are passed over", []*raftpb.Message{resp(1, 2, 5, false), resp(3, 2, 9, false), resp(1, 2, 7, false)}, []int{2, 1}},
		{"a new term is kept", []*raftpb.Message{resp(1, 2, 5, false), resp(1, 3, 7, false)}, []int{0, 1}},
		{"a rejection is kept", []*raftpb.Message{resp(1, 2, 5, false), resp(1, 2, 4, true), resp(1, 2, 6, false)}, []int{0, 1, 2}},
		{"nothing crosses another message to the peer", []*raftpb.Message{resp(1, 2, 5, false), vote(1, 2), resp(1, 2, 7, false)}, []int{0, 1, 2}},
	} {
		var got []*raftpb.Message
		for _, m := range tc.in {
			got = appendPeerResponse(got, m)
		}
		var want []*raftpb.Message
		for _, i := range tc.want {
			want = append(want, tc.in[i])
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, want)
		}
	}
}

func TestAckFilter(t *testing.T) {
	app := func(ents int, commit bool) *raftpb.Message {
		m := &raftpb.Message{Type: raftpb.MsgStorageAppend.Enum(), Entries: make([]*raftpb.Entry, ents)}
		if commit {
			m.Term, m.Vote, m.Commit = new(uint64(2)), new(uint64(0)), new(uint64(7))
		}
		return m
	}
	resp := func(to, term, index uint64, reject bool) *raftpb.Message {
		return &raftpb.Message{Type: raftpb.MsgAppResp.Enum(), To: &to, Term: &term, Index: &index, Reject: &reject}
	}
	var f ackFilter
	if f.repeats(app(0, true), resp(1, 2, 7, false), 0) {
		t.Fatal("dropped an acknowledgement with none sent before")
	}
	f.sent([]*raftpb.Message{resp(1, 2, 6, false), resp(1, 2, 7, false), resp(3, 2, 1, true)}, 4)
	for _, tc := range []struct {
		name  string
		m, r  *raftpb.Message
		beats uint64
		want  bool
	}{
		{"a commit update's repeat", app(0, true), resp(1, 2, 7, false), 4, true},
		{"after a heartbeat", app(0, true), resp(1, 2, 7, false), 5, false},
		{"an answer to entries", app(1, true), resp(1, 2, 7, false), 4, false},
		{"an answer that moved no commit (a probe)", app(0, false), resp(1, 2, 7, false), 4, false},
		{"another index", app(0, true), resp(1, 2, 8, false), 4, false},
		{"another term", app(0, true), resp(1, 3, 7, false), 4, false},
		{"another leader", app(0, true), resp(2, 2, 7, false), 4, false},
		{"a rejection", app(0, true), resp(1, 2, 7, true), 4, false},
		{"another type", app(0, true), &raftpb.Message{Type: raftpb.MsgVoteResp.Enum(), To: new(uint64(1)), Term: new(uint64(2)), Index: new(uint64(7))}, 4, false},
	} {
		if got := f.repeats(tc.m, tc.r, tc.beats); got != tc.want {
			t.Errorf("%s: repeats = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// A follower does not answer the leader's commit updates: with proposals
// one at a time, each follower acknowledges each entry once, yet learns
// every commit.
func TestNode_FollowerDoesNotAcknowledgeCommitUpdates(t *testing.T) {
	nodes, leader, _ := electedCluster(t)
	var followers []*testNode
	resps0 := map[*testNode]int{}
	for _, n := range nodes {
		if n != leader {
			followers = append(followers, n)
			resps0[n] = n.sent.countTo(raftpb.MsgAppResp, leader.cfg.ID)
		}
	}
	const k = 20
	for i := range k {
		if err := leader.Propose(context.Background(), []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes {
			select {
			case <-n.committed:
			case <-time.After(10 * time.Second):
				t.Fatalf("node %d did not commit proposal %d", n.cfg.ID, i)
			}
		}
	}
	last := commit(leader)
	deadline := time.Now().Add(10 * time.Second)
	for _, f := range followers {
		for commit(f) < last {
			if time.Now().After(deadline) {
				t.Fatalf("follower %d did not learn commit %d", f.cfg.ID, last)
			}
			time.Sleep(time.Millisecond)
		}
		// The leader's commit updates to f, each a MsgApp without entries,
		// are as many as the entries; without the filter f would answer
		// each of them too.
		if got := f.sent.countTo(raftpb.MsgAppResp, leader.cfg.ID) - resps0[f]; got > k+k/4 {
			t.Errorf("follower %d sent %d MsgAppResps for %d entries one at a time, want about %d", f.cfg.ID, got, k, k)
		}
	}
}

// A lost acknowledgement is sent again: here the network loses a
// follower's acknowledgement of an entry, the other follower commits it,
// and the follower's answer to the commit update repeats the lost one;
// the leader learns the follower's log at the next heartbeat.
func TestNode_LostAcknowledgementIsRecoveredAtAHeartbeat(t *testing.T) {
	net, nodes := newTestCluster(t, 3)
	tickUntil(t, nodes, func() bool { return leaderOf(nodes) != 0 })
	var leader, lossy *testNode
	for _, n := range nodes {
		switch {
		case n.Leader() == n.cfg.ID:
			leader = n
		case lossy == nil:
			lossy = n
		}
	}
	match := func() uint64 {
		return onRaft(leader, func(rn *raft.RawNode) uint64 { return rn.Status().Progress[lossy.cfg.ID].Match })
	}
	before := commit(leader)
	tickUntil(t, nodes, func() bool { return match() >= before })
	lost := 0
	net.mu.Lock()
	// Called with net.mu held, by memTransport.Send.
	net.drop = func(m *raftpb.Message) bool {
		if m.GetFrom() == lossy.cfg.ID && m.GetType() == raftpb.MsgAppResp && m.GetIndex() > before {
			lost++
			return lost == 1 // the acknowledgement of the entry
		}
		return false
	}
	net.mu.Unlock()
	if err := leader.Propose(context.Background(), []byte{1}); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		select {
		case <-n.committed:
		case <-time.After(10 * time.Second):
			t.Fatalf("node %d did not commit the proposal", n.cfg.ID)
		}
	}
	if m := match(); m > before {
		t.Fatalf("the leader knows the follower has %d, before it heard of it", m)
	}
	tickUntil(t, nodes, func() bool { return match() > before })
}

// Proposals queued while the Raft goroutine is busy go to Raft as one
// MsgProp: a follower forwards them in one message, and the leader sends
// each follower one MsgApp for all of them, instead of one per proposal.
// Every member commits them all, in the order they were queued.
func TestNode_QueuedProposalsGoToRaftTogether(t *testing.T) {
	nodes, leader, follower := electedCluster(t)
	props0, _ := follower.sent.count(raftpb.MsgProp)
	apps0, ents0 := leader.sent.count(raftpb.MsgApp)
	for _, n := range []*testNode{leader, follower} {
		held, release := make(chan struct{}), make(chan struct{})
		n.reportc <- func(*raft.RawNode) { close(held); <-release }
		<-held
		// The Raft goroutine is held: these queue up behind it.
		const k = 50
		errs := make(chan error, k)
		for i := range k {
			p := proposal{data: []byte{byte(i)}, errc: make(chan error, 1)}
			n.propc <- p
			go func() { errs <- <-p.errc }()
		}
		close(release)
		for range k {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		for _, m := range nodes {
			for i := range k {
				select {
				case e := <-m.committed:
					if got := e.GetData(); len(got) != 1 || got[0] != byte(i) {
						t.Fatalf("node %d committed %v as proposal %d", m.cfg.ID, got, i)
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("node %d did not commit proposal %d", m.cfg.ID, i)
				}
			}
		}
	}
	if msgs, _ := follower.sent.count(raftpb.MsgProp); msgs-props0 != 1 {
		t.Errorf("the follower forwarded 50 queued proposals in %d MsgProps, want 1", msgs-props0)
	}
	// Per follower, the leader's own batch and the forwarded one: 2 MsgApps
	// each.
	if msgs, ents := leader.sent.count(raftpb.MsgApp); msgs-apps0 != 4 || ents-ents0 != 200 {
		t.Errorf("the leader replicated 2 batches of 50 proposals to 2 followers in %d MsgApps with %d entries, want 4 with 200", msgs-apps0, ents-ents0)
	}
}

// levelRecorder records the level of each record logged through it.
type levelRecorder struct {
	mu     sync.Mutex
	levels []slog.Level
}

func (h *levelRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *levelRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.levels = append(h.levels, r.Level)
	return nil
}
func (h *levelRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *levelRecorder) WithGroup(string) slog.Handler      { return h }

// Raft's routine Info line under asynchronous writes goes to Debug; other
// Info lines stay Info.
func TestRaftLogger_RoutineInfoIsDebug(t *testing.T) {
	h := &levelRecorder{}
	l := &raftLogger{l: slog.New(h)}
	l.Infof("entry at index %d missing from unstable log; ignoring", 7)
	l.Infof("%x became leader at term %d", 1, 2)
	if want := []slog.Level{slog.LevelDebug, slog.LevelInfo}; !slices.Equal(h.levels, want) {
		t.Errorf("levels %v, want %v", h.levels, want)
	}
}
