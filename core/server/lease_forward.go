package server

import (
	"context"
	"fmt"
	"net/url"
	"sync"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/edgekv/edgekv/core/lease"
)

// forwardedKey marks a lease request that a follower forwarded to the
// leader (gRPC metadata): the receiver answers it itself, or says it is
// not the leader, and never forwards it again.
const forwardedKey = "edgekv-lease-forwarded"

func isForwarded(ctx context.Context) bool {
	md, ok := metadata.FromIncomingContext(ctx)
	return ok && len(md.Get(forwardedKey)) > 0
}

// leaderConn is the cached client connection to the leader's client URL,
// over which followers forward keep-alives and time-to-live requests, as
// etcd forwards them over its peer URLs.
type leaderConn struct {
	mu     sync.Mutex
	target string
	conn   *grpc.ClientConn
}

// client returns a Lease client of target, reusing the connection while
// the leader stays the same.
func (c *leaderConn) client(target string) (pb.LeaseClient, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil || c.target != target {
		if c.conn != nil {
			c.conn.Close()
			c.conn = nil
		}
		conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, err
		}
		c.conn, c.target = conn, target
	}
	return pb.NewLeaseClient(c.conn), nil
}

func (c *leaderConn) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// leaderLeaseClient returns a Lease client of member lead's first client
// URL.
func (s *Server) leaderLeaseClient(lead uint64) (pb.LeaseClient, error) {
	m, ok := s.members.get(lead)
	if !ok || len(m.ClientURLs) == 0 {
		return nil, fmt.Errorf("leader %x has published no client URL yet", lead)
	}
	u, err := url.Parse(m.ClientURLs[0])
	if err != nil {
		return nil, fmt.Errorf("leader %x client URL %q: %w", lead, m.ClientURLs[0], err)
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("leader %x client URL %q: only http is supported", lead, m.ClientURLs[0])
	}
	return s.fwd.client(u.Host)
}

// forwardRenew renews lease id on the leader through its keep-alive
// stream, one request and one answer.
func (s *Server) forwardRenew(ctx context.Context, lead uint64, id int64) (int64, error) {
	c, err := s.leaderLeaseClient(lead)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(ctx, forwardedKey, "1"))
	defer cancel()
	stream, err := c.LeaseKeepAlive(ctx)
	if err != nil {
		return 0, err
	}
	if err := stream.Send(&pb.LeaseKeepAliveRequest{ID: id}); err != nil {
		return 0, err
	}
	resp, err := stream.Recv()
	if err != nil {
		return 0, err
	}
	stream.CloseSend()
	if resp.TTL <= 0 {
		return 0, lease.ErrLeaseNotFound
	}
	return resp.TTL, nil
}

// forwardTimeToLive asks the leader for a lease's time to live.
func (s *Server) forwardTimeToLive(ctx context.Context, lead uint64, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	c, err := s.leaderLeaseClient(lead)
	if err != nil {
		return nil, err
	}
	resp, err := c.LeaseTimeToLive(metadata.AppendToOutgoingContext(ctx, forwardedKey, "1"), r)
	if err != nil {
		return nil, err
	}
	if resp.TTL == -1 {
		return nil, lease.ErrLeaseNotFound
	}
	return resp, nil
}
