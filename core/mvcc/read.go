package mvcc

import (
	"bytes"
	"fmt"
	"math"
	"sort"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// Range serves a range request from the applied state (what Apply has
// returned, committed to disk or not). It is safe to call from many
// goroutines, concurrently with Apply and with commits. The serializable flag is
// not looked at: consistency is the caller's business.
func (s *Store) Range(r *pb.RangeRequest) (*pb.RangeResponse, error) {
	v, done, err := s.readView()
	if err != nil {
		return nil, err
	}
	defer done()
	return v.executeRange(r, v.rev)
}

// rangeEnd turns a request's range_end into the index's form: nil for a
// single key, empty (not nil) for "every key >= key" ("\x00"), else the
// exclusive end.
func rangeEnd(end []byte) []byte {
	switch {
	case len(end) == 0:
		return nil
	case len(end) == 1 && end[0] == 0:
		return []byte{}
	}
	return end
}

type rangeOptions struct {
	limit        int64
	rev          int64
	countOnly    bool
	fastKeysOnly bool
}

type rangeResult struct {
	kvs   []*mvccpb.KeyValue
	count int
	rev   int64
}

// rangeKeys reads the keys of [key, end) (see rangeEnd) at ro.rev (0: at
// curRev), as etcd's storeTxnCommon.rangeKeys: count is the number of keys
// alive in the range, whatever the limit.
func (v *view) rangeKeys(key, end []byte, curRev int64, ro rangeOptions) (*rangeResult, error) {
	rev := ro.rev
	if rev > curRev {
		return nil, ErrFutureRev
	}
	if rev <= 0 {
		rev = curRev
	}
	if rev < v.compactRev {
		return nil, ErrCompacted
	}
	if ro.countOnly {
		return &rangeResult{count: v.index.countRevisions(key, end, rev), rev: curRev}, nil
	}
	entries, total := v.index.rangeEntries(key, end, rev, int(ro.limit))
	kvs := make([]*mvccpb.KeyValue, len(entries))
	for i, e := range entries {
		if ro.fastKeysOnly {
			// As etcd 3.6+: keys only, straight from the index (no value,
			// no lease).
			kvs[i] = &mvccpb.KeyValue{Key: e.key, ModRevision: e.modified.main, CreateRevision: e.created.main, Version: e.version}
			continue
		}
		kv, err := v.readKV(e.modified)
		if err != nil {
			return nil, err
		}
		kvs[i] = kv
	}
	return &rangeResult{kvs: kvs, count: total, rev: curRev}, nil
}

// executeRange is etcd's executeRange: fetch (with limit+1 when the index
// order is the answer's order), filter, sort, cut to the limit.
func (v *view) executeRange(r *pb.RangeRequest, curRev int64) (*pb.RangeResponse, error) {
	rr, err := v.rangeKeys(r.Key, rangeEnd(r.RangeEnd), curRev, rangeOptions{
		limit:        rangeLimit(r),
		rev:          r.Revision,
		countOnly:    r.CountOnly,
		fastKeysOnly: r.KeysOnly && r.SortTarget != pb.RangeRequest_VALUE,
	})
	if err != nil {
		return nil, err
	}
	filterRangeResults(rr, r)
	sortRangeResults(rr, r)

	resp := &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: rr.rev}, Count: int64(rr.count)}
	if r.Limit > 0 && len(rr.kvs) > int(r.Limit) {
		rr.kvs = rr.kvs[:r.Limit]
		resp.More = true
	}
	if r.KeysOnly {
		for _, kv := range rr.kvs {
			kv.Value = nil
		}
	}
	resp.Kvs = rr.kvs
	return resp, nil
}

func rangeLimit(r *pb.RangeRequest) int64 {
	limit := r.Limit
	if !isDefaultOrdering(r.SortTarget, r.SortOrder) || hasRevisionFilters(r) {
		limit = 0
	}
	if limit > 0 && limit < math.MaxInt64 {
		limit++
	}
	return limit
}

// isDefaultOrdering: the index already returns keys ascending.
func isDefaultOrdering(target pb.RangeRequest_SortTarget, order pb.RangeRequest_SortOrder) bool {
	return order == pb.RangeRequest_NONE || (target == pb.RangeRequest_KEY && order == pb.RangeRequest_ASCEND)
}

func hasRevisionFilters(r *pb.RangeRequest) bool {
	return r.MinModRevision != 0 || r.MaxModRevision != 0 || r.MinCreateRevision != 0 || r.MaxCreateRevision != 0
}

func filterRangeResults(rr *rangeResult, r *pb.RangeRequest) {
	if r.MaxModRevision != 0 {
		pruneKVs(rr, func(kv *mvccpb.KeyValue) bool { return kv.ModRevision > r.MaxModRevision })
	}
	if r.MinModRevision != 0 {
		pruneKVs(rr, func(kv *mvccpb.KeyValue) bool { return kv.ModRevision < r.MinModRevision })
	}
	if r.MaxCreateRevision != 0 {
		pruneKVs(rr, func(kv *mvccpb.KeyValue) bool { return kv.CreateRevision > r.MaxCreateRevision })
	}
	if r.MinCreateRevision != 0 {
		pruneKVs(rr, func(kv *mvccpb.KeyValue) bool { return kv.CreateRevision < r.MinCreateRevision })
	}
}

func pruneKVs(rr *rangeResult, prune func(*mvccpb.KeyValue) bool) {
	j := 0
	for _, kv := range rr.kvs {
		if !prune(kv) {
			rr.kvs[j] = kv
			j++
		}
	}
	rr.kvs = rr.kvs[:j]
}

// sortRangeResults sorts as etcd does, with the same (unstable) sort.Sort
// and comparisons so that ties come out in the same order.
func sortRangeResults(rr *rangeResult, r *pb.RangeRequest) {
	order := r.SortOrder
	if r.SortTarget != pb.RangeRequest_KEY && order == pb.RangeRequest_NONE {
		order = pb.RangeRequest_ASCEND
	}
	if isDefaultOrdering(r.SortTarget, order) {
		return
	}
	var less func(a, b *mvccpb.KeyValue) bool
	switch r.SortTarget {
	case pb.RangeRequest_KEY:
		less = func(a, b *mvccpb.KeyValue) bool { return bytes.Compare(a.Key, b.Key) < 0 }
	case pb.RangeRequest_VERSION:
		less = func(a, b *mvccpb.KeyValue) bool { return a.Version-b.Version < 0 }
	case pb.RangeRequest_CREATE:
		less = func(a, b *mvccpb.KeyValue) bool { return a.CreateRevision-b.CreateRevision < 0 }
	case pb.RangeRequest_MOD:
		less = func(a, b *mvccpb.KeyValue) bool { return a.ModRevision-b.ModRevision < 0 }
	case pb.RangeRequest_VALUE:
		less = func(a, b *mvccpb.KeyValue) bool { return bytes.Compare(a.Value, b.Value) < 0 }
	default:
		return // rejected by ValidateRange
	}
	var sorter sort.Interface = kvSorter{kvs: rr.kvs, less: less}
	switch order {
	case pb.RangeRequest_ASCEND:
		sort.Sort(sorter)
	case pb.RangeRequest_DESCEND:
		sort.Sort(sort.Reverse(sorter))
	}
}

type kvSorter struct {
	kvs  []*mvccpb.KeyValue
	less func(a, b *mvccpb.KeyValue) bool
}

func (s kvSorter) Len() int           { return len(s.kvs) }
func (s kvSorter) Swap(i, j int)      { s.kvs[i], s.kvs[j] = s.kvs[j], s.kvs[i] }
func (s kvSorter) Less(i, j int) bool { return s.less(s.kvs[i], s.kvs[j]) }

// Leases calls fn with every live key at the current revision that carries
// a lease, in key order. It decodes only the stored records, never reading a
// value kept in the WAL, so that a restart attaches keys to their leases
// without reading every value.
func (s *Store) Leases(fn func(key []byte, lease int64) error) error {
	v, done, err := s.readView()
	if err != nil {
		return err
	}
	defer done()
	entries, _ := v.index.rangeEntries([]byte{0}, []byte{}, v.rev, 0)
	for _, e := range entries {
		raw := v.tx.Get(bucketKey, revToBytes(e.modified, false))
		if raw == nil {
			return fmt.Errorf("mvcc: revision %d_%d missing from the backend", e.modified.main, e.modified.sub)
		}
		var r record
		if err := r.parse(raw); err != nil {
			return err
		}
		if r.lease != 0 {
			// r aliases the transaction's bytes: fn gets a copy of the
			// key, which it may keep.
			if err := fn(bytes.Clone(r.key), r.lease); err != nil {
				return err
			}
		}
	}
	return nil
}
