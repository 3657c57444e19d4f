package transport

import (
	"bytes"
	"context"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// waitTimeout bounds every wait in these tests.
const waitTimeout = 20 * time.Second

// fakeRaft records what a Transport hands to Raft.
type fakeRaft struct {
	mu          sync.Mutex
	msgs        []*raftpb.Message
	unreachable map[uint64]int
	snapshots   map[uint64][]raft.SnapshotStatus
	changed     chan struct{}
}

func newFakeRaft() *fakeRaft {
	return &fakeRaft{
		unreachable: make(map[uint64]int),
		snapshots:   make(map[uint64][]raft.SnapshotStatus),
		changed:     make(chan struct{}, 1),
	}
}

func (r *fakeRaft) notify() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

func (r *fakeRaft) Process(ctx context.Context, m *raftpb.Message) error {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
	r.notify()
	return nil
}

func (r *fakeRaft) ReportUnreachable(id uint64) {
	r.mu.Lock()
	r.unreachable[id]++
	r.mu.Unlock()
	r.notify()
}

func (r *fakeRaft) ReportSnapshot(id uint64, status raft.SnapshotStatus) {
	r.mu.Lock()
	r.snapshots[id] = append(r.snapshots[id], status)
	r.mu.Unlock()
	r.notify()
}

// messages returns a copy of what was delivered, optionally only from one member.
func (r *fakeRaft) messages(from uint64) []*raftpb.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*raftpb.Message
	for _, m := range r.msgs {
		if from == 0 || m.GetFrom() == from {
			out = append(out, m)
		}
	}
	return out
}

func (r *fakeRaft) unreachableCount(id uint64) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.unreachable[id]
}

func (r *fakeRaft) snapshotReports(id uint64) []raft.SnapshotStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]raft.SnapshotStatus(nil), r.snapshots[id]...)
}

// waitUntil waits until cond holds, rechecking whenever r records
// something (and every 50 ms, for conditions on other state).
func (r *fakeRaft) waitUntil(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-r.changed:
		case <-tick.C:
		case <-deadline.C:
			tb.Fatalf("timed out waiting until %s", what)
		}
	}
}

// waitForMessages waits until n messages from member from were delivered.
func (r *fakeRaft) waitForMessages(tb testing.TB, from uint64, n int) []*raftpb.Message {
	tb.Helper()
	r.waitUntil(tb, "messages arrive", func() bool { return len(r.messages(from)) >= n })
	return r.messages(from)
}

// logBook sends a transport's log to t.Log and keeps the lines for
// assertions.
type logBook struct {
	tb    testing.TB
	mu    sync.Mutex
	lines []string
}

func (l *logBook) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\n")
	l.mu.Lock()
	l.lines = append(l.lines, line)
	l.mu.Unlock()
	l.tb.Log(line)
	return len(p), nil
}

// count returns how many lines contain all of parts.
func (l *logBook) count(parts ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.lines {
		ok := true
		for _, p := range parts {
			if !strings.Contains(line, p) {
				ok = false
				break
			}
		}
		if ok {
			n++
		}
	}
	return n
}

// has reports whether some line contains all of parts.
func (l *logBook) has(parts ...string) bool { return l.count(parts...) > 0 }

// member is a Transport under test with its fake Raft and log.
type member struct {
	*Transport
	raft *fakeRaft
	log  *logBook
}

const (
	testToken     = "edgekv-test-token"
	testClusterID = 0xc1
)

// newMember starts a transport on a loopback port (or addr) and closes it
// when the test ends. edit may change the config first.
func newMember(tb testing.TB, id uint64, addr string, edit ...func(*Config)) *member {
	tb.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	book := &logBook{tb: tb}
	fr := newFakeRaft()
	cfg := Config{
		ID:         id,
		ClusterID:  testClusterID,
		ListenAddr: addr,
		Token:      testToken,
		Logger:     slog.New(slog.NewTextHandler(book, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Raft:       fr,
	}
	for _, e := range edit {
		e(&cfg)
	}
	tr, err := New(cfg)
	if err != nil {
		tb.Fatalf("New(member %d): %v", id, err)
	}
	tb.Cleanup(func() {
		if err := tr.Close(); err != nil {
			tb.Errorf("Close(member %d): %v", id, err)
		}
	})
	return &member{Transport: tr, raft: fr, log: book}
}

// connect makes every member a peer of every other.
func connect(members ...*member) {
	for _, a := range members {
		for _, b := range members {
			if a != b {
				a.AddPeer(b.cfg.ID, b.Addr().String())
			}
		}
	}
}

// msg returns a MsgApp from -> to carrying index i and one entry.
func msg(from, to, i uint64) *raftpb.Message {
	return &raftpb.Message{
		Type:    raftpb.MsgApp.Enum(),
		From:    proto.Uint64(from),
		To:      proto.Uint64(to),
		Term:    proto.Uint64(1),
		Index:   proto.Uint64(i),
		Commit:  proto.Uint64(i / 2),
		Entries: []*raftpb.Entry{{Term: proto.Uint64(1), Index: proto.Uint64(i + 1), Type: raftpb.EntryNormal.Enum(), Data: []byte("payload")}},
	}
}

// checkInOrder fails unless msgs are exactly indexes 0..n-1 from -> to.
func checkInOrder(tb testing.TB, msgs []*raftpb.Message, from, to uint64, n int) {
	tb.Helper()
	if len(msgs) != n {
		tb.Fatalf("got %d messages from %d, want %d", len(msgs), from, n)
	}
	for i, m := range msgs {
		if m.GetIndex() != uint64(i) || m.GetFrom() != from || m.GetTo() != to {
			tb.Fatalf("message %d is %d->%d index %d, want %d->%d index %d",
				i, m.GetFrom(), m.GetTo(), m.GetIndex(), from, to, i)
		}
		if !proto.Equal(m, msg(from, to, uint64(i))) {
			tb.Fatalf("message %d changed in transit: %v", i, m)
		}
	}
}

// checkNoLeaks fails the test if goroutines of this package or of quic-go
// are still running once every other cleanup has run. Call it first in a
// test, so its cleanup runs last.
func checkNoLeaks(tb testing.TB) {
	tb.Helper()
	tb.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			leaked := leakedGoroutines()
			if leaked == "" {
				return
			}
			if time.Now().After(deadline) {
				tb.Errorf("goroutines leaked:\n%s", leaked)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

func leakedGoroutines() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var leaked []string
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		s := string(g)
		if strings.Contains(s, "leakedGoroutines") {
			continue
		}
		if strings.Contains(s, "edgekv/transport.(*") || strings.Contains(s, "github.com/quic-go/quic-go") {
			leaked = append(leaked, s)
		}
	}
	return strings.Join(leaked, "\n\n")
}
