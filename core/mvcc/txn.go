package mvcc

import (
	"bytes"
	"fmt"
	"hash/crc32"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// txnCtx is one write request in progress (etcd's storeTxnWrite): all its
// writes share main revision beginRev+1 and take sub-revisions in order.
// With w == nil it is a read-only txn over a committed view.
type txnCtx struct {
	v        *view
	w        *writer
	beginRev int64
	changes  []*mvccpb.Event
	// valueAt is where the value of a put request lies in the WAL (a
	// top-level put only: a txn's puts store their values inline).
	valueAt *ValueLoc
}

// rev is the revision the request's reads see: beginRev, or beginRev+1 once
// it has written.
func (t *txnCtx) rev() int64 {
	if len(t.changes) > 0 {
		return t.beginRev + 1
	}
	return t.beginRev
}

func (t *txnCtx) rangeKeys(key, end []byte, ro rangeOptions) (*rangeResult, error) {
	return t.v.rangeKeys(key, end, t.rev(), ro)
}

// put writes key at the request's revision.
// prev is the key's current version if the caller has read it already;
// else it is read only when the event needs it.
func (t *txnCtx) put(key, value []byte, lease int64, prev *mvccpb.KeyValue) error {
	rev := t.beginRev + 1
	created, ver := rev, int64(0)
	old := t.v.index.keyIndex(key) // put below reuses the lookup
	if old != nil {
		if modified, c, v, err := old.get(rev); err == nil {
			created, ver = c.main, v
			if prev == nil && t.w.prevKV {
				if prev, err = t.v.readKV(modified); err != nil {
					return err
				}
			}
		}
	}
	idxRev := revision{main: rev, sub: int64(len(t.changes))}
	kv := &mvccpb.KeyValue{
		Key:            bytes.Clone(key),
		Value:          value,
		CreateRevision: created,
		ModRevision:    rev,
		Version:        ver + 1,
		Lease:          lease,
	}
	raw, err := t.encodePut(kv)
	if err != nil {
		return err
	}
	if err := t.w.btx.Put(bucketKey, revToBytes(idxRev, false), raw); err != nil {
		return fmt.Errorf("mvcc: put: %w", err)
	}
	t.v.index.put(old, kv.Key, idxRev)
	t.changes = append(t.changes, &mvccpb.Event{Type: mvccpb.Event_PUT, Kv: kv, PrevKv: prev})
	return nil
}

// encodePut encodes the record of a put: with a pointer to the value's
// bytes in the WAL when the request gave their location and the value is
// large enough to be worth it, else inline.
func (t *txnCtx) encodePut(kv *mvccpb.KeyValue) ([]byte, error) {
	at, s := t.valueAt, t.w.s
	t.valueAt = nil // one put per request
	if at == nil || s.vals == nil || len(kv.Value) < s.pointerMin || at.Len != len(kv.Value) || at.Off < 0 {
		return encodeKV(kv)
	}
	p := valuePtr{Seq: at.Seq, Off: at.Off, Len: int64(at.Len), CRC: crc32.Checksum(kv.Value, castagnoli)}
	raw, err := encodePointerKV(kv, p)
	if err != nil {
		return nil, err
	}
	t.w.addLive(p.Seq, 1, p.Len, kv.ModRevision)
	s.cache.keep(p, kv.Value)
	return raw, nil
}

// deleteRange deletes the keys of [key, end) alive now and returns how many.
func (t *txnCtx) deleteRange(key, end []byte) (int64, error) {
	entries, _ := t.v.index.rangeEntries(key, end, t.rev(), 0)
	rev := t.beginRev + 1
	for _, e := range entries {
		var prev *mvccpb.KeyValue
		if t.w.prevKV {
			var err error
			if prev, err = t.v.readKV(e.modified); err != nil {
				return 0, err
			}
		}
		idxRev := revision{main: rev, sub: int64(len(t.changes))}
		kv := &mvccpb.KeyValue{Key: e.key, ModRevision: rev}
		raw, err := encodeKV(kv)
		if err != nil {
			return 0, err
		}
		if err := t.w.btx.Put(bucketKey, revToBytes(idxRev, true), raw); err != nil {
			return 0, fmt.Errorf("mvcc: delete: %w", err)
		}
		if err := t.v.index.tombstone(e.key, idxRev); err != nil {
			return 0, fmt.Errorf("mvcc: tombstone %q: %w", e.key, err)
		}
		t.changes = append(t.changes, &mvccpb.Event{Type: mvccpb.Event_DELETE, Kv: kv, PrevKv: prev})
	}
	return int64(len(entries)), nil
}

// putOp is etcd's put: the checks are done, only the prev kv is read.
func (t *txnCtx) putOp(r *pb.PutRequest) (*pb.PutResponse, error) {
	var prev *mvccpb.KeyValue
	if r.IgnoreValue || r.IgnoreLease || r.PrevKv {
		rr, err := t.rangeKeys(r.Key, nil, rangeOptions{})
		if err != nil {
			return nil, err
		}
		if len(rr.kvs) > 0 {
			prev = rr.kvs[0]
		}
	}
	value, lease := r.Value, r.Lease
	if r.IgnoreValue || r.IgnoreLease {
		if prev == nil {
			// Checked before; reaching this is a bug, not a client error.
			return nil, fmt.Errorf("mvcc: ignore_value/ignore_lease put of missing key %q", r.Key)
		}
		if r.IgnoreValue {
			value = prev.Value
		}
		if r.IgnoreLease {
			lease = prev.Lease
		}
	}
	resp := &pb.PutResponse{Header: &pb.ResponseHeader{}}
	if r.PrevKv {
		resp.PrevKv = prev
	}
	if err := t.put(r.Key, value, lease, prev); err != nil {
		return nil, err
	}
	resp.Header.Revision = t.beginRev + 1
	return resp, nil
}

// deleteRangeOp is etcd's deleteRange.
func (t *txnCtx) deleteRangeOp(r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	end := rangeEnd(r.RangeEnd)
	resp := &pb.DeleteRangeResponse{Header: &pb.ResponseHeader{}}
	if r.PrevKv {
		rr, err := t.rangeKeys(r.Key, end, rangeOptions{})
		if err != nil {
			return nil, err
		}
		resp.PrevKvs = rr.kvs
	}
	n, err := t.deleteRange(r.Key, end)
	if err != nil {
		return nil, err
	}
	resp.Deleted = n
	resp.Header.Revision = t.rev()
	return resp, nil
}

// txn runs a txn request as etcd does: evaluate every compare of the taken
// path (nested txns included) against the state before the txn, check the
// taken ops against that state (a failed check changes nothing), then
// execute the ops in order, each seeing the writes before it.
func (t *txnCtx) txn(r *pb.TxnRequest) (*pb.TxnResponse, error) {
	before := t.rev()
	path, err := compareToPath(t.v, before, r)
	if err != nil {
		return nil, err
	}
	if _, err := t.checkTxn(before, r, path); err != nil {
		return nil, err
	}
	resp, _ := newTxnResp(r, path)
	if _, err := t.executeTxn(r, path, resp); err != nil {
		return nil, err
	}
	resp.Header.Revision = t.rev()
	return resp, nil
}

// newTxnResp builds the response skeleton of the taken path. A nested
// txn's response header stays without a revision, as in etcd.
func newTxnResp(r *pb.TxnRequest, path []bool) (*pb.TxnResponse, int) {
	reqs := r.Success
	if !path[0] {
		reqs = r.Failure
	}
	resps := make([]*pb.ResponseOp, len(reqs))
	resp := &pb.TxnResponse{Responses: resps, Succeeded: path[0], Header: &pb.ResponseHeader{}}
	txns := 0
	for i, req := range reqs {
		switch tv := req.Request.(type) {
		case *pb.RequestOp_RequestRange:
			resps[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseRange{}}
		case *pb.RequestOp_RequestPut:
			resps[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponsePut{}}
		case *pb.RequestOp_RequestDeleteRange:
			resps[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseDeleteRange{}}
		case *pb.RequestOp_RequestTxn:
			nested, n := newTxnResp(tv.RequestTxn, path[1:])
			resps[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseTxn{ResponseTxn: nested}}
			path = path[1+n:]
			txns += n + 1
		default:
			resps[i] = &pb.ResponseOp{}
		}
	}
	return resp, txns
}

func (t *txnCtx) executeTxn(r *pb.TxnRequest, path []bool, resp *pb.TxnResponse) (int, error) {
	reqs := r.Success
	if !path[0] {
		reqs = r.Failure
	}
	txns := 0
	for i, req := range reqs {
		respi := resp.Responses[i].Response
		switch tv := req.Request.(type) {
		case *pb.RequestOp_RequestRange:
			rr, err := t.v.executeRange(tv.RequestRange, t.rev())
			if err != nil {
				return 0, fmt.Errorf("mvcc: txn range: %w", err)
			}
			respi.(*pb.ResponseOp_ResponseRange).ResponseRange = rr
		case *pb.RequestOp_RequestPut:
			pr, err := t.putOp(tv.RequestPut)
			if err != nil {
				return 0, err
			}
			respi.(*pb.ResponseOp_ResponsePut).ResponsePut = pr
		case *pb.RequestOp_RequestDeleteRange:
			dr, err := t.deleteRangeOp(tv.RequestDeleteRange)
			if err != nil {
				return 0, err
			}
			respi.(*pb.ResponseOp_ResponseDeleteRange).ResponseDeleteRange = dr
		case *pb.RequestOp_RequestTxn:
			nested := respi.(*pb.ResponseOp_ResponseTxn).ResponseTxn
			n, err := t.executeTxn(tv.RequestTxn, path[1:], nested)
			if err != nil {
				return 0, err
			}
			txns += n + 1
			path = path[n+1:]
		}
	}
	return txns, nil
}

// checkTxn is etcd's checkTxn over the taken path, against the state at
// rev (before the txn).
func (t *txnCtx) checkTxn(rev int64, r *pb.TxnRequest, path []bool) (int, error) {
	reqs := r.Success
	if !path[0] {
		reqs = r.Failure
	}
	txns := 0
	for _, req := range reqs {
		switch tv := req.Request.(type) {
		case *pb.RequestOp_RequestRange:
			rr := tv.RequestRange
			switch {
			case rr.Revision == 0:
			case rr.Revision > rev:
				return 0, requestErr(ErrFutureRev)
			case rr.Revision < t.v.compactRev:
				return 0, requestErr(ErrCompacted)
			}
		case *pb.RequestOp_RequestPut:
			if t.w == nil {
				return 0, fmt.Errorf("mvcc: put in a read-only txn")
			}
			if err := t.w.checkPut(t.v, rev, tv.RequestPut); err != nil {
				return 0, err
			}
		case *pb.RequestOp_RequestDeleteRange:
			if t.w == nil {
				return 0, fmt.Errorf("mvcc: delete in a read-only txn")
			}
		case *pb.RequestOp_RequestTxn:
			n, err := t.checkTxn(rev, tv.RequestTxn, path[1:])
			if err != nil {
				return 0, err
			}
			txns += n + 1
			path = path[n+1:]
		}
	}
	return txns, nil
}

// compareToPath evaluates the compares of r and of the nested txns on the
// taken branches, depth first: path[0] is r's outcome.
func compareToPath(v *view, rev int64, r *pb.TxnRequest) ([]bool, error) {
	ok, err := applyCompares(v, rev, r.Compare)
	if err != nil {
		return nil, err
	}
	path := []bool{ok}
	ops := r.Success
	if !ok {
		ops = r.Failure
	}
	for _, op := range ops {
		tv, isTxn := op.Request.(*pb.RequestOp_RequestTxn)
		if !isTxn || tv.RequestTxn == nil {
			continue
		}
		sub, err := compareToPath(v, rev, tv.RequestTxn)
		if err != nil {
			return nil, err
		}
		path = append(path, sub...)
	}
	return path, nil
}

func applyCompares(v *view, rev int64, cmps []*pb.Compare) (bool, error) {
	for _, c := range cmps {
		ok, err := applyCompare(v, rev, c)
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

// applyCompare: every key of the compare's range must satisfy it. An empty
// range compares a zero KeyValue, except for VALUE, which always fails.
func applyCompare(v *view, rev int64, c *pb.Compare) (bool, error) {
	rr, err := v.rangeKeys(c.Key, rangeEnd(c.RangeEnd), rev, rangeOptions{})
	if err != nil {
		return false, err
	}
	if len(rr.kvs) == 0 {
		if c.Target == pb.Compare_VALUE {
			return false, nil
		}
		return compareKV(c, &mvccpb.KeyValue{}), nil
	}
	for _, kv := range rr.kvs {
		if !compareKV(c, kv) {
			return false, nil
		}
	}
	return true, nil
}

func compareInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func compareKV(c *pb.Compare, kv *mvccpb.KeyValue) bool {
	var result int
	switch c.Target {
	case pb.Compare_VALUE:
		var v []byte
		if tv, _ := c.TargetUnion.(*pb.Compare_Value); tv != nil {
			v = tv.Value
		}
		result = bytes.Compare(kv.Value, v)
	case pb.Compare_CREATE:
		var rev int64
		if tv, _ := c.TargetUnion.(*pb.Compare_CreateRevision); tv != nil {
			rev = tv.CreateRevision
		}
		result = compareInt64(kv.CreateRevision, rev)
	case pb.Compare_MOD:
		var rev int64
		if tv, _ := c.TargetUnion.(*pb.Compare_ModRevision); tv != nil {
			rev = tv.ModRevision
		}
		result = compareInt64(kv.ModRevision, rev)
	case pb.Compare_VERSION:
		var rev int64
		if tv, _ := c.TargetUnion.(*pb.Compare_Version); tv != nil {
			rev = tv.Version
		}
		result = compareInt64(kv.Version, rev)
	case pb.Compare_LEASE:
		var rev int64
		if tv, _ := c.TargetUnion.(*pb.Compare_Lease); tv != nil {
			rev = tv.Lease
		}
		result = compareInt64(kv.Lease, rev)
	}
	switch c.Result {
	case pb.Compare_EQUAL:
		return result == 0
	case pb.Compare_NOT_EQUAL:
		return result != 0
	case pb.Compare_GREATER:
		return result > 0
	case pb.Compare_LESS:
		return result < 0
	}
	return true
}

// IsTxnReadOnly reports whether every op of r (top level) is a range, as
// etcd's IsTxnReadonly: such a txn can be served by ReadTxn without Raft.
func IsTxnReadOnly(r *pb.TxnRequest) bool {
	for _, ops := range [][]*pb.RequestOp{r.Success, r.Failure} {
		for _, u := range ops {
			if u.GetRequestRange() == nil {
				return false
			}
		}
	}
	return true
}

// ReadTxn serves a read-only txn (IsTxnReadOnly) from the applied state,
// like Range: safe from many goroutines, concurrently with Apply. Errors are
// ErrFutureRev and ErrCompacted from its ranges.
func (s *Store) ReadTxn(r *pb.TxnRequest) (*pb.TxnResponse, error) {
	if !IsTxnReadOnly(r) {
		return nil, fmt.Errorf("mvcc: ReadTxn of a txn that writes")
	}
	v, done, err := s.readView()
	if err != nil {
		return nil, err
	}
	defer done()
	t := &txnCtx{v: v, beginRev: v.rev}
	resp, err := t.txn(r)
	if err != nil {
		return nil, unwrapRequest(err)
	}
	return resp, nil
}

// unwrapRequest strips the request marker for callers outside Apply.
func unwrapRequest(err error) error {
	if re, ok := err.(errRequest); ok {
		return re.err
	}
	return err
}
