package mvcc

import (
	"errors"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

func TestValidateTxn_RejectsWhatEtcdRejects(t *testing.T) {
	ops := func(ops ...*pb.RequestOp) []*pb.RequestOp { return ops }
	nested := func(then, els []*pb.RequestOp) *pb.RequestOp {
		return opTxn(&pb.TxnRequest{Success: then, Failure: els})
	}
	tests := []struct {
		name string
		txn  *pb.TxnRequest
		want error
		max  int // 0: 8
	}{
		{"distinct keys are fine", &pb.TxnRequest{Success: ops(opPut("a", ""), opPut("b", ""), opDel("c", "d"))}, nil, 0},
		{"the same key in success and failure is fine", &pb.TxnRequest{Success: ops(opPut("a", "")), Failure: ops(opPut("a", ""))}, nil, 0},
		{"too many compares", &pb.TxnRequest{Compare: []*pb.Compare{cmpVersion("a", "", eq, 0), cmpVersion("b", "", eq, 0), cmpVersion("c", "", eq, 0)}}, ErrTooManyOps, 2},
		{"too many success ops", &pb.TxnRequest{Success: ops(opPut("a", ""), opPut("b", ""), opPut("c", ""))}, ErrTooManyOps, 2},
		{"too many failure ops", &pb.TxnRequest{Failure: ops(opRange("a", ""), opRange("b", ""), opRange("c", ""))}, ErrTooManyOps, 2},
		{"a nested txn gets what its parent leaves", &pb.TxnRequest{Success: ops(nested(ops(opPut("a", ""), opPut("b", "")), nil))}, ErrTooManyOps, 2},
		{"a nested txn within the budget", &pb.TxnRequest{Success: ops(nested(ops(opPut("a", "")), nil))}, nil, 2},
		{"a compare without a key", &pb.TxnRequest{Compare: []*pb.Compare{{Target: pb.Compare_VERSION}}}, ErrEmptyKey, 0},
		{"a put without a key", &pb.TxnRequest{Success: ops(opPut("", ""))}, ErrEmptyKey, 0},
		{"an empty op", &pb.TxnRequest{Success: ops(&pb.RequestOp{})}, ErrKeyNotFound, 0},
		{"ignore_value with a value", &pb.TxnRequest{Success: ops(&pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("a"), Value: []byte("v"), IgnoreValue: true}}})}, ErrValueProvided, 0},
		{"ignore_lease with a lease", &pb.TxnRequest{Success: ops(&pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("a"), Lease: 1, IgnoreLease: true}}})}, ErrLeaseProvided, 0},
		{"a bad sort option in a nested range", &pb.TxnRequest{Success: ops(nested(ops(&pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("a"), SortOrder: 7}}}), nil))}, ErrInvalidSortOption, 0},
		{"two puts of one key", &pb.TxnRequest{Success: ops(opPut("a", ""), opPut("a", ""))}, ErrDuplicateKey, 0},
		{"two puts of one key in the failure branch", &pb.TxnRequest{Failure: ops(opPut("a", ""), opPut("a", ""))}, ErrDuplicateKey, 0},
		{"a put and a delete of one key", &pb.TxnRequest{Success: ops(opDel("a", ""), opPut("a", ""))}, ErrDuplicateKey, 0},
		{"a put inside a deleted range", &pb.TxnRequest{Success: ops(opPut("b", ""), opDel("a", "c"))}, ErrDuplicateKey, 0},
		{"a put at the end of a deleted range is fine", &pb.TxnRequest{Success: ops(opPut("c", ""), opDel("a", "c"))}, nil, 0},
		{"a put after a delete to the end of the keyspace", &pb.TxnRequest{Success: ops(opPut("z", ""), opDel("a", "\x00"))}, nil, 0},
		{"two deletes of one key are fine", &pb.TxnRequest{Success: ops(opDel("a", ""), opDel("a", "b"))}, nil, 0},
		{"a nested put and an outer put of one key", &pb.TxnRequest{Success: ops(opPut("a", ""), nested(ops(opPut("a", "")), nil))}, ErrDuplicateKey, 0},
		{"a nested put inside an outer delete", &pb.TxnRequest{Success: ops(opDel("a", "c"), nested(nil, ops(opPut("b", ""))))}, ErrDuplicateKey, 0},
		{"the two branches of a nested txn may put one key", &pb.TxnRequest{Success: ops(nested(ops(opPut("a", "")), ops(opPut("a", ""))))}, nil, 0},
		{"two nested txns putting one key", &pb.TxnRequest{Success: ops(nested(ops(opPut("a", "")), nil), nested(ops(opPut("a", "")), nil))}, ErrDuplicateKey, 0},
		{"a nested put after a nested delete of the key", &pb.TxnRequest{Success: ops(nested(ops(opDel("a", "")), nil), nested(ops(opPut("a", "")), nil))}, ErrDuplicateKey, 0},
		{"an outer put after a nested delete of the key", &pb.TxnRequest{Success: ops(nested(nil, ops(opDel("a", "c"))), opPut("b", ""))}, ErrDuplicateKey, 0},
		{"duplicates inside a nested txn", &pb.TxnRequest{Success: ops(nested(ops(opPut("a", ""), opPut("a", "")), nil))}, ErrDuplicateKey, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			maxOps := tt.max
			if maxOps == 0 {
				maxOps = 8
			}
			if err := ValidateTxn(tt.txn, maxOps); !errors.Is(err, tt.want) {
				t.Fatalf("err %v, want %v", err, tt.want)
			}
		})
	}
}

func TestValidateTxn_DuplicateChecksStayFastForLargeTxns(t *testing.T) {
	var ops []*pb.RequestOp
	for i := range 5000 {
		k := string(rune('a'+i%26)) + string(rune(i))
		ops = append(ops, opDel(k, k+"\x00\x00"), opPut(k+"\x01", ""))
	}
	if err := ValidateTxn(&pb.TxnRequest{Success: ops}, len(ops)); err != nil {
		t.Fatal(err)
	}
}

func TestValidatePutAndDelete(t *testing.T) {
	if err := ValidatePut(&pb.PutRequest{Key: []byte("a"), IgnoreValue: true}); err != nil {
		t.Fatal(err)
	}
	if err := ValidatePut(&pb.PutRequest{}); !errors.Is(err, ErrEmptyKey) {
		t.Fatal(err)
	}
	if err := ValidateDeleteRange(&pb.DeleteRangeRequest{}); !errors.Is(err, ErrEmptyKey) {
		t.Fatal(err)
	}
}
