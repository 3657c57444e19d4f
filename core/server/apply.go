package server

import (
	"context"
	"errors"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/edgekv/edgekv/core/codec"
	"github.com/edgekv/edgekv/core/mvcc"
	"github.com/edgekv/edgekv/core/raftnode"
)

// Kinds of replicated request.
const (
	kindPut uint8 = iota + 1
	kindDeleteRange
	kindTxn
	kindCompact
	kindAttr // a member's name and client URLs
	kindLeaseGrant
	kindLeaseRevoke
	kindLeaseCheckpoint
)

// request is the payload of a normal Raft entry: a CBOR envelope whose body
// is the client's etcd request in its own protobuf encoding, so that a
// request is encoded once on its way from the client to the log
// (envelope.go writes and reads it by hand).
type request struct {
	_    struct{} `cbor:",toarray"`
	ID   uint64
	Kind uint8
	Body []byte
}

// nextID returns a cluster-unique request ID: this member's ID in the high
// bits XOR a local sequence, as etcd's idutil does.
func (s *Server) nextID() uint64 {
	return (s.id << 40) ^ s.reqSeq.Add(1)
}

// propose replicates a request and waits until it is applied locally,
// returning the apply result.
func (s *Server) propose(ctx context.Context, kind uint8, body []byte) (any, error) {
	if len(body) > s.cfg.MaxRequestBytes {
		return nil, ErrRequestTooLarge
	}
	id := s.nextID()
	data := encodeRequest(id, kind, body)
	return s.submitAndWait(ctx, id, func(ctx context.Context) error { return s.node.Propose(ctx, data) })
}

// submitAndWait registers a waiter for request id, submits it to Raft and
// waits until the apply loop reports its result, within the request timeout.
func (s *Server) submitAndWait(ctx context.Context, id uint64, submit func(context.Context) error) (any, error) {
	ch := s.waits.register(id)
	ctx, cancel := context.WithTimeout(ctx, s.requestTimeout())
	defer cancel()
	if err := submit(ctx); err != nil {
		s.waits.cancel(id)
		s.metrics.proposalsFailed.Inc()
		return nil, s.mapProposeErr(ctx, err)
	}
	select {
	case r := <-ch:
		return r.resp, r.err
	case <-ctx.Done():
		s.waits.cancel(id)
		s.metrics.proposalsFailed.Inc()
		return nil, s.mapProposeErr(ctx, ctx.Err())
	case <-s.stopc:
		s.waits.cancel(id)
		return nil, ErrStopped
	}
}

func (s *Server) mapProposeErr(ctx context.Context, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raftnode.ErrStopped):
		return ErrStopped
	case ctx.Err() == context.DeadlineExceeded:
		if s.node.Leader() == 0 {
			return ErrNoLeader
		}
		return ErrTimeout
	case ctx.Err() == context.Canceled:
		return ctx.Err()
	case s.node.Leader() == 0:
		return ErrNoLeader
	default:
		return err
	}
}

// applyItem is one unit of work for the apply goroutine, in log order:
// either committed entries or a snapshot to install.
type applyItem struct {
	ents []*raftpb.Entry
	snap *raftpb.Snapshot
}

// applyLoop applies committed entries in log order, one backend transaction
// per batch that Raft hands over, installs snapshots, and builds the
// snapshots the leader sends.
func (s *Server) applyLoop() {
	defer s.wg.Done()
	for {
		select {
		case it := <-s.applyc:
			if it.snap != nil {
				s.installSnapshot(it.snap)
				continue
			}
			s.apply(it.ents)
			s.maybeSnapshot()
		case m := <-s.snapSendc:
			s.sendSnapshot(m)
		case <-s.stopc:
			return
		}
	}
}

func (s *Server) apply(ents []*raftpb.Entry) {
	// Entries at or below a snapshot already installed are in the backend.
	for len(ents) > 0 && ents[0].GetIndex() <= s.ast.index {
		ents = ents[1:]
	}
	if len(ents) == 0 {
		return
	}
	batch := make([]pendingOp, 0, len(ents))
	for _, e := range ents {
		p := pendingOp{op: mvcc.Op{Index: e.GetIndex()}, term: e.GetTerm()}
		switch {
		case e.GetType() == raftpb.EntryConfChange:
			s.applyConfChange(e)
		case len(e.GetData()) > 0:
			req, err := decodeRequest(e.GetData())
			if err != nil {
				// Committed by a quorum but unreadable: this binary cannot
				// follow the log, and skipping would diverge.
				s.cfg.Fatal(fmt.Errorf("decoding committed entry %d: %w", e.GetIndex(), err))
				return
			}
			p.id = req.ID
			r, err := decodeBody(req.Kind, req.Body)
			switch {
			case err != nil:
				s.cfg.Fatal(fmt.Errorf("decoding committed entry %d: %w", e.GetIndex(), err))
				return
			case req.Kind == kindAttr:
				m := r.(*Member)
				s.members.setClientURLs(m.ID, m.Name, m.ClientURLs)
			case isLeaseKind(req.Kind):
				// The lessor decides from the state every earlier entry
				// left, keys attached included: apply those first.
				if !s.applyOps(batch) {
					return
				}
				batch = batch[:0]
				if !s.applyOps([]pendingOp{s.leaseOp(p, req.Kind, r)}) {
					return
				}
				continue
			default:
				p.op.Req = r
				if put, ok := r.(*pb.PutRequest); ok {
					p.op.ValueAt = s.valueAt(e, req.Body, put)
				}
			}
		default:
			s.maybePromoteLessor(e)
		}
		batch = append(batch, p)
	}
	if !s.applyOps(batch) {
		return
	}
	last := ents[len(ents)-1]
	s.ast.index, s.ast.term = last.GetIndex(), last.GetTerm()
	s.applied.set(last.GetIndex())
	s.wal.Release(last.GetIndex())
}

// pendingOp is one committed entry on its way to the backend.
type pendingOp struct {
	op   mvcc.Op
	term uint64
	id   uint64 // request ID to wake, 0 for none
	// done, if set, makes the waiter's result from the backend's (lease
	// requests answer with what the lessor decided).
	done func(mvcc.Result) applyResult
}

// applyOps applies ops to the backend in one transaction, tells the lessor
// which keys gained or lost a lease, and wakes the waiters. It returns
// false after a fatal backend error.
func (s *Server) applyOps(batch []pendingOp) bool {
	if len(batch) == 0 {
		return true
	}
	ops := make([]mvcc.Op, len(batch))
	for i := range batch {
		ops[i] = batch[i].op
	}
	// The backend is only swapped on this goroutine: no lock needed here.
	results, err := s.kv.Apply(batch[len(batch)-1].term, ops)
	if err != nil {
		s.cfg.Fatal(fmt.Errorf("applying entries %d..%d to the backend: %w", ops[0].Index, ops[len(ops)-1].Index, err))
		return false
	}
	s.notifyWatchers(results)
	s.attachLeases(results)
	for i, p := range batch {
		if p.id == 0 {
			continue
		}
		r := applyResult{resp: results[i].Resp, err: results[i].Err}
		if p.done != nil {
			r = p.done(results[i])
		}
		s.waits.trigger(p.id, r)
	}
	return true
}

// applyConfChange records a committed membership change in apply order.
func (s *Server) applyConfChange(e *raftpb.Entry) {
	cc := &raftpb.ConfChange{}
	if err := proto.Unmarshal(e.GetData(), cc); err != nil {
		s.cfg.Fatal(fmt.Errorf("decoding committed conf change %d: %w", e.GetIndex(), err))
		return
	}
	s.ast.applyConfChange(cc)
	id := cc.GetNodeId()
	var result error
	switch cc.GetType() {
	case raftpb.ConfChangeAddNode, raftpb.ConfChangeAddLearnerNode:
		if old, ok := s.members.get(id); ok && len(old.PeerURLs) > 0 && cc.GetId() != 0 {
			// A concurrent add of the same member: Raft already has it.
			result = ErrMemberExist
			break
		}
		var m Member
		if err := codec.Unmarshal(cc.GetContext(), &m); err != nil {
			s.lg.Error("conf change carries an unreadable member", "index", e.GetIndex(), "err", err)
		}
		m.ID = id
		m.IsLearner = cc.GetType() == raftpb.ConfChangeAddLearnerNode
		s.members.set(m)
	case raftpb.ConfChangeRemoveNode:
		s.members.remove(id)
		if id == s.id {
			s.lg.Warn("this member was removed from the cluster; stopping")
			go s.stop()
		}
	}
	if cc.GetId() != 0 {
		s.waits.trigger(cc.GetId(), applyResult{err: result})
	}
}

func decodeBody(kind uint8, body []byte) (any, error) {
	var m proto.Message
	switch kind {
	case kindPut:
		m = &pb.PutRequest{}
	case kindDeleteRange:
		m = &pb.DeleteRangeRequest{}
	case kindTxn:
		m = &pb.TxnRequest{}
	case kindCompact:
		m = &pb.CompactionRequest{}
	case kindLeaseGrant:
		m = &pb.LeaseGrantRequest{}
	case kindLeaseRevoke:
		m = &pb.LeaseRevokeRequest{}
	case kindLeaseCheckpoint:
		m = &pb.LeaseCheckpointRequest{}
	case kindAttr:
		var mem Member
		if err := codec.Unmarshal(body, &mem); err != nil {
			return nil, err
		}
		return &mem, nil
	default:
		return nil, fmt.Errorf("unknown request kind %d", kind)
	}
	if err := proto.Unmarshal(body, m); err != nil {
		return nil, err
	}
	return m, nil
}
