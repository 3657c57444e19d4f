package watch

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/edgekv/edgekv/core/mvcc"
)

// modelWatcher is a watcher of the random-schedule test and what its
// consumer received.
type modelWatcher struct {
	s        *Stream
	id       int64
	req      Request
	got      seen
	canceled bool  // by the test
	compact  int64 // the compaction revision it was canceled with
}

func (m *modelWatcher) matches(key []byte) bool {
	r := m.req
	switch {
	case len(r.RangeEnd) == 0:
		return bytes.Equal(key, r.Key)
	case len(r.RangeEnd) == 1 && r.RangeEnd[0] == 0:
		return bytes.Compare(key, r.Key) >= 0
	default:
		return bytes.Compare(key, r.Key) >= 0 && bytes.Compare(key, r.RangeEnd) < 0
	}
}

// TestHub_RandomSchedulesDeliverEveryEventOnceInOrder drives the hub with
// seeded random interleavings of writes, catch-up rounds, victim retries,
// slow consumers, new watchers (from past, present and future revisions),
// cancellations, snapshots (Restore) and compactions, with tiny channels
// and batches, and checks every watcher got exactly the events of its
// range from its start revision, in order, each once: all of them if it
// lived to the end, a prefix of them if it was canceled or compacted (and
// then only because its next revision was compacted).
func TestHub_RandomSchedulesDeliverEveryEventOnceInOrder(t *testing.T) {
	for seed := range uint64(40) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { runRandomSchedule(t, seed) })
	}
}

func runRandomSchedule(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, seed*7+1))
	f := newFixture(t, Options{chanLen: 1 + rng.IntN(3), batchEvents: 1 + rng.IntN(5), maxWatchersPerSync: 1 + rng.IntN(4)})
	keys := []string{"a", "b", "b1", "b2", "c", "d"}
	var streams []*Stream
	for range 3 {
		streams = append(streams, f.hub.NewStream())
	}
	var ws []*modelWatcher
	byStream := map[*Stream]map[int64]*modelWatcher{}
	for _, s := range streams {
		byStream[s] = map[int64]*modelWatcher{}
	}
	consume := func(s *Stream, n int) {
		for range n {
			select {
			case r := <-s.Chan():
				w := byStream[s][r.WatchID]
				if r.Canceled {
					w.compact = r.CompactRevision
					continue
				}
				for _, ev := range r.Events {
					w.got.revs = append(w.got.revs, ev.Kv.ModRevision)
					w.got.keys = append(w.got.keys, string(ev.Kv.Key))
				}
			default:
				return
			}
		}
	}
	newWatcher := func() {
		s := streams[rng.IntN(len(streams))]
		r := Request{Key: []byte(keys[rng.IntN(len(keys))])}
		switch rng.IntN(3) {
		case 1:
			r.RangeEnd = prefixEnd(r.Key)
		case 2:
			r.RangeEnd = []byte{0}
		}
		cur, compact := f.src.current(), max(f.src.CompactRev(), 1)
		switch rng.IntN(5) {
		case 0: // now
		case 1:
			r.StartRev = compact + rng.Int64N(cur-compact+1)
		case 4:
			r.StartRev = 1 + rng.Int64N(cur) // maybe compacted
		case 2:
			r.StartRev = cur
		case 3:
			r.StartRev = cur + 1 + rng.Int64N(3)
		}
		id, _, err := s.Watch(r)
		if err != nil {
			t.Fatalf("Watch %+v: %v", r, err)
		}
		if r.StartRev == 0 {
			r.StartRev = f.hub.Rev() + 1
		}
		w := &modelWatcher{s: s, id: id, req: r}
		ws = append(ws, w)
		byStream[s][id] = w
	}
	write := func(notify bool) {
		var ops []op
		for range 1 + rng.IntN(3) {
			k := keys[rng.IntN(len(keys))]
			if rng.IntN(4) == 0 {
				ops = append(ops, del(k))
			} else {
				ops = append(ops, put(k, fmt.Sprint(rng.IntN(100))))
			}
		}
		slices.SortFunc(ops, func(a, b op) int { return bytes.Compare([]byte(a.key), []byte(b.key)) })
		ops = slices.CompactFunc(ops, func(a, b op) bool { return a.key == b.key })
		rev, evs := f.src.write(ops...)
		if notify && len(evs) > 0 {
			f.hub.Notify(rev, evs)
		}
	}
	for range 3 {
		newWatcher()
	}
	for step := 0; step < 300; step++ {
		switch x := rng.IntN(100); {
		case x < 40:
			write(true)
		case x < 50:
			f.hub.syncUnsynced()
		case x < 60:
			f.hub.syncVictims()
		case x < 80:
			consume(streams[rng.IntN(len(streams))], rng.IntN(4))
		case x < 88:
			newWatcher()
		case x < 91:
			if w := ws[rng.IntN(len(ws))]; !w.canceled {
				if err := w.s.Cancel(w.id); err != nil {
					t.Fatalf("Cancel %d: %v", w.id, err)
				}
				w.canceled = true
			}
		case x < 95:
			// A snapshot: revisions arrive without notifications.
			for range 1 + rng.IntN(3) {
				write(false)
			}
			f.hub.Restore(f.src.current())
		case x < 96:
			cur := f.src.current()
			f.src.compactTo(max(f.src.CompactRev(), cur-10-rng.Int64N(30)))
		default:
			streams[rng.IntN(len(streams))].RequestProgress()
		}
	}
	// Settle: keep consuming and running rounds until nothing moves.
	for range 1000 {
		for _, s := range streams {
			consume(s, 1000)
		}
		f.hub.syncVictims()
		f.hub.syncUnsynced()
	}
	for _, s := range streams {
		consume(s, 1000)
	}
	for _, w := range ws {
		want := f.src.expectedEvents(w.req.StartRev, w.matches)
		n := len(w.got.revs)
		ok := n <= len(want.revs) && slices.Equal(w.got.revs, want.revs[:n]) && slices.Equal(w.got.keys, want.keys[:n])
		switch {
		case !ok:
			t.Fatalf("watcher %d %+v: got %v, want (a prefix of) %v", w.id, w.req, w.got, want)
		case w.compact != 0:
			// Canceled by compaction: only if the next revision it needed
			// was compacted.
			next := w.req.StartRev
			if n > 0 {
				next = w.got.revs[n-1] + 1
			}
			if next >= w.compact {
				t.Fatalf("watcher %d canceled at compaction %d though it had everything below %d", w.id, w.compact, next)
			}
		case !w.canceled && n != len(want.revs):
			t.Fatalf("watcher %d %+v: got %v, want %v", w.id, w.req, w.got, want)
		}
	}
}

// TestHub_ConcurrentWritesAndSlowConsumersUnderTheRealLoops runs the
// background loops while one goroutine notifies and consumers of varying
// speed read, and checks that every watcher ends with exactly its events.
// It waits for the result, not for time: speed changes only how long it
// takes.
func TestHub_ConcurrentWritesAndSlowConsumersUnderTheRealLoops(t *testing.T) {
	f := newFixture(t, Options{chanLen: 4, batchEvents: 16})
	f.hub.Start()
	const writes = 2000
	keys := []string{"a", "b", "c"}
	type consumer struct {
		s    *Stream
		reqs map[int64]Request
		got  map[int64]*seen
		done chan struct{}
	}
	var cs []*consumer
	for i := range 6 {
		c := &consumer{s: f.hub.NewStream(), reqs: map[int64]Request{}, got: map[int64]*seen{}, done: make(chan struct{})}
		for j := range 3 {
			r := Request{Key: []byte(keys[(i+j)%len(keys)]), PrevKV: j == 1}
			if j == 2 {
				r.RangeEnd = []byte{0}
			}
			id := f.watch(c.s, r)
			c.reqs[id] = r
			c.got[id] = &seen{}
		}
		cs = append(cs, c)
	}
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range c.s.Chan() {
				for _, ev := range r.Events {
					g := c.got[r.WatchID]
					g.revs = append(g.revs, ev.Kv.ModRevision)
					g.keys = append(g.keys, string(ev.Kv.Key))
				}
				if i%2 == 1 {
					time.Sleep(50 * time.Microsecond) // a slow consumer: makes victims
				}
				if r.WatchID == InvalidWatchID {
					close(c.done)
					return
				}
			}
		}()
	}
	for i := range writes {
		f.write(put(keys[i%len(keys)], fmt.Sprint(i)))
	}
	final := f.hub.Rev()
	// Ask each stream for progress: answered once all its watchers are
	// synced, i.e. have every event up to final.
	for _, c := range cs {
		c.s.RequestProgress()
	}
	timeout := time.After(2 * time.Minute)
	for _, c := range cs {
		select {
		case <-c.done:
		case <-timeout:
			t.Fatal("streams did not catch up")
		}
	}
	f.hub.Close()
	wg.Wait()
	for _, c := range cs {
		for id, r := range c.reqs {
			w := &modelWatcher{req: r}
			want := f.src.expectedEvents(2, w.matches)
			if g := c.got[id]; !slices.Equal(g.revs, want.revs) || !slices.Equal(g.keys, want.keys) {
				t.Fatalf("watcher %d %+v: got %d events, want %d (up to %d)", id, r, len(g.revs), len(want.revs), final)
			}
		}
	}
}

func TestGroup_MatchFindsExactlyTheWatchersOfAKey(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte{0x00, 'a', 'b', 0xfe, 0xff}
	randKey := func() []byte {
		k := make([]byte, 1+rng.IntN(3))
		for i := range k {
			k[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return k
	}
	g := newGroup()
	byPtr := map[*watcher]*modelWatcher{}
	s := &Stream{}
	for i := range 300 {
		r := Request{Key: randKey()}
		switch rng.IntN(4) {
		case 1:
			r.RangeEnd = prefixEnd(r.Key)
			if r.RangeEnd == nil {
				r.RangeEnd = []byte{0}
			}
		case 2:
			r.RangeEnd = []byte{0}
		case 3:
			if end := randKey(); bytes.Compare(r.Key, end) < 0 {
				r.RangeEnd = end
			}
		}
		w := newTestWatcher(t, s, int64(i), r)
		g.add(w)
		byPtr[w] = &modelWatcher{req: r}
		if i%3 == 0 && i > 0 {
			// Remove an earlier one now and then.
			for p := range byPtr {
				if g.remove(p) {
					delete(byPtr, p)
					break
				}
			}
		}
	}
	for range 2000 {
		key := randKey()
		var got, want []*modelWatcher
		for _, w := range g.match(key, nil) {
			got = append(got, byPtr[w])
		}
		for _, m := range byPtr {
			if m.matches(key) {
				want = append(want, m)
			}
		}
		if len(got) != len(want) {
			t.Fatalf("key %q: %d watchers matched, want %d", key, len(got), len(want))
		}
		for _, m := range want {
			if !slices.Contains(got, m) {
				t.Fatalf("key %q: %+v not matched", key, m.req)
			}
		}
	}
}

// newTestWatcher builds a watcher as Stream.Watch does, outside any hub.
func newTestWatcher(t *testing.T, s *Stream, id int64, r Request) *watcher {
	t.Helper()
	h := New(newMemSource(), 1, Options{})
	st := h.NewStream()
	if _, _, err := st.Watch(Request{ID: id + 1, Key: r.Key, RangeEnd: r.RangeEnd}); err != nil {
		t.Fatalf("Watch %+v: %v", r, err)
	}
	w := st.watchers[id+1]
	h.synced.remove(w)
	w.s = s
	return w
}

func TestPrefixEnd_IsEtcdsGetPrefixRangeEnd(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"foo", "fop"}, {"a\xff", "b"}, {"a\xff\xff", "b"}, {"\xff", ""}, {"", ""}, {"\x00", "\x01"},
	} {
		if got := string(prefixEnd([]byte(c.in))); got != c.want {
			t.Errorf("prefixEnd(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestHub_OverTheMVCCStore uses the real store as the Source: its events
// feed Notify, its History and Range serve catch-up with prev_kv, and its
// compaction cancels a watcher.
func TestHub_OverTheMVCCStore(t *testing.T) {
	st, err := mvcc.Open(filepath.Join(t.TempDir(), "db"), mvcc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	h := New(st, st.Rev(), Options{})
	defer h.Close()
	index := uint64(0)
	apply := func(req any) {
		t.Helper()
		index++
		res, err := st.Apply(1, []mvcc.Op{{Index: index, Req: req}})
		if err != nil || res[0].Err != nil {
			t.Fatalf("Apply: %v %v", err, res[0].Err)
		}
		if evs := res[0].Events; len(evs) > 0 {
			h.Notify(evs[0].Kv.ModRevision, evs)
		}
	}
	live := h.NewStream()
	f := &fixture{t: t, hub: h}
	f.watch(live, Request{Key: []byte("k"), RangeEnd: []byte("l"), PrevKV: true})
	apply(&pb.PutRequest{Key: []byte("k1"), Value: []byte("a")})           // 2
	apply(&pb.PutRequest{Key: []byte("k1"), Value: []byte("b")})           // 3
	apply(&pb.DeleteRangeRequest{Key: []byte("k"), RangeEnd: []byte("l")}) // 4
	apply(&pb.PutRequest{Key: []byte("k2"), Value: []byte("c")})           // 5
	expect(t, live, map[int64][]string{0: {
		"@2 PUT k1@2=a", "@3 PUT k1@3=b (prev a@2)", "@4 DELETE k1@4 (prev b@3)", "@5 PUT k2@5=c",
	}})

	replay := h.NewStream()
	f.watch(replay, Request{Key: []byte("k"), RangeEnd: []byte("l"), PrevKV: true, StartRev: 2})
	f.watch(replay, Request{Key: []byte("k1"), StartRev: 3})
	h.syncUnsynced()
	expect(t, replay, map[int64][]string{
		0: {"@5 PUT k1@2=a, PUT k1@3=b (prev a@2), DELETE k1@4 (prev b@3), PUT k2@5=c"},
		1: {"@5 PUT k1@3=b, DELETE k1@4"},
	})

	apply(&pb.CompactionRequest{Revision: 4})
	compacted := h.NewStream()
	f.watch(compacted, Request{Key: []byte("k1"), StartRev: 3})
	f.watch(compacted, Request{Key: []byte("k"), RangeEnd: []byte("l"), StartRev: 4, PrevKV: true})
	h.syncUnsynced()
	// At the compaction revision the history is whole, but the value
	// before it is gone: no PrevKv, as in etcd.
	expect(t, compacted, map[int64][]string{
		0: {"canceled, compacted at 4"},
		1: {"@5 DELETE k1@4, PUT k2@5=c"},
	})
}
