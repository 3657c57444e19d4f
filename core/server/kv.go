package server

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"

	"github.com/edgekv/edgekv/core/mvcc"
)

// header fills in the member-specific fields of a response header.
func (s *Server) header(h **pb.ResponseHeader) {
	if *h == nil {
		*h = &pb.ResponseHeader{Revision: s.kv.Rev()}
	}
	(*h).ClusterId = s.clusterID
	(*h).MemberId = s.id
	(*h).RaftTerm = s.node.Term()
}

// Range serves a read: linearizable by default, local if r.Serializable.
func (s *Server) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	if err := mvcc.ValidateRange(r); err != nil {
		return nil, err
	}
	if !r.Serializable {
		if err := s.linearizableReadNotify(ctx); err != nil {
			return nil, err
		}
	}
	resp, err := s.kv.Range(r)
	if err != nil {
		return nil, err
	}
	s.header(&resp.Header)
	return resp, nil
}

// Put replicates a put.
func (s *Server) Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	if err := mvcc.ValidatePut(r); err != nil {
		return nil, err
	}
	if err := s.checkQuota(); err != nil {
		return nil, err
	}
	resp, err := s.replicate(ctx, kindPut, r)
	if err != nil {
		return nil, err
	}
	out := resp.(*pb.PutResponse)
	s.header(&out.Header)
	return out, nil
}

// DeleteRange replicates a delete.
func (s *Server) DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	if err := mvcc.ValidateDeleteRange(r); err != nil {
		return nil, err
	}
	resp, err := s.replicate(ctx, kindDeleteRange, r)
	if err != nil {
		return nil, err
	}
	out := resp.(*pb.DeleteRangeResponse)
	s.header(&out.Header)
	return out, nil
}

// Txn replicates a transaction.
func (s *Server) Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	if err := mvcc.ValidateTxn(r, s.cfg.MaxTxnOps); err != nil {
		return nil, err
	}
	var out *pb.TxnResponse
	if mvcc.IsTxnReadOnly(r) {
		// A read-only txn is a read: served locally after a ReadIndex
		// round unless every range in it asks for serializable.
		if !txnSerializable(r) {
			if err := s.linearizableReadNotify(ctx); err != nil {
				return nil, err
			}
		}
		resp, err := s.kv.ReadTxn(r)
		if err != nil {
			return nil, err
		}
		out = resp
	} else {
		if err := s.checkQuota(); err != nil {
			return nil, err
		}
		resp, err := s.replicate(ctx, kindTxn, r)
		if err != nil {
			return nil, err
		}
		out = resp.(*pb.TxnResponse)
	}
	// As in etcd, only the outer header names the member; the responses
	// inside carry just their revision.
	s.header(&out.Header)
	return out, nil
}

// txnSerializable reports whether every range in r is serializable, as
// etcd decides whether a read-only txn may skip the ReadIndex round.
func txnSerializable(r *pb.TxnRequest) bool {
	for _, ops := range [][]*pb.RequestOp{r.Success, r.Failure} {
		for _, op := range ops {
			switch x := op.Request.(type) {
			case *pb.RequestOp_RequestRange:
				if !x.RequestRange.Serializable {
					return false
				}
			case *pb.RequestOp_RequestTxn:
				if !txnSerializable(x.RequestTxn) {
					return false
				}
			}
		}
	}
	return true
}

// Compact replicates a compaction.
func (s *Server) Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	resp, err := s.replicate(ctx, kindCompact, r)
	if err != nil {
		return nil, err
	}
	out := resp.(*pb.CompactionResponse)
	s.header(&out.Header)
	return out, nil
}

// checkQuota refuses writes once the backend, with the values it keeps in
// the WAL, has outgrown --quota-backend-bytes. Deletes and compactions stay
// allowed so that an operator can make room, as in etcd.
func (s *Server) checkQuota() error {
	if q := s.cfg.QuotaBackendBytes; q > 0 && s.kv.SizeInUse()+s.kv.ValueBytes() > q {
		return ErrNoSpace
	}
	return nil
}

func (s *Server) replicate(ctx context.Context, kind uint8, r proto.Message) (any, error) {
	body, err := proto.Marshal(r)
	if err != nil {
		return nil, err
	}
	return s.propose(ctx, kind, body)
}

// Status reports this member's state, as Maintenance.Status.
func (s *Server) Status(ctx context.Context) (*pb.StatusResponse, error) {
	kv := s.kv
	resp := &pb.StatusResponse{
		Version:          Version,
		DbSize:           kv.Size(),
		DbSizeInUse:      kv.SizeInUse(),
		Leader:           s.node.Leader(),
		RaftIndex:        s.node.CommitIndex(),
		RaftTerm:         s.node.Term(),
		RaftAppliedIndex: s.applied.get(),
		StorageVersion:   Version,
		DbSizeQuota:      s.cfg.QuotaBackendBytes,
	}
	if m, ok := s.members.get(s.id); ok {
		resp.IsLearner = m.IsLearner
	}
	if resp.Leader == 0 {
		resp.Errors = append(resp.Errors, ErrNoLeader.Error())
	}
	s.header(&resp.Header)
	return resp, nil
}

// MemberList lists the members. If linearizable, it first confirms with a
// quorum that this member's view is current.
func (s *Server) MemberList(ctx context.Context, linearizable bool) (*pb.MemberListResponse, error) {
	if linearizable {
		if err := s.linearizableReadNotify(ctx); err != nil {
			return nil, err
		}
	}
	// etcd's cluster service headers carry no revision.
	resp := &pb.MemberListResponse{Members: s.members.list(), Header: &pb.ResponseHeader{}}
	s.header(&resp.Header)
	return resp, nil
}

// HashKV hashes the key-value history up to rev (0: the current revision)
// so that members can be compared, as Maintenance.HashKV.
func (s *Server) HashKV(ctx context.Context, rev int64) (*pb.HashKVResponse, error) {
	h, hashRev, compactRev, err := s.kv.HashKV(rev)
	if err != nil {
		return nil, err
	}
	resp := &pb.HashKVResponse{Header: &pb.ResponseHeader{Revision: hashRev}, Hash: h, CompactRevision: compactRev, HashRevision: hashRev}
	s.header(&resp.Header)
	return resp, nil
}
