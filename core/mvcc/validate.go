package mvcc

import (
	"sort"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// The Validate functions are etcd's checks at the gRPC boundary (v3rpc
// key.go), done before a request is proposed. Apply assumes them.

// ValidateRange checks a range request: a key, known sort options.
func ValidateRange(r *pb.RangeRequest) error {
	if len(r.Key) == 0 {
		return ErrEmptyKey
	}
	if _, ok := pb.RangeRequest_SortOrder_name[int32(r.SortOrder)]; !ok {
		return ErrInvalidSortOption
	}
	if _, ok := pb.RangeRequest_SortTarget_name[int32(r.SortTarget)]; !ok {
		return ErrInvalidSortOption
	}
	return nil
}

// ValidatePut checks a put request: a key, no value with ignore_value, no
// lease with ignore_lease.
func ValidatePut(r *pb.PutRequest) error {
	if len(r.Key) == 0 {
		return ErrEmptyKey
	}
	if r.IgnoreValue && len(r.Value) != 0 {
		return ErrValueProvided
	}
	if r.IgnoreLease && r.Lease != 0 {
		return ErrLeaseProvided
	}
	return nil
}

// ValidateDeleteRange checks a delete request: a key.
func ValidateDeleteRange(r *pb.DeleteRangeRequest) error {
	if len(r.Key) == 0 {
		return ErrEmptyKey
	}
	return nil
}

// ValidateTxn checks a txn request as etcd's kvServer.Txn does: the number
// of compares and ops per branch (ErrTooManyOps; a nested txn gets what its
// parent leaves), every op and compare valid (ErrEmptyKey, ...; an empty op
// is ErrKeyNotFound), then no key written twice on one path (ErrDuplicateKey)
// per etcd's checkIntervals, which puts and deletes of the success and of
// the failure branch each go through.
func ValidateTxn(r *pb.TxnRequest, maxOps int) error {
	if err := checkTxnRequest(r, maxOps); err != nil {
		return err
	}
	if _, _, err := checkIntervals(r.Success); err != nil {
		return err
	}
	if _, _, err := checkIntervals(r.Failure); err != nil {
		return err
	}
	return nil
}

func checkTxnRequest(r *pb.TxnRequest, maxOps int) error {
	opc := max(len(r.Compare), len(r.Success), len(r.Failure))
	if opc > maxOps {
		return ErrTooManyOps
	}
	for _, c := range r.Compare {
		if len(c.Key) == 0 {
			return ErrEmptyKey
		}
	}
	for _, ops := range [][]*pb.RequestOp{r.Success, r.Failure} {
		for _, u := range ops {
			if err := checkRequestOp(u, maxOps-opc); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkRequestOp(u *pb.RequestOp, maxOps int) error {
	switch uv := u.Request.(type) {
	case *pb.RequestOp_RequestRange:
		return ValidateRange(uv.RequestRange)
	case *pb.RequestOp_RequestPut:
		return ValidatePut(uv.RequestPut)
	case *pb.RequestOp_RequestDeleteRange:
		return ValidateDeleteRange(uv.RequestDeleteRange)
	case *pb.RequestOp_RequestTxn:
		return checkTxnRequest(uv.RequestTxn, maxOps)
	default:
		return ErrKeyNotFound
	}
}

// interval is a half-open key interval [begin, end) with etcd's "affine"
// order: an empty end is above every key. A point k is [k, k+"\x00").
type interval struct{ begin, end string }

// containsPoint: [begin, end) intersects the point k, i.e. begin <= k < end.
// An inverted interval (such as a delete with range_end "\x00", which etcd
// records literally) contains nothing.
func (iv interval) containsPoint(k string) bool {
	return iv.begin <= k && (iv.end == "" || k < iv.end)
}

// intervalSet answers "does any interval contain k" in O(log n) after a
// sort and merge of the intervals added since the last query.
type intervalSet struct {
	ivs    []interval
	merged []interval
	dirty  bool
}

func (s *intervalSet) add(iv interval) {
	if iv.end != "" && iv.end <= iv.begin {
		return // empty
	}
	s.ivs = append(s.ivs, iv)
	s.dirty = true
}

func (s *intervalSet) union(o *intervalSet) {
	for _, iv := range o.ivs {
		s.add(iv)
	}
}

func (s *intervalSet) containsPoint(k string) bool {
	if s.dirty {
		ivs := append([]interval(nil), s.ivs...)
		sort.Slice(ivs, func(i, j int) bool { return ivs[i].begin < ivs[j].begin })
		s.merged = s.merged[:0]
		for _, iv := range ivs {
			if n := len(s.merged); n > 0 {
				last := &s.merged[n-1]
				if last.end == "" || iv.begin <= last.end {
					if last.end != "" && (iv.end == "" || iv.end > last.end) {
						last.end = iv.end
					}
					continue
				}
			}
			s.merged = append(s.merged, iv)
		}
		s.dirty = false
	}
	// The last merged interval starting at or below k is the only candidate.
	i := sort.Search(len(s.merged), func(i int) bool { return s.merged[i].begin > k })
	return i > 0 && s.merged[i-1].containsPoint(k)
}

// checkIntervals is etcd's checkIntervals, step for step: puts of a nested
// txn may not repeat a put or hit a delete seen so far at this level (the
// two branches of one nested txn may put the same key), and puts at this
// level may not repeat any put or hit any delete.
func checkIntervals(reqs []*pb.RequestOp) (map[string]struct{}, *intervalSet, error) {
	dels := &intervalSet{}
	for _, req := range reqs {
		tv, ok := req.Request.(*pb.RequestOp_RequestDeleteRange)
		if !ok || tv.RequestDeleteRange == nil {
			continue
		}
		d := tv.RequestDeleteRange
		if len(d.RangeEnd) != 0 {
			dels.add(interval{string(d.Key), string(d.RangeEnd)})
		} else {
			dels.add(interval{string(d.Key), string(d.Key) + "\x00"})
		}
	}

	puts := make(map[string]struct{})
	for _, req := range reqs {
		tv, ok := req.Request.(*pb.RequestOp_RequestTxn)
		if !ok || tv.RequestTxn == nil {
			continue
		}
		putsThen, delsThen, err := checkIntervals(tv.RequestTxn.Success)
		if err != nil {
			return nil, nil, err
		}
		putsElse, delsElse, err := checkIntervals(tv.RequestTxn.Failure)
		if err != nil {
			return nil, nil, err
		}
		for k := range putsThen {
			if _, dup := puts[k]; dup || dels.containsPoint(k) {
				return nil, nil, ErrDuplicateKey
			}
			puts[k] = struct{}{}
		}
		for k := range putsElse {
			if _, dup := puts[k]; dup {
				if _, safe := putsThen[k]; !safe {
					return nil, nil, ErrDuplicateKey
				}
			}
			if dels.containsPoint(k) {
				return nil, nil, ErrDuplicateKey
			}
			puts[k] = struct{}{}
		}
		dels.union(delsThen)
		dels.union(delsElse)
	}

	for _, req := range reqs {
		tv, ok := req.Request.(*pb.RequestOp_RequestPut)
		if !ok || tv.RequestPut == nil {
			continue
		}
		k := string(tv.RequestPut.Key)
		if _, dup := puts[k]; dup || dels.containsPoint(k) {
			return nil, nil, ErrDuplicateKey
		}
		puts[k] = struct{}{}
	}
	return puts, dels, nil
}
