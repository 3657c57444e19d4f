package e2e

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/edgekv/edgekv/tests/framework"
)

const (
	// durabilityPrefix holds every key TestDurability writes: unique keys
	// under u/, the overwritten ones under o/.
	durabilityPrefix = "/e2e/durability/"
	// durabilityWriters put concurrently, spread over the members.
	durabilityWriters = 16
	// overwriteKeys is how many keys the writers overwrite, all of them
	// each key, with values that only grow.
	overwriteKeys = 8
	// durabilityValuePad makes every value longer than the 64 bytes from
	// which edgekv's backend stores a pointer into the WAL instead of the
	// value (core/mvcc "Value pointers"), so that kills find pointers to
	// check.
	durabilityValuePad = "-" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
	// durabilityPutTimeout bounds one put; an answer later than that is an
	// unknown outcome, like no answer at all.
	durabilityPutTimeout = 2 * time.Second
)

// TestDurability_KillAllMidLoadLosesNoAcknowledgedWrite kills every member at
// once (SIGKILL, as in a power cut) while 16 writers are putting through all
// three members, restarts them all, and checks that nothing a client was told
// had succeeded is lost or rolled back; it does that twice, at two different
// points of the load. A put that got no answer (its member died, or it timed
// out) has an unknown outcome: it may or may not be there, but nothing that
// was never written may appear.
//
// Half the puts go to keys written once: an acknowledged one must be there
// with its value. The other half overwrite a few keys with values that only
// grow. Values are handed out when a put is sent, so concurrent puts may
// commit out of value order, and the check follows real time instead: the
// final value of a key must come from some put of it; if that put was
// acknowledged, no acknowledged put of the key may have been sent after its
// acknowledgement (that one would be ordered later and win); and a key with
// any acknowledged put must exist. A put with an unknown outcome may take
// effect at any time after it was sent (even after the restart, when a new
// leader commits what the old one had logged), but no later than the first
// linearizable read the restarted cluster serves: its leader has then
// committed an entry of its own term, which settles every entry before it.
// From then on it counts as acknowledged at that time.
func TestDurability_KillAllMidLoadLosesNoAcknowledgedWrite(t *testing.T) {
	forEachServer(t, func(t *testing.T, s server) {
		start := time.Now()
		c := framework.StartCluster(t, s.build(t), 3)
		h := newHistory()
		// Load for these long, then kill every member; two different points.
		for round, loadFor := range []time.Duration{1500 * time.Millisecond, 3200 * time.Millisecond} {
			st := runLoadAndKillAll(t, c, h, round, loadFor)
			t.Logf("round %d: killed all after %v of load: %d puts acknowledged, %d unknown (%d of them in flight at the kill)",
				round, loadFor, st.acked, st.unknown, st.inFlightAtKill)
			if st.acked < 50 {
				t.Fatalf("round %d: only %d puts were acknowledged before the kill; the test shows nothing", round, st.acked)
			}
			if st.inFlightAtKill == 0 {
				t.Fatalf("round %d: no put was in flight when the members died; the kill was not mid-load", round)
			}
			for i := range c.Members {
				c.Restart(i)
			}
			c.WaitReady(t)
			h.settle(time.Now())
			checkDurability(t, c, h, round)
		}
		t.Logf("%s: done in %v", s.name, time.Since(start).Round(time.Millisecond))
	})
}

// putRecord is one put the writers sent.
type putRecord struct {
	key, val string
	sent     time.Time // before the request was sent
	acked    bool      // the client got a success response
	ackedAt  time.Time // when it did
	// settledAt is when a put without an answer had surely either taken
	// effect or not: the restarted cluster served a linearizable read.
	settledAt time.Time
}

// doneBy is the time by which p had taken effect if it ever did, and false if
// there is none yet.
func (p *putRecord) doneBy() (time.Time, bool) {
	switch {
	case p.acked:
		return p.ackedAt, true
	case !p.settledAt.IsZero():
		return p.settledAt, true
	default:
		return time.Time{}, false
	}
}

// history is every put sent, by key.
type history struct {
	mu   sync.Mutex
	puts map[string][]*putRecord
	// next value of each overwritten key; values only grow.
	next [overwriteKeys]atomic.Int64
}

func newHistory() *history { return &history{puts: map[string][]*putRecord{}} }

func (h *history) record(p *putRecord) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.puts[p.key] = append(h.puts[p.key], p)
}

// settle marks every put so far without an answer as settled at time at.
func (h *history) settle(at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, puts := range h.puts {
		for _, p := range puts {
			if !p.acked && p.settledAt.IsZero() {
				p.settledAt = at
			}
		}
	}
}

type loadStats struct{ acked, unknown, inFlightAtKill int }

// runLoadAndKillAll starts the writers, SIGKILLs every member after loadFor
// while they keep putting, stops the writers once the members are dead, and
// returns what they saw. The members are left dead.
func runLoadAndKillAll(t *testing.T, c *framework.Cluster, h *history, round int, loadFor time.Duration) loadStats {
	t.Helper()
	clients := make([]*clientv3.Client, len(c.Members))
	for i := range c.Members {
		clients[i] = c.Client(t, i)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var (
		wg       sync.WaitGroup
		killedAt atomic.Int64 // UnixNano of the kill; 0 before
		acked    atomic.Int64
		unknown  atomic.Int64
		inFlight atomic.Int64 // sent before the kill, failed after it
	)
	for w := 0; w < durabilityWriters; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cli := clients[w%len(clients)]
			for n := 0; ctx.Err() == nil; n++ {
				p := &putRecord{}
				if n%2 == 0 {
					p.key = fmt.Sprintf("%su/r%d-w%02d-%06d", durabilityPrefix, round, w, n)
					p.val = fmt.Sprintf("r%d-w%d-n%d%s", round, w, n, durabilityValuePad)
				} else {
					k := (w + n/2) % overwriteKeys
					p.key = fmt.Sprintf("%so/%d", durabilityPrefix, k)
					p.val = fmt.Sprintf("%010d%s", h.next[k].Add(1), durabilityValuePad)
				}
				p.sent = time.Now()
				h.record(p) // before sending: a put that may take effect is always in the history
				pctx, cancel := context.WithTimeout(ctx, durabilityPutTimeout)
				_, err := cli.Put(pctx, p.key, p.val)
				cancel()
				if err == nil {
					h.mu.Lock()
					p.acked, p.ackedAt = true, time.Now()
					h.mu.Unlock()
					acked.Add(1)
					continue
				}
				unknown.Add(1)
				if k := killedAt.Load(); k != 0 && p.sent.UnixNano() < k {
					inFlight.Add(1)
				}
				time.Sleep(20 * time.Millisecond) // the member is down or busy; do not spin
			}
		}()
	}
	time.Sleep(loadFor)
	killedAt.Store(time.Now().UnixNano())
	c.KillAll()
	// Let the writers see their members die, then stop them; every request
	// they sent has failed or succeeded by the time wg.Wait returns.
	time.Sleep(300 * time.Millisecond)
	stop()
	wg.Wait()
	for _, cli := range clients {
		cli.Close()
	}
	return loadStats{acked: int(acked.Load()), unknown: int(unknown.Load()), inFlightAtKill: int(inFlight.Load())}
}

// checkDurability reads everything under durabilityPrefix through each
// member, linearizably, and checks it against the history: every member
// returns the same, and that is a possible outcome of the puts sent.
func checkDurability(t *testing.T, c *framework.Cluster, h *history, round int) {
	t.Helper()
	var (
		first     map[string]string
		firstName string
	)
	for i, m := range c.Members {
		cli := c.Client(t, i)
		got := rangeAll(t, cli, m.Name, durabilityPrefix)
		cli.Close()
		if first == nil {
			first, firstName = got, m.Name
			continue
		}
		if diff := diffStates(first, got); diff != "" {
			t.Fatalf("after kill %d: %s and %s disagree:\n%s", round, firstName, m.Name, diff)
		}
	}

	h.mu.Lock()
	problems, ackedPuts := h.impossible(first)
	h.mu.Unlock()
	if len(problems) > 0 {
		if len(problems) > 30 {
			problems = append(problems[:30], fmt.Sprintf("... and %d more", len(problems)-30))
		}
		t.Fatalf("after kill %d: %d keys present, %d puts acknowledged so far; not a possible outcome:\n%s",
			round, len(first), ackedPuts, strings.Join(problems, "\n"))
	}
	t.Logf("after kill %d: all %d members agree on %d keys; every one of %d acknowledged puts is there or overwritten",
		round, len(c.Members), len(first), ackedPuts)
}

// impossible returns what in state (key to value) no order of the puts in h
// can produce, sorted, and how many puts were acknowledged. Call it with h.mu
// held.
func (h *history) impossible(state map[string]string) (problems []string, ackedPuts int) {
	for key, val := range state {
		if _, ok := h.puts[key]; !ok {
			problems = append(problems, fmt.Sprintf("%s=%q: never written", key, val))
		}
	}
	for key, puts := range h.puts {
		var lastSentAcked *putRecord // the acknowledged put of key sent last
		for _, p := range puts {
			if p.acked {
				ackedPuts++
				if lastSentAcked == nil || p.sent.After(lastSentAcked.sent) {
					lastSentAcked = p
				}
			}
		}
		val, ok := state[key]
		if !ok {
			if lastSentAcked != nil {
				problems = append(problems, fmt.Sprintf("%s: missing, but %q was acknowledged", key, lastSentAcked.val))
			}
			continue
		}
		var final *putRecord
		for _, p := range puts {
			if p.val == val {
				final = p
			}
		}
		if final == nil {
			problems = append(problems, fmt.Sprintf("%s=%q: a value never written to it", key, val))
			continue
		}
		if done, ok := final.doneBy(); ok && lastSentAcked != nil && lastSentAcked.sent.After(done) {
			how := "acknowledged"
			if !final.acked {
				how = "settled unacknowledged"
			}
			problems = append(problems, fmt.Sprintf(
				"%s=%q: rolled back; %q was sent %v after %q was %s, and acknowledged",
				key, val, lastSentAcked.val, lastSentAcked.sent.Sub(done), val, how))
		}
	}
	sort.Strings(problems)
	return problems, ackedPuts
}

// rangeAll reads every key under prefix through cli, linearizably, in pages
// at one revision.
func rangeAll(t *testing.T, cli *clientv3.Client, member, prefix string) map[string]string {
	t.Helper()
	const page = 1000
	got := map[string]string{}
	end := clientv3.GetPrefixRangeEnd(prefix)
	from := prefix
	var rev int64
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(page), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := cli.Get(ctx, from, opts...)
		cancel()
		if err != nil {
			t.Fatalf("range %s from %q via %s: %v", prefix, from, member, err)
		}
		rev = resp.Header.Revision
		for _, kv := range resp.Kvs {
			got[string(kv.Key)] = string(kv.Value)
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return got
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// diffStates describes how two key-value maps differ, at most 20 lines.
func diffStates(a, b map[string]string) string {
	var lines []string
	for k, v := range a {
		if w, ok := b[k]; !ok {
			lines = append(lines, fmt.Sprintf("%s: %q vs missing", k, v))
		} else if v != w {
			lines = append(lines, fmt.Sprintf("%s: %q vs %q", k, v, w))
		}
	}
	for k, w := range b {
		if _, ok := a[k]; !ok {
			lines = append(lines, fmt.Sprintf("%s: missing vs %q", k, w))
		}
	}
	sort.Strings(lines)
	if len(lines) > 20 {
		lines = append(lines[:20], fmt.Sprintf("... and %d more", len(lines)-20))
	}
	return strings.Join(lines, "\n")
}
