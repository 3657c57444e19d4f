package mvcc

import (
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

func TestStore_FreshStoreIsAtRevisionOne(t *testing.T) {
	s := newTestStore(t)
	if got := s.Rev(); got != 1 {
		t.Fatalf("Rev = %d, want 1", got)
	}
	if got := s.CompactRev(); got != -1 {
		t.Fatalf("CompactRev = %d, want -1", got)
	}
	if got := s.ConsistentIndex(); got != 0 {
		t.Fatalf("ConsistentIndex = %d, want 0", got)
	}
	if s.Size() <= 0 || s.SizeInUse() <= 0 || s.SizeInUse() > s.Size() {
		t.Fatalf("Size = %d, SizeInUse = %d", s.Size(), s.SizeInUse())
	}
}

func TestStore_RevisionsAndVersionsFollowEtcd(t *testing.T) {
	s := newTestStore(t)
	steps := []struct {
		name    string
		req     any
		wantRev int64 // header revision
		wantKV  *kvSummary
	}{
		{"a first put creates the key at version 1", putReq("a", "1"), 2, &kvSummary{"a", "1", 2, 2, 1, 0}},
		{"a second put bumps the version and keeps create_revision", putReq("a", "2"), 3, &kvSummary{"a", "2", 2, 3, 2, 0}},
		{"a put of another key does not touch the first", putReq("b", "x"), 4, &kvSummary{"a", "2", 2, 3, 2, 0}},
		{"a delete removes the key", delReq("a", ""), 5, nil},
		{"a delete of a missing key does not bump the revision", delReq("a", ""), 5, nil},
		{"a put after a delete recreates the key at version 1", putReq("a", "3"), 6, &kvSummary{"a", "3", 6, 6, 1, 0}},
		{"a put with a lease stores it", &pb.PutRequest{Key: []byte("a"), Value: []byte("4"), Lease: 7}, 7, &kvSummary{"a", "4", 6, 7, 2, 7}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			resp := s.mustApply(st.req)
			var rev int64
			switch r := resp.(type) {
			case *pb.PutResponse:
				rev = r.Header.Revision
			case *pb.DeleteRangeResponse:
				rev = r.Header.Revision
			}
			if rev != st.wantRev || s.Rev() != st.wantRev {
				t.Fatalf("header revision %d, Rev %d, want %d", rev, s.Rev(), st.wantRev)
			}
			kv := s.get("a")
			if st.wantKV == nil {
				if kv != nil {
					t.Fatalf("a = %+v, want none", kv)
				}
				return
			}
			if got := summarize([]*mvccpb.KeyValue{kv})[0]; got != *st.wantKV {
				t.Fatalf("a = %+v, want %+v", got, *st.wantKV)
			}
		})
	}
	t.Run("old revisions stay readable", func(t *testing.T) {
		for rev, want := range map[int64]string{2: "1", 3: "2", 4: "2", 5: "", 6: "3"} {
			resp, err := s.Range(&pb.RangeRequest{Key: []byte("a"), Revision: rev})
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if len(resp.Kvs) == 1 {
				got = string(resp.Kvs[0].Value)
			}
			if got != want || resp.Header.Revision != 7 {
				t.Fatalf("at %d: value %q header %d, want %q header 7", rev, got, resp.Header.Revision, want)
			}
		}
	})
}

func TestPut_OptionsBehaveAsEtcd(t *testing.T) {
	tests := []struct {
		name     string
		req      *pb.PutRequest
		wantErr  error
		wantPrev *kvSummary
		wantKV   *kvSummary
	}{
		{
			name:     "prev_kv returns the previous value",
			req:      &pb.PutRequest{Key: []byte("k"), Value: []byte("new"), PrevKv: true},
			wantPrev: &kvSummary{"k", "old", 2, 2, 1, 5},
			wantKV:   &kvSummary{"k", "new", 2, 3, 2, 0},
		},
		{
			name:   "prev_kv on a missing key returns nothing",
			req:    &pb.PutRequest{Key: []byte("m"), Value: []byte("v"), PrevKv: true},
			wantKV: &kvSummary{"m", "v", 3, 3, 1, 0},
		},
		{
			name:   "ignore_value keeps the value and takes the new lease",
			req:    &pb.PutRequest{Key: []byte("k"), IgnoreValue: true, Lease: 9},
			wantKV: &kvSummary{"k", "old", 2, 3, 2, 9},
		},
		{
			name:   "ignore_lease keeps the lease",
			req:    &pb.PutRequest{Key: []byte("k"), Value: []byte("v2"), IgnoreLease: true},
			wantKV: &kvSummary{"k", "v2", 2, 3, 2, 5},
		},
		{
			name:    "ignore_value on a missing key fails and changes nothing",
			req:     &pb.PutRequest{Key: []byte("m"), IgnoreValue: true},
			wantErr: ErrKeyNotFound,
		},
		{
			name:    "ignore_lease on a missing key fails and changes nothing",
			req:     &pb.PutRequest{Key: []byte("m"), Value: []byte("x"), IgnoreLease: true},
			wantErr: ErrKeyNotFound,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestStore(t)
			s.mustApply(&pb.PutRequest{Key: []byte("k"), Value: []byte("old"), Lease: 5})
			res := s.apply(tt.req)[0]
			if !errors.Is(res.Err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", res.Err, tt.wantErr)
			}
			if tt.wantErr != nil {
				if res.Resp != nil || s.Rev() != 2 || s.get("m") != nil {
					t.Fatalf("failed put changed the store: resp %v rev %d", res.Resp, s.Rev())
				}
				return
			}
			resp := res.Resp.(*pb.PutResponse)
			if tt.wantPrev == nil && resp.PrevKv != nil {
				t.Fatalf("prev_kv = %v, want none", resp.PrevKv)
			}
			if tt.wantPrev != nil && summarize([]*mvccpb.KeyValue{resp.PrevKv})[0] != *tt.wantPrev {
				t.Fatalf("prev_kv = %+v, want %+v", resp.PrevKv, *tt.wantPrev)
			}
			if got := summarize([]*mvccpb.KeyValue{s.get(tt.wantKV.Key)})[0]; got != *tt.wantKV {
				t.Fatalf("kv = %+v, want %+v", got, *tt.wantKV)
			}
		})
	}
}

func TestPut_CheckLeaseVetoesThePut(t *testing.T) {
	errNoLease := errors.New("lease not found")
	s, err := Open(t.TempDir()+"/db", Options{CheckLease: func(id int64) error {
		if id == 42 {
			return nil
		}
		return errNoLease
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	res, err := s.Apply(1, []Op{
		{Index: 1, Req: &pb.PutRequest{Key: []byte("a"), Lease: 42}},
		{Index: 2, Req: &pb.PutRequest{Key: []byte("b"), Lease: 43}},
		{Index: 3, Req: &pb.TxnRequest{Success: []*pb.RequestOp{opPut("c", ""), {Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("d"), Lease: 43}}}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Err != nil || !errors.Is(res[1].Err, errNoLease) || !errors.Is(res[2].Err, errNoLease) {
		t.Fatalf("errs = %v, %v, %v", res[0].Err, res[1].Err, res[2].Err)
	}
	if s.Rev() != 2 {
		t.Fatalf("Rev = %d, want 2", s.Rev())
	}
}

func TestDeleteRange_PrefixAndPrevKV(t *testing.T) {
	tests := []struct {
		name        string
		key, end    string
		wantDeleted int64
		wantLeft    []string
	}{
		{"a single key", "foo/a", "", 1, []string{"foo", "foo/b", "foo/c", "fop", "zzz"}},
		{"a missing key deletes nothing", "foo/x", "", 0, []string{"foo", "foo/a", "foo/b", "foo/c", "fop", "zzz"}},
		{"a prefix", "foo/", "foo0", 3, []string{"foo", "fop", "zzz"}},
		{"a range", "foo", "foo/c", 3, []string{"foo/c", "fop", "zzz"}},
		{"every key from a key on", "fop", "\x00", 2, []string{"foo", "foo/a", "foo/b", "foo/c"}},
		{"every key", "\x00", "\x00", 6, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestStore(t)
			for _, k := range []string{"foo", "foo/a", "foo/b", "foo/c", "fop", "zzz"} {
				s.put(k, "v-"+k)
			}
			before := s.Rev()
			res := s.apply(&pb.DeleteRangeRequest{Key: []byte(tt.key), RangeEnd: bytesOrNil(tt.end), PrevKv: true})[0]
			resp := res.Resp.(*pb.DeleteRangeResponse)
			if resp.Deleted != tt.wantDeleted || int64(len(resp.PrevKvs)) != tt.wantDeleted {
				t.Fatalf("deleted %d, prev_kvs %d, want %d", resp.Deleted, len(resp.PrevKvs), tt.wantDeleted)
			}
			for _, kv := range resp.PrevKvs {
				if string(kv.Value) != "v-"+string(kv.Key) {
					t.Fatalf("prev kv %q = %q", kv.Key, kv.Value)
				}
			}
			wantRev := before
			if tt.wantDeleted > 0 {
				wantRev++
			}
			if resp.Header.Revision != wantRev || s.Rev() != wantRev {
				t.Fatalf("revision %d (store %d), want %d", resp.Header.Revision, s.Rev(), wantRev)
			}
			if got := keysOf(s.rangeAll()); !reflect.DeepEqual(got, tt.wantLeft) {
				t.Fatalf("left %q, want %q", got, tt.wantLeft)
			}
			if int64(len(res.Events)) != tt.wantDeleted {
				t.Fatalf("%d events", len(res.Events))
			}
			for i, ev := range res.Events {
				if ev.Type != mvccpb.Event_DELETE || ev.Kv.ModRevision != wantRev || ev.PrevKv == nil || !reflect.DeepEqual(ev.Kv.Key, resp.PrevKvs[i].Key) {
					t.Fatalf("event %d = %v", i, ev)
				}
			}
		})
	}
}

func TestApply_EventsCarryPrevKV(t *testing.T) {
	s := newTestStore(t)
	s.mustApply(&pb.PutRequest{Key: []byte("a"), Value: []byte("1"), Lease: 3})
	res := s.apply(&pb.PutRequest{Key: []byte("a"), Value: []byte("2"), Lease: 4})[0]
	if len(res.Events) != 1 {
		t.Fatalf("events %v", res.Events)
	}
	ev := res.Events[0]
	if ev.Type != mvccpb.Event_PUT || ev.Kv.Lease != 4 || ev.PrevKv == nil || ev.PrevKv.Lease != 3 || ev.Kv.ModRevision != 3 {
		t.Fatalf("event %v", ev)
	}
}

// Events carry PrevKv only while Options.EventPrevKV says so; a request's
// own prev_kv is answered either way.
func TestApply_EventPrevKVIsReadOnlyWhenAsked(t *testing.T) {
	var want atomic.Bool
	s := newTestStoreWith(t, Options{EventPrevKV: want.Load})
	s.mustApply(&pb.PutRequest{Key: []byte("a"), Value: []byte("1")})
	s.mustApply(&pb.PutRequest{Key: []byte("b"), Value: []byte("1")})
	prevs := func(res Result) string {
		var out []string
		for _, ev := range res.Events {
			if ev.PrevKv == nil {
				out = append(out, "none")
			} else {
				out = append(out, string(ev.PrevKv.Value))
			}
		}
		return strings.Join(out, " ")
	}
	res := s.apply(&pb.PutRequest{Key: []byte("a"), Value: []byte("2")})[0]
	if got := prevs(res); got != "none" {
		t.Errorf("put, not asked: prev %s", got)
	}
	res = s.apply(&pb.PutRequest{Key: []byte("a"), Value: []byte("3"), PrevKv: true})[0]
	if resp := res.Resp.(*pb.PutResponse); resp.PrevKv == nil || string(resp.PrevKv.Value) != "2" {
		t.Errorf("put with prev_kv, not asked: response prev %v", resp.PrevKv)
	}
	res = s.apply(&pb.DeleteRangeRequest{Key: []byte("a"), RangeEnd: []byte("c")})[0]
	if got := prevs(res); got != "none none" {
		t.Errorf("delete, not asked: prev %s", got)
	}
	want.Store(true)
	s.mustApply(&pb.PutRequest{Key: []byte("a"), Value: []byte("4")})
	res = s.apply(&pb.PutRequest{Key: []byte("a"), Value: []byte("5")})[0]
	if got := prevs(res); got != "4" {
		t.Errorf("put, asked: prev %s", got)
	}
	res = s.apply(&pb.DeleteRangeRequest{Key: []byte("a")})[0]
	if got := prevs(res); got != "5" {
		t.Errorf("delete, asked: prev %s", got)
	}
}

func TestCompact_DropsOldRevisionsAsEtcd(t *testing.T) {
	s := newTestStore(t)
	s.put("a", "1") // 2
	s.put("a", "2") // 3
	s.put("b", "1") // 4
	s.del("b", "")  // 5
	s.put("c", "1") // 6
	s.del("c", "")  // 7
	s.put("a", "3") // 8
	s.put("d", "1") // 9
	s.del("d", "")  // 10
	wantAt := func(t *testing.T, rev int64, want []string) {
		t.Helper()
		resp, err := s.Range(&pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: rev})
		if err != nil {
			t.Fatalf("range at %d: %v", rev, err)
		}
		var got []string
		for _, kv := range resp.Kvs {
			got = append(got, fmt.Sprintf("%s=%s", kv.Key, kv.Value))
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("at %d: %q, want %q", rev, got, want)
		}
	}

	tests := []struct {
		name    string
		rev     int64
		wantErr error
	}{
		{"a future revision fails", 11, ErrFutureRev},
		{"a compaction at 7 succeeds", 7, nil},
		{"the same revision again fails", 7, ErrCompacted},
		{"an older revision fails", 3, ErrCompacted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := s.apply(&pb.CompactionRequest{Revision: tt.rev})[0]
			if !errors.Is(res.Err, tt.wantErr) {
				t.Fatalf("err %v, want %v", res.Err, tt.wantErr)
			}
			if tt.wantErr == nil && res.Resp.(*pb.CompactionResponse).Header.Revision != 10 {
				t.Fatalf("header %v", res.Resp)
			}
		})
	}
	t.Run("ranges below the compaction revision fail", func(t *testing.T) {
		for _, rev := range []int64{1, 2, 6} {
			if _, err := s.Range(&pb.RangeRequest{Key: []byte("a"), Revision: rev}); !errors.Is(err, ErrCompacted) {
				t.Fatalf("at %d: %v", rev, err)
			}
		}
		if _, err := s.Range(&pb.RangeRequest{Key: []byte("a"), Revision: 11}); !errors.Is(err, ErrFutureRev) {
			t.Fatalf("future: %v", err)
		}
	})
	t.Run("ranges at and after the compaction revision still work", func(t *testing.T) {
		wantAt(t, 7, []string{"a=2"})
		wantAt(t, 8, []string{"a=3"})
		wantAt(t, 9, []string{"a=3", "d=1"})
		wantAt(t, 0, []string{"a=3"})
	})
	t.Run("the backend keeps only the reachable revisions", func(t *testing.T) {
		// a@3 is the newest <= 7 for a; b and c died before 7 (c at 7:
		// its tombstone is kept, as etcd does).
		want := []string{"3", "7t", "8", "9", "10t"}
		if revs := s.backendRevisions(); !reflect.DeepEqual(revs, want) {
			t.Fatalf("revisions before the commit %q, want %q", revs, want)
		}
		if err := s.ForceCommit(); err != nil {
			t.Fatal(err)
		}
		if revs := s.backendRevisions(); !reflect.DeepEqual(revs, want) {
			t.Fatalf("revisions after the commit %q, want %q", revs, want)
		}
	})
	t.Run("a restart keeps the compaction", func(t *testing.T) {
		s.reopen()
		if s.CompactRev() != 7 || s.Rev() != 10 {
			t.Fatalf("compact %d rev %d", s.CompactRev(), s.Rev())
		}
		wantAt(t, 7, []string{"a=2"})
		wantAt(t, 9, []string{"a=3", "d=1"})
		if _, err := s.Range(&pb.RangeRequest{Key: []byte("a"), Revision: 6}); !errors.Is(err, ErrCompacted) {
			t.Fatalf("at 6: %v", err)
		}
		// c was recreated after a tombstone at the compaction revision.
		s.put("c", "again")
		if kv := s.get("c"); kv.Version != 1 || kv.CreateRevision != 11 {
			t.Fatalf("c = %v", kv)
		}
	})
	t.Run("a compaction at the current revision drops everything deleted", func(t *testing.T) {
		s.del("\x00", "\x00")
		s.mustApply(&pb.CompactionRequest{Revision: s.Rev()})
		if n := s.index.tree.Len(); n != 2 {
			// a and c keep their tombstone at exactly the compaction revision
			t.Fatalf("index holds %d keys, want 2", n)
		}
		s.put("z", "1")
		s.mustApply(&pb.CompactionRequest{Revision: s.Rev()})
		if n := s.index.tree.Len(); n != 1 {
			t.Fatalf("index holds %d keys, want 1", n)
		}
	})
}

func TestStore_RestartRebuildsTheSameState(t *testing.T) {
	s := newTestStore(t)
	rng := newModelRunner(t, s, 1)
	for range 300 {
		rng.step()
	}
	wantKVs := s.rangeAll()
	wantRev, wantCI, wantCompact := s.Rev(), s.ConsistentIndex(), s.CompactRev()
	h1, _, _, err := s.HashKV(0)
	if err != nil {
		t.Fatal(err)
	}
	var history [][]*mvccpb.KeyValue
	for rev := max(wantCompact, 1); rev <= wantRev; rev++ {
		resp, err := s.Range(&pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: rev})
		if err != nil {
			t.Fatal(err)
		}
		history = append(history, resp.Kvs)
	}

	s.reopen()
	if s.Rev() != wantRev || s.ConsistentIndex() != wantCI || s.CompactRev() != wantCompact || s.Term() != 1 {
		t.Fatalf("after restart rev %d ci %d compact %d, want %d %d %d", s.Rev(), s.ConsistentIndex(), s.CompactRev(), wantRev, wantCI, wantCompact)
	}
	if got := s.rangeAll(); !reflect.DeepEqual(summarize(got), summarize(wantKVs)) {
		t.Fatalf("after restart\n%v\nwant\n%v", summarize(got), summarize(wantKVs))
	}
	for i, rev := 0, max(wantCompact, 1); rev <= wantRev; i, rev = i+1, rev+1 {
		resp, err := s.Range(&pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: rev})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(summarize(resp.Kvs), summarize(history[i])) {
			t.Fatalf("at %d after restart\n%v\nwant\n%v", rev, summarize(resp.Kvs), summarize(history[i]))
		}
	}
	if h2, _, _, _ := s.HashKV(0); h2 != h1 {
		t.Fatalf("hash %x after restart, was %x", h2, h1)
	}
	// Writes continue with the same versions as without the restart.
	rng.s = s
	for range 100 {
		rng.step()
	}
}

func TestApply_ReplayedOpsAreSkipped(t *testing.T) {
	s := newTestStore(t)
	ops := []Op{
		{Index: 1, Req: putReq("a", "1")},
		{Index: 2, Req: putReq("a", "2")},
		{Index: 3, Req: nil},
	}
	if _, err := s.Apply(3, ops); err != nil {
		t.Fatal(err)
	}
	if s.ConsistentIndex() != 3 || s.Rev() != 3 {
		t.Fatalf("ci %d rev %d", s.ConsistentIndex(), s.Rev())
	}
	s.reopen()

	t.Run("a batch entirely applied before changes nothing", func(t *testing.T) {
		res, err := s.Apply(3, ops)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range res {
			if r.Resp != nil || r.Err != nil {
				t.Fatalf("result %d = %+v", i, r)
			}
		}
		if s.Rev() != 3 || s.get("a").Version != 2 {
			t.Fatalf("rev %d a %v", s.Rev(), s.get("a"))
		}
	})
	t.Run("a batch overlapping the applied index applies only the new ops", func(t *testing.T) {
		res, err := s.Apply(4, []Op{
			{Index: 2, Req: putReq("a", "2")},
			{Index: 3, Req: nil},
			{Index: 4, Req: putReq("a", "3")},
			{Index: 5, Req: nil},
		})
		if err != nil {
			t.Fatal(err)
		}
		if res[0].Resp != nil || res[2].Resp == nil {
			t.Fatalf("results %+v", res)
		}
		if s.ConsistentIndex() != 5 || s.Term() != 4 || s.Rev() != 4 || s.get("a").Version != 3 {
			t.Fatalf("ci %d term %d rev %d a %v", s.ConsistentIndex(), s.Term(), s.Rev(), s.get("a"))
		}
	})
	t.Run("an entry that only advances the index is persisted", func(t *testing.T) {
		if _, err := s.Apply(5, []Op{{Index: 9}}); err != nil {
			t.Fatal(err)
		}
		s.reopen()
		if s.ConsistentIndex() != 9 || s.Term() != 5 || s.Rev() != 4 {
			t.Fatalf("ci %d term %d rev %d", s.ConsistentIndex(), s.Term(), s.Rev())
		}
	})
}

func TestApply_UnknownRequestIsARequestError(t *testing.T) {
	s := newTestStore(t)
	res := s.apply("nonsense")[0]
	if res.Err == nil || res.Resp != nil {
		t.Fatalf("result %+v", res)
	}
}

func TestHashKV_AgreesAcrossStoresWithTheSameHistory(t *testing.T) {
	a, b := newTestStore(t), newTestStore(t)
	ra, rb := newModelRunner(t, a, 7), newModelRunner(t, b, 7)
	for range 200 {
		ra.step()
		rb.step()
	}
	for _, rev := range []int64{0, a.Rev(), a.Rev() - 1, max(a.CompactRev(), 1)} {
		ha, hra, ca, err := a.HashKV(rev)
		if err != nil {
			t.Fatal(err)
		}
		hb, hrb, cb, err := b.HashKV(rev)
		if err != nil {
			t.Fatal(err)
		}
		if ha != hb || hra != hrb || ca != cb {
			t.Fatalf("at %d: %x/%d/%d vs %x/%d/%d", rev, ha, hra, ca, hb, hrb, cb)
		}
	}
	if h1, _, _, _ := a.HashKV(0); true {
		a.put("extra", "x")
		if h2, _, _, _ := a.HashKV(0); h2 == h1 {
			t.Fatalf("hash unchanged by a put")
		}
		if h3, _, _, _ := a.HashKV(a.Rev() - 1); h3 != h1 {
			t.Fatalf("hash at the old revision changed")
		}
	}
	if _, _, _, err := a.HashKV(a.Rev() + 1); !errors.Is(err, ErrFutureRev) {
		t.Fatalf("future: %v", err)
	}
	if c := a.CompactRev(); c > 1 {
		if _, _, _, err := a.HashKV(c - 1); !errors.Is(err, ErrCompacted) {
			t.Fatalf("compacted: %v", err)
		}
	}
}

func TestHistory_ReturnsEventsInRevisionOrder(t *testing.T) {
	s := newTestStore(t)
	s.put("a", "1")                                                                         // 2
	s.mustApply(&pb.TxnRequest{Success: []*pb.RequestOp{opPut("b", "1"), opPut("c", "1")}}) // 3
	s.del("a", "")                                                                          // 4
	evs, next, err := s.History(2, 0, 0)
	if err != nil || next != 5 || len(evs) != 4 {
		t.Fatalf("events %v next %d err %v", evs, next, err)
	}
	if evs[3].Type != mvccpb.Event_DELETE || evs[3].Kv.ModRevision != 4 || string(evs[1].Kv.Key) != "b" {
		t.Fatalf("events %v", evs)
	}
	evs, next, _ = s.History(2, 0, 2)
	if len(evs) != 3 || next != 4 {
		t.Fatalf("limited: %d events next %d (a revision is not split)", len(evs), next)
	}
	s.mustApply(&pb.CompactionRequest{Revision: 3})
	if _, _, err := s.History(2, 0, 0); !errors.Is(err, ErrCompacted) {
		t.Fatalf("compacted: %v", err)
	}
}

func TestStore_ReadsRunConcurrentlyWithApply(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts Options
	}{
		{"with the default batching", Options{}},
		{"with commits between and inside Applies", Options{BatchInterval: time.Millisecond, BatchLimit: 20}},
	} {
		t.Run(tt.name, func(t *testing.T) { testReadsConcurrentWithApply(t, newTestStoreWith(t, tt.opts)) })
	}
}

func testReadsConcurrentWithApply(t *testing.T, s *testStore) {
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				rev := s.Rev()
				resp, err := s.Range(&pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}})
				if err != nil {
					t.Error(err)
					return
				}
				if resp.Header.Revision < rev {
					t.Errorf("read at %d after seeing %d", resp.Header.Revision, rev)
				}
				// Every key holds the same value: writes go in one txn.
				for _, kv := range resp.Kvs {
					if string(kv.Value) != string(resp.Kvs[0].Value) {
						t.Errorf("torn txn at %d: %q vs %q", resp.Header.Revision, kv.Value, resp.Kvs[0].Value)
						return
					}
				}
				if _, _, _, err := s.HashKV(0); err != nil && !errors.Is(err, ErrCompacted) {
					t.Error(err)
				}
				if _, _, err := s.History(s.CompactRev(), 0, 10); err != nil && !errors.Is(err, ErrCompacted) {
					t.Error(err)
				}
			}
		}()
	}
	for i := range 300 {
		v := fmt.Sprint(i)
		s.apply(&pb.TxnRequest{Success: []*pb.RequestOp{opPut("a", v), opPut("b", v), opPut("c", v)}})
		if i%50 == 49 {
			s.apply(&pb.CompactionRequest{Revision: s.Rev() - 10})
		}
		if i == 150 {
			// A snapshot streamed while Apply goes on.
			rc, _, _, err := s.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer rc.Close()
				if _, err := io.Copy(io.Discard, struct{ io.Reader }{rc}); err != nil {
					t.Error(err)
				}
			}()
		}
	}
	close(stop)
	wg.Wait()
}
