package server

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/edgekv/edgekv/core/codec"
)

// Membership errors, mapped to etcd's by core/rpc.
var (
	ErrMemberExist    = errors.New("etcdserver: member ID already exist")
	ErrPeerURLExist   = errors.New("etcdserver: Peer URLs already exists")
	ErrMemberNotFound = errors.New("etcdserver: member not found")
	ErrMemberBadURLs  = errors.New("etcdserver: given member URLs are invalid")
)

// checkPeerURLs accepts etcd-style peer URLs: http or https, host and port.
func checkPeerURLs(urls []string) error {
	if len(urls) == 0 {
		return ErrMemberBadURLs
	}
	for _, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Port() == "" || u.Path != "" {
			return fmt.Errorf("%w: %q", ErrMemberBadURLs, raw)
		}
	}
	return nil
}

// MemberAdd adds a member (a learner if isLearner) through Raft. Its ID is
// derived from its peer URLs and the cluster token as for the initial
// members, so the new member, started with --initial-cluster-state existing,
// finds its own ID from its flags.
func (s *Server) MemberAdd(ctx context.Context, peerURLs []string, isLearner bool) (*pb.MemberAddResponse, error) {
	if err := checkPeerURLs(peerURLs); err != nil {
		return nil, err
	}
	id := MemberID(peerURLs, s.cfg.InitialClusterToken)
	// Check against the membership as of now, not as this member last
	// applied it; apply checks again for concurrent adds.
	if err := s.linearizableReadNotify(ctx); err != nil {
		return nil, err
	}
	for _, m := range s.members.all() {
		if m.ID == id {
			return nil, ErrMemberExist
		}
		for _, u := range m.PeerURLs {
			if slices.Contains(peerURLs, u) {
				return nil, ErrPeerURLExist
			}
		}
	}
	mctx, err := codec.Marshal(Member{ID: id, PeerURLs: peerURLs, IsLearner: isLearner})
	if err != nil {
		return nil, err
	}
	typ := raftpb.ConfChangeAddNode
	if isLearner {
		typ = raftpb.ConfChangeAddLearnerNode
	}
	if err := s.proposeConfChange(ctx, &raftpb.ConfChange{Type: typ.Enum(), NodeId: new(id), Context: mctx}); err != nil {
		return nil, err
	}
	resp := &pb.MemberAddResponse{
		Header:  &pb.ResponseHeader{},
		Member:  &pb.Member{ID: id, PeerURLs: peerURLs, IsLearner: isLearner},
		Members: s.members.list(),
	}
	s.header(&resp.Header)
	return resp, nil
}

// MemberRemove removes a member through Raft.
func (s *Server) MemberRemove(ctx context.Context, id uint64) (*pb.MemberRemoveResponse, error) {
	if err := s.linearizableReadNotify(ctx); err != nil {
		return nil, err
	}
	if _, ok := s.members.get(id); !ok {
		return nil, ErrMemberNotFound
	}
	cc := &raftpb.ConfChange{Type: raftpb.ConfChangeRemoveNode.Enum(), NodeId: new(id)}
	if err := s.proposeConfChange(ctx, cc); err != nil {
		return nil, err
	}
	resp := &pb.MemberRemoveResponse{Header: &pb.ResponseHeader{}, Members: s.members.list()}
	s.header(&resp.Header)
	return resp, nil
}

// proposeConfChange proposes cc and waits until this member applied it.
func (s *Server) proposeConfChange(ctx context.Context, cc *raftpb.ConfChange) error {
	id := s.nextID()
	cc.Id = new(id)
	_, err := s.submitAndWait(ctx, id, func(ctx context.Context) error { return s.node.ProposeConfChange(ctx, cc) })
	return err
}
