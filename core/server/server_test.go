package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/edgekv/edgekv/core/raftnode"
)

// hub is an in-memory peer network for servers in one test.
type hub struct {
	mu    sync.Mutex
	peers map[uint64]TransportDeps
}

type hubTransport struct {
	h    *hub
	id   uint64
	self raftnode.Raft
	// per-destination ordered queues
	mu     sync.Mutex
	queues map[uint64]chan *raftpb.Message
	closed chan struct{}
}

func (h *hub) factory(d TransportDeps) (PeerTransport, error) {
	h.mu.Lock()
	h.peers[d.MemberID] = d
	h.mu.Unlock()
	return &hubTransport{h: h, id: d.MemberID, self: d.Raft, queues: map[uint64]chan *raftpb.Message{}, closed: make(chan struct{})}, nil
}

func (h *hub) peer(id uint64) (TransportDeps, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	d, ok := h.peers[id]
	return d, ok
}

// SendSnapshot delivers the backend to the receiver and the message to its
// Raft, then reports the outcome to the sender, as the QUIC transport does.
func (t *hubTransport) SendSnapshot(m *raftpb.Message, db io.ReadCloser, size int64) {
	go func() {
		defer db.Close()
		status := raft.SnapshotFailure
		if d, ok := t.h.peer(m.GetTo()); ok {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := d.Snapshots.ReceiveSnapshot(ctx, m, size, db); err == nil && d.Raft.Process(ctx, m) == nil {
				status = raft.SnapshotFinish
			}
			cancel()
		}
		t.self.ReportSnapshot(m.GetTo(), status)
	}()
}

func (t *hubTransport) Send(msgs []*raftpb.Message) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, m := range msgs {
		q, ok := t.queues[m.GetTo()]
		if !ok {
			continue
		}
		select {
		case q <- m:
		default: // full: dropped, as a real transport would
		}
	}
}

func (t *hubTransport) AddPeer(id uint64, _ string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.queues[id]; ok {
		return nil
	}
	q := make(chan *raftpb.Message, 4096)
	t.queues[id] = q
	go func() {
		for {
			select {
			case m := <-q:
				if d, ok := t.h.peer(id); ok {
					ctx, cancel := context.WithTimeout(context.Background(), time.Second)
					d.Raft.Process(ctx, m)
					cancel()
				}
			case <-t.closed:
				return
			}
		}
	}()
	return nil
}

func (t *hubTransport) RemovePeer(id uint64) {}

func (t *hubTransport) Close() error {
	close(t.closed)
	t.h.mu.Lock()
	delete(t.h.peers, t.id)
	t.h.mu.Unlock()
	return nil
}

type testCluster struct {
	t       *testing.T
	tweak   func(*Config)
	hub     *hub
	dirs    []string
	names   []string
	initial map[string][]string
	servers []*Server
}

func newTestCluster(t *testing.T, n int) *testCluster {
	t.Helper()
	return newTestClusterWith(t, n, nil)
}

func newTestClusterWith(t *testing.T, n int, tweak func(*Config)) *testCluster {
	t.Helper()
	c := &testCluster{t: t, hub: &hub{peers: map[uint64]TransportDeps{}}, initial: map[string][]string{}}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("m%d", i)
		c.names = append(c.names, name)
		c.dirs = append(c.dirs, t.TempDir())
		c.initial[name] = []string{fmt.Sprintf("http://127.0.0.1:%d", 20000+i)}
	}
	c.tweak = tweak
	c.servers = make([]*Server, n)
	for i := range c.servers {
		c.start(i)
	}
	t.Cleanup(func() {
		for _, s := range c.servers {
			if s != nil {
				s.Stop()
			}
		}
	})
	return c
}

func (c *testCluster) config(i int) Config {
	return Config{
		Name:                c.names[i],
		DataDir:             c.dirs[i],
		InitialCluster:      c.initial,
		InitialClusterState: "new",
		InitialClusterToken: "tok",
		AdvertiseClientURLs: []string{fmt.Sprintf("http://127.0.0.1:%d", 30000+i)},
		TickInterval:        10 * time.Millisecond,
		ElectionTicks:       10,
		NewTransport:        c.hub.factory,
		Logger:              slog.New(slog.DiscardHandler),
		Fatal:               func(err error) { c.t.Errorf("fatal: %v", err) },
	}
}

func (c *testCluster) configFor(i int) Config {
	cfg := c.config(i)
	if c.tweak != nil {
		c.tweak(&cfg)
	}
	return cfg
}

func (c *testCluster) start(i int) {
	s, err := New(c.configFor(i))
	if err != nil {
		c.t.Fatal(err)
	}
	s.Start()
	c.servers[i] = s
}

func (c *testCluster) stop(i int) {
	c.servers[i].Stop()
	c.servers[i] = nil
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// retry runs fn until it succeeds or the context ends (elections take time).
func retry(t *testing.T, fn func() error) {
	t.Helper()
	ctx := ctxT(t)
	for {
		err := fn()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("gave up: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func TestServer_WritesThroughAnyMemberAreReadEverywhere(t *testing.T) {
	c := newTestCluster(t, 3)
	for i, s := range c.servers {
		key := fmt.Sprintf("k%d", i)
		retry(t, func() error {
			_, err := s.Put(ctxT(t), &pb.PutRequest{Key: []byte(key), Value: []byte("v")})
			return err
		})
	}
	for _, s := range c.servers {
		resp, err := s.Range(ctxT(t), &pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l")})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Count != 3 {
			t.Fatalf("member %x sees %d keys, want 3", s.ID(), resp.Count)
		}
		if resp.Header.ClusterId != s.ClusterID() || resp.Header.MemberId != s.ID() || resp.Header.RaftTerm == 0 {
			t.Fatalf("bad header %v", resp.Header)
		}
	}
	ml, err := c.servers[0].MemberList(ctxT(t), true)
	if err != nil {
		t.Fatal(err)
	}
	if len(ml.Members) != 3 {
		t.Fatalf("member list: %v", ml.Members)
	}
}

func TestServer_RestartReplaysTheLogAndKeepsState(t *testing.T) {
	c := newTestCluster(t, 1)
	s := c.servers[0]
	for i := 0; i < 20; i++ {
		retry(t, func() error {
			_, err := s.Put(ctxT(t), &pb.PutRequest{Key: []byte(fmt.Sprintf("k%02d", i)), Value: []byte("v")})
			return err
		})
	}
	rev := s.kv.Rev()
	c.stop(0)
	c.start(0)
	s = c.servers[0]
	var resp *pb.RangeResponse
	retry(t, func() (err error) {
		resp, err = s.Range(ctxT(t), &pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l")})
		return err
	})
	if resp.Count != 20 || resp.Header.Revision != rev {
		t.Fatalf("after restart: count %d rev %d, want 20 at %d", resp.Count, resp.Header.Revision, rev)
	}
}

func TestServer_DataDirOfAnotherMemberIsRefused(t *testing.T) {
	c := newTestCluster(t, 1)
	c.stop(0)
	cfg := c.config(0)
	cfg.Name = "someone-else"
	cfg.InitialCluster = map[string][]string{"someone-else": {"http://127.0.0.1:1"}}
	_, err := New(cfg)
	if !errors.Is(err, ErrDataDirConflict) || !strings.Contains(err.Error(), `"m0"`) || !strings.Contains(err.Error(), "someone-else") {
		t.Fatalf("got %v, want a conflict naming both members", err)
	}
	cfg = c.config(0)
	cfg.InitialClusterToken = "other-token"
	_, err = New(cfg)
	if !errors.Is(err, ErrDataDirConflict) || !strings.Contains(err.Error(), "other-token") {
		t.Fatalf("got %v, want a conflict naming the token", err)
	}
}

func TestServer_RequestOverMaxBytesIsRefused(t *testing.T) {
	c := newTestCluster(t, 1)
	s := c.servers[0]
	_, err := s.Put(ctxT(t), &pb.PutRequest{Key: []byte("big"), Value: make([]byte, s.cfg.MaxRequestBytes+1)})
	if !errors.Is(err, ErrRequestTooLarge) {
		t.Fatalf("got %v, want ErrRequestTooLarge", err)
	}
	resp, err := s.Range(ctxT(t), &pb.RangeRequest{Key: []byte("big"), Serializable: true})
	if err != nil || resp.Count != 0 {
		t.Fatalf("oversized put changed state: %v %v", resp, err)
	}
}

func TestServer_LaggingFollowerCatchesUpBySnapshot(t *testing.T) {
	c := newTestClusterWith(t, 3, func(cfg *Config) {
		cfg.SnapshotCount = 20
		cfg.SnapshotCatchUpEntries = 5
	})
	put := func(s *Server, k string) {
		retry(t, func() error {
			_, err := s.Put(ctxT(t), &pb.PutRequest{Key: []byte(k), Value: []byte("v-" + k)})
			return err
		})
	}
	put(c.servers[0], "before")
	c.stop(2)
	for i := 0; i < 100; i++ {
		put(c.servers[i%2], fmt.Sprintf("k%03d", i))
	}
	// The others compacted their logs past what member 2 has.
	for _, s := range c.servers[:2] {
		first, _ := s.raftLog.FirstIndex()
		if first <= 2 {
			t.Fatalf("member %x did not compact its log (first index %d)", s.ID(), first)
		}
	}
	c.start(2)
	s2 := c.servers[2]
	want := c.servers[0]
	retry(t, func() error {
		if s2.applied.get() < want.applied.get() {
			return fmt.Errorf("member 2 at %d, leader at %d", s2.applied.get(), want.applied.get())
		}
		return nil
	})
	if s2.snapshotsInstalled.Load() == 0 {
		t.Fatal("member 2 caught up without installing a snapshot")
	}
	resp, err := s2.Range(ctxT(t), &pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), Serializable: true})
	if err != nil || resp.Count != 100 {
		t.Fatalf("member 2 after catching up: %v keys, %v", resp.GetCount(), err)
	}
	h0, _, _, err := want.kv.HashKV(0)
	if err != nil {
		t.Fatal(err)
	}
	h2, _, _, err := s2.kv.HashKV(0)
	if err != nil || h0 != h2 {
		t.Fatalf("hashes differ: %x vs %x (%v)", h0, h2, err)
	}
	// And it keeps following after the snapshot.
	put(s2, "after")
	c.stop(2)
	c.start(2)
	resp, err = c.servers[2].Range(ctxT(t), &pb.RangeRequest{Key: []byte("after")})
	if err != nil || resp.Count != 1 {
		t.Fatalf("after restart from the installed snapshot: %v %v", resp, err)
	}
}

func TestServer_AddedMemberJoinsBySnapshot(t *testing.T) {
	c := newTestClusterWith(t, 3, func(cfg *Config) {
		cfg.SnapshotCount = 20
		cfg.SnapshotCatchUpEntries = 5
	})
	for i := 0; i < 60; i++ {
		retry(t, func() error {
			_, err := c.servers[i%3].Put(ctxT(t), &pb.PutRequest{Key: []byte(fmt.Sprintf("k%03d", i)), Value: []byte("v")})
			return err
		})
	}
	newURL := "http://127.0.0.1:20099"
	var added *pb.MemberAddResponse
	retry(t, func() (err error) {
		added, err = c.servers[0].MemberAdd(ctxT(t), []string{newURL}, false)
		return err
	})
	if len(added.Members) != 4 || added.Member.ID != MemberID([]string{newURL}, "tok") {
		t.Fatalf("member add: %v", added)
	}
	if _, err := c.servers[1].MemberAdd(ctxT(t), []string{newURL}, false); !errors.Is(err, ErrMemberExist) {
		t.Fatalf("adding the same member twice: %v", err)
	}

	// Start the new member as etcd's "member add" output says.
	c.names = append(c.names, "m3")
	c.dirs = append(c.dirs, t.TempDir())
	c.initial["m3"] = []string{newURL}
	c.servers = append(c.servers, nil)
	tweak := c.tweak
	c.tweak = func(cfg *Config) {
		tweak(cfg)
		if cfg.Name == "m3" {
			cfg.InitialClusterState = "existing"
			cfg.DiscoverClusterID = func(_ context.Context, self uint64, _ string, _ map[uint64]string) (uint64, error) {
				for _, s := range c.servers[:3] {
					if _, ok := s.members.get(self); ok {
						return s.ClusterID(), nil
					}
				}
				return 0, errors.New("nobody knows this member")
			}
		}
	}
	c.start(3)
	s3 := c.servers[3]
	if s3.ClusterID() != c.servers[0].ClusterID() {
		t.Fatalf("joined cluster %x, want %x", s3.ClusterID(), c.servers[0].ClusterID())
	}
	retry(t, func() error {
		if s3.applied.get() < c.servers[0].applied.get() {
			return fmt.Errorf("new member at %d", s3.applied.get())
		}
		return nil
	})
	if s3.snapshotsInstalled.Load() == 0 {
		t.Fatal("the new member joined without a snapshot")
	}
	resp, err := s3.Range(ctxT(t), &pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), Serializable: true})
	if err != nil || resp.Count != 60 {
		t.Fatalf("new member has %d keys (%v)", resp.GetCount(), err)
	}
	// It publishes its name, and takes writes like the others.
	retry(t, func() error {
		if m, ok := s3.members.get(s3.ID()); !ok || m.Name != "m3" {
			return errors.New("not published yet")
		}
		_, err := s3.Put(ctxT(t), &pb.PutRequest{Key: []byte("from-new"), Value: []byte("v")})
		return err
	})
}

func TestServer_ApplyGoesOnWhileASnapshotIsSaved(t *testing.T) {
	c := newTestClusterWith(t, 1, func(cfg *Config) {
		cfg.SnapshotCount = 10
		cfg.SnapshotCatchUpEntries = 5
	})
	s := c.servers[0]
	put := func(k string) {
		retry(t, func() error {
			_, err := s.Put(ctxT(t), &pb.PutRequest{Key: []byte(k), Value: []byte("v")})
			return err
		})
	}
	// Hold the snapshot goroutine as a slow disk would: the puts past
	// --snapshot-count are applied and answered all the same.
	s.snapMu.Lock()
	for i := range 40 {
		put(fmt.Sprintf("k%02d", i))
	}
	if n := s.snapshotsSaved.Load(); n != 0 {
		t.Fatalf("%d snapshots saved while the snapshot goroutine was held", n)
	}
	s.snapMu.Unlock()
	retry(t, func() error {
		if s.snapshotsSaved.Load() == 0 {
			return errors.New("no snapshot saved")
		}
		if first, _ := s.raftLog.FirstIndex(); first <= 2 {
			return fmt.Errorf("the log is not compacted (first index %d)", first)
		}
		return nil
	})
	// The snapshot holds: a restart replays from it.
	put("after")
	c.stop(0)
	c.start(0)
	resp, err := c.servers[0].Range(ctxT(t), &pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l")})
	if err != nil || resp.Count != 40 {
		t.Fatalf("after a restart: %d keys, %v", resp.GetCount(), err)
	}
}

func TestServer_ASnapshotTakenBelowAnInstalledOneIsDropped(t *testing.T) {
	c := newTestCluster(t, 1)
	s := c.servers[0]
	for i := range 5 {
		retry(t, func() error {
			_, err := s.Put(ctxT(t), &pb.PutRequest{Key: []byte(fmt.Sprint("k", i)), Value: []byte("v")})
			return err
		})
	}
	index := s.applied.get()
	snapAt := func(i uint64) *raftpb.Snapshot {
		return &raftpb.Snapshot{Data: []byte{0x81, 0x80}, Metadata: &raftpb.SnapshotMetadata{
			Index: new(i), Term: new(uint64(1)), ConfState: &raftpb.ConfState{Voters: []uint64{s.ID()}},
		}}
	}
	// As the append goroutine saves one Raft installs...
	if err := s.storage.SaveSnapshot(snapAt(index)); err != nil {
		t.Fatal(err)
	}
	// ...which overtakes the one the snapshot goroutine was saving: that
	// one is dropped, where writing its marker would move the WAL's back.
	if saved, err := s.storage.saveTaken(snapAt(index - 1)); saved || err != nil {
		t.Fatalf("saveTaken below the installed snapshot: saved %v, %v", saved, err)
	}
	if saved, err := s.storage.saveTaken(snapAt(index)); saved || err != nil {
		t.Fatalf("saveTaken at the installed snapshot: saved %v, %v", saved, err)
	}
}
