package rpc

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/edgekv/edgekv/core/server"
)

// Backend is what the client API needs from a member.
type Backend interface {
	Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error)
	Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error)
	DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error)
	Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error)
	Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error)
	Status(ctx context.Context) (*pb.StatusResponse, error)
	MemberList(ctx context.Context, linearizable bool) (*pb.MemberListResponse, error)
	HashKV(ctx context.Context, rev int64) (*pb.HashKVResponse, error)
	MemberAdd(ctx context.Context, peerURLs []string, isLearner bool) (*pb.MemberAddResponse, error)
	MemberRemove(ctx context.Context, id uint64) (*pb.MemberRemoveResponse, error)
	LeaseBackend
	WatchBackend
}

var _ Backend = (*server.Server)(nil)

type kvServer struct {
	pb.UnimplementedKVServer
	b Backend
}

func (k *kvServer) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	resp, err := k.b.Range(ctx, r)
	return resp, toGRPCError(err)
}

func (k *kvServer) Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	resp, err := k.b.Put(ctx, r)
	return resp, toGRPCError(err)
}

func (k *kvServer) DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	resp, err := k.b.DeleteRange(ctx, r)
	return resp, toGRPCError(err)
}

func (k *kvServer) Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	resp, err := k.b.Txn(ctx, r)
	return resp, toGRPCError(err)
}

func (k *kvServer) Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	resp, err := k.b.Compact(ctx, r)
	return resp, toGRPCError(err)
}

type maintenanceServer struct {
	pb.UnimplementedMaintenanceServer
	b Backend
}

func (m *maintenanceServer) Status(ctx context.Context, _ *pb.StatusRequest) (*pb.StatusResponse, error) {
	resp, err := m.b.Status(ctx)
	return resp, toGRPCError(err)
}

func (m *maintenanceServer) HashKV(ctx context.Context, r *pb.HashKVRequest) (*pb.HashKVResponse, error) {
	resp, err := m.b.HashKV(ctx, r.Revision)
	return resp, toGRPCError(err)
}

// Alarm answers alarm queries. edgekv raises no alarms yet (the space
// quota and corruption checks come with later work), so the list is empty;
// activating or deactivating one is refused.
func (m *maintenanceServer) Alarm(ctx context.Context, r *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	if r.Action != pb.AlarmRequest_GET {
		return nil, errUnsupported("alarm " + r.Action.String())
	}
	st, err := m.b.Status(ctx)
	if err != nil {
		return nil, toGRPCError(err)
	}
	return &pb.AlarmResponse{Header: st.Header}, nil
}

type clusterServer struct {
	pb.UnimplementedClusterServer
	b Backend
}

func (c *clusterServer) MemberList(ctx context.Context, r *pb.MemberListRequest) (*pb.MemberListResponse, error) {
	resp, err := c.b.MemberList(ctx, r.Linearizable)
	return resp, toGRPCError(err)
}

// errUnsupported is returned by the services edgekv does not implement yet.
func errUnsupported(what string) error {
	return status.Errorf(codes.Unimplemented, "edgekv: %s is not supported yet", what)
}

func (c *clusterServer) MemberAdd(ctx context.Context, r *pb.MemberAddRequest) (*pb.MemberAddResponse, error) {
	resp, err := c.b.MemberAdd(ctx, r.PeerURLs, r.IsLearner)
	return resp, toGRPCError(err)
}

func (c *clusterServer) MemberRemove(ctx context.Context, r *pb.MemberRemoveRequest) (*pb.MemberRemoveResponse, error) {
	resp, err := c.b.MemberRemove(ctx, r.ID)
	return resp, toGRPCError(err)
}

func (c *clusterServer) MemberUpdate(context.Context, *pb.MemberUpdateRequest) (*pb.MemberUpdateResponse, error) {
	return nil, errUnsupported("member update")
}

func (c *clusterServer) MemberPromote(context.Context, *pb.MemberPromoteRequest) (*pb.MemberPromoteResponse, error) {
	return nil, errUnsupported("member promote")
}
