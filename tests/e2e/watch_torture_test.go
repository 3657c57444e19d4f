package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/edgekv/edgekv/tests/framework"
)

const (
	tortureWatchPrefix = "/e2e/watchtorture/"
	tortureWatchKeys   = 16
	tortureWriters     = 4
	// tortureWatchers watch through each member: one bound to that member
	// alone (it waits out the member's death and resumes there), one
	// through every endpoint (it fails over to another member).
	tortureWatchersPerMember = 2
	tortureKills             = 4
	tortureProgressEvery     = 300 * time.Millisecond
)

// TestWatch_GuaranteesHoldWhileMembersAreKilled runs writers (puts, deletes
// and multi-key txns) and watchers (prefix, prev_kv, progress_notify, from
// several start revisions) through all three members while members are
// SIGKILLed and restarted, then checks every watch stream against the
// history the cluster committed:
//
//   - ordered, no duplicates, no gaps: a watcher's events are exactly the
//     history's events from its start revision to the end, in order, though
//     its stream broke and the client resumed it (from the last revision it
//     saw, on the same member or another);
//   - atomic: the events of one revision (a txn's writes) arrive in one
//     response;
//   - correct: every event's key-value and prev_kv match a replay of the
//     history (create revision, mod revision, version, value, lease);
//   - progress notifications (periodic, and asked for by the client) are
//     never ahead of the events delivered: after one at revision R, no event
//     at or below R arrives;
//   - the history itself holds every write a writer was told succeeded, at
//     the revision it was told.
//
// The history is read at the end through a fresh watch from the first
// revision, and checked on its own against the acknowledged writes.
func TestWatch_GuaranteesHoldWhileMembersAreKilled(t *testing.T) {
	forEachServer(t, func(t *testing.T, s server) {
		c := framework.StartCluster(t, s.build(t), 3,
			framework.WithFlags("--watch-progress-notify-interval="+tortureProgressEvery.String()))
		all := c.ClientAll(t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()

		base, err := all.Get(ctx, "/e2e/watchtorture-base")
		if err != nil {
			t.Fatalf("base revision: %v", err)
		}
		baseRev := base.Header.Revision

		acks := &ackLog{}
		var writers sync.WaitGroup
		stopWriters := make(chan struct{})
		for w := range tortureWriters {
			writers.Add(1)
			go func() {
				defer writers.Done()
				runTortureWriter(ctx, c, w, acks, stopWriters)
			}()
		}

		// Watchers start at different points: from the base (replay of
		// everything), and later ones from "now" and from a past revision.
		var watchers []*tortureWatcher
		var wg sync.WaitGroup
		startWatcher := func(member int, bound bool, startRev int64) {
			var cli *clientv3.Client
			if bound {
				cli = framework.NewClient(t, c.Members[member].ClientURL)
			} else {
				cli = framework.NewClient(t, c.Endpoints()...)
			}
			tw := &tortureWatcher{name: fmt.Sprintf("member%d-bound=%v-from%d", member, bound, startRev), startRev: startRev}
			watchers = append(watchers, tw)
			wg.Add(1)
			go func() {
				defer wg.Done()
				tw.run(ctx, cli)
			}()
		}
		for i := range c.Members {
			startWatcher(i, true, baseRev+1)
		}
		time.Sleep(500 * time.Millisecond)
		mid, err := all.Get(ctx, "/e2e/watchtorture-base")
		if err != nil {
			t.Fatalf("revision: %v", err)
		}
		for i := range c.Members {
			startWatcher(i, false, (baseRev+1+mid.Header.Revision)/2)
		}

		// The nemesis: kill a member (the leader every other time), let the
		// load go on without it, restart it.
		rng := rand.New(rand.NewPCG(1, 2))
		for k := range tortureKills {
			victim := rng.IntN(len(c.Members))
			if k%2 == 0 {
				victim = c.Leader(t)
			}
			time.Sleep(700 * time.Millisecond)
			c.Kill(victim)
			time.Sleep(700 * time.Millisecond)
			c.Restart(victim)
			c.WaitReady(t)
		}
		time.Sleep(500 * time.Millisecond)
		close(stopWriters)
		writers.Wait()

		// The end of the history: every writer has stopped, so a
		// linearizable read's revision is the last one.
		final, err := all.Get(ctx, "/e2e/watchtorture-base")
		if err != nil {
			t.Fatalf("final revision: %v", err)
		}
		finalRev := final.Header.Revision
		if finalRev <= baseRev+100 {
			t.Fatalf("only %d revisions were written; the test shows nothing", finalRev-baseRev)
		}

		// The history, through a fresh watch from the base.
		ref := &tortureWatcher{name: "reference", startRev: baseRev + 1}
		refDone := make(chan struct{})
		go func() {
			defer close(refDone)
			ref.run(ctx, framework.NewClient(t, c.Endpoints()...))
		}()
		deadline := time.Now().Add(60 * time.Second)
		for _, tw := range append([]*tortureWatcher{ref}, watchers...) {
			for tw.lastRev() < finalRev {
				if time.Now().After(deadline) {
					t.Fatalf("%s: saw revisions up to %d, the last one is %d", tw.name, tw.lastRev(), finalRev)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		cancel()
		wg.Wait()
		<-refDone

		history := ref.snapshot()
		checkHistory(t, history, acks, baseRev, finalRev)
		checkReplay(t, history.events)
		var progress, resumed int
		for _, tw := range watchers {
			checkWatchStream(t, tw, history, finalRev)
			got := tw.snapshot()
			progress += len(got.progress)
			resumed += got.restarts
		}
		if progress == 0 {
			t.Fatalf("no watcher got a progress notification; the test shows nothing about them")
		}
		t.Logf("%s: %d revisions, %d acknowledged writes, %d watchers, %d progress notifications, %d stream restarts, %d kills",
			s.name, finalRev-baseRev, acks.len(), len(watchers), progress, resumed, tortureKills)
	})
}

// ackedWrite is a write a writer was told succeeded.
type ackedWrite struct {
	rev     int64
	puts    map[string]string // key -> value
	deletes []string          // keys deleted (that existed)
}

type ackLog struct {
	mu     sync.Mutex
	writes []ackedWrite
}

func (a *ackLog) add(w ackedWrite) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.writes = append(a.writes, w)
}

func (a *ackLog) len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.writes)
}

// runTortureWriter writes until stop, through one member at a time (moving
// on when it fails), so that kills cut writes short.
func runTortureWriter(ctx context.Context, c *framework.Cluster, w int, acks *ackLog, stop <-chan struct{}) {
	rng := rand.New(rand.NewPCG(uint64(w), 7))
	clis := make([]*clientv3.Client, len(c.Members))
	for i, m := range c.Members {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.ClientURL}, DialTimeout: 2 * time.Second})
		if err != nil {
			panic(err)
		}
		defer cli.Close()
		clis[i] = cli
	}
	key := func() string { return fmt.Sprintf("%sk%02d", tortureWatchPrefix, rng.IntN(tortureWatchKeys)) }
	member := w % len(clis)
	for seq := 0; ; seq++ {
		select {
		case <-stop:
			return
		default:
		}
		cli := clis[member]
		octx, cancel := context.WithTimeout(ctx, 2*time.Second)
		val := fmt.Sprintf("w%d-%d", w, seq)
		var err error
		switch p := rng.IntN(100); {
		case p < 65:
			k := key()
			var r *clientv3.PutResponse
			if r, err = cli.Put(octx, k, val); err == nil {
				acks.add(ackedWrite{rev: r.Header.Revision, puts: map[string]string{k: val}})
			}
		case p < 80:
			k := key()
			var r *clientv3.DeleteResponse
			if r, err = cli.Delete(octx, k); err == nil && r.Deleted > 0 {
				acks.add(ackedWrite{rev: r.Header.Revision, deletes: []string{k}})
			}
		default:
			// A txn writing two or three keys in one revision.
			puts := map[string]string{}
			var ops []clientv3.Op
			for range 2 + rng.IntN(2) {
				k := key()
				if _, dup := puts[k]; dup {
					continue
				}
				puts[k] = val
				ops = append(ops, clientv3.OpPut(k, val))
			}
			var r *clientv3.TxnResponse
			if r, err = cli.Txn(octx).Then(ops...).Commit(); err == nil {
				acks.add(ackedWrite{rev: r.Header.Revision, puts: puts})
			}
		}
		cancel()
		if err != nil {
			member = (member + 1) % len(clis)
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// watchRecord is what one watcher received.
type watchRecord struct {
	events []*mvccpb.Event
	// response[i] is the index of the response events[i] came in.
	response []int
	// progress[i] is a progress notification's revision, and how many
	// events had arrived before it.
	progress []progressMark
	// restarts counts the times the stream ended with an error and was
	// opened again from the last revision seen.
	restarts int
	errs     []string
}

type progressMark struct {
	rev    int64
	before int
}

type tortureWatcher struct {
	name     string
	startRev int64

	mu   sync.Mutex
	rec  watchRecord
	last atomic.Int64
}

func (tw *tortureWatcher) lastRev() int64 { return tw.last.Load() }

func (tw *tortureWatcher) snapshot() watchRecord {
	tw.mu.Lock()
	defer tw.mu.Unlock()
	return tw.rec
}

// run watches the prefix from startRev until ctx ends, asking for progress
// now and then. The client resumes a broken stream by itself; if the
// channel closes with an error, run opens a new watch from the revision
// after the last event it got, as an application would.
func (tw *tortureWatcher) run(ctx context.Context, cli *clientv3.Client) {
	defer cli.Close()
	next := tw.startRev
	responses := 0
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := cli.Watch(wctx, tortureWatchPrefix, clientv3.WithPrefix(), clientv3.WithPrevKV(),
			clientv3.WithRev(next), clientv3.WithProgressNotify())
		ticker := time.NewTicker(tortureProgressEvery)
	stream:
		for {
			select {
			case resp, ok := <-wch:
				if !ok {
					break stream
				}
				if err := resp.Err(); err != nil {
					tw.mu.Lock()
					tw.rec.errs = append(tw.rec.errs, err.Error())
					tw.rec.restarts++
					tw.mu.Unlock()
					break stream
				}
				tw.mu.Lock()
				if resp.IsProgressNotify() {
					tw.rec.progress = append(tw.rec.progress, progressMark{rev: resp.Header.Revision, before: len(tw.rec.events)})
				}
				for _, ev := range resp.Events {
					tw.rec.events = append(tw.rec.events, proto.Clone(ev).(*mvccpb.Event))
					tw.rec.response = append(tw.rec.response, responses)
					next = ev.Kv.ModRevision + 1
					tw.last.Store(ev.Kv.ModRevision)
				}
				tw.mu.Unlock()
				responses++
			case <-ticker.C:
				rctx, rcancel := context.WithTimeout(ctx, time.Second)
				_ = cli.RequestProgress(rctx)
				rcancel()
			}
		}
		ticker.Stop()
		cancel()
		if ctx.Err() == nil {
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// checkHistory checks the reference stream on its own: revisions in order,
// contiguous where writes were acknowledged, and holding every acknowledged
// write at its revision.
func checkHistory(t *testing.T, h watchRecord, acks *ackLog, baseRev, finalRev int64) {
	t.Helper()
	byRev := map[int64][]*mvccpb.Event{}
	var prev int64
	for _, ev := range h.events {
		r := ev.Kv.ModRevision
		if r < prev {
			t.Fatalf("history goes back from revision %d to %d", prev, r)
		}
		prev = r
		byRev[r] = append(byRev[r], ev)
	}
	for r := baseRev + 1; r <= finalRev; r++ {
		if len(byRev[r]) == 0 {
			t.Fatalf("history has no event at revision %d (between %d and %d, every revision is a write to the prefix)", r, baseRev, finalRev)
		}
	}
	acks.mu.Lock()
	defer acks.mu.Unlock()
	for _, a := range acks.writes {
		evs := byRev[a.rev]
		got := map[string]string{}
		var dels []string
		for _, ev := range evs {
			if ev.Type == mvccpb.PUT {
				got[string(ev.Kv.Key)] = string(ev.Kv.Value)
			} else {
				dels = append(dels, string(ev.Kv.Key))
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(a.puts) && !(len(a.puts) == 0 && len(got) == 0) {
			t.Fatalf("acknowledged write at revision %d put %v; the history has %v there", a.rev, a.puts, got)
		}
		if strings.Join(dels, ",") != strings.Join(a.deletes, ",") {
			t.Fatalf("acknowledged write at revision %d deleted %v; the history has %v there", a.rev, a.deletes, dels)
		}
	}
}

// checkWatchStream checks one watcher against the history.
func checkWatchStream(t *testing.T, tw *tortureWatcher, history watchRecord, finalRev int64) {
	t.Helper()
	got := tw.snapshot()
	var want []*mvccpb.Event
	for _, ev := range history.events {
		if ev.Kv.ModRevision >= tw.startRev && ev.Kv.ModRevision <= finalRev {
			want = append(want, ev)
		}
	}
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("%s (from revision %d, %d restarts, errors %v): %s", tw.name, tw.startRev, got.restarts, got.errs, fmt.Sprintf(format, args...))
	}
	if len(got.events) < len(want) {
		fail("got %d events, the history has %d from its start", len(got.events), len(want))
	}
	for i, ev := range want {
		g := got.events[i]
		if !proto.Equal(g, ev) {
			fail("event %d is %v, the history has %v (duplicate, gap, reorder or wrong content)", i, eventString(g), eventString(ev))
		}
	}
	for i := len(want); i < len(got.events); i++ {
		if got.events[i].Kv.ModRevision <= finalRev {
			fail("extra event %v", eventString(got.events[i]))
		}
	}
	// Atomic: one revision, one response.
	for i := 1; i < len(want); i++ {
		if got.events[i].Kv.ModRevision == got.events[i-1].Kv.ModRevision && got.response[i] != got.response[i-1] {
			fail("the events of revision %d came in two responses", got.events[i].Kv.ModRevision)
		}
	}
	// Progress never ahead of the events delivered.
	for _, p := range got.progress {
		if p.before < len(got.events) && got.events[p.before].Kv.ModRevision <= p.rev {
			fail("progress notification at revision %d came before event %v", p.rev, eventString(got.events[p.before]))
		}
	}
}

// checkReplay replays the history from the base revision, when no key of
// the prefix existed, and checks every event's key-value (create revision,
// version) and prev_kv against the replay. Watchers' events are equal to
// the history's, prev_kv included, so this checks theirs too.
func checkReplay(t *testing.T, events []*mvccpb.Event) {
	t.Helper()
	state := map[string]*mvccpb.KeyValue{}
	for _, ev := range events {
		k := string(ev.Kv.Key)
		prev := state[k]
		if !proto.Equal(ev.PrevKv, prev) && (ev.PrevKv != nil || prev != nil) {
			t.Fatalf("event %v has prev_kv %v, the replay has %v", eventString(ev), ev.PrevKv, prev)
		}
		switch ev.Type {
		case mvccpb.PUT:
			wantCreate, wantVersion := ev.Kv.ModRevision, int64(1)
			if prev != nil {
				wantCreate, wantVersion = prev.CreateRevision, prev.Version+1
			}
			if ev.Kv.CreateRevision != wantCreate || ev.Kv.Version != wantVersion {
				t.Fatalf("event %v: create revision %d version %d, the replay gives %d and %d (prev %v)",
					eventString(ev), ev.Kv.CreateRevision, ev.Kv.Version, wantCreate, wantVersion, prev)
			}
			state[k] = ev.Kv
		case mvccpb.DELETE:
			if prev == nil {
				t.Fatalf("delete event %v of a key that did not exist", eventString(ev))
			}
			delete(state, k)
		}
	}
}

func eventString(ev *mvccpb.Event) string {
	if ev == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%s %q@%d=%q(prev %v)", ev.Type, ev.Kv.Key, ev.Kv.ModRevision, ev.Kv.Value, ev.PrevKv != nil)
}
