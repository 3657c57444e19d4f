package watchcheck

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
)

// Record is what one watcher received.
type Record struct {
	Events []*mvccpb.Event
	// Responses[i] is the index of the response Events[i] came in,
	// counted across restarts.
	Responses []int
	// Progress holds the progress notifications, in the order received.
	Progress []ProgressMark
	// Restarts counts the times the stream ended with an error and Run
	// opened it again from the revision after the last event.
	Restarts int
	// Errs holds the last few errors that ended the stream.
	Errs []string
}

// ProgressMark is a progress notification: its revision, and how many
// events had arrived before it.
type ProgressMark struct {
	Rev    int64
	Before int
}

// maxErrs bounds Record.Errs: a member without a leader refuses a watch
// that requires one twenty times a second.
const maxErrs = 5

// restartPause is how long Run waits before opening a stream again.
const restartPause = 50 * time.Millisecond

// Watcher records one watch stream. Set its fields before Run; they do
// not change after.
type Watcher struct {
	Name     string
	Prefix   string
	StartRev int64 // at least 1: the first revision wanted
	// ProgressEvery is how often Run asks for a progress notification
	// (RequestProgress); 0 never asks.
	ProgressEvery time.Duration

	mu         sync.Mutex
	rec        Record
	last       atomic.Int64 // revision of the last event
	progressed atomic.Int64 // highest revision of a progress notification
}

// LastRev is the revision of the last event received, 0 before any.
func (w *Watcher) LastRev() int64 { return w.last.Load() }

// Seen is the highest revision the watcher knows it has everything up to:
// its last event's, or a later progress notification's.
func (w *Watcher) Seen() int64 { return max(w.last.Load(), w.progressed.Load()) }

// Record returns a copy of what the watcher received so far.
func (w *Watcher) Record() Record {
	w.mu.Lock()
	defer w.mu.Unlock()
	r := w.rec
	r.Events = append([]*mvccpb.Event(nil), r.Events...)
	r.Responses = append([]int(nil), r.Responses...)
	r.Progress = append([]ProgressMark(nil), r.Progress...)
	r.Errs = append([]string(nil), r.Errs...)
	return r
}

// Run watches the prefix from StartRev through cli until ctx ends. The
// watch requires a leader, so a member cut off from the others ends it;
// Run then opens it again from the revision after the last event. Progress
// requests go on the watch's own gRPC stream (the client keys streams by
// the context's metadata), the one whose watchers the answer is about.
func (w *Watcher) Run(ctx context.Context, cli *clientv3.Client) {
	next := max(w.StartRev, 1)
	responses := 0
	var tick <-chan time.Time
	if w.ProgressEvery > 0 {
		ticker := time.NewTicker(w.ProgressEvery)
		defer ticker.Stop()
		tick = ticker.C
	}
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := cli.Watch(wctx, w.Prefix, clientv3.WithPrefix(), clientv3.WithPrevKV(),
			clientv3.WithRev(next), clientv3.WithProgressNotify())
	stream:
		for {
			select {
			case resp, ok := <-wch:
				if !ok {
					break stream
				}
				if err := resp.Err(); err != nil {
					w.mu.Lock()
					w.rec.Restarts++
					w.rec.Errs = append(w.rec.Errs, err.Error())
					if len(w.rec.Errs) > maxErrs {
						w.rec.Errs = w.rec.Errs[1:]
					}
					w.mu.Unlock()
					break stream
				}
				w.mu.Lock()
				if resp.IsProgressNotify() {
					w.rec.Progress = append(w.rec.Progress, ProgressMark{Rev: resp.Header.Revision, Before: len(w.rec.Events)})
					if resp.Header.Revision > w.progressed.Load() {
						w.progressed.Store(resp.Header.Revision)
					}
				}
				for _, ev := range resp.Events {
					w.rec.Events = append(w.rec.Events, proto.Clone(ev).(*mvccpb.Event))
					w.rec.Responses = append(w.rec.Responses, responses)
					next = ev.Kv.ModRevision + 1
					w.last.Store(ev.Kv.ModRevision)
				}
				w.mu.Unlock()
				responses++
			case <-tick:
				rctx, rcancel := context.WithTimeout(wctx, time.Second)
				_ = cli.RequestProgress(rctx) // a lost request only costs a mark
				rcancel()
			}
		}
		cancel()
		if ctx.Err() == nil {
			time.Sleep(restartPause)
		}
	}
}

// WaitUntilSeen waits until every watcher has seen rev (Seen), or ctx
// ends; then it returns an error naming the watchers behind and why their
// streams last ended.
func WaitUntilSeen(ctx context.Context, rev int64, ws ...*Watcher) error {
	for {
		var behind []string
		for _, w := range ws {
			if seen := w.Seen(); seen < rev {
				r := w.Record()
				behind = append(behind, fmt.Sprintf("%s (from revision %d) saw revisions up to %d, %d restarts, last errors %q",
					w.Name, w.StartRev, seen, r.Restarts, r.Errs))
			}
		}
		if len(behind) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("watchers did not reach revision %d: %s", rev, strings.Join(behind, "; "))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ReadHistory returns the events under prefix from revision from to
// revision to (inclusive), with prev_kv, read through a fresh watch; the
// cluster must have committed to. A stream that breaks resumes after its
// last event; the checks on the history (CheckHistory, CheckReplay) would
// show a duplicate or a gap that came of it.
func ReadHistory(ctx context.Context, cli *clientv3.Client, prefix string, from, to int64) ([]*mvccpb.Event, error) {
	if to < from {
		return nil, nil
	}
	w := &Watcher{Name: "history", Prefix: prefix, StartRev: from, ProgressEvery: 200 * time.Millisecond}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(rctx, cli)
	}()
	err := WaitUntilSeen(ctx, to, w)
	cancel()
	<-done
	if err != nil {
		return nil, fmt.Errorf("reading the history: %w", err)
	}
	var events []*mvccpb.Event
	for _, ev := range w.Record().Events {
		if ev.Kv.ModRevision <= to {
			events = append(events, ev)
		}
	}
	return events, nil
}
