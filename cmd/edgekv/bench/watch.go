package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/metadata"
)

// WatchOptions configures the watch-latency load.
type WatchOptions struct {
	// Watchers is the number of watchers of the key; 0 means 100.
	Watchers int
	// Streams is the number of watch streams the watchers are spread over
	// (round-robin); 0 means 10. The streams are spread over the
	// connections the same way.
	Streams int
	// PutRate is puts per second; 0 means 100.
	PutRate int
	// Straggle is how long to wait for events after the last put; 0 means
	// 5 seconds.
	Straggle time.Duration
}

func (o WatchOptions) withDefaults() WatchOptions {
	if o.Watchers == 0 {
		o.Watchers = 100
	}
	if o.Streams == 0 {
		o.Streams = 10
	}
	if o.PutRate == 0 {
		o.PutRate = 100
	}
	if o.Straggle == 0 {
		o.Straggle = 5 * time.Second
	}
	return o
}

// WatchLatency returns the watch-latency load: Watchers watchers on the
// first endpoint (the leader's with TargetLeader) watch one key, which is
// put PutRate times a second, Total times in all, through a separate
// connection to all the endpoints. The latency of a put at a watcher is the
// time from just before the put is sent until its event arrives there. The
// value of put i starts with i in big-endian (so values are at least 8
// bytes), which is how an event is matched to its put.
func WatchLatency(o WatchOptions) Load { return watchLoad{o.withDefaults()} }

type watchLoad struct{ o WatchOptions }

func (watchLoad) Name() string { return "watch-latency" }

func (l watchLoad) validate(cfg *Config) error {
	switch {
	case l.o.Watchers < 1, l.o.Streams < 1, l.o.PutRate < 1:
		return fmt.Errorf("%w: --watchers, --streams and --put-rate must be positive", ErrInvalidConfig)
	case l.o.Streams > l.o.Watchers:
		return fmt.Errorf("%w: --streams %d is more than --watchers %d", ErrInvalidConfig, l.o.Streams, l.o.Watchers)
	}
	if l.maxPuts(cfg) > 1<<24 {
		return fmt.Errorf("%w: watch-latency keeps a slot per put and watcher; at most %d puts", ErrInvalidConfig, 1<<24)
	}
	return nil
}

// maxPuts is the most puts the run can make.
func (l watchLoad) maxPuts(cfg *Config) int {
	if cfg.Total > 0 {
		return cfg.Total
	}
	return int(cfg.Duration.Seconds()*float64(l.o.PutRate)) + l.o.PutRate
}

// watcher is the state of one watcher's goroutine, read by others only
// after it has ended (but received, which the put loop polls).
type watcher struct {
	cluster    clusterCheck
	arrivals   []time.Duration // since base, by put number; 0 for none yet
	received   atomic.Int64
	created    bool
	rec        *recorder
	duplicates int64
	outOfOrder int64
	foreign    int64
}

func (w *watcher) run(ctx context.Context, wch clientv3.WatchChan, base time.Time, ready func()) {
	defer func() {
		if !w.created {
			ready()
		}
	}()
	last := -1
	for wr := range wch {
		now := time.Since(base)
		if err := wr.Err(); err != nil {
			if ctx.Err() == nil {
				w.rec.fail(err)
			}
			continue
		}
		if err := w.cluster.check(wr.Header); err != nil {
			w.rec.fail(err)
			continue
		}
		if wr.Created && !w.created {
			w.created = true
			ready()
		}
		for _, ev := range wr.Events {
			if ev.Type != mvccpb.PUT || len(ev.Kv.Value) < 8 {
				w.foreign++
				continue
			}
			i := binary.BigEndian.Uint64(ev.Kv.Value)
			switch {
			case i >= uint64(len(w.arrivals)):
				w.foreign++
			case w.arrivals[i] != 0:
				w.duplicates++
			default:
				if int(i) < last {
					w.outOfOrder++
				}
				last = int(i)
				w.arrivals[i] = now
				w.received.Add(1)
			}
		}
	}
}

func (l watchLoad) run(ctx context.Context, e *env) (*Report, error) {
	cfg, o := e.cfg, l.o
	member := e.endpoints[:1]
	conns, err := e.pool(member, min(cfg.Conns, o.Streams))
	if err != nil {
		return nil, err
	}
	putc, err := e.client(e.endpoints)
	if err != nil {
		return nil, err
	}
	maxPuts := l.maxPuts(cfg)
	key := Key(0, cfg.KeySize)

	// The client shares a stream among the watchers whose contexts carry
	// the same metadata, so a distinct value per stream makes the streams.
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	base := time.Now()
	watchers := make([]*watcher, o.Watchers)
	var ready, done sync.WaitGroup
	ready.Add(o.Watchers)
	for i := range watchers {
		s := i % o.Streams
		sctx := metadata.AppendToOutgoingContext(wctx, "edgekv-bench-stream", strconv.Itoa(s))
		wch := conns[s%len(conns)].Watch(sctx, key, clientv3.WithCreatedNotify())
		w := &watcher{cluster: e.cluster, arrivals: make([]time.Duration, maxPuts), rec: newRecorder(0)}
		watchers[i] = w
		done.Go(func() { w.run(wctx, wch, base, ready.Done) })
	}
	cfg.logf("%s: %d watchers over %d streams on %s; putting %q through %s at %d/s",
		l.Name(), o.Watchers, o.Streams, member[0], key, putc.Endpoints(), o.PutRate)
	allReady := make(chan struct{})
	go func() { ready.Wait(); close(allReady) }()
	select {
	case <-allReady:
	case <-ctx.Done():
	case <-time.After(max(cfg.DialTimeout, 10*time.Second)):
	}
	stopWatchers := func() {
		wcancel()
		finished := make(chan struct{})
		go func() { done.Wait(); close(finished) }()
		select {
		case <-finished:
		case <-time.After(5 * time.Second):
			e.close() // closes the watch channels for good
			<-finished
		}
	}
	if ctx.Err() != nil {
		stopWatchers()
		return nil, context.Cause(ctx)
	}
	select {
	case <-allReady:
	default:
		stopWatchers()
		return nil, errors.New("bench: watchers were not created in time")
	}
	for _, w := range watchers {
		if !w.created {
			stopWatchers()
			return nil, fmt.Errorf("bench: a watcher failed before it was created: %v", w.rec.messages())
		}
	}

	// Put, at most one in flight, and record when each was sent.
	val := make([]byte, max(8, cfg.ValSize))
	copy(val[8:], randomValue(newRand(0), len(val)-8))
	starts := make([]time.Duration, 0, maxPuts)
	putOK := make([]bool, 0, maxPuts)
	putRec := newRecorder(0)
	lim := newLimiter(o.PutRate)
	var timer *time.Timer
	var issued atomic.Uint64
	var okPuts atomic.Int64
	pctx, pcancel := context.WithCancelCause(ctx)
	defer pcancel(nil)
	stopMonitor := monitor(cfg, l.Name(), &issued, okPuts.Load, func() { pcancel(ErrStalled) })
	var deadline time.Time
	if cfg.Duration > 0 {
		deadline = time.Now().Add(cfg.Duration)
	}
	nOK, failed, wrongCluster := 0, 0, false
	for i := range maxPuts {
		if lim.wait(pctx, &timer) != nil {
			break
		}
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			break
		}
		issued.Store(uint64(i + 1))
		binary.BigEndian.PutUint64(val, uint64(i))
		v := string(val)
		octx, cancel := e.opContext(pctx)
		st := time.Since(base)
		resp, err := putc.Put(octx, key, v)
		cancel()
		if err != nil && pctx.Err() != nil {
			break
		}
		if err == nil {
			err = e.cluster.check(resp.Header)
		}
		starts = append(starts, st)
		putOK = append(putOK, err == nil)
		if err != nil {
			putRec.fail(err)
			failed++
			if errors.Is(err, ErrWrongCluster) {
				cfg.logf("%s; stopping", strings.TrimPrefix(err.Error(), "bench: "))
				wrongCluster = true
				break
			}
			if nOK == 0 && failed >= 10 {
				cfg.logf("the first %d puts all failed; stopping", failed)
				break
			}
			continue
		}
		nOK++
		okPuts.Add(1)
	}
	putsEnd := time.Since(base)
	stopMonitor()

	// Wait for the stragglers.
	straggle := time.Now().Add(o.Straggle)
	for ctx.Err() == nil && time.Now().Before(straggle) {
		all := true
		for _, w := range watchers {
			if w.received.Load() < int64(nOK) {
				all = false
				break
			}
		}
		if all {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	stopWatchers()

	recs := []*recorder{putRec}
	var missing, dups, outOfOrder, foreign int64
	end := putsEnd
	for _, w := range watchers {
		rec := newRecorder(nOK)
		for i, ok := range putOK {
			if !ok {
				continue
			}
			a := w.arrivals[i]
			if a == 0 {
				missing++
				continue
			}
			rec.ok(a - starts[i])
			end = max(end, a)
		}
		rec.errors, rec.errs = w.rec.errors, w.rec.errs
		recs = append(recs, rec)
		dups += w.duplicates
		outOfOrder += w.outOfOrder
		foreign += w.foreign
	}
	var elapsed time.Duration
	if len(starts) > 0 {
		elapsed = end - starts[0]
	}
	r := newReport(l.Name(), cfg, e.endpoints, recs, elapsed)
	r.Clients = o.Watchers
	r.Conns = len(conns)
	r.Total = cfg.Total * o.Watchers
	r.Extra["puts"] = int64(len(putOK))
	r.Extra["put_errors"] = putRec.errors
	r.Extra["watchers"] = int64(o.Watchers)
	r.Extra["streams"] = int64(o.Streams)
	r.Extra["missing_events"] = missing
	r.Extra["duplicate_events"] = dups
	r.Extra["out_of_order_events"] = outOfOrder
	if foreign > 0 {
		r.Extra["foreign_events"] = foreign
	}
	switch {
	case ctx.Err() != nil:
		return r, context.Cause(ctx)
	case wrongCluster:
		return r, ErrWrongCluster
	case nOK == 0 && failed > 0:
		return r, ErrAllFailed
	case errors.Is(context.Cause(pctx), ErrStalled):
		return r, fmt.Errorf("%w: no put succeeded for %v", ErrStalled, cfg.StallTimeout)
	case missing > 0:
		return r, fmt.Errorf("%w: %d of %d events did not arrive within %v of the last put", ErrMissingEvents, missing, nOK*o.Watchers, o.Straggle)
	}
	return r, nil
}
