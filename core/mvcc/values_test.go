package mvcc

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"
)

// fakeWAL is a ValueReader over in-memory segments: write appends a value
// (after a few bytes standing for the rest of an entry) to the current
// segment, as a Raft entry carries it.
type fakeWAL struct {
	mu    sync.Mutex
	segs  map[uint64][]byte
	seq   uint64
	reads atomic.Int64
}

func newFakeWAL() *fakeWAL { return &fakeWAL{segs: map[uint64][]byte{1: nil}, seq: 1} }

func (f *fakeWAL) write(v []byte) *ValueLoc {
	f.mu.Lock()
	defer f.mu.Unlock()
	seg := append(f.segs[f.seq], "entry header"...)
	loc := &ValueLoc{Seq: f.seq, Off: int64(len(seg)), Len: len(v)}
	f.segs[f.seq] = append(seg, v...)
	return loc
}

// cut starts the next segment.
func (f *fakeWAL) cut() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	f.segs[f.seq] = nil
	return f.seq
}

// recycle forgets a segment, as the WAL does once Pinned says false.
func (f *fakeWAL) recycle(seq uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.segs, seq)
}

var errFakeCorrupt = errors.New("fake wal: corrupt")

func (f *fakeWAL) ReadValue(seq uint64, off int64, n int, crc uint32) ([]byte, error) {
	f.reads.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	seg, ok := f.segs[seq]
	switch {
	case !ok:
		return nil, fmt.Errorf("%w: no segment %d", errFakeCorrupt, seq)
	case off < 0 || off+int64(n) > int64(len(seg)):
		return nil, fmt.Errorf("%w: %d bytes at %d of segment %d", errFakeCorrupt, n, off, seq)
	}
	b := bytes.Clone(seg[off : off+int64(n)])
	if crc32.Checksum(b, castagnoli) != crc {
		return nil, fmt.Errorf("%w: crc mismatch at %d of segment %d", errFakeCorrupt, off, seq)
	}
	return b, nil
}

// pointerStore is a store whose puts of values of at least min bytes are
// stored as pointers into a fake WAL; the value cache is off unless cache.
func pointerStore(t testing.TB, opts Options) *testStore {
	t.Helper()
	f := newFakeWAL()
	opts.Values = f
	if opts.ValueCacheBytes == 0 {
		opts.ValueCacheBytes = -1
	}
	ts := newTestStoreWith(t, opts)
	ts.wal = f
	return ts
}

// records returns the raw "key" bucket records as readers see them.
func (ts *testStore) records() map[string][]byte {
	ts.t.Helper()
	tx, err := ts.be.ReadTx()
	if err != nil {
		ts.t.Fatal(err)
	}
	defer tx.Done()
	out := map[string][]byte{}
	for k, v := range tx.Range(bucketKey, nil, nil) {
		out[string(k)] = bytes.Clone(v)
	}
	return out
}

func (ts *testStore) pointerRecords() int {
	n := 0
	for _, v := range ts.records() {
		if isPointerRecord(v) {
			n++
		}
	}
	return n
}

func TestValues_LargePutsAreStoredAsPointersAndReadBack(t *testing.T) {
	s := pointerStore(t, Options{})
	big := strings.Repeat("v", 100)
	small := strings.Repeat("s", DefaultPointerMin-1)
	s.put("big", big)
	s.put("small", small)
	s.mustApply(&pb.TxnRequest{Success: []*pb.RequestOp{opPut("intxn", big)}})
	if n := s.pointerRecords(); n != 1 {
		t.Fatalf("%d pointer records, want 1 (the top-level put of a large value)", n)
	}
	if n, b := s.LiveValues(1); n != 1 || b != 100 {
		t.Fatalf("LiveValues(1) = %d, %d", n, b)
	}
	// ignore_value keeps the value, stored inline.
	s.mustApply(&pb.PutRequest{Key: []byte("big"), IgnoreValue: true, Lease: 0})
	want := []kvSummary{{"big", big, 2, 5, 2, 0}, {"intxn", big, 4, 4, 1, 0}, {"small", small, 3, 3, 1, 0}}
	if got := summarize(s.rangeAll()); !reflect.DeepEqual(got, want) {
		t.Fatalf("range:\n%v\nwant\n%v", got, want)
	}
	if err := s.ForceCommit(); err != nil {
		t.Fatal(err)
	}
	s.reopen()
	if got := summarize(s.rangeAll()); !reflect.DeepEqual(got, want) {
		t.Fatalf("after reopen:\n%v\nwant\n%v", got, want)
	}
	if n, _ := s.LiveValues(1); n != 1 {
		t.Fatalf("LiveValues(1) = %d after reopen", n)
	}
}

func TestValues_EventsCarryTheValuesWithoutReadingThem(t *testing.T) {
	s := pointerStore(t, Options{})
	v1, v2 := strings.Repeat("1", 80), strings.Repeat("2", 90)
	res := s.apply(putReq("k", v1))[0]
	if got := string(res.Events[0].Kv.Value); got != v1 || s.wal.reads.Load() != 0 {
		t.Fatalf("event value %q, %d reads", got, s.wal.reads.Load())
	}
	res = s.apply(putReq("k", v2))[0]
	if string(res.Events[0].Kv.Value) != v2 || string(res.Events[0].PrevKv.Value) != v1 {
		t.Fatalf("events %v", res.Events)
	}
	res = s.apply(delReq("k", ""))[0]
	if string(res.Events[0].PrevKv.Value) != v2 {
		t.Fatalf("delete event %v", res.Events)
	}
}

// randomRequest draws a request of every kind that reads or writes values:
// puts of every size (prev_kv, ignore_value), deletes, txns comparing and
// sorting values, compactions.
func randomRequest(rng *rand.Rand, rev, compact int64) any {
	key := func() string { return fmt.Sprintf("k%d", rng.IntN(12)) }
	value := func() string {
		n := []int{0, 5, 63, 64, 65, 200, 1000}[rng.IntN(7)]
		return strings.Repeat(string(rune('a'+rng.IntN(26))), n)
	}
	switch n := rng.IntN(20); {
	case n < 9:
		return &pb.PutRequest{Key: []byte(key()), Value: []byte(value()), PrevKv: rng.IntN(2) == 0}
	case n < 10:
		return &pb.PutRequest{Key: []byte(key()), IgnoreValue: true}
	case n < 13:
		k := key()
		return &pb.DeleteRangeRequest{Key: []byte(k), RangeEnd: []byte(k + "9"), PrevKv: true}
	case n < 18:
		return &pb.TxnRequest{
			Compare: []*pb.Compare{{Key: []byte(key()), Target: pb.Compare_VALUE, Result: pb.Compare_GREATER,
				TargetUnion: &pb.Compare_Value{Value: []byte(value())}}},
			Success: []*pb.RequestOp{opPut(key(), value()), {Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{
				Key: []byte{0}, RangeEnd: []byte{0}, SortTarget: pb.RangeRequest_VALUE, SortOrder: pb.RangeRequest_DESCEND}}}},
			Failure: []*pb.RequestOp{opDel(key(), ""), opRange("k1", "k5")},
		}
	default:
		lo := max(compact+1, 1)
		if lo > rev {
			return putReq(key(), value())
		}
		return &pb.CompactionRequest{Revision: lo + rng.Int64N(rev-lo+1)}
	}
}

func TestValues_StoreWithPointersAnswersAsOneWithout(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			ptrs := pointerStore(t, Options{PointerMin: 1 + int(seed)*30, ValueCacheBytes: []int{-1, 1 << 10}[seed%2]})
			inline := newTestStore(t)
			rng := rand.New(rand.NewPCG(seed, 7))
			for i := range 400 {
				req := randomRequest(rng, inline.Rev(), inline.CompactRev())
				a, b := ptrs.apply(req)[0], inline.apply(req)[0]
				if fmt.Sprint(a.Err) != fmt.Sprint(b.Err) || !equalResults(a, b) {
					t.Fatalf("step %d, %T: with pointers\n%v %v\ninline\n%v %v", i, req, a.Resp, a.Events, b.Resp, b.Events)
				}
				if i%25 == 24 {
					if got, want := ptrs.readState(), inline.readState(); !reflect.DeepEqual(got, want) {
						t.Fatalf("step %d: with pointers\n%+v\ninline\n%+v", i, got, want)
					}
				}
				if i%100 == 99 {
					ptrs.reopen()
					if i%200 == 199 {
						ptrs.wal.cut()
					}
				}
			}
			if ptrs.pointerRecords() == 0 {
				t.Fatal("no value was stored as a pointer")
			}
		})
	}
}

func equalResults(a, b Result) bool {
	if (a.Resp == nil) != (b.Resp == nil) || len(a.Events) != len(b.Events) {
		return false
	}
	if a.Resp != nil && !proto.Equal(a.Resp.(proto.Message), b.Resp.(proto.Message)) {
		return false
	}
	for i := range a.Events {
		if !proto.Equal(a.Events[i], b.Events[i]) {
			return false
		}
	}
	return true
}

func TestValues_CompactionReleasesSegmentsOnceCommittedAndUnread(t *testing.T) {
	s, _ := manualStore(t, 0)
	f := newFakeWAL()
	s.Store.vals, s.wal = f, f
	s.Store.cache = newValueCache(-1)
	big := func(c string) string { return strings.Repeat(c, 100) }
	s.put("a", big("1"))
	s.put("b", big("2"))
	seg2 := f.cut()
	s.put("a", big("3")) // a's first value dies at the compaction
	if !s.Pinned(1) || !s.Pinned(2) || s.Pinned(3) {
		t.Fatalf("pinned: %v %v %v", s.Pinned(1), s.Pinned(2), s.Pinned(3))
	}
	// A read view opened now may hold pointers into segment 1.
	v, done, err := s.readView()
	if err != nil {
		t.Fatal(err)
	}
	done = sync.OnceFunc(done)
	t.Cleanup(done) // before the store's Close, which waits for it
	s.mustApply(&pb.CompactionRequest{Revision: s.Rev()})
	if n, _ := s.LiveValues(1); n != 1 {
		t.Fatalf("LiveValues(1) = %d after compaction, want 1 (b)", n)
	}
	s.del("b", "")
	s.mustApply(&pb.CompactionRequest{Revision: s.Rev()})
	if n, _ := s.LiveValues(1); n != 0 {
		t.Fatalf("LiveValues(1) = %d after b's compaction", n)
	}
	if !s.Pinned(1) {
		t.Fatal("segment 1 released before the compaction was committed")
	}
	if err := s.ForceCommit(); err != nil {
		t.Fatal(err)
	}
	if !s.Pinned(1) {
		t.Fatal("segment 1 released while a read view from before the compaction is open")
	}
	kv, err := v.readKV(revision{main: 2})
	if err != nil || string(kv.Value) != big("1") {
		t.Fatalf("old view reads %v, %v", kv, err)
	}
	done()
	if s.Pinned(1) {
		t.Fatal("segment 1 still pinned")
	}
	if !s.Pinned(seg2) {
		t.Fatal("segment 2 holds a's live value")
	}
	f.recycle(1)
	if got := s.get("a"); string(got.Value) != big("3") {
		t.Fatalf("a = %v", got)
	}
}

func TestValues_SnapshotIsSelfContained(t *testing.T) {
	leader := pointerStore(t, Options{})
	rng := rand.New(rand.NewPCG(1, 1))
	for range 200 {
		leader.apply(randomRequest(rng, leader.Rev(), leader.CompactRev()))
	}
	if leader.pointerRecords() == 0 {
		t.Fatal("no pointers to inline")
	}
	want := leader.readState()
	rc, size, ci, err := leader.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	temps, _ := filepath.Glob(leader.path + snapshotTempPattern)
	if len(temps) != 1 {
		t.Fatalf("temporary copies %v", temps)
	}
	received := filepath.Join(t.TempDir(), "received.db")
	f, err := os.Create(received)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := io.Copy(f, rc); err != nil || n != size {
		t.Fatalf("copied %d of %d bytes: %v", n, size, err)
	}
	if err := errors.Join(rc.Close(), f.Close()); err != nil {
		t.Fatal(err)
	}
	if temps, _ := filepath.Glob(leader.path + snapshotTempPattern); len(temps) != 0 {
		t.Fatalf("Close left %v", temps)
	}
	// A follower without the leader's WAL reads it whole.
	follower := newTestStore(t)
	dst := filepath.Join(filepath.Dir(follower.path), "snap.db")
	if err := os.Rename(received, dst); err != nil {
		// Another file system: copy.
		b, _ := os.ReadFile(received)
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := follower.Restore(dst); err != nil {
		t.Fatal(err)
	}
	if follower.ConsistentIndex() != ci || follower.pointerRecords() != 0 {
		t.Fatalf("restored at %d with %d pointers", follower.ConsistentIndex(), follower.pointerRecords())
	}
	if got := follower.readState(); !reflect.DeepEqual(got, want) {
		t.Fatalf("snapshot restores to\n%+v\nwant\n%+v", got, want)
	}
}

func TestValues_SnapshotWithoutPointersIsTheBackendFile(t *testing.T) {
	s := pointerStore(t, Options{})
	s.put("a", "small")
	rc, _, _, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, ok := rc.(*tempFile); ok {
		t.Fatal("copied a backend that holds no pointers")
	}
}

func TestValues_RestoreRefusesABackendWithPointers(t *testing.T) {
	leader := pointerStore(t, Options{})
	leader.put("a", strings.Repeat("x", 100))
	if err := leader.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(leader.path)
	if err != nil {
		t.Fatal(err)
	}
	follower := newTestStore(t)
	follower.put("mine", "1")
	before := follower.readState()
	src := filepath.Join(filepath.Dir(follower.path), "received.db")
	if err := os.WriteFile(src, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := follower.Restore(src); !errors.Is(err, errBadPointer) {
		t.Fatalf("Restore of a backend with pointers: %v", err)
	}
	if after := follower.readState(); !reflect.DeepEqual(after, before) {
		t.Fatal("a refused restore changed the store")
	}
}

func TestValues_OpenWithoutAValueReaderRefusesPointers(t *testing.T) {
	s := pointerStore(t, Options{})
	s.put("a", strings.Repeat("x", 100))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if st, err := Open(s.path, Options{}); !errors.Is(err, errBadPointer) {
		if st != nil {
			st.Close()
		}
		t.Fatalf("Open without Values: %v", err)
	}
	s.Store, _ = Open(s.path, s.opts) // for the cleanup
}

func TestValues_AReadErrorIsAnErrorNeverAValue(t *testing.T) {
	s := pointerStore(t, Options{})
	s.put("a", strings.Repeat("x", 100))
	s.wal.mu.Lock()
	s.wal.segs[1][len(s.wal.segs[1])-1] ^= 1
	s.wal.mu.Unlock()
	if resp, err := s.Range(&pb.RangeRequest{Key: []byte("a")}); !errors.Is(err, errFakeCorrupt) {
		t.Fatalf("Range: %v, %v", resp, err)
	}
	if _, _, _, err := s.HashKV(0); !errors.Is(err, errFakeCorrupt) {
		t.Fatalf("HashKV: %v", err)
	}
	// Keys only needs no value.
	if resp, err := s.Range(&pb.RangeRequest{Key: []byte("a"), KeysOnly: true}); err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("keys only: %v, %v", resp, err)
	}
	// In Apply, it fails the batch: the server stops.
	if _, err := s.Apply(1, []Op{{Index: s.raftIndex + 1, Req: delReq("a", "")}}); !errors.Is(err, errFakeCorrupt) {
		t.Fatalf("Apply: %v", err)
	}
}

func TestValues_MigrateMovesTheValuesOfMostlyDeadSegments(t *testing.T) {
	s := pointerStore(t, Options{})
	val := func(i int) string { return fmt.Sprintf("%03d%s", i, strings.Repeat("v", 97)) }
	for i := range 10 {
		s.put(fmt.Sprint("a", i), val(i)) // segment 1
	}
	s.wal.cut()
	for i := range 10 {
		s.put(fmt.Sprint("b", i), val(i)) // segment 2
	}
	s.wal.cut()
	for i := range 8 {
		s.put(fmt.Sprint("a", i), val(100+i)) // a0..a7 again, in segment 3
	}
	s.mustApply(&pb.CompactionRequest{Revision: s.Rev()})
	if n, b := s.LiveValues(1); n != 2 || b != 200 {
		t.Fatalf("LiveValues(1) = %d, %d", n, b)
	}
	want := s.readState()
	// Segment 1 holds 200 live bytes of the 1000 stored, segment 2 all of
	// its 1000: only segment 1 is mostly dead.
	moved, err := s.Migrate([]uint64{1, 2}, 100)
	if err != nil || moved != 2 {
		t.Fatalf("Migrate: %d, %v", moved, err)
	}
	if s.CommittedIndex() != s.ConsistentIndex() {
		t.Fatal("Migrate did not commit")
	}
	if n, _ := s.LiveValues(1); n != 0 || s.Pinned(1) {
		t.Fatalf("segment 1: %d live, pinned %v", n, s.Pinned(1))
	}
	if n, _ := s.LiveValues(2); n != 10 || !s.Pinned(2) {
		t.Fatalf("segment 2: %d live, pinned %v", n, s.Pinned(2))
	}
	s.wal.recycle(1)
	if got := s.readState(); !reflect.DeepEqual(got, want) {
		t.Fatalf("after Migrate\n%+v\nwant\n%+v", got, want)
	}
	s.reopen()
	if got := s.readState(); !reflect.DeepEqual(got, want) {
		t.Fatalf("after Migrate and reopen\n%+v\nwant\n%+v", got, want)
	}
	if moved, err := s.Migrate([]uint64{1, 2}, 100); err != nil || moved != 0 {
		t.Fatalf("second Migrate: %d, %v", moved, err)
	}
	// A segment whose live values are under minLive moves, however alive.
	if moved, err := s.Migrate([]uint64{2}, 2000); err != nil || moved != 10 || s.Pinned(2) {
		t.Fatalf("Migrate under the floor: %d, %v", moved, err)
	}
	s.wal.recycle(2)
	if got := s.readState(); !reflect.DeepEqual(got, want) {
		t.Fatalf("after moving segment 2\n%+v\nwant\n%+v", got, want)
	}
}

func TestValues_MigrateReadsOnlyTheRevisionsOfItsSegments(t *testing.T) {
	// Twice: with the pointers as written, and as Open finds them.
	for _, reopen := range []bool{false, true} {
		s := pointerStore(t, Options{})
		val := strings.Repeat("v", 100)
		for i := range 200 {
			s.put(fmt.Sprint("early", i), "small") // inline: under the pointer minimum
		}
		seg := s.wal.cut()
		for i := range 10 {
			s.put(fmt.Sprint("a", i), val) // revisions 201..210
		}
		s.wal.cut()
		for i := range 9 {
			s.put(fmt.Sprint("a", i), "small") // a0..a8 again, inline
		}
		for i := range 200 {
			s.put(fmt.Sprint("late", i), "small")
		}
		s.mustApply(&pb.CompactionRequest{Revision: s.Rev()})
		if reopen {
			s.reopen()
		}
		if n, _ := s.LiveValues(seg); n != 1 {
			t.Fatalf("LiveValues(%d) = %d", seg, n)
		}
		before := s.migrateScanned.Load()
		if moved, err := s.Migrate([]uint64{seg}, 1000); err != nil || moved != 1 {
			t.Fatalf("Migrate (reopened %v): %d, %v", reopen, moved, err)
		}
		// The key bucket holds 410 revisions, 10 of them the segment's.
		if n := s.migrateScanned.Load() - before; n > 10 {
			t.Fatalf("Migrate (reopened %v) read %d revisions, want at most the segment's 10", reopen, n)
		}
	}
}

func TestValues_CacheServesRecentValuesWithoutReads(t *testing.T) {
	s := pointerStore(t, Options{ValueCacheBytes: 1 << 20})
	v := strings.Repeat("c", 200)
	s.put("k", v)
	got := s.get("k")
	if string(got.Value) != v || s.wal.reads.Load() != 0 {
		t.Fatalf("get = %q after %d reads", got.Value, s.wal.reads.Load())
	}
	got.Value[0] = 'X' // a caller's copy: the cache is not touched
	if got := s.get("k"); string(got.Value) != v {
		t.Fatalf("cache shared with a caller: %q", got.Value)
	}
}

func FuzzDecodeKV(f *testing.F) {
	inline, _ := encodeKV(&mvccpb.KeyValue{Key: []byte("k"), CreateRevision: 2, ModRevision: 3, Version: 1, Value: []byte("v"), Lease: 7})
	ptr, _ := encodePointerKV(&mvccpb.KeyValue{Key: []byte("k"), CreateRevision: 2, ModRevision: 3, Version: 1}, valuePtr{Seq: 1, Off: 4096, Len: 300, CRC: 0xdeadbeef})
	tomb, _ := encodeKV(&mvccpb.KeyValue{Key: []byte("k"), ModRevision: 4})
	f.Add(inline)
	f.Add(ptr)
	f.Add(tomb)
	f.Add([]byte{headPointer, 0x41, 0x6b, 1, 2, 3, 0xf6, 0, 0x84, 0, 0, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		kv, p, err := decodeKV(b)
		if err != nil {
			return
		}
		if p != nil {
			if p.Len <= 0 || p.Off < 0 || kv.Value != nil {
				t.Fatalf("accepted pointer %+v with value %q", p, kv.Value)
			}
			// A pointer record re-encodes to a pointer record that
			// decodes the same.
			again, err := encodePointerKV(kv, *p)
			if err != nil {
				t.Fatal(err)
			}
			kv2, p2, err := decodeKV(again)
			if err != nil || *p2 != *p || !proto.Equal(kv, kv2) {
				t.Fatalf("round trip: %v %v %v", kv2, p2, err)
			}
			return
		}
		again, err := encodeKV(kv)
		if err != nil {
			t.Fatal(err)
		}
		kv2, p2, err := decodeKV(again)
		if err != nil || p2 != nil || !proto.Equal(kv, kv2) {
			t.Fatalf("round trip: %v %v %v", kv2, p2, err)
		}
	})
}

func (f *fakeWAL) HasSegment(seq uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.segs[seq]
	return ok
}

func TestValues_OpenRefusesPointersIntoAMissingSegment(t *testing.T) {
	s := pointerStore(t, Options{})
	s.put("a", strings.Repeat("x", 100))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s.wal.recycle(1)
	if st, err := Open(s.path, s.opts); !errors.Is(err, errBadPointer) || !strings.Contains(err.Error(), "0000000000000001") {
		if st != nil {
			st.Close()
		}
		t.Fatalf("Open: %v", err)
	}
	s.wal.segs[1] = nil
	s.Store, _ = Open(s.path, s.opts) // for the cleanup
}

func TestValues_LeasesReadsNoValue(t *testing.T) {
	s := pointerStore(t, Options{})
	big := strings.Repeat("v", 100)
	s.mustApply(&pb.PutRequest{Key: []byte("a"), Value: []byte(big), Lease: 5})
	s.mustApply(&pb.PutRequest{Key: []byte("b"), Value: []byte("small"), Lease: 6})
	s.put("c", big)
	s.mustApply(&pb.PutRequest{Key: []byte("d"), Value: []byte(big), Lease: 5})
	s.put("d", big) // the lease is gone with the overwrite
	s.mustApply(&pb.PutRequest{Key: []byte("e"), Value: []byte(big), Lease: 7})
	s.del("e", "")
	if s.pointerRecords() == 0 {
		t.Fatal("no value is stored in the WAL: the test would not show anything")
	}
	before := s.wal.reads.Load()
	var got []string
	err := s.Leases(func(key []byte, lease int64) error {
		got = append(got, fmt.Sprintf("%s:%d", key, lease))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a:5", "b:6"}; !slices.Equal(got, want) {
		t.Fatalf("Leases gave %v, want %v", got, want)
	}
	if n := s.wal.reads.Load() - before; n != 0 {
		t.Fatalf("Leases read %d values from the WAL", n)
	}
}

// The cache holds the newest values whose values and bookkeeping fit its
// budget, evicting the oldest first, through many turns of its ring.
func TestValues_CacheKeepsTheNewestWithinItsBudget(t *testing.T) {
	const budget, valLen = 64 << 10, 200
	c := newValueCache(budget)
	fits := budget / (valLen + cacheEntryOverhead)
	val := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, valLen) }
	for i := range 10 * fits {
		c.add(valuePtr{Seq: 1, Off: int64(i), Len: valLen}, val(i))
		if c.size > budget {
			t.Fatalf("after %d adds the cache holds %d bytes, budget %d", i+1, c.size, budget)
		}
		if i%97 != 0 {
			continue
		}
		for j := max(0, i-fits-3); j <= i; j++ {
			got, ok := c.get(valuePtr{Seq: 1, Off: int64(j), Len: valLen})
			if want := j > i-fits; ok != want || ok && !bytes.Equal(got, val(j)) {
				t.Fatalf("after %d adds, value %d cached %v, want %v", i+1, j, ok, want)
			}
		}
	}
	if len(c.m) != fits || c.n != fits || len(c.fifo) > 2*fits {
		t.Fatalf("%d entries, %d queued in a ring of %d, want %d", len(c.m), c.n, len(c.fifo), fits)
	}
}

// add keeps a copy of what it is given; keep, for a put's value that
// nothing modifies, the slice itself.
func TestValues_CacheCopiesOnAddAndKeepsOnKeep(t *testing.T) {
	c := newValueCache(64 << 10)
	added, kept := []byte("read back from the WAL"), []byte("a put's value")
	c.add(valuePtr{Seq: 1, Off: 0, Len: int64(len(added))}, added)
	c.keep(valuePtr{Seq: 1, Off: 100, Len: int64(len(kept))}, kept)
	added[0] = 'X'
	if got, ok := c.get(valuePtr{Seq: 1, Off: 0, Len: int64(len(added))}); !ok || string(got) != "read back from the WAL" {
		t.Fatalf("added value cached as %q, %v", got, ok)
	}
	if m := c.m[valuePtr{Seq: 1, Off: 100, Len: int64(len(kept))}]; len(m) == 0 || &m[0] != &kept[0] {
		t.Fatal("keep stored a copy")
	}
	got, _ := c.get(valuePtr{Seq: 1, Off: 100, Len: int64(len(kept))})
	got[0] = 'X'
	if string(kept) != "a put's value" {
		t.Fatal("a caller of get modified the cached value")
	}
}
