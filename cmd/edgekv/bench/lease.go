package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// leaseTTL is the TTL of the leases kept alive, etcd's tool's.
const leaseTTL = 100

// LeaseOptions configures the lease-keepalive load.
type LeaseOptions struct {
	// Leases is the number of leases granted before measuring; 0 means one
	// per client. Operation i keeps lease i mod Leases alive.
	Leases int
	// Stream keeps one LeaseKeepAlive stream open per client and sends
	// each keep-alive on it. Without it every keep-alive is a
	// KeepAliveOnce, which opens a stream for one request and one
	// response, as etcd's lease-keepalive benchmark does.
	Stream bool
}

// LeaseKeepalive returns the lease-keepalive load. The leases are revoked
// afterwards.
func LeaseKeepalive(o LeaseOptions) Load { return leaseLoad{o} }

type leaseLoad struct{ o LeaseOptions }

func (leaseLoad) Name() string { return "lease-keepalive" }

func (l leaseLoad) validate(cfg *Config) error {
	if l.o.Leases < 0 {
		return fmt.Errorf("%w: --leases must not be negative", ErrInvalidConfig)
	}
	return nil
}

func (l leaseLoad) run(ctx context.Context, e *env) (*Report, error) {
	return runClosed(ctx, e, l.Name(), &leaseOps{o: l.o, ctx: ctx})
}

type leaseOps struct {
	o       LeaseOptions
	cluster clusterCheck
	ctx     context.Context // the run's, for the streams
	ids     []clientv3.LeaseID
}

func (l *leaseOps) prepare(ctx context.Context, e *env, clients []*clientv3.Client) error {
	l.cluster = e.cluster
	n := l.o.Leases
	if n == 0 {
		n = len(clients)
	}
	l.ids = make([]clientv3.LeaseID, n)
	start := time.Now()
	e.cfg.logf("granting %d leases of %ds (not timed)", n, leaseTTL)
	err := spread(ctx, clients, n, func(ctx context.Context, c *clientv3.Client, i int) error {
		octx, cancel := e.opContext(ctx)
		defer cancel()
		resp, err := c.Grant(octx, leaseTTL)
		if err != nil {
			return fmt.Errorf("bench: granting lease %d: %w", i, err)
		}
		l.ids[i] = resp.ID
		return nil
	})
	if err != nil {
		return err
	}
	e.cfg.logf("granted %d leases in %.2fs", n, time.Since(start).Seconds())
	return nil
}

func (l *leaseOps) worker(_ int, cli *clientv3.Client) worker {
	return &leaseWorker{c: cli, ids: l.ids, stream: l.o.Stream, ctx: l.ctx, cluster: l.cluster}
}

func (l *leaseOps) finish(ctx context.Context, e *env, clients []*clientv3.Client, workers []worker, r *Report) {
	for _, w := range workers {
		w.(*leaseWorker).closeStream()
	}
	r.Extra["leases"] = int64(len(l.ids))
	err := spread(ctx, clients, len(l.ids), func(ctx context.Context, c *clientv3.Client, i int) error {
		octx, cancel := e.opContext(ctx)
		defer cancel()
		_, err := c.Revoke(octx, l.ids[i])
		return err
	})
	if err != nil {
		e.cfg.logf("revoking the leases: %v", err)
	}
}

// spread runs f for i in [0, n), one goroutine per client taking the next
// i, and returns the first error, after which it stops.
func spread(ctx context.Context, clients []*clientv3.Client, n int, f func(context.Context, *clientv3.Client, int) error) error {
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Go(func() {
			for sctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(sctx, c, i); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if sctx.Err() != nil {
		return context.Cause(sctx)
	}
	return nil
}

// leaseWorker is one client of the lease-keepalive load.
type leaseWorker struct {
	c       *clientv3.Client
	cluster clusterCheck
	ids     []clientv3.LeaseID
	stream  bool
	ctx     context.Context

	// With stream: the open stream, nil after an error, and the request,
	// reused.
	ks     pb.Lease_LeaseKeepAliveClient
	cancel context.CancelFunc
	req    pb.LeaseKeepAliveRequest
}

func (w *leaseWorker) do(ctx context.Context, i uint64) error {
	id := w.ids[i%uint64(len(w.ids))]
	if !w.stream {
		resp, err := w.c.KeepAliveOnce(ctx, id)
		if err != nil {
			return err
		}
		return w.cluster.check(resp.ResponseHeader)
	}
	if w.ks == nil {
		sctx, cancel := context.WithCancel(w.ctx)
		ks, err := pb.NewLeaseClient(w.c.ActiveConnection()).LeaseKeepAlive(sctx)
		if err != nil {
			cancel()
			return err
		}
		w.ks, w.cancel = ks, cancel
	}
	// The stream outlives the operation: cancel it if ctx ends first.
	stop := context.AfterFunc(ctx, w.cancel)
	w.req.ID = int64(id)
	err := w.ks.Send(&w.req)
	var resp *pb.LeaseKeepAliveResponse
	if err == nil {
		resp, err = w.ks.Recv()
	}
	if !stop() {
		w.closeStream()
		return ctx.Err()
	}
	if err != nil {
		w.closeStream()
		return rpctypes.Error(err)
	}
	if err := w.cluster.check(resp.Header); err != nil {
		return err
	}
	if resp.TTL <= 0 {
		return rpctypes.ErrLeaseNotFound
	}
	return nil
}

func (w *leaseWorker) closeStream() {
	if w.ks != nil {
		w.ks.CloseSend()
		w.cancel()
		w.ks, w.cancel = nil, nil
	}
}
