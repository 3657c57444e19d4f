package transport

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"

	"github.com/quic-go/quic-go"
)

// DiscoverClusterID asks the existing members for the cluster ID, which a
// member joining a running cluster (--initial-cluster-state existing) needs
// for its WAL metadata and for Config.ClusterID, but cannot derive. self is
// the joining member's ID; peers maps the ID of each existing member to its
// peer address ("host:port"), the ID the joiner expects to answer there.
//
// The members are tried in turn, in ascending ID order, and the rounds are
// repeated with backoff (50 ms to 2 s, with jitter) until one answers or
// ctx ends; each attempt is bounded by 5 s. The answering member must
// already know self as a peer (the member add has been applied there and
// AddPeer called), both sides prove the token as in the normal hello, and
// the answer counts only if its MAC proves the token and it comes from the
// ID expected at that address. See "Cluster ID discovery" in the package
// documentation. Nothing is delivered to Raft on either side.
//
// DiscoverClusterID binds its own ephemeral UDP socket and releases it
// before it returns, so it can run before New binds the listen address.
// logger may be nil: slog.Default(). When ctx ends first, the error wraps
// context.Cause(ctx) and the error of the last attempt. With self 0,
// without another member (only self or ID 0) or with an address that is
// not "host:port" (a peer URL goes through HostPort first), it fails at
// once with ErrInvalidConfig.
func DiscoverClusterID(ctx context.Context, self uint64, token string, peers map[uint64]string, logger *slog.Logger) (uint64, error) {
	if self == 0 {
		return 0, fmt.Errorf("%w: member ID is 0", ErrInvalidConfig)
	}
	ids := make([]uint64, 0, len(peers))
	for id, addr := range peers {
		if id == 0 || id == self {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return 0, fmt.Errorf("%w: address %q of member %x is not host:port (see HostPort): %v",
				ErrInvalidConfig, addr, id, err)
		}
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return 0, fmt.Errorf("%w: no other member to ask for the cluster ID", ErrInvalidConfig)
	}
	slices.Sort(ids)
	if logger == nil {
		logger = slog.Default()
	}
	log := logger.With("member", fmt.Sprintf("%x", self))

	udp, err := net.ListenUDP("udp", &net.UDPAddr{})
	if err != nil {
		return 0, fmt.Errorf("transport: binding a socket for cluster ID discovery: %w", err)
	}
	defer udp.Close()
	qtr := &quic.Transport{Conn: udp}
	defer qtr.Close()

	a := authParams{token: token, self: self}
	warned := make(map[uint64]bool, len(ids))
	var (
		b       backoff
		lastErr error
	)
	for {
		for _, id := range ids {
			addr := peers[id]
			cid, err := discoverFrom(ctx, qtr, a, id, addr)
			if err == nil {
				log.Info("discovered the cluster ID",
					"cluster", fmt.Sprintf("%x", cid), "peer", fmt.Sprintf("%x", id), "addr", addr)
				return cid, nil
			}
			if ctx.Err() != nil {
				// This attempt most likely failed because ctx ended;
				// an earlier one says more.
				if lastErr == nil {
					lastErr = err
				}
				return 0, discoveryFailed(ctx, lastErr)
			}
			lastErr = err
			if warned[id] {
				log.Debug("asking for the cluster ID failed", "peer", fmt.Sprintf("%x", id), "addr", addr, "err", err)
			} else {
				log.Warn("asking for the cluster ID failed; retrying with backoff",
					"peer", fmt.Sprintf("%x", id), "addr", addr, "err", err)
				warned[id] = true
			}
		}
		if !sleepCtx(ctx, b.next()) {
			return 0, discoveryFailed(ctx, lastErr)
		}
	}
}

// discoveryFailed is DiscoverClusterID's error once ctx ended.
func discoveryFailed(ctx context.Context, lastErr error) error {
	if lastErr == nil {
		return fmt.Errorf("transport: discovering the cluster ID: %w", context.Cause(ctx))
	}
	return fmt.Errorf("transport: discovering the cluster ID: %w; last attempt: %w", context.Cause(ctx), lastErr)
}

// discoverFrom dials member id at addr on qtr and runs the discovery
// hello. It closes the connection before returning.
func discoverFrom(ctx context.Context, qtr *quic.Transport, a authParams, id uint64, addr string) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return 0, fmt.Errorf("resolving %q: %w", addr, err)
	}
	conn, err := qtr.Dial(ctx, raddr, clientTLS(), dialQUICConfig())
	if err != nil {
		return 0, fmt.Errorf("dialing %s: %w", addr, err)
	}
	defer closeOnDone(ctx, conn, codeNoError, "cluster ID discovery stopped")()
	str, err := conn.OpenStreamSync(ctx)
	if err != nil {
		_ = conn.CloseWithError(codeNoError, "")
		return 0, fmt.Errorf("opening a stream to %s: %w", addr, err)
	}
	cid, err := discoverHello(ctx, conn, str, a, id)
	if err != nil {
		closeOnError(conn, err)
		return 0, fmt.Errorf("hello with %s: %w", addr, err)
	}
	_ = conn.CloseWithError(codeNoError, "cluster ID discovered")
	return cid, nil
}
