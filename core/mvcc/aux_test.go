package mvcc

import (
	"errors"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

func auxContents(t *testing.T, s *testStore, bucket []byte) map[string]string {
	t.Helper()
	got := map[string]string{}
	if err := s.ForEach(bucket, func(k, v []byte) error {
		got[string(k)] = string(v)
		return nil
	}); err != nil {
		t.Fatalf("ForEach: %v", err)
	}
	return got
}

func TestStore_AuxWritesAreAppliedWithTheOpAndSurviveReopen(t *testing.T) {
	s, _ := manualStore(t, 0)
	ops := []Op{
		{Index: 1, Aux: []AuxWrite{{Bucket: BucketLease, Key: []byte("a"), Value: []byte("1")}, {Bucket: BucketLease, Key: []byte("b"), Value: []byte("2")}}},
		// Aux is written whatever the request's outcome: a txn that fails its
		// lease check still deletes "a".
		{Index: 2, Req: &pb.PutRequest{Key: []byte("k"), Value: []byte("v"), Lease: 7}, Aux: []AuxWrite{{Bucket: BucketLease, Key: []byte("a")}}},
	}
	s.opts.CheckLease = func(int64) error { return errors.New("no lease") }
	s.checkLease = s.opts.CheckLease
	res, err := s.Apply(1, ops)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if res[1].Err == nil {
		t.Fatalf("put with an unknown lease succeeded")
	}
	if got := auxContents(t, s, BucketLease); len(got) != 1 || got["b"] != "2" {
		t.Fatalf("lease bucket before commit = %v, want {b:2}", got)
	}
	// Replaying the same ops (after a crash that kept the commit) is a no-op.
	if _, err := s.Apply(1, ops[:1]); err != nil {
		t.Fatalf("replay: %v", err)
	}
	if got := auxContents(t, s, BucketLease); len(got) != 1 {
		t.Fatalf("replayed op rewrote its aux writes: %v", got)
	}
	if err := s.ForceCommit(); err != nil {
		t.Fatalf("ForceCommit: %v", err)
	}
	s.reopen()
	if got := auxContents(t, s, BucketLease); len(got) != 1 || got["b"] != "2" {
		t.Fatalf("lease bucket after reopen = %v, want {b:2}", got)
	}
	if s.ConsistentIndex() != 2 {
		t.Fatalf("consistent index %d, want 2", s.ConsistentIndex())
	}
}

func TestStore_AuxRefusesMvccBuckets(t *testing.T) {
	for _, b := range [][]byte{bucketKey, bucketMeta, []byte("nope")} {
		// A refused write fails the batch (a caller bug): a fresh store each.
		s := newTestStore(t)
		if _, err := s.Apply(1, []Op{{Index: s.ConsistentIndex() + 1, Aux: []AuxWrite{{Bucket: b, Key: []byte("x"), Value: []byte("y")}}}}); err == nil {
			t.Fatalf("aux write to %q accepted", b)
		}
		if err := s.ForEach(b, func(k, v []byte) error { return nil }); err == nil {
			t.Fatalf("ForEach over %q accepted", b)
		}
	}
}

func TestStore_ForEachStopsOnError(t *testing.T) {
	s := newTestStore(t)
	s.apply(nil)
	if _, err := s.Apply(1, []Op{{Index: 2, Aux: []AuxWrite{{Bucket: BucketAuth, Key: []byte("a"), Value: []byte("1")}, {Bucket: BucketAuth, Key: []byte("b"), Value: []byte("2")}}}}); err != nil {
		t.Fatal(err)
	}
	stop := errors.New("stop")
	n := 0
	err := s.ForEach(BucketAuth, func(k, v []byte) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("ForEach = %v after %d calls, want stop after 1", err, n)
	}
}
