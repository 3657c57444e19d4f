package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// A Load is one kind of benchmark: Put, Range, TxnCAS, Delete,
// WatchLatency or LeaseKeepalive.
type Load interface {
	// Name is the subcommand's name and the report's "load".
	Name() string
	validate(cfg *Config) error
	run(ctx context.Context, e *env) (*Report, error)
}

// Run checks cfg, dials the endpoints and runs load. It returns the report
// of the measured phase; the report is also returned, with the error, when
// every operation failed (ErrAllFailed), operations stopped succeeding
// (ErrStalled), another cluster answered (ErrWrongCluster), watch events
// went missing (ErrMissingEvents) or ctx was cancelled (its cause).
func Run(ctx context.Context, cfg Config, load Load) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := load.validate(&cfg); err != nil {
		return nil, err
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.ProgressInterval == 0 {
		cfg.ProgressInterval = 5 * time.Second
	}
	if cfg.StallTimeout == 0 {
		cfg.StallTimeout = max(30*time.Second, 3*cfg.RequestTimeout)
	}
	eps, cluster, err := preflight(ctx, &cfg)
	if err != nil {
		return nil, err
	}
	e := &env{cfg: &cfg, endpoints: eps, cluster: clusterCheck(cluster)}
	defer e.close()
	return load.run(ctx, e)
}

// env is what a load runs with: the checked configuration, the endpoints
// left after preflight, and the clients it opened (closed by Run).
type env struct {
	cfg       *Config
	endpoints []string
	cluster   clusterCheck

	mu   sync.Mutex
	open []*clientv3.Client
}

func newClient(cfg *Config, endpoints []string) (*clientv3.Client, error) {
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: cfg.DialTimeout,
		// The client logs every retry at warn level; the report counts
		// the errors instead.
		Logger: zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("bench: connecting to %s: %w", strings.Join(endpoints, ","), err)
	}
	return c, nil
}

// client opens one connection to endpoints, closed with the env.
func (e *env) client(endpoints []string) (*clientv3.Client, error) {
	c, err := newClient(e.cfg, endpoints)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.open = append(e.open, c)
	e.mu.Unlock()
	return c, nil
}

// pool opens cfg.Conns connections to endpoints and returns n clients
// spread round-robin over them.
func (e *env) pool(endpoints []string, n int) ([]*clientv3.Client, error) {
	conns := make([]*clientv3.Client, min(e.cfg.Conns, n))
	for i := range conns {
		c, err := e.client(endpoints)
		if err != nil {
			return nil, err
		}
		conns[i] = c
	}
	clients := make([]*clientv3.Client, n)
	for i := range clients {
		clients[i] = conns[i%len(conns)]
	}
	return clients, nil
}

func (e *env) close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, c := range e.open {
		c.Close()
	}
	e.open = nil
}

// opContext returns the context of one operation: ctx bounded by
// RequestTimeout.
func (e *env) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if e.cfg.RequestTimeout > 0 {
		return context.WithTimeout(ctx, e.cfg.RequestTimeout)
	}
	return ctx, func() {}
}

// clusterCheck is the cluster ID the responses must carry; 0 checks
// nothing.
type clusterCheck uint64

// check returns an error wrapping ErrWrongCluster if h is another
// cluster's.
func (c clusterCheck) check(h *pb.ResponseHeader) error {
	if c != 0 && h != nil && h.ClusterId != uint64(c) {
		return fmt.Errorf("%w: cluster %x answered, the run started on %x", ErrWrongCluster, h.ClusterId, uint64(c))
	}
	return nil
}

// preflight asks every endpoint for its Status and returns the endpoints
// to use (the leader's alone with TargetLeader, else all of them) and
// their cluster ID.
func preflight(ctx context.Context, cfg *Config) ([]string, uint64, error) {
	c, err := newClient(cfg, cfg.Endpoints)
	if err != nil {
		return nil, 0, err
	}
	defer c.Close()
	type status struct {
		resp *clientv3.StatusResponse
		err  error
	}
	sts := make([]status, len(cfg.Endpoints))
	var wg sync.WaitGroup
	for i, ep := range cfg.Endpoints {
		wg.Go(func() {
			sctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
			defer cancel()
			sts[i].resp, sts[i].err = c.Status(sctx, ep)
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, 0, context.Cause(ctx)
	}
	var up, leader []string
	var cluster uint64
	var errs []error
	for i, ep := range cfg.Endpoints {
		if err := sts[i].err; err != nil {
			cfg.logf("endpoint %s: %v", ep, err)
			errs = append(errs, fmt.Errorf("%s: %w", ep, err))
			continue
		}
		up = append(up, ep)
		r := sts[i].resp
		if r.Header == nil {
			continue
		}
		if cluster == 0 {
			cluster = r.Header.ClusterId
		} else if r.Header.ClusterId != cluster {
			return nil, 0, fmt.Errorf("bench: --endpoints span two clusters, %x and %x (%s)", cluster, r.Header.ClusterId, ep)
		}
		if r.Header.MemberId == r.Leader && r.Leader != 0 {
			leader = append(leader, ep)
		}
	}
	if len(up) == 0 {
		return nil, 0, fmt.Errorf("%w within --dial-timeout %v: %w", ErrNoEndpoint, cfg.DialTimeout, errors.Join(errs...))
	}
	if !cfg.TargetLeader {
		return cfg.Endpoints, cluster, nil
	}
	if len(leader) == 0 {
		return nil, 0, fmt.Errorf("%w among %s", ErrNoLeader, strings.Join(up, ","))
	}
	cfg.logf("leader is %s", leader[0])
	return leader[:1], cluster, nil
}

// A worker is the state of one client goroutine of a closed-loop load. Only
// that goroutine calls do.
type worker interface {
	// do runs operation number i.
	do(ctx context.Context, i uint64) error
}

// opLoad is a load measured in closed loop: every client runs one operation
// after another.
type opLoad interface {
	// prepare runs before the measurement, untimed.
	prepare(ctx context.Context, e *env, clients []*clientv3.Client) error
	// worker returns the worker of client c.
	worker(c int, cli *clientv3.Client) worker
	// finish adds the load's extras to the report and cleans up, untimed.
	finish(ctx context.Context, e *env, clients []*clientv3.Client, workers []worker, r *Report)
}

// runClosed runs a closed-loop load: cfg.Clients goroutines take operation
// numbers from a shared counter until cfg.Total were handed out or
// cfg.Duration passed.
func runClosed(ctx context.Context, e *env, name string, l opLoad) (*Report, error) {
	cfg := e.cfg
	clients, err := e.pool(e.endpoints, cfg.Clients)
	if err != nil {
		return nil, err
	}
	if err := l.prepare(ctx, e, clients); err != nil {
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		return nil, err
	}
	workers := make([]worker, len(clients))
	for i, c := range clients {
		workers[i] = l.worker(i, c)
	}

	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	s := &closedRun{
		env:        e,
		ctx:        rctx,
		cancel:     cancel,
		max:        cfg.maxOps(),
		limit:      newLimiter(cfg.Rate),
		abortAfter: int64(max(10, len(clients))),
	}
	perClient := 4096
	if cfg.Total > 0 {
		perClient = cfg.Total/len(clients) + 1
	}
	recs := make([]*recorder, len(clients))
	for i := range recs {
		recs[i] = newRecorder(perClient)
	}
	cfg.logf("%s: %d clients over %d conns to %s", name, len(clients), min(cfg.Conns, len(clients)), strings.Join(e.endpoints, ","))
	stopMonitor := monitor(cfg, name, &s.next, func() int64 {
		var n int64
		for _, r := range recs {
			n += r.succeeded.Load()
		}
		return n
	}, func() { cancel(ErrStalled) })
	start := time.Now()
	if cfg.Duration > 0 {
		s.deadline = start.Add(cfg.Duration)
	}
	var wg sync.WaitGroup
	for i, w := range workers {
		wg.Go(func() { s.loop(w, recs[i]) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	stopMonitor()

	r := newReport(name, cfg, e.endpoints, recs, elapsed)
	// Cleanup must not run under a cancelled context, but must not hang
	// either.
	fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer fcancel()
	if ctx.Err() == nil {
		l.finish(fctx, e, clients, workers, r)
	}
	switch {
	case ctx.Err() != nil:
		return r, context.Cause(ctx)
	case r.Count == 0 && r.Errors > 0:
		return r, ErrAllFailed
	case errors.Is(context.Cause(rctx), ErrWrongCluster):
		return r, ErrWrongCluster
	case errors.Is(context.Cause(rctx), ErrStalled):
		return r, fmt.Errorf("%w: no operation succeeded for %v", ErrStalled, cfg.StallTimeout)
	}
	return r, nil
}

// closedRun is the state the client goroutines of runClosed share.
type closedRun struct {
	env      *env
	ctx      context.Context
	cancel   context.CancelCauseFunc
	next     atomic.Uint64
	max      uint64
	deadline time.Time
	limit    *limiter

	anyOK      atomic.Bool
	failed     atomic.Int64
	abortAfter int64
}

func (s *closedRun) loop(w worker, rec *recorder) {
	var timer *time.Timer
	seenOK := false
	for s.ctx.Err() == nil {
		i := s.next.Add(1) - 1
		if i >= s.max {
			return
		}
		if s.limit != nil && s.limit.wait(s.ctx, &timer) != nil {
			return
		}
		if !s.deadline.IsZero() && !time.Now().Before(s.deadline) {
			return
		}
		octx, cancel := s.env.opContext(s.ctx)
		st := time.Now()
		err := w.do(octx, i)
		lat := time.Since(st)
		cancel()
		switch {
		case err == nil:
			rec.ok(lat)
			if !seenOK {
				seenOK = true
				s.anyOK.Store(true)
			}
		case s.ctx.Err() != nil:
			// Cut short by the end of the run: not the server's doing.
			return
		case errors.Is(err, ErrWrongCluster):
			rec.fail(err)
			s.env.cfg.logf("%s; stopping", strings.TrimPrefix(err.Error(), "bench: "))
			s.cancel(ErrWrongCluster)
			return
		default:
			rec.fail(err)
			if !s.anyOK.Load() && s.failed.Add(1) >= s.abortAfter {
				s.env.cfg.logf("the first %d operations all failed; stopping", s.abortAfter)
				s.cancel(ErrAllFailed)
			}
		}
	}
}

// monitor writes a progress line every cfg.ProgressInterval and calls
// stall once if succeeded has not grown for cfg.StallTimeout, until the
// returned function is called.
func monitor(cfg *Config, name string, issued *atomic.Uint64, succeeded func() int64, stall func()) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(min(time.Second, cfg.StallTimeout/4))
		defer t.Stop()
		start := time.Now()
		lastLine, lastOK, okCount := start, start, int64(0)
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				if n := succeeded(); n != okCount {
					okCount, lastOK = n, now
				} else if stall != nil && now.Sub(lastOK) >= cfg.StallTimeout {
					cfg.logf("%s: no operation succeeded for %v; stopping", name, cfg.StallTimeout)
					stall()
					stall = nil
				}
				if now.Sub(lastLine) < cfg.ProgressInterval {
					continue
				}
				lastLine = now
				n := issued.Load()
				if cfg.Total > 0 {
					n = min(n, uint64(cfg.Total))
					cfg.logf("%s: %d/%d operations issued, %d succeeded after %.0fs", name, n, cfg.Total, okCount, now.Sub(start).Seconds())
				} else {
					cfg.logf("%s: %d operations issued, %d succeeded after %.0fs of %v", name, n, okCount, now.Sub(start).Seconds(), cfg.Duration)
				}
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// limiter spaces operations by interval over all the goroutines sharing it,
// without bursts: a slot not used when it came is lost.
type limiter struct {
	interval int64 // ns
	start    time.Time
	next     atomic.Int64 // ns since start of the next free slot
}

// newLimiter returns a limiter of rate operations per second, nil for none.
func newLimiter(rate int) *limiter {
	if rate <= 0 {
		return nil
	}
	return &limiter{interval: int64(time.Second) / int64(rate), start: time.Now()}
}

// wait blocks until the caller's slot, using *timer (created on first use)
// to sleep.
func (l *limiter) wait(ctx context.Context, timer **time.Timer) error {
	now := int64(time.Since(l.start))
	for {
		n := l.next.Load()
		slot := max(n, now)
		if !l.next.CompareAndSwap(n, slot+l.interval) {
			continue
		}
		d := time.Duration(slot - now)
		if d <= 0 {
			return nil
		}
		if *timer == nil {
			*timer = time.NewTimer(d)
		} else {
			(*timer).Reset(d)
		}
		select {
		case <-(*timer).C:
			return nil
		case <-ctx.Done():
			(*timer).Stop()
			return ctx.Err()
		}
	}
}
