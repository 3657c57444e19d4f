package rpc

import (
	"context"
	"errors"
	"io"
	"log/slog"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// LeaseBackend is what the Lease service needs from a member.
type LeaseBackend interface {
	LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error)
	LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error)
	// LeaseKeepAlive renews one lease; a lease that does not exist gets a
	// response with TTL 0, not an error, as on etcd's stream.
	LeaseKeepAlive(ctx context.Context, id int64) (*pb.LeaseKeepAliveResponse, error)
	// LeaseTimeToLive answers TTL -1 for a lease that does not exist.
	LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error)
	LeaseLeases(ctx context.Context) (*pb.LeaseLeasesResponse, error)
}

// leaseServer is etcd's Lease service.
type leaseServer struct {
	pb.UnimplementedLeaseServer
	b  LeaseBackend
	lg *slog.Logger
}

func (l *leaseServer) LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	resp, err := l.b.LeaseGrant(ctx, r)
	return resp, toGRPCError(err)
}

func (l *leaseServer) LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	resp, err := l.b.LeaseRevoke(ctx, r)
	return resp, toGRPCError(err)
}

func (l *leaseServer) LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	resp, err := l.b.LeaseTimeToLive(ctx, r)
	return resp, toGRPCError(err)
}

func (l *leaseServer) LeaseLeases(ctx context.Context, _ *pb.LeaseLeasesRequest) (*pb.LeaseLeasesResponse, error) {
	resp, err := l.b.LeaseLeases(ctx)
	return resp, toGRPCError(err)
}

// LeaseKeepAlive answers each request on the stream in order. A failed
// renewal (no leader, timeout) ends the stream with etcd's error; the
// client opens a new one.
func (l *leaseServer) LeaseKeepAlive(stream pb.Lease_LeaseKeepAliveServer) error {
	ctx := stream.Context()
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if ctx.Err() == nil {
				l.lg.Debug("receiving from a lease keep-alive stream", "err", err)
			}
			return err
		}
		resp, err := l.b.LeaseKeepAlive(ctx, req.ID)
		if err != nil {
			return toGRPCError(err)
		}
		if err := stream.Send(resp); err != nil {
			if ctx.Err() == nil {
				l.lg.Debug("sending on a lease keep-alive stream", "err", err)
			}
			return err
		}
	}
}
