package mvcc

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// modelRunner drives a store with random requests and checks it against a
// tiny model: the latest KeyValue of every key, and the full state at every
// revision since the last compaction.
type modelRunner struct {
	t       testing.TB
	s       *testStore
	rnd     *rand.Rand
	rev     int64
	compact int64
	kvs     map[string]kvSummary
	history map[int64]map[string]kvSummary
}

func newModelRunner(t testing.TB, s *testStore, seed uint64) *modelRunner {
	m := &modelRunner{
		t: t, s: s, rnd: rand.New(rand.NewPCG(seed, seed)), rev: 1, compact: -1,
		kvs: map[string]kvSummary{}, history: map[int64]map[string]kvSummary{1: {}},
	}
	return m
}

var modelKeys = []string{"a", "b", "c", "d", "e", "k/1", "k/2", "k/3"}

func (m *modelRunner) key() string { return modelKeys[m.rnd.IntN(len(modelKeys))] }

// modelPut and modelDel update the model as etcd would, within a request at
// revision rev.
func (m *modelRunner) modelPut(kvs map[string]kvSummary, rev int64, k, v string) {
	old, ok := kvs[k]
	if !ok {
		old = kvSummary{Create: rev}
	}
	kvs[k] = kvSummary{Key: k, Value: v, Create: old.Create, Mod: rev, Ver: old.Ver + 1}
}

func inRange(k, key, end string) bool {
	if end == "" {
		return k == key
	}
	return k >= key && (end == "\x00" || k < end)
}

func (m *modelRunner) step() {
	m.t.Helper()
	next := cloneMap(m.kvs)
	rev := m.rev + 1
	changed := false
	var req any
	switch n := m.rnd.IntN(10); {
	case n < 4:
		k, v := m.key(), fmt.Sprint(m.rnd.IntN(1000))
		req = putReq(k, v)
		m.modelPut(next, rev, k, v)
		changed = true
	case n < 6:
		key, end := m.key(), ""
		if m.rnd.IntN(2) == 0 {
			end = m.key()
		}
		req = delReq(key, end)
		for k := range next {
			if inRange(k, key, end) {
				delete(next, k)
				changed = true
			}
		}
	case n < 9:
		k := m.key()
		ver := m.kvs[k].Ver
		cmpVer := ver
		if m.rnd.IntN(2) == 0 {
			cmpVer++
		}
		a, b := m.key(), m.key()
		for b == a {
			b = m.key()
		}
		r := &pb.TxnRequest{
			Compare: []*pb.Compare{{Key: []byte(k), Target: pb.Compare_VERSION, Result: pb.Compare_EQUAL, TargetUnion: &pb.Compare_Version{Version: cmpVer}}},
			Success: []*pb.RequestOp{opPut(a, "s"), opDel(b, ""), opRange("\x00", "\x00")},
			Failure: []*pb.RequestOp{opPut(b, "f")},
		}
		req = r
		if cmpVer == ver {
			m.modelPut(next, rev, a, "s")
			delete(next, b)
		} else {
			m.modelPut(next, rev, b, "f")
		}
		changed = true
	default:
		if m.rev <= m.compact {
			return
		}
		lo := max(m.compact+1, 1)
		c := lo + m.rnd.Int64N(m.rev-lo+1)
		req = &pb.CompactionRequest{Revision: c}
		for r := range m.history {
			if r < c {
				delete(m.history, r)
			}
		}
		m.compact = c
	}
	res := m.s.apply(req)[0]
	if res.Err != nil {
		m.t.Fatalf("%T: %v", req, res.Err)
	}
	if changed {
		m.rev = rev
		m.kvs = next
		m.history[rev] = next
	}
	m.check()
}

func cloneMap(in map[string]kvSummary) map[string]kvSummary {
	out := make(map[string]kvSummary, len(in))
	for k, v := range in {
		out[k] = v
	}
	return out
}

func sortedState(kvs map[string]kvSummary) []kvSummary {
	out := make([]kvSummary, 0, len(kvs))
	for _, kv := range kvs {
		out = append(out, kv)
	}
	slices.SortFunc(out, func(a, b kvSummary) int {
		if a.Key < b.Key {
			return -1
		}
		return 1
	})
	return out
}

func (m *modelRunner) check() {
	m.t.Helper()
	if m.s.Rev() != m.rev || m.s.CompactRev() != m.compact {
		m.t.Fatalf("rev %d compact %d, model %d %d", m.s.Rev(), m.s.CompactRev(), m.rev, m.compact)
	}
	got := summarize(m.s.rangeAll())
	if want := sortedState(m.kvs); !reflect.DeepEqual(got, want) && !(len(got) == 0 && len(want) == 0) {
		m.t.Fatalf("state at %d\n%v\nwant\n%v", m.rev, got, want)
	}
	// One random old revision.
	r := max(m.compact, 1) + m.rnd.Int64N(m.rev-max(m.compact, 1)+1)
	want, ok := m.history[r]
	if !ok {
		// r is the compaction revision itself and was not a write: find
		// the newest state at or below it.
		for rr := r; rr >= 1; rr-- {
			if h, ok := m.history[rr]; ok {
				want = h
				break
			}
		}
		if want == nil {
			return
		}
	}
	resp, err := m.s.Range(&pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: r})
	if err != nil {
		m.t.Fatalf("range at %d (compact %d): %v", r, m.compact, err)
	}
	if g, w := summarize(resp.Kvs), sortedState(want); !reflect.DeepEqual(g, w) && !(len(g) == 0 && len(w) == 0) {
		m.t.Fatalf("state at old revision %d\n%v\nwant\n%v", r, g, w)
	}
}

func TestStore_RandomOperationsMatchAModel(t *testing.T) {
	for seed := range uint64(5) {
		t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) {
			s := newTestStore(t)
			m := newModelRunner(t, s, seed)
			for i := range 400 {
				m.step()
				if i%150 == 149 {
					s.reopen()
				}
			}
		})
	}
}
