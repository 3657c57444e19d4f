package mvcc

import (
	"log/slog"
	"path/filepath"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// testStore is a Store with a Raft index counter, for tests.
type testStore struct {
	*Store
	t         testing.TB
	path      string
	raftIndex uint64
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

func newTestStore(t testing.TB) *testStore {
	t.Helper()
	path := filepath.Join(t.TempDir(), "db")
	s, err := Open(path, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	ts := &testStore{Store: s, t: t, path: path}
	t.Cleanup(func() { ts.Close() })
	return ts
}

// reopen closes and opens the store again.
func (ts *testStore) reopen() {
	ts.t.Helper()
	if err := ts.Close(); err != nil {
		ts.t.Fatalf("Close: %v", err)
	}
	s, err := Open(ts.path, Options{Logger: testLogger(ts.t)})
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
	}
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
