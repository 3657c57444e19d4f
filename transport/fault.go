package transport

import (
	"container/heap"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/edgekv/edgekv/core/raftnode"
)

// ErrBadFaultConfig: ParseFaultConfig or NewFaults was given an unusable
// fault configuration.
var ErrBadFaultConfig = errors.New("transport: bad fault config")

// FaultConfig says what Faults does to each outgoing Raft message.
type FaultConfig struct {
	// MinDelay and MaxDelay bound the delay of each message, drawn
	// uniformly from [MinDelay, MaxDelay]. Messages get reordered: one
	// sent after another may draw a shorter delay and overtake it.
	MinDelay, MaxDelay time.Duration
	// Drop is the fraction of messages dropped, in [0, 1). A MsgSnap is
	// never dropped: Raft waits for a report on every snapshot it sends.
	Drop float64
	// Seed seeds the random choices; 0 picks a random seed.
	Seed uint64
}

// ParseFaultConfig parses the test builds' EDGEKV_FAULT_DELAY, a comma
// separated list of a delay, either one duration or a range "MIN-MAX",
// and the options drop=FRACTION and seed=N; e.g. "5ms-40ms,drop=0.05",
// "20ms", "drop=0.1".
func ParseFaultConfig(s string) (FaultConfig, error) {
	var c FaultConfig
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		key, val, hasKey := strings.Cut(item, "=")
		var err error
		switch {
		case !hasKey:
			lo, hi, isRange := strings.Cut(item, "-")
			if c.MinDelay, err = time.ParseDuration(lo); err == nil {
				c.MaxDelay = c.MinDelay
				if isRange {
					c.MaxDelay, err = time.ParseDuration(hi)
				}
			}
		case key == "drop":
			c.Drop, err = strconv.ParseFloat(val, 64)
		case key == "seed":
			c.Seed, err = strconv.ParseUint(val, 10, 64)
		default:
			err = fmt.Errorf("unknown option %q", key)
		}
		if err != nil {
			return FaultConfig{}, fmt.Errorf("%w: %q: %v", ErrBadFaultConfig, item, err)
		}
	}
	if err := c.validate(); err != nil {
		return FaultConfig{}, err
	}
	return c, nil
}

func (c FaultConfig) validate() error {
	switch {
	case c.MinDelay < 0 || c.MaxDelay < c.MinDelay:
		return fmt.Errorf("%w: delay %v-%v", ErrBadFaultConfig, c.MinDelay, c.MaxDelay)
	case !(c.Drop >= 0 && c.Drop < 1): // also rejects NaN
		return fmt.Errorf("%w: drop %v is not in [0, 1)", ErrBadFaultConfig, c.Drop)
	}
	return nil
}

func (c FaultConfig) String() string {
	return fmt.Sprintf("%v-%v,drop=%g", c.MinDelay, c.MaxDelay, c.Drop)
}

// FaultStats counts what Faults did.
type FaultStats struct {
	Delayed uint64 // messages passed on after their delay
	Dropped uint64 // messages dropped on purpose, or still pending at Close
	Passed  uint64 // messages passed on at once while inactive
}

// Faults wraps a raftnode.Transport for tests: it delays each message
// passed to Send by a random time and drops a fraction of them, as a slow
// and lossy network would, so that Raft sees its messages reordered and
// lost. One goroutine passes the messages on to the wrapped transport's
// Send once they are due, in the order they fall due. Send never blocks,
// like the Send it wraps. Faults is for tests only: edgekv wires it in only
// when built with the tag edgekv_faults (cmd/edgekv/faults_on.go).
type Faults struct {
	next raftnode.Transport
	cfg  FaultConfig

	delayed, dropped, passed atomic.Uint64
	inactive                 atomic.Bool

	mu      sync.Mutex
	rng     *rand.Rand
	pending dueHeap
	seq     uint64 // tie-breaker: equal due times keep the order of Send
	closed  bool

	kick chan struct{}
	stop chan struct{}
	done chan struct{}
}

var _ raftnode.Transport = (*Faults)(nil)

// NewFaults starts delaying and dropping the messages sent through it
// before they reach next. Close stops it.
func NewFaults(next raftnode.Transport, cfg FaultConfig) (*Faults, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	f := &Faults{
		next: next,
		cfg:  cfg,
		rng:  rand.New(rand.NewPCG(seed, 0x6661756c74)),
		kick: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go f.loop()
	return f, nil
}

// Send schedules each message for delivery after its delay, or drops it.
// Like Transport.Send it takes ownership of msgs.
func (f *Faults) Send(msgs []*raftpb.Message) {
	now := time.Now()
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		f.dropped.Add(uint64(len(msgs)))
		return
	}
	if f.inactive.Load() {
		f.mu.Unlock()
		f.passed.Add(uint64(len(msgs)))
		f.next.Send(msgs)
		return
	}
	earliest := f.pending.earliest()
	for _, m := range msgs {
		if m == nil {
			continue
		}
		delay, drop := f.plan(m)
		if drop {
			f.dropped.Add(1)
			continue
		}
		f.seq++
		heap.Push(&f.pending, due{at: now.Add(delay), seq: f.seq, m: m})
	}
	moved := f.pending.earliest() != earliest
	f.mu.Unlock()
	if moved {
		select {
		case f.kick <- struct{}{}:
		default:
		}
	}
}

// plan draws m's fate; f.mu is held.
func (f *Faults) plan(m *raftpb.Message) (delay time.Duration, drop bool) {
	if f.cfg.Drop > 0 && m.GetType() != raftpb.MsgSnap && f.rng.Float64() < f.cfg.Drop {
		return 0, true
	}
	delay = f.cfg.MinDelay
	if spread := f.cfg.MaxDelay - f.cfg.MinDelay; spread > 0 {
		delay += time.Duration(f.rng.Int64N(int64(spread) + 1))
	}
	return delay, false
}

// SetActive turns the faults on (as NewFaults starts) or off.
func (f *Faults) SetActive(on bool) { f.inactive.Store(!on) }

// Active reports whether the faults are on.
func (f *Faults) Active() bool { return !f.inactive.Load() }

// Stats returns what Faults did so far.
func (f *Faults) Stats() FaultStats {
	return FaultStats{Delayed: f.delayed.Load(), Dropped: f.dropped.Load(), Passed: f.passed.Load()}
}

// Close stops the delivery goroutine and drops the messages still
// pending, counting them as dropped; later Sends drop everything. It does
// not close the wrapped transport. Close is idempotent.
func (f *Faults) Close() {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		<-f.done
		return
	}
	f.closed = true
	f.dropped.Add(uint64(f.pending.Len()))
	f.pending = nil
	f.mu.Unlock()
	close(f.stop)
	<-f.done
}

// loop passes the messages on to next as they fall due.
func (f *Faults) loop() {
	defer close(f.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var batch []*raftpb.Message
	for {
		f.mu.Lock()
		now := time.Now()
		batch = batch[:0]
		for f.pending.Len() > 0 && !f.pending[0].at.After(now) {
			batch = append(batch, heap.Pop(&f.pending).(due).m)
		}
		wait := time.Hour
		if f.pending.Len() > 0 {
			wait = f.pending[0].at.Sub(now)
		}
		f.mu.Unlock()
		if len(batch) > 0 {
			f.delayed.Add(uint64(len(batch)))
			f.next.Send(batch)
			batch = make([]*raftpb.Message, 0, cap(batch)) // next owns the slice now
			continue                                       // sending took time: look again before sleeping
		}
		timer.Reset(wait)
		select {
		case <-f.stop:
			return
		case <-f.kick: // an earlier message; Reset above drops the old deadline
		case <-timer.C:
		}
	}
}

// due is a message waiting for its time.
type due struct {
	at  time.Time
	seq uint64
	m   *raftpb.Message
}

// dueHeap orders pending messages by due time, then by Send order.
type dueHeap []due

func (h dueHeap) Len() int { return len(h) }
func (h dueHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].seq < h[j].seq
}
func (h dueHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)   { *h = append(*h, x.(due)) }
func (h *dueHeap) Pop() any {
	old := *h
	d := old[len(old)-1]
	old[len(old)-1] = due{}
	*h = old[:len(old)-1]
	return d
}

// earliest is the seq of the first message due, or 0 if none.
func (h dueHeap) earliest() uint64 {
	if len(h) == 0 {
		return 0
	}
	return h[0].seq
}
