package mvcc

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/edgekv/edgekv/persist/backend"
)

// buildLoadStore writes a store of n keys with 256-byte values, a fifth of
// them overwritten once and a twentieth deleted, and closes it. With wal
// set, the values are stored as pointers into it (as the server does).
func buildLoadStore(tb testing.TB, n int, wal *fakeWAL) (path string, opts Options) {
	tb.Helper()
	path = filepath.Join(tb.TempDir(), "db")
	opts = Options{BatchLimit: 1 << 30, BatchInterval: 1 << 40}
	if wal != nil {
		opts.Values = wal
	}
	s, err := Open(path, opts)
	if err != nil {
		tb.Fatal(err)
	}
	var (
		index uint64
		ops   []Op
	)
	flush := func() {
		if _, err := s.Apply(1, ops); err != nil {
			tb.Fatal(err)
		}
		ops = ops[:0]
	}
	add := func(req any) {
		index++
		op := Op{Index: index, Req: req}
		if p, ok := req.(*pb.PutRequest); ok && wal != nil {
			op.ValueAt = wal.write(p.Value)
		}
		if ops = append(ops, op); len(ops) == 1000 {
			flush()
		}
	}
	key := func(i int) []byte { return fmt.Appendf(nil, "/registry/pods/ns-%03d/pod-%08d", i%97, i) }
	value := func(i int) []byte {
		v := make([]byte, 256)
		v[0], v[1] = byte(i), byte(i>>8)
		return v
	}
	for i := range n {
		add(&pb.PutRequest{Key: key(i), Value: value(i), Lease: int64(i % 3)})
	}
	for i := 0; i < n; i += 5 {
		add(&pb.PutRequest{Key: key(i), Value: value(i + 1)})
	}
	for i := 1; i < n; i += 20 {
		add(&pb.DeleteRangeRequest{Key: key(i)})
	}
	flush()
	if err := s.Close(); err != nil {
		tb.Fatal(err)
	}
	return path, opts
}

// BenchmarkOpen times Open (the index rebuild of a restart) of a store of
// 100k keys, values inline or stored as pointers.
func BenchmarkOpen(b *testing.B) {
	for _, pointers := range []bool{false, true} {
		b.Run(fmt.Sprintf("keys=100k/pointers=%v", pointers), func(b *testing.B) {
			var wal *fakeWAL
			if pointers {
				wal = newFakeWAL()
			}
			path, opts := buildLoadStore(b, 100_000, wal)
			b.ReportAllocs()
			for b.Loop() {
				s, err := Open(path, opts)
				if err != nil {
					b.Fatal(err)
				}
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// legacyLoadFrom is Store.loadFrom as it was before the hand-written
// codec, decoding with the reference codec (kv_test.go): the reference
// the index rebuild must match.
func (s *Store) legacyLoadFrom(tx *backend.ReadTx, allowPointers bool) (*state, error) {
	st := &state{index: newTreeIndex(), compactRev: -1, live: map[uint64]segLive{}}
	for _, m := range []struct {
		key []byte
		v   any
	}{{metaConsistentIndex, &st.ci}, {metaTerm, &st.term}, {metaCompactRev, &st.compactRev}} {
		if err := getMeta(tx, m.key, m.v); err != nil {
			return nil, err
		}
	}
	keys := make(map[string]*keyIndex)
	currentRev := int64(1)
	for k, v := range tx.Range(bucketKey, nil, nil) {
		rev, tomb, err := bytesToRev(k)
		if err != nil {
			return nil, err
		}
		if rev.main < currentRev {
			return nil, fmt.Errorf("mvcc: key bucket out of order at %x", k)
		}
		currentRev = rev.main
		kv, p, err := refDecodeKV(v)
		if err != nil {
			return nil, fmt.Errorf("revision %x: %w", k, err)
		}
		if p != nil {
			if !allowPointers {
				return nil, fmt.Errorf("mvcc: revision %x: %w: the value is a pointer into another member's WAL", k, errBadPointer)
			}
			c := st.live[p.Seq]
			c.n++
			c.bytes += p.Len
			c.ever += p.Len
			if c.lo == 0 {
				c.lo = rev.main
			}
			c.hi = rev.main
			st.live[p.Seq] = c
			st.pointers++
		}
		ki, ok := keys[string(kv.Key)]
		switch {
		case !ok && tomb:
			ki = &keyIndex{key: kv.Key, modified: rev, generations: []generation{{ver: 1, revs: []revision{rev}}, {}}}
			keys[string(kv.Key)] = ki
		case !ok:
			ki = &keyIndex{key: kv.Key, modified: rev, generations: []generation{{created: revision{main: kv.CreateRevision}, ver: kv.Version, revs: []revision{rev}}}}
			keys[string(kv.Key)] = ki
		case tomb:
			_ = ki.tombstone(rev)
		default:
			ki.put(rev)
		}
	}
	for _, ki := range keys {
		st.index.insert(ki)
	}
	st.rev = max(currentRev, st.compactRev)
	return st, nil
}

// loadBoth loads s's backend with loadFrom and legacyLoadFrom.
func loadBoth(t testing.TB, s *Store, allowPointers bool) (got, want *state, err, wantErr error) {
	t.Helper()
	if err := s.ForceCommit(); err != nil {
		t.Fatal(err)
	}
	tx, terr := s.be.ReadTx()
	if terr != nil {
		t.Fatal(terr)
	}
	defer tx.Done()
	got, err = s.loadFrom(tx, allowPointers)
	want, wantErr = s.legacyLoadFrom(tx, allowPointers)
	return got, want, err, wantErr
}

// checkSameState fails unless a and b are the same state, key index
// included (the nil and empty keys told apart).
func checkSameState(t testing.TB, a, b *state) {
	t.Helper()
	if a.rev != b.rev || a.compactRev != b.compactRev || a.ci != b.ci || a.term != b.term || a.pointers != b.pointers || !reflect.DeepEqual(a.live, b.live) {
		t.Fatalf("state %+v, want %+v", a, b)
	}
	ka, kb := a.index.tree.Len(), b.index.tree.Len()
	if ka != kb {
		t.Fatalf("%d keys, want %d", ka, kb)
	}
	var all []*keyIndex
	b.index.tree.Ascend(func(ki *keyIndex) bool { all = append(all, ki); return true })
	i := 0
	a.index.tree.Ascend(func(ki *keyIndex) bool {
		w := all[i]
		if !bytes.Equal(ki.key, w.key) || (ki.key == nil) != (w.key == nil) || ki.modified != w.modified || !reflect.DeepEqual(ki.generations, w.generations) {
			t.Fatalf("key #%d: %q %+v %+v, want %q %+v %+v", i, ki.key, ki.modified, ki.generations, w.key, w.modified, w.generations)
		}
		i++
		return true
	})
}

// TestLoadMatchesLegacy rebuilds the index of stores with every kind of
// history (overwrites, deletes, re-creations, txns, compactions that keep
// tombstones, leases, empty values, pointers) with loadFrom and with
// legacyLoadFrom: the states are identical.
func TestLoadMatchesLegacy(t *testing.T) {
	for _, pointers := range []bool{false, true} {
		t.Run(fmt.Sprintf("pointers=%v", pointers), func(t *testing.T) {
			ts := newTestStore(t)
			if pointers {
				ts = pointerStore(t, Options{})
			}
			rng := rand.New(rand.NewPCG(3, 4))
			key := func() string { return fmt.Sprintf("k%02d", rng.IntN(40)) }
			value := func() string { return string(bytes.Repeat([]byte{'v'}, []int{0, 1, 100, 300}[rng.IntN(4)])) }
			for i := range 600 {
				switch rng.IntN(10) {
				case 0, 1:
					ts.apply(delReq(key(), ""))
				case 2:
					ts.apply(&pb.TxnRequest{Success: []*pb.RequestOp{opPut(key(), value()), opDel(key(), ""), opPut(key(), value())}})
				case 3:
					ts.apply(&pb.PutRequest{Key: []byte(key()), Value: []byte(value()), Lease: rng.Int64N(3)})
				default:
					ts.apply(putReq(key(), value()))
				}
				if i%150 == 149 {
					ts.apply(&pb.CompactionRequest{Revision: ts.Rev() - rng.Int64N(5)})
				}
			}
			// A compaction at a delete keeps its tombstone, with which
			// the key's history then starts.
			ts.put("tomb", "v")
			ts.del("tomb", "")
			ts.mustApply(&pb.CompactionRequest{Revision: ts.Rev()})
			ts.put("tomb", "again")
			got, want, err, wantErr := loadBoth(t, ts.Store, true)
			if err != nil || wantErr != nil {
				t.Fatalf("loadFrom: %v; legacy: %v", err, wantErr)
			}
			checkSameState(t, got, want)
			if ki := got.index.keyIndex([]byte("tomb")); ki == nil || len(ki.generations) != 2 || got.index.tree.Len() < 30 {
				t.Fatalf("%d keys, tomb %+v", got.index.tree.Len(), ki)
			}
			if pointers != (got.pointers > 0) {
				t.Fatalf("%d pointers", got.pointers)
			}
			_, _, err, wantErr = loadBoth(t, ts.Store, false)
			if (err == nil) != (wantErr == nil) || (err == nil) == pointers {
				t.Fatalf("without pointers: loadFrom: %v; legacy: %v", err, wantErr)
			}
		})
	}
}

// BenchmarkLoad compares loadFrom with legacyLoadFrom on the backend of
// 100k keys BenchmarkOpen opens: the index rebuild alone.
func BenchmarkLoad(b *testing.B) {
	for _, pointers := range []bool{false, true} {
		var wal *fakeWAL
		if pointers {
			wal = newFakeWAL()
		}
		path, opts := buildLoadStore(b, 100_000, wal)
		s, err := Open(path, opts)
		if err != nil {
			b.Fatal(err)
		}
		for _, impl := range []struct {
			name string
			load func(*backend.ReadTx, bool) (*state, error)
		}{{"old", s.legacyLoadFrom}, {"new", s.loadFrom}} {
			b.Run(fmt.Sprintf("keys=100k/pointers=%v/%s", pointers, impl.name), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					tx, err := s.be.ReadTx()
					if err != nil {
						b.Fatal(err)
					}
					_, err = impl.load(tx, true)
					tx.Done()
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		s.Close()
	}
}
