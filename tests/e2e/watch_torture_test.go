package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/edgekv/edgekv/tests/framework"
	"github.com/edgekv/edgekv/tests/internal/watchcheck"
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
// revision, and checked on its own against the acknowledged writes. The
// watchers and the checks are tests/internal/watchcheck's, which the
// torture suite (tests/torture) runs in every scenario too.
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
		var watchers []*watchcheck.Watcher
		var wg sync.WaitGroup
		startWatcher := func(member int, bound bool, startRev int64) {
			var cli *clientv3.Client
			if bound {
				cli = framework.NewClient(t, c.Members[member].ClientURL)
			} else {
				cli = framework.NewClient(t, c.Endpoints()...)
			}
			w := &watchcheck.Watcher{
				Name:          fmt.Sprintf("member%d-bound=%v-from%d", member, bound, startRev),
				Prefix:        tortureWatchPrefix,
				StartRev:      startRev,
				ProgressEvery: tortureProgressEvery,
			}
			watchers = append(watchers, w)
			wg.Add(1)
			go func() {
				defer wg.Done()
				w.Run(ctx, cli)
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

		// The history, through a fresh watch from the base; then every
		// watcher must reach its end.
		wait, waitCancel := context.WithTimeout(ctx, 60*time.Second)
		defer waitCancel()
		history, err := watchcheck.ReadHistory(wait, framework.NewClient(t, c.Endpoints()...), tortureWatchPrefix, baseRev+1, finalRev)
		if err != nil {
			t.Fatal(err)
		}
		if err := watchcheck.WaitUntilSeen(wait, finalRev, watchers...); err != nil {
			t.Fatal(err)
		}
		cancel()
		wg.Wait()

		if err := watchcheck.CheckHistory(history, baseRev+1, finalRev); err != nil {
			t.Fatal(err)
		}
		checkAcknowledged(t, history, acks)
		if err := watchcheck.CheckReplay(history); err != nil {
			t.Fatal(err)
		}
		var progress, resumed int
		for _, w := range watchers {
			if _, err := w.Check(history, finalRev); err != nil {
				t.Fatal(err)
			}
			got := w.Record()
			progress += len(got.Progress)
			resumed += got.Restarts
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

// checkAcknowledged checks that the history holds every write a writer
// was told succeeded, at the revision it was told.
func checkAcknowledged(t *testing.T, history []*mvccpb.Event, acks *ackLog) {
	t.Helper()
	byRev := watchcheck.ByRevision(history)
	acks.mu.Lock()
	defer acks.mu.Unlock()
	for _, a := range acks.writes {
		got := map[string]string{}
		var dels []string
		for _, ev := range byRev[a.rev] {
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
