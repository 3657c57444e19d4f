package mvcc

import (
	"errors"
	"reflect"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// txnFixture: a{"1",c2,m2,v1,lease 5} b{"3",c3,m4,v2}; revision 4.
func txnFixture(t *testing.T) *testStore {
	s := newTestStore(t)
	s.mustApply(&pb.PutRequest{Key: []byte("a"), Value: []byte("1"), Lease: 5})
	s.put("b", "2")
	s.put("b", "3")
	return s
}

func cmpVersion(key, end string, r pb.Compare_CompareResult, v int64) *pb.Compare {
	return &pb.Compare{Key: []byte(key), RangeEnd: bytesOrNil(end), Target: pb.Compare_VERSION, Result: r, TargetUnion: &pb.Compare_Version{Version: v}}
}

func cmpCreate(key string, r pb.Compare_CompareResult, v int64) *pb.Compare {
	return &pb.Compare{Key: []byte(key), Target: pb.Compare_CREATE, Result: r, TargetUnion: &pb.Compare_CreateRevision{CreateRevision: v}}
}

func cmpMod(key, end string, r pb.Compare_CompareResult, v int64) *pb.Compare {
	return &pb.Compare{Key: []byte(key), RangeEnd: bytesOrNil(end), Target: pb.Compare_MOD, Result: r, TargetUnion: &pb.Compare_ModRevision{ModRevision: v}}
}

func cmpValue(key, end string, r pb.Compare_CompareResult, v string) *pb.Compare {
	return &pb.Compare{Key: []byte(key), RangeEnd: bytesOrNil(end), Target: pb.Compare_VALUE, Result: r, TargetUnion: &pb.Compare_Value{Value: []byte(v)}}
}

func cmpLease(key string, r pb.Compare_CompareResult, v int64) *pb.Compare {
	return &pb.Compare{Key: []byte(key), Target: pb.Compare_LEASE, Result: r, TargetUnion: &pb.Compare_Lease{Lease: v}}
}

const (
	eq = pb.Compare_EQUAL
	ne = pb.Compare_NOT_EQUAL
	gt = pb.Compare_GREATER
	lt = pb.Compare_LESS
)

func TestTxn_ComparesEveryTargetAndResult(t *testing.T) {
	tests := []struct {
		name string
		cmps []*pb.Compare
		want bool
	}{
		{"version equal holds", []*pb.Compare{cmpVersion("a", "", eq, 1)}, true},
		{"version greater holds", []*pb.Compare{cmpVersion("b", "", gt, 1)}, true},
		{"version less fails", []*pb.Compare{cmpVersion("b", "", lt, 2)}, false},
		{"version not equal fails", []*pb.Compare{cmpVersion("a", "", ne, 1)}, false},
		{"create equal holds", []*pb.Compare{cmpCreate("b", eq, 3)}, true},
		{"create greater fails", []*pb.Compare{cmpCreate("a", gt, 2)}, false},
		{"create of a missing key is 0", []*pb.Compare{cmpCreate("zz", eq, 0)}, true},
		{"mod equal holds", []*pb.Compare{cmpMod("b", "", eq, 4)}, true},
		{"mod less holds", []*pb.Compare{cmpMod("a", "", lt, 3)}, true},
		{"mod of a missing key is 0", []*pb.Compare{cmpMod("zz", "", gt, 0)}, false},
		{"value equal holds", []*pb.Compare{cmpValue("a", "", eq, "1")}, true},
		{"value greater holds", []*pb.Compare{cmpValue("b", "", gt, "2")}, true},
		{"value less fails", []*pb.Compare{cmpValue("b", "", lt, "3")}, false},
		{"value not equal holds", []*pb.Compare{cmpValue("b", "", ne, "2")}, true},
		{"value of a missing key always fails, even equal to empty", []*pb.Compare{cmpValue("zz", "", eq, "")}, false},
		{"value of a missing key always fails, even not equal", []*pb.Compare{cmpValue("zz", "", ne, "x")}, false},
		{"lease equal holds", []*pb.Compare{cmpLease("a", eq, 5)}, true},
		{"no lease is 0", []*pb.Compare{cmpLease("b", eq, 0)}, true},
		{"lease greater fails", []*pb.Compare{cmpLease("a", gt, 5)}, false},
		{"version of a missing key is 0", []*pb.Compare{cmpVersion("zz", "", eq, 0)}, true},
		{"a range compare holds when every key satisfies it", []*pb.Compare{cmpVersion("a", "c", gt, 0)}, true},
		{"a range compare fails when one key does not", []*pb.Compare{cmpVersion("a", "c", eq, 1)}, false},
		{"a range compare to the end of the keyspace", []*pb.Compare{cmpMod("a", "\x00", lt, 5)}, true},
		{"a range compare over no key compares a zero value", []*pb.Compare{cmpVersion("x", "z", eq, 0)}, true},
		{"a value range compare over no key fails", []*pb.Compare{cmpValue("x", "z", eq, "")}, false},
		{"a value range compare over every key", []*pb.Compare{cmpValue("a", "\x00", gt, "0")}, true},
		{"every compare must hold", []*pb.Compare{cmpVersion("a", "", eq, 1), cmpVersion("b", "", eq, 1)}, false},
		{"all compares holding", []*pb.Compare{cmpVersion("a", "", eq, 1), cmpVersion("b", "", eq, 2)}, true},
		{"no compare holds", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := txnFixture(t)
			resp := s.mustApply(&pb.TxnRequest{
				Compare: tt.cmps,
				Success: []*pb.RequestOp{opPut("s", "ok")},
				Failure: []*pb.RequestOp{opPut("f", "ok")},
			}).(*pb.TxnResponse)
			if resp.Succeeded != tt.want {
				t.Fatalf("succeeded %v, want %v", resp.Succeeded, tt.want)
			}
			key := map[bool]string{true: "s", false: "f"}
			if s.get(key[tt.want]) == nil || s.get(key[!tt.want]) != nil {
				t.Fatal("the wrong branch ran")
			}
			if resp.Header.Revision != 5 {
				t.Fatalf("header revision %d, want 5", resp.Header.Revision)
			}
		})
	}
}

func TestTxn_OpsRunInOrderAndSeeEarlierWrites(t *testing.T) {
	s := txnFixture(t)
	res := s.apply(&pb.TxnRequest{Success: []*pb.RequestOp{
		opPut("x", "1"),
		opRange("x", ""),
		opDel("b", ""),
		opRange("a", "\x00"),
		{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("a"), Value: []byte("2"), PrevKv: true}}},
		{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("b"), Revision: 4}}},
	}})[0]
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	resp := res.Resp.(*pb.TxnResponse)
	if !resp.Succeeded || resp.Header.Revision != 5 || s.Rev() != 5 {
		t.Fatalf("succeeded %v header %d rev %d", resp.Succeeded, resp.Header.Revision, s.Rev())
	}
	r := resp.Responses
	if got := r[0].GetResponsePut(); got.Header.Revision != 5 {
		t.Fatalf("put header %v", got.Header)
	}
	if got := r[1].GetResponseRange(); got.Header.Revision != 5 || len(got.Kvs) != 1 || got.Kvs[0].ModRevision != 5 {
		t.Fatalf("range after put %v", got)
	}
	if got := r[2].GetResponseDeleteRange(); got.Deleted != 1 || got.Header.Revision != 5 {
		t.Fatalf("delete %v", got)
	}
	if got := r[3].GetResponseRange(); !reflect.DeepEqual(keysOf(got.Kvs), []string{"a", "x"}) || got.Count != 2 {
		t.Fatalf("range after delete %v", keysOf(got.Kvs))
	}
	if got := r[4].GetResponsePut(); got.PrevKv == nil || string(got.PrevKv.Value) != "1" {
		t.Fatalf("put prev_kv %v", got.PrevKv)
	}
	if got := r[5].GetResponseRange(); len(got.Kvs) != 1 || string(got.Kvs[0].Value) != "3" || got.Header.Revision != 5 {
		t.Fatalf("range at an old revision inside the txn %v", got)
	}
	// One main revision, sub-revisions in order.
	var types []mvccpb.Event_EventType
	for _, ev := range res.Events {
		types = append(types, ev.Type)
		if ev.Kv.ModRevision != 5 {
			t.Fatalf("event %v", ev)
		}
	}
	if !reflect.DeepEqual(types, []mvccpb.Event_EventType{mvccpb.Event_PUT, mvccpb.Event_DELETE, mvccpb.Event_PUT}) {
		t.Fatalf("events %v", types)
	}
	if kv := s.get("a"); kv.Version != 2 || kv.CreateRevision != 2 || kv.Lease != 0 {
		t.Fatalf("a = %v", kv)
	}
}

func TestTxn_RevisionOnlyMovesWhenSomethingChanges(t *testing.T) {
	tests := []struct {
		name    string
		ops     []*pb.RequestOp
		wantRev int64
	}{
		{"a read-only txn", []*pb.RequestOp{opRange("a", "")}, 4},
		{"an empty txn", nil, 4},
		{"a txn deleting nothing", []*pb.RequestOp{opDel("nope", ""), opRange("a", "")}, 4},
		{"a txn deleting something", []*pb.RequestOp{opDel("a", "")}, 5},
		{"a txn deleting nothing then putting", []*pb.RequestOp{opDel("nope", ""), opPut("c", "")}, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := txnFixture(t)
			resp := s.mustApply(&pb.TxnRequest{Success: tt.ops}).(*pb.TxnResponse)
			if resp.Header.Revision != tt.wantRev || s.Rev() != tt.wantRev {
				t.Fatalf("header %d rev %d, want %d", resp.Header.Revision, s.Rev(), tt.wantRev)
			}
			for _, r := range resp.Responses {
				if rr := r.GetResponseDeleteRange(); rr != nil && rr.Deleted == 0 && rr.Header.Revision != 4 {
					t.Fatalf("delete-nothing header %d, want 4", rr.Header.Revision)
				}
			}
		})
	}
}

func TestTxn_AFailingTxnChangesNothing(t *testing.T) {
	tests := []struct {
		name string
		txn  *pb.TxnRequest
		want error
	}{
		{
			name: "ignore_value on a missing key",
			txn: &pb.TxnRequest{Success: []*pb.RequestOp{
				opPut("c", "1"), opDel("a", ""),
				{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("zz"), IgnoreValue: true}}},
			}},
			want: ErrKeyNotFound,
		},
		{
			name: "ignore_lease on a missing key in a nested txn",
			txn: &pb.TxnRequest{Success: []*pb.RequestOp{
				opPut("c", "1"),
				opTxn(&pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("zz"), IgnoreLease: true}}}}}),
			}},
			want: ErrKeyNotFound,
		},
		{
			name: "a range at a future revision",
			txn: &pb.TxnRequest{Success: []*pb.RequestOp{
				opPut("c", "1"),
				{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("a"), Revision: 5}}},
			}},
			want: ErrFutureRev,
		},
		{
			name: "a range at a compacted revision",
			txn: &pb.TxnRequest{Success: []*pb.RequestOp{
				opPut("c", "1"),
				{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("a"), Revision: 2}}},
			}},
			want: ErrCompacted,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := txnFixture(t)
			s.mustApply(&pb.CompactionRequest{Revision: 3})
			before := summarize(s.rangeAll())
			res := s.apply(tt.txn)[0]
			if !errors.Is(res.Err, tt.want) || res.Resp != nil || res.Events != nil {
				t.Fatalf("result %+v, want error %v", res, tt.want)
			}
			if got := summarize(s.rangeAll()); !reflect.DeepEqual(got, before) || s.Rev() != 4 {
				t.Fatalf("state changed: %v rev %d", got, s.Rev())
			}
			// The failure branch is not checked when not taken.
			ok := &pb.TxnRequest{Compare: []*pb.Compare{cmpVersion("a", "", eq, 1)}, Success: []*pb.RequestOp{opPut("c", "1")}, Failure: tt.txn.Success}
			if res := s.apply(ok)[0]; res.Err != nil {
				t.Fatalf("untaken branch checked: %v", res.Err)
			}
		})
	}
}

func TestTxn_NestedTxnsFollowTheirOwnCompares(t *testing.T) {
	s := txnFixture(t)
	resp := s.mustApply(&pb.TxnRequest{
		Compare: []*pb.Compare{cmpVersion("a", "", eq, 1)},
		Success: []*pb.RequestOp{
			opPut("a", "changed"),
			opTxn(&pb.TxnRequest{
				// Compares are evaluated before the outer txn writes: a is
				// still "1" here, as in etcd.
				Compare: []*pb.Compare{cmpValue("a", "", eq, "1")},
				Success: []*pb.RequestOp{opPut("n1", "x"), opRange("a", "")},
				Failure: []*pb.RequestOp{opPut("n2", "x")},
			}),
			opTxn(&pb.TxnRequest{
				Compare: []*pb.Compare{cmpVersion("b", "", eq, 7)},
				Success: []*pb.RequestOp{opPut("n3", "x")},
				Failure: []*pb.RequestOp{opTxn(&pb.TxnRequest{Success: []*pb.RequestOp{opPut("n4", "x")}})},
			}),
		},
		Failure: []*pb.RequestOp{opPut("f", "x")},
	}).(*pb.TxnResponse)
	if !resp.Succeeded || len(resp.Responses) != 3 {
		t.Fatalf("outer %v", resp)
	}
	n1 := resp.Responses[1].GetResponseTxn()
	if !n1.Succeeded || len(n1.Responses) != 2 {
		t.Fatalf("first nested %v", n1)
	}
	if r := n1.Responses[1].GetResponseRange(); string(r.Kvs[0].Value) != "changed" || r.Header.Revision != 5 {
		t.Fatalf("nested range %v", r)
	}
	if n1.Header == nil || n1.Header.Revision != 0 {
		t.Fatalf("nested header %v: etcd leaves it without a revision", n1.Header)
	}
	n2 := resp.Responses[2].GetResponseTxn()
	if n2.Succeeded || !n2.Responses[0].GetResponseTxn().Succeeded {
		t.Fatalf("second nested %v", n2)
	}
	for key, want := range map[string]bool{"n1": true, "n2": false, "n3": false, "n4": true, "f": false} {
		if (s.get(key) != nil) != want {
			t.Fatalf("%s exists: %v, want %v", key, !want, want)
		}
	}
	if s.Rev() != 5 {
		t.Fatalf("rev %d", s.Rev())
	}
}

func TestReadTxn_ServesReadOnlyTxns(t *testing.T) {
	s := txnFixture(t)
	r := &pb.TxnRequest{
		Compare: []*pb.Compare{cmpVersion("b", "", eq, 2)},
		Success: []*pb.RequestOp{opRange("a", "\x00"), {Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("b"), Revision: 3}}}},
	}
	if !IsTxnReadOnly(r) {
		t.Fatal("not read-only")
	}
	resp, err := s.ReadTxn(r)
	if err != nil {
		t.Fatal(err)
	}
	if !resp.Succeeded || resp.Header.Revision != 4 || len(resp.Responses[0].GetResponseRange().Kvs) != 2 || string(resp.Responses[1].GetResponseRange().Kvs[0].Value) != "2" {
		t.Fatalf("resp %v", resp)
	}
	r.Success[1].GetRequestRange().Revision = 9
	if _, err := s.ReadTxn(r); !errors.Is(err, ErrFutureRev) {
		t.Fatalf("future: %v", err)
	}
	if _, err := s.ReadTxn(&pb.TxnRequest{Success: []*pb.RequestOp{opPut("x", "")}}); err == nil {
		t.Fatal("ReadTxn accepted a put")
	}
}
