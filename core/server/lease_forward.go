package server

import (
	"cmp"
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
// etcd forwards them over its peer URLs, with the keep-alive streams on it
// that are free for the next renewal.
type leaderConn struct {
	mu     sync.Mutex
	target string
	conn   *grpc.ClientConn
	idle   []*renewStream
}

// renewStream is a forwarded keep-alive stream to the leader, used by one
// renewal at a time: a request, then its answer (the leader answers a
// stream's requests in order).
type renewStream struct {
	target string
	stream pb.Lease_LeaseKeepAliveClient
	cancel context.CancelFunc
}

// maxIdleRenewStreams bounds the keep-alive streams kept open to the
// leader between renewals; more are opened when more renewals run at
// once, and closed after.
const maxIdleRenewStreams = 64

// client returns a Lease client of target, reusing the connection while
// the leader stays the same.
func (c *leaderConn) client(target string) (pb.LeaseClient, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.clientLocked(target)
}

func (c *leaderConn) clientLocked(target string) (pb.LeaseClient, error) {
	if c.conn == nil || c.target != target {
		c.closeLocked()
		conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, err
		}
		c.conn, c.target = conn, target
	}
	return pb.NewLeaseClient(c.conn), nil
}

// renewStream returns a free keep-alive stream to target, or opens one.
func (c *leaderConn) renewStream(target string) (*renewStream, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cl, err := c.clientLocked(target)
	if err != nil {
		return nil, err
	}
	if n := len(c.idle); n > 0 {
		rs := c.idle[n-1]
		c.idle = c.idle[:n-1]
		return rs, nil
	}
	// The stream outlives the renewal that opens it: its own context.
	ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(context.Background(), forwardedKey, "1"))
	stream, err := cl.LeaseKeepAlive(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	return &renewStream{target: target, stream: stream, cancel: cancel}, nil
}

// release gives rs back for the next renewal, or closes it.
func (c *leaderConn) release(rs *renewStream) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil && rs.target == c.target && len(c.idle) < maxIdleRenewStreams {
		c.idle = append(c.idle, rs)
		return
	}
	rs.cancel()
}

func (c *leaderConn) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closeLocked()
}

func (c *leaderConn) closeLocked() {
	for _, rs := range c.idle {
		rs.cancel()
	}
	c.idle = nil
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// leaderTarget returns the host:port of member lead's first client URL.
func (s *Server) leaderTarget(lead uint64) (string, error) {
	m, ok := s.members.get(lead)
	if !ok || len(m.ClientURLs) == 0 {
		return "", fmt.Errorf("leader %x has published no client URL yet", lead)
	}
	u, err := url.Parse(m.ClientURLs[0])
	if err != nil {
		return "", fmt.Errorf("leader %x client URL %q: %w", lead, m.ClientURLs[0], err)
	}
	if u.Scheme != "http" {
		return "", fmt.Errorf("leader %x client URL %q: only http is supported", lead, m.ClientURLs[0])
	}
	return u.Host, nil
}

// forwardRenew renews lease id on the leader through one of the
// keep-alive streams kept open to it: one request and its answer. A stream
// that fails, or whose answer ctx stops waiting for, is closed; a healthy
// one serves the next renewal.
func (s *Server) forwardRenew(ctx context.Context, lead uint64, id int64) (int64, error) {
	target, err := s.leaderTarget(lead)
	if err != nil {
		return 0, err
	}
	rs, err := s.fwd.renewStream(target)
	if err != nil {
		return 0, err
	}
	stop := context.AfterFunc(ctx, rs.cancel)
	resp, err := rs.send(id)
	if !stop() {
		// ctx ended first: the stream is cancelled, and its answer lost.
		rs.cancel()
		return 0, cmp.Or(ctx.Err(), err)
	}
	if err != nil {
		rs.cancel()
		return 0, err
	}
	s.fwd.release(rs)
	if resp.TTL <= 0 {
		return 0, lease.ErrLeaseNotFound
	}
	return resp.TTL, nil
}

func (rs *renewStream) send(id int64) (*pb.LeaseKeepAliveResponse, error) {
	if err := rs.stream.Send(&pb.LeaseKeepAliveRequest{ID: id}); err != nil {
		return nil, err
	}
	resp, err := rs.stream.Recv()
	if err == nil && resp.ID != id {
		err = fmt.Errorf("forwarded keep-alive of lease %x answered for lease %x", id, resp.ID)
	}
	return resp, err
}

// forwardTimeToLive asks the leader for a lease's time to live.
func (s *Server) forwardTimeToLive(ctx context.Context, lead uint64, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	target, err := s.leaderTarget(lead)
	if err != nil {
		return nil, err
	}
	c, err := s.fwd.client(target)
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
