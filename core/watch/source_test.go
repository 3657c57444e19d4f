package watch

import (
	"bytes"
	"sort"
	"sync"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"

	"github.com/edgekv/edgekv/core/mvcc"
)

// memSource is an in-memory Source with mvcc's semantics: revisions start
// at 1, each write takes the next one, History carries no PrevKv, and
// compaction forgets history below its revision.
type memSource struct {
	mu      sync.Mutex
	rev     int64
	compact int64
	history map[int64][]*mvccpb.Event // revision -> events, without PrevKv
	live    map[string]*mvccpb.KeyValue

	// onHistory, if set, runs at the start of History (outside the
	// source's lock): tests use it to notify revisions during a read.
	onHistory    func()
	historyCalls int
}

func newMemSource() *memSource {
	return &memSource{rev: 1, history: map[int64][]*mvccpb.Event{}, live: map[string]*mvccpb.KeyValue{}}
}

// op is one write of a memSource revision: a put, or a delete if del.
type op struct {
	key, val string
	del      bool
}

func put(key, val string) op { return op{key: key, val: val} }
func del(key string) op      { return op{key: key, del: true} }

// write applies ops as one revision and returns it with its events as
// mvcc's Result.Events has them (PrevKv when the key existed). A delete of
// a missing key makes no event; a revision without events is not taken.
func (m *memSource) write(ops ...op) (int64, []*mvccpb.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	rev := m.rev + 1
	var evs []*mvccpb.Event
	for _, o := range ops {
		prev := m.live[o.key]
		if o.del {
			if prev == nil {
				continue
			}
			delete(m.live, o.key)
			evs = append(evs, &mvccpb.Event{Type: mvccpb.Event_DELETE,
				Kv: &mvccpb.KeyValue{Key: []byte(o.key), ModRevision: rev}, PrevKv: prev})
			continue
		}
		kv := &mvccpb.KeyValue{Key: []byte(o.key), Value: []byte(o.val), CreateRevision: rev, ModRevision: rev, Version: 1}
		if prev != nil {
			kv.CreateRevision, kv.Version = prev.CreateRevision, prev.Version+1
		}
		m.live[o.key] = kv
		evs = append(evs, &mvccpb.Event{Type: mvccpb.Event_PUT, Kv: kv, PrevKv: prev})
	}
	if len(evs) == 0 {
		return m.rev, nil
	}
	m.rev = rev
	stored := make([]*mvccpb.Event, len(evs))
	for i, ev := range evs {
		stored[i] = &mvccpb.Event{Type: ev.Type, Kv: ev.Kv}
	}
	m.history[rev] = stored
	return rev, evs
}

func (m *memSource) compactTo(rev int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.compact = rev
}

func (m *memSource) History(startRev, endRev int64, limit int) ([]*mvccpb.Event, int64, error) {
	m.mu.Lock()
	m.historyCalls++
	hook := m.onHistory
	m.mu.Unlock()
	if hook != nil {
		hook()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if startRev < m.compact {
		return nil, 0, mvcc.ErrCompacted
	}
	startRev = max(startRev, 1)
	if endRev <= 0 || endRev > m.rev+1 {
		endRev = m.rev + 1
	}
	var out []*mvccpb.Event
	for rev := startRev; rev < endRev; rev++ {
		evs := m.history[rev]
		if len(evs) == 0 {
			continue
		}
		if limit > 0 && len(out) >= limit {
			return out, rev, nil
		}
		for _, ev := range evs {
			out = append(out, proto.Clone(ev).(*mvccpb.Event))
		}
	}
	return out, endRev, nil
}

func (m *memSource) Range(r *pb.RangeRequest) (*pb.RangeResponse, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	rev := r.Revision
	if rev <= 0 {
		rev = m.rev
	}
	if rev < m.compact {
		return nil, mvcc.ErrCompacted
	}
	if rev > m.rev {
		return nil, mvcc.ErrFutureRev
	}
	var last *mvccpb.Event
	for i := int64(1); i <= rev; i++ {
		for _, ev := range m.history[i] {
			if bytes.Equal(ev.Kv.Key, r.Key) {
				last = ev
			}
		}
	}
	resp := &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: m.rev}}
	if last != nil && last.Type == mvccpb.Event_PUT {
		resp.Kvs = []*mvccpb.KeyValue{proto.Clone(last.Kv).(*mvccpb.KeyValue)}
		resp.Count = 1
	}
	return resp, nil
}

func (m *memSource) CompactRev() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.compact
}

func (m *memSource) current() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rev
}

// fixture is a hub over a memSource whose background goroutines do not
// run: tests drive catch-up, victims and progress by calling the steps.
type fixture struct {
	t   testing.TB
	src *memSource
	hub *Hub
}

func newFixture(t testing.TB, opts Options) *fixture {
	t.Helper()
	src := newMemSource()
	h := New(src, src.current(), opts)
	t.Cleanup(h.Close)
	return &fixture{t: t, src: src, hub: h}
}

// write applies ops to the source and notifies the hub, as the server's
// apply loop does.
func (f *fixture) write(ops ...op) int64 {
	rev, evs := f.src.write(ops...)
	if len(evs) > 0 {
		f.hub.Notify(rev, evs)
	}
	return rev
}

// syncAll runs catch-up rounds until no unsynced watcher moves.
func (f *fixture) syncAll() {
	for {
		if _, progressed := f.hub.syncUnsynced(); !progressed {
			return
		}
	}
}

func (f *fixture) watch(s *Stream, r Request) int64 {
	f.t.Helper()
	id, _, err := s.Watch(r)
	if err != nil {
		f.t.Fatalf("watch %+v: %v", r, err)
	}
	return id
}

// drain takes every response waiting on s without blocking.
func drain(s *Stream) []Response {
	var out []Response
	for {
		select {
		case r, ok := <-s.Chan():
			if !ok {
				return out
			}
			out = append(out, r)
		default:
			return out
		}
	}
}

// seen is what a consumer observed for one watcher: its events' revisions
// and keys, in order.
type seen struct {
	revs []int64
	keys []string
}

func collectEvents(rs []Response) map[int64]*seen {
	out := map[int64]*seen{}
	for _, r := range rs {
		if len(r.Events) == 0 {
			continue
		}
		s := out[r.WatchID]
		if s == nil {
			s = &seen{}
			out[r.WatchID] = s
		}
		for _, ev := range r.Events {
			s.revs = append(s.revs, ev.Kv.ModRevision)
			s.keys = append(s.keys, string(ev.Kv.Key))
		}
	}
	return out
}

// expectedEvents lists, from the source's history, the events in [from,
// rev] that match the filter, as (revision, key) in order.
func (m *memSource) expectedEvents(from int64, match func(key []byte) bool) *seen {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := &seen{}
	var revs []int64
	for rev := range m.history {
		if rev >= from {
			revs = append(revs, rev)
		}
	}
	sort.Slice(revs, func(i, j int) bool { return revs[i] < revs[j] })
	for _, rev := range revs {
		for _, ev := range m.history[rev] {
			if match(ev.Kv.Key) {
				s.revs = append(s.revs, rev)
				s.keys = append(s.keys, string(ev.Kv.Key))
			}
		}
	}
	return s
}
