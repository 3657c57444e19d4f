package mvcc

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/edgekv/edgekv/persist/backend"
)

// testStore is a Store with a Raft index counter and a log of the ops it
// applied (for replay after a simulated crash), for tests.
type testStore struct {
	*Store
	t         testing.TB
	path      string
	opts      Options
	raftIndex uint64
	ops       []Op
	// wal, if set, receives the value of every put request, and the op
	// carries its location (Op.ValueAt), as the server's apply does.
	wal *fakeWAL
}

type tbWriter struct{ t testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tbWriter{t}, nil))
}

// newTestStore opens a store with the default batching: reads mostly see
// writes that are not committed yet, and the real 100 ms timer commits
// now and then.
func newTestStore(t testing.TB) *testStore {
	t.Helper()
	return newTestStoreWith(t, Options{})
}

func newTestStoreWith(t testing.TB, opts Options) *testStore {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	return openTestStore(t, filepath.Join(t.TempDir(), "db"), opts)
}

func openTestStore(t testing.TB, path string, opts Options) *testStore {
	t.Helper()
	s, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	ts := &testStore{Store: s, t: t, path: path, opts: opts, raftIndex: s.ConsistentIndex()}
	t.Cleanup(func() { ts.Close() })
	return ts
}

// manualStore opens a store whose batch timer moves only with clock and
// whose batch limit is never reached unless limit says otherwise: nothing
// is committed until the test says so.
func manualStore(t testing.TB, limit int) (*testStore, *backend.ManualClock) {
	t.Helper()
	clock := backend.NewManualClock(time.Unix(0, 0))
	if limit == 0 {
		limit = 1 << 30
	}
	return newTestStoreWith(t, Options{Clock: clock, BatchLimit: limit}), clock
}

// reopen closes and opens the store again.
func (ts *testStore) reopen() {
	ts.t.Helper()
	if err := ts.Close(); err != nil {
		ts.t.Fatalf("Close: %v", err)
	}
	s, err := Open(ts.path, ts.opts)
	if err != nil {
		ts.t.Fatalf("Open: %v", err)
	}
	ts.Store = s
	ts.raftIndex = s.ConsistentIndex()
}

// apply applies reqs as consecutive entries of one batch.
func (ts *testStore) apply(reqs ...any) []Result {
	ts.t.Helper()
	ops := make([]Op, len(reqs))
	for i, r := range reqs {
		ts.raftIndex++
		ops[i] = Op{Index: ts.raftIndex, Req: r}
		if p, ok := r.(*pb.PutRequest); ok && ts.wal != nil {
			ops[i].ValueAt = ts.wal.write(p.Value)
		}
	}
	ts.ops = append(ts.ops, ops...)
	res, err := ts.Apply(1, ops)
	if err != nil {
		ts.t.Fatalf("Apply: %v", err)
	}
	return res
}

// mustApply applies one request and fails the test on a request error.
func (ts *testStore) mustApply(req any) any {
	ts.t.Helper()
	res := ts.apply(req)[0]
	if res.Err != nil {
		ts.t.Fatalf("apply %T: %v", req, res.Err)
	}
	return res.Resp
}

func (ts *testStore) put(key, value string) *pb.PutResponse {
	ts.t.Helper()
	return ts.mustApply(putReq(key, value)).(*pb.PutResponse)
}

func (ts *testStore) del(key, end string) *pb.DeleteRangeResponse {
	ts.t.Helper()
	return ts.mustApply(delReq(key, end)).(*pb.DeleteRangeResponse)
}

func (ts *testStore) get(key string) *mvccpb.KeyValue {
	ts.t.Helper()
	resp, err := ts.Range(&pb.RangeRequest{Key: []byte(key)})
	if err != nil {
		ts.t.Fatalf("Range: %v", err)
	}
	if len(resp.Kvs) == 0 {
		return nil
	}
	return resp.Kvs[0]
}

func (ts *testStore) rangeAll() []*mvccpb.KeyValue {
	ts.t.Helper()
	resp, err := ts.Range(&pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}})
	if err != nil {
		ts.t.Fatalf("Range: %v", err)
	}
	return resp.Kvs
}

func putReq(key, value string) *pb.PutRequest {
	return &pb.PutRequest{Key: []byte(key), Value: []byte(value)}
}

func delReq(key, end string) *pb.DeleteRangeRequest {
	return &pb.DeleteRangeRequest{Key: []byte(key), RangeEnd: bytesOrNil(end)}
}

func bytesOrNil(s string) []byte {
	if s == "" {
		return nil
	}
	return []byte(s)
}

func opPut(key, value string) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: putReq(key, value)}}
}

func opDel(key, end string) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: delReq(key, end)}}
}

func opRange(key, end string) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte(key), RangeEnd: bytesOrNil(end)}}}
}

func opTxn(r *pb.TxnRequest) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: r}}
}

// kvSummary is a comparable view of a KeyValue.
type kvSummary struct {
	Key, Value              string
	Create, Mod, Ver, Lease int64
}

func summarize(kvs []*mvccpb.KeyValue) []kvSummary {
	out := make([]kvSummary, len(kvs))
	for i, kv := range kvs {
		out[i] = kvSummary{string(kv.Key), string(kv.Value), kv.CreateRevision, kv.ModRevision, kv.Version, kv.Lease}
	}
	return out
}

func keysOf(kvs []*mvccpb.KeyValue) []string {
	out := make([]string, len(kvs))
	for i, kv := range kvs {
		out[i] = string(kv.Key)
	}
	return out
}

// backendRevisions lists the "key" bucket as readers see it, e.g. "3" or
// "7t" for a tombstone.
func (ts *testStore) backendRevisions() []string {
	ts.t.Helper()
	tx, err := ts.be.ReadTx()
	if err != nil {
		ts.t.Fatal(err)
	}
	defer tx.Done()
	var revs []string
	for k := range tx.Range(bucketKey, nil, nil) {
		r, tomb, err := bytesToRev(k)
		if err != nil {
			ts.t.Fatal(err)
		}
		revs = append(revs, fmt.Sprintf("%d%s", r.main, map[bool]string{true: "t"}[tomb]))
	}
	return revs
}

// readState is everything a reader can observe of a store, for comparing
// two stores.
type readState struct {
	Rev, Compact int64
	CI           uint64
	Hash         uint32
	Latest       []kvSummary
	AtRevs       map[int64][]kvSummary
	History      []string
	Txn          string
}

func (ts *testStore) readState() readState {
	ts.t.Helper()
	st := readState{Rev: ts.Rev(), Compact: ts.CompactRev(), CI: ts.ConsistentIndex(), AtRevs: map[int64][]kvSummary{}}
	var err error
	if st.Hash, _, _, err = ts.HashKV(0); err != nil {
		ts.t.Fatalf("HashKV: %v", err)
	}
	st.Latest = summarize(ts.rangeAll())
	from := max(st.Compact, 1)
	for rev := from; rev <= st.Rev; rev++ {
		resp, err := ts.Range(&pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: rev})
		if err != nil {
			ts.t.Fatalf("Range at %d: %v", rev, err)
		}
		st.AtRevs[rev] = summarize(resp.Kvs)
	}
	evs, next, err := ts.History(from, 0, 0)
	if err != nil {
		ts.t.Fatalf("History: %v", err)
	}
	for _, ev := range evs {
		st.History = append(st.History, fmt.Sprintf("%v %s=%s@%d", ev.Type, ev.Kv.Key, ev.Kv.Value, ev.Kv.ModRevision))
	}
	st.History = append(st.History, fmt.Sprint("next ", next))
	txn, err := ts.ReadTxn(&pb.TxnRequest{
		Compare: []*pb.Compare{{Key: []byte("a"), Target: pb.Compare_VERSION, Result: pb.Compare_GREATER, TargetUnion: &pb.Compare_Version{Version: 0}}},
		Success: []*pb.RequestOp{opRange("\x00", "\x00")},
		Failure: []*pb.RequestOp{opRange("k/", "k0")},
	})
	if err != nil {
		ts.t.Fatalf("ReadTxn: %v", err)
	}
	st.Txn = txn.String()
	return st
}

// waitCommit waits for the backend commit in progress, if any (one that
// BatchLimit started at the end of an Apply runs in the background). It
// fails the test if writes are pending, since ForceCommit would then
// commit them too.
func waitCommit(t testing.TB, s *Store) {
	t.Helper()
	if n := s.be.Pending(); n != 0 {
		t.Fatalf("waitCommit: %d writes pending", n)
	}
	if err := s.ForceCommit(); err != nil {
		t.Fatal(err)
	}
}
