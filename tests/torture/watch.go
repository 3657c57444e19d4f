package torture

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/edgekv/edgekv/tests/framework"
	"github.com/edgekv/edgekv/tests/internal/watchcheck"
)

const (
	// watchProgressEvery is the members' --watch-progress-notify-interval
	// and how often each watcher asks for progress besides.
	watchProgressEvery = 300 * time.Millisecond
	// watchCatchUp bounds how long the watchers may take, once the
	// cluster has converged, to reach its last revision.
	watchCatchUp = 30 * time.Second
)

// watchers watch the workload's prefix through clients bound to each
// member for the whole scenario (watchcheck.Watcher): one per member from
// the first revision, started with the workload, and one per member
// started halfway through the run from half the highest revision the
// workload had seen by then, so that it begins by catching up on the past
// while the nemesis runs.
type watchers struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// late is closed once the late watchers have started (or never will).
	late chan struct{}

	mu  sync.Mutex
	all []*watchcheck.Watcher
}

// startWatchers starts the watchers; they stop in t.Cleanup at the latest,
// before their clients close and the members stop.
func startWatchers(t *testing.T, c *framework.Cluster, rec *recorder, dur time.Duration) *watchers {
	t.Helper()
	early := make([]*clientv3.Client, len(c.Members))
	late := make([]*clientv3.Client, len(c.Members))
	for i, m := range c.Members {
		early[i] = framework.NewClient(t, m.ClientURL)
		late[i] = framework.NewClient(t, m.ClientURL)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ws := &watchers{cancel: cancel, late: make(chan struct{})}
	t.Cleanup(ws.stop) // registered after the clients': runs before them
	for i, m := range c.Members {
		ws.start(ctx, m.Name+"-from1", 1, early[i])
	}
	ws.wg.Add(1)
	go func() {
		defer ws.wg.Done()
		defer close(ws.late)
		select {
		case <-ctx.Done():
			return
		case <-time.After(dur / 2):
		}
		from := rec.lastRevision()/2 + 1
		for i, m := range c.Members {
			ws.start(ctx, fmt.Sprintf("%s-from%d", m.Name, from), from, late[i])
		}
	}()
	return ws
}

func (ws *watchers) start(ctx context.Context, name string, from int64, cli *clientv3.Client) {
	w := &watchcheck.Watcher{Name: name, Prefix: keyPrefix, StartRev: from, ProgressEvery: watchProgressEvery}
	ws.mu.Lock()
	ws.all = append(ws.all, w)
	ws.mu.Unlock()
	ws.wg.Add(1)
	go func() {
		defer ws.wg.Done()
		w.Run(ctx, cli)
	}()
}

func (ws *watchers) stop() {
	ws.cancel()
	ws.wg.Wait()
}

// watchVerdict is what the watchers showed.
type watchVerdict struct {
	watchers, checked, progress, restarts int
	// problems are the violations and the watchers that did not catch up.
	problems []string
}

// check waits until every watcher has seen the last revision (watchCatchUp
// at most), stops them, and checks the history on its own (an event at
// every revision from 2 to last, a consistent replay) and every watcher's
// stream against it. A failing watcher's record, and the history, are
// written next to out.
func (ws *watchers) check(t *testing.T, history []*mvccpb.Event, last int64, out string) watchVerdict {
	t.Helper()
	<-ws.late
	ws.mu.Lock()
	all := ws.all
	ws.mu.Unlock()
	var v watchVerdict
	v.watchers = len(all)
	ctx, cancel := context.WithTimeout(context.Background(), watchCatchUp)
	err := watchcheck.WaitUntilSeen(ctx, last, all...)
	cancel()
	ws.stop()
	if err != nil {
		v.problems = append(v.problems, fmt.Sprintf("after the heal, within %v: %v", watchCatchUp, err))
	}
	if err := watchcheck.CheckHistory(history, 2, last); err != nil {
		v.problems = append(v.problems, err.Error())
	}
	if err := watchcheck.CheckReplay(history); err != nil {
		v.problems = append(v.problems, err.Error())
	}
	for _, w := range all {
		n, err := w.Check(history, last)
		v.checked += n
		rec := w.Record()
		v.progress += len(rec.Progress)
		v.restarts += rec.Restarts
		if err != nil {
			v.problems = append(v.problems, err.Error())
			save(t, out+"-watch-"+w.Name+".txt", watchcheck.Format(rec))
		}
	}
	if len(v.problems) > 0 {
		save(t, out+"-watch-history.txt", watchcheck.Format(watchcheck.Record{Events: history}))
	}
	return v
}

// save writes a file of a failed scenario, saying where.
func save(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Logf("saving %s: %v", path, err)
		return
	}
	t.Logf("saved %s", path)
}
