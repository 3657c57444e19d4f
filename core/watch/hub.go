package watch

import (
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/edgekv/edgekv/core/mvcc"
)

// Source is the history a Hub catches watchers up from. *mvcc.Store
// implements it. Its methods are called from the hub's goroutines,
// concurrently with the writer that calls Notify.
type Source interface {
	// History returns the events with revision in [startRev, endRev), in
	// revision order, at most limit of them but never splitting a
	// revision, and the revision to continue from; ErrCompacted when
	// startRev is below the compaction revision. Events carry no PrevKv.
	History(startRev, endRev int64, limit int) (events []*mvccpb.Event, next int64, err error)
	// Range reads keys; the hub reads a key at ModRevision-1 to fill the
	// PrevKv of a replayed event for a watcher that asked prev_kv.
	Range(r *pb.RangeRequest) (*pb.RangeResponse, error)
	// CompactRev is the revision of the last compaction.
	CompactRev() int64
}

var _ Source = (*mvcc.Store)(nil)

// Defaults, as etcd.
const (
	// DefaultProgressInterval is etcd's --watch-progress-notify-interval.
	DefaultProgressInterval = 10 * time.Minute
	// MinProgressInterval is the shortest progress interval; a shorter
	// one is raised to it, as etcd does.
	MinProgressInterval = 100 * time.Millisecond

	// defaultChanLen bounds each stream's channel (etcd's chanBufLen).
	defaultChanLen = 128
	// defaultMaxWatchersPerSync bounds the watchers one catch-up round
	// takes (etcd's maxWatchersPerSync).
	defaultMaxWatchersPerSync = 512
	// defaultBatchEvents bounds the events one History read returns, and
	// so a catch-up response (etcd bounds it to 1000 revisions).
	defaultBatchEvents = 1000
	// syncInterval is the pause between catch-up rounds while there is no
	// news (etcd's watchResyncPeriod).
	syncInterval = 100 * time.Millisecond
	// victimRetryInterval is how often responses that found their stream
	// full are retried (etcd: 10 ms).
	victimRetryInterval = 10 * time.Millisecond
)

// Options configures a Hub.
type Options struct {
	// Logger receives the hub's logs; nil discards them.
	Logger *slog.Logger
	// ProgressInterval is how often a synced watcher that asked for
	// progress_notify and got no events since the last time is sent a
	// progress notification (etcd's --watch-progress-notify-interval);
	// 0: DefaultProgressInterval, at least MinProgressInterval.
	ProgressInterval time.Duration

	// Limits, 0 for the defaults; tests make them small.
	chanLen            int
	maxWatchersPerSync int
	batchEvents        int
}

// Hub fans the changes of the applied history out to watchers. See the
// package documentation for its contract.
type Hub struct {
	src  Source
	lg   *slog.Logger
	opts Options

	// syncMu lets one catch-up round run at a time; it is taken before mu.
	syncMu sync.Mutex

	// mu guards everything below, the streams' fields, and every send on
	// a stream's channel (so that a channel is never sent on after Close).
	mu       sync.Mutex
	rev      int64  // the last revision notified
	gen      uint64 // bumped by Restore: a round that began before it is void
	closed   bool
	synced   *group // watchers that have every event up to rev
	unsynced *group // watchers that still have history to read
	victims  set    // watchers holding a response their full stream refused
	// progressWatchers asked for periodic progress notifications.
	progressWatchers set
	// progressPending are streams whose RequestProgress waits until every
	// watcher of theirs is synced (or their channel has room).
	progressPending map[*Stream]struct{}
	streams         map[*Stream]struct{}
	matchBuf        []*watcher // Notify's scratch
	touched         []*watcher // Notify's scratch
	// prevKVWatchers counts the watchers that asked prev_kv and may still
	// get events (WantPrevKV).
	prevKVWatchers atomic.Int64

	syncKick   chan struct{}
	victimKick chan struct{}
	stopc      chan struct{}
	wg         sync.WaitGroup
	startOnce  sync.Once
	closeOnce  sync.Once
}

// New returns a hub over src, whose history is at revision rev. Its
// background work (catch-up, victim retries, progress notifications) runs
// once Start is called.
func New(src Source, rev int64, opts Options) *Hub {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ProgressInterval <= 0 {
		opts.ProgressInterval = DefaultProgressInterval
	}
	if opts.ProgressInterval < MinProgressInterval {
		opts.Logger.Warn("raising the watch progress notify interval to its minimum",
			"interval", opts.ProgressInterval, "minimum", MinProgressInterval)
		opts.ProgressInterval = MinProgressInterval
	}
	if opts.chanLen <= 0 {
		opts.chanLen = defaultChanLen
	}
	if opts.maxWatchersPerSync <= 0 {
		opts.maxWatchersPerSync = defaultMaxWatchersPerSync
	}
	if opts.batchEvents <= 0 {
		opts.batchEvents = defaultBatchEvents
	}
	return &Hub{
		src:              src,
		lg:               opts.Logger,
		opts:             opts,
		rev:              rev,
		synced:           newGroup(),
		unsynced:         newGroup(),
		victims:          set{},
		progressWatchers: set{},
		progressPending:  map[*Stream]struct{}{},
		streams:          map[*Stream]struct{}{},
		syncKick:         make(chan struct{}, 1),
		victimKick:       make(chan struct{}, 1),
		stopc:            make(chan struct{}),
	}
}

// Rev returns the last revision notified (or restored).
func (h *Hub) Rev() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rev
}

// Notify hands the hub the events of revision rev, right after it was
// applied: revisions in order, each once, every event with ModRevision rev.
// It sends each synced watcher its events without blocking; a watcher whose
// stream is full becomes a victim holding that response. The hub keeps the
// events and shares them between watchers: the caller must not modify them
// afterwards.
func (h *Hub) Notify(rev int64, evs []*mvccpb.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if rev <= h.rev {
		h.lg.Error("watch notification for a revision already notified; dropped", "revision", rev, "hub-revision", h.rev)
		return
	}
	h.rev = rev
	if h.synced.size() > 0 && len(evs) > 0 {
		h.fanOut(rev, evs)
	}
	h.flushProgress()
}

// fanOut sends the synced watchers their share of one revision's events.
func (h *Hub) fanOut(rev int64, evs []*mvccpb.Event) {
	touched := h.touched[:0]
	for i, ev := range evs {
		h.matchBuf = h.synced.match(ev.Kv.Key, h.matchBuf[:0])
		for _, w := range h.matchBuf {
			if rev < w.minRev {
				continue // starts at a later revision
			}
			if !w.touched {
				w.touched = true
				touched = append(touched, w)
			}
			if w.wants(ev) {
				w.idx = append(w.idx, i)
			}
		}
	}
	// A prev_kv watcher that came after the store applied the revision
	// without PrevKv (it reads it only while WantPrevKV says so) gets it
	// read here, as replayed history does. A watcher with one event gets a
	// shared one-element slice.
	forms := eventForms{h: h, evs: evs}
	var one [2][]*mvccpb.Event
	for _, w := range touched {
		w.touched = false
		w.minRev = rev + 1
		if len(w.idx) == 0 {
			continue // every event filtered out: nothing to send
		}
		var out []*mvccpb.Event
		if len(evs) == 1 {
			f := 0
			if w.prevKV {
				f = 1
			}
			if one[f] == nil {
				one[f] = []*mvccpb.Event{forms.get(0, w.prevKV)}
			}
			out = one[f]
		} else {
			out = make([]*mvccpb.Event, len(w.idx))
			for j, i := range w.idx {
				out[j] = forms.get(i, w.prevKV)
			}
		}
		w.idx = w.idx[:0]
		resp := Response{WatchID: w.id, Events: out, Revision: rev}
		if h.trySend(w.s, resp) {
			w.eventsSent = true
			continue
		}
		h.synced.remove(w)
		h.toVictim(w, resp)
	}
	clear(touched)
	h.touched = touched[:0]
}

// trySend sends r on s's channel if there is room. Called with mu held.
func (h *Hub) trySend(s *Stream, r Response) bool {
	select {
	case s.ch <- r:
		return true
	default:
		return false
	}
}

// toVictim parks w, already out of its group, with the response its stream
// refused. Called with mu held.
func (h *Hub) toVictim(w *watcher, r Response) {
	w.state = stateVictim
	w.pending = &r
	h.victims[w] = struct{}{}
	kick(h.victimKick)
}

func kick(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Restore tells the hub that the source jumped to revision rev (a snapshot
// was installed): every synced watcher re-reads the history from where it
// was, and one that fell below the new compaction revision is canceled as
// compacted.
func (h *Hub) Restore(rev int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.gen++
	old := h.rev
	h.rev = rev
	for w := range h.synced.members {
		h.synced.remove(w)
		// A synced watcher has seen everything up to the old revision.
		w.minRev = max(w.minRev, old+1)
		w.state = stateUnsynced
		h.unsynced.add(w)
	}
	kick(h.syncKick)
}

// Start runs the hub's background work: catch-up rounds (every 100 ms, and
// at once when a watcher needs one), victim retries (every 10 ms while
// there are victims) and progress notifications.
func (h *Hub) Start() {
	h.startOnce.Do(func() {
		h.wg.Add(3)
		go h.syncLoop()
		go h.victimLoop()
		go h.progressLoop()
	})
}

// Close stops the background work and closes every stream: their channels
// are closed, and Watch on them fails with ErrClosed.
func (h *Hub) Close() {
	h.closeOnce.Do(func() {
		close(h.stopc)
		h.wg.Wait()
		h.mu.Lock()
		defer h.mu.Unlock()
		h.closed = true
		for s := range h.streams {
			h.closeStream(s)
		}
	})
}

func (h *Hub) syncLoop() {
	defer h.wg.Done()
	t := time.NewTimer(syncInterval)
	defer t.Stop()
	for {
		start := time.Now()
		remaining, progressed := h.syncUnsynced()
		wait := syncInterval
		if remaining > 0 && progressed {
			// More to do: go on after yielding as long as the round took,
			// to be fair to the writer (as etcd).
			wait = max(time.Since(start), time.Millisecond)
		}
		t.Reset(wait)
		select {
		case <-t.C:
		case <-h.syncKick:
		case <-h.stopc:
			return
		}
	}
}

func (h *Hub) victimLoop() {
	defer h.wg.Done()
	t := time.NewTimer(victimRetryInterval)
	defer t.Stop()
	for {
		for h.syncVictims() > 0 {
		}
		h.mu.Lock()
		busy := len(h.victims) > 0 || len(h.progressPending) > 0
		h.mu.Unlock()
		var tick <-chan time.Time
		if busy {
			t.Reset(victimRetryInterval)
			tick = t.C
		}
		select {
		case <-tick:
		case <-h.victimKick:
		case <-h.stopc:
			return
		}
	}
}

func (h *Hub) progressLoop() {
	defer h.wg.Done()
	t := time.NewTicker(h.opts.ProgressInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			h.progressNotify()
		case <-h.stopc:
			return
		}
	}
}

// syncVictims retries the victims' pending responses; a victim whose
// response went through joins the unsynced watchers, or the synced ones if
// nothing happened since. It returns how many went through. It also retries
// deferred progress requests.
func (h *Hub) syncVictims() (moved int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.victims {
		if !h.trySend(w.s, *w.pending) {
			continue
		}
		if len(w.pending.Events) > 0 {
			w.eventsSent = true
		}
		w.pending = nil
		delete(h.victims, w)
		moved++
		if w.minRev <= h.rev {
			w.state = stateUnsynced
			h.unsynced.add(w)
			kick(h.syncKick)
		} else {
			w.state = stateSynced
			h.synced.add(w)
		}
	}
	h.flushProgress()
	return moved
}

// catchup is one watcher's share of a catch-up round.
type catchup struct {
	w      *watcher
	next   int64 // the first revision the watcher has not seen
	events []*mvccpb.Event
}

// syncUnsynced runs one catch-up round: it takes up to maxWatchersPerSync
// unsynced watchers, cancels those whose next revision was compacted, reads
// the history they miss (at most batchEvents events, without holding the
// lock, then under the lock whatever was notified meanwhile, so that a
// watcher cannot be outrun by a steady stream of writes) and sends each its
// events; a watcher that has everything up to the hub's revision joins the
// synced ones. It returns how many watchers remain unsynced and whether the
// round moved any forward.
func (h *Hub) syncUnsynced() (remaining int, progressed bool) {
	h.syncMu.Lock()
	defer h.syncMu.Unlock()

	h.mu.Lock()
	if h.unsynced.size() == 0 {
		h.mu.Unlock()
		return 0, false
	}
	gen, endRev := h.gen, h.rev
	compactRev := h.src.CompactRev()
	var cs []*catchup
	minRev := int64(0)
	chosen := 0
	for w := range h.unsynced.members {
		if chosen == h.opts.maxWatchersPerSync {
			break
		}
		chosen++
		switch {
		case w.minRev < compactRev:
			// The revisions it needs are gone: cancel it, as etcd does.
			// If the stream is full, try again next round.
			if h.trySend(w.s, Response{WatchID: w.id, CompactRevision: compactRev, Canceled: true}) {
				h.unsynced.remove(w)
				h.retire(w)
				w.state = stateCompacted
				delete(h.progressWatchers, w)
				progressed = true
			}
		case w.minRev > endRev:
			// Nothing to read (a watcher moved here by Restore).
			h.unsynced.remove(w)
			w.state = stateSynced
			h.synced.add(w)
			progressed = true
		default:
			cs = append(cs, &catchup{w: w, next: w.minRev})
			if minRev == 0 || w.minRev < minRev {
				minRev = w.minRev
			}
		}
	}
	if len(cs) == 0 {
		h.flushProgress()
		remaining = h.unsynced.size()
		h.mu.Unlock()
		return remaining, progressed
	}
	h.mu.Unlock()

	// The chosen watchers stay in unsynced, where nothing but Cancel and
	// Close touches them, while the history is read.
	next, err := h.collect(cs, minRev, endRev)

	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		if !errors.Is(err, ErrCompacted) {
			h.lg.Warn("reading the history for watchers", "from", minRev, "to", endRev, "err", err)
		}
		// A compaction in between: the next round cancels who needs it.
		return h.unsynced.size(), progressed
	}
	if h.gen != gen {
		return h.unsynced.size(), progressed // restored meanwhile: start over
	}
	if next > endRev && h.rev > endRev {
		// Revisions were notified while reading: read them too, now that
		// no more can come.
		var tail []*catchup
		for _, c := range cs {
			if c.w.state == stateUnsynced && c.next > endRev {
				tail = append(tail, c)
			}
		}
		if len(tail) > 0 {
			if _, err := h.collect(tail, endRev+1, h.rev); err != nil && !errors.Is(err, ErrCompacted) {
				h.lg.Warn("reading the history for watchers", "from", endRev+1, "to", h.rev, "err", err)
			}
		}
	}
	for _, c := range cs {
		w := c.w
		if w.state != stateUnsynced {
			continue // canceled meanwhile
		}
		if c.next > w.minRev {
			w.minRev = c.next
			progressed = true
		}
		if len(c.events) > 0 {
			resp := Response{WatchID: w.id, Events: c.events, Revision: w.minRev - 1}
			if !h.trySend(w.s, resp) {
				h.unsynced.remove(w)
				h.toVictim(w, resp)
				continue
			}
			w.eventsSent = true
		}
		if w.minRev > h.rev {
			h.unsynced.remove(w)
			w.state = stateSynced
			h.synced.add(w)
		}
	}
	h.flushProgress()
	return h.unsynced.size(), progressed
}

// collect reads the history in [from, to] (at most batchEvents events) and
// gives each catchup the events it wants from its next revision on, then
// moves its next revision past what was read. It reads the watchers'
// immutable fields only, so it may run without mu.
func (h *Hub) collect(cs []*catchup, from, to int64) (int64, error) {
	evs, next, err := h.src.History(from, to+1, h.opts.batchEvents)
	if err != nil {
		return 0, err
	}
	g := newGroup()
	byWatcher := make(map[*watcher]*catchup, len(cs))
	for _, c := range cs {
		g.add(c.w)
		byWatcher[c.w] = c
	}
	forms := eventForms{h: h, evs: evs}
	var buf []*watcher
	for i, ev := range evs {
		buf = g.match(ev.Kv.Key, buf[:0])
		for _, w := range buf {
			c := byWatcher[w]
			if ev.Kv.ModRevision < c.next || !w.wants(ev) {
				continue
			}
			out := forms.get(i, w.prevKV)
			c.events = append(c.events, out)
		}
	}
	for _, c := range cs {
		c.next = max(c.next, next)
	}
	return next, nil
}

// eventForms gives each of evs in the form a watcher gets, with PrevKv or
// without, made when first needed and shared by the watchers: an event
// without the PrevKv a prev_kv watcher needs has it read (withPrevKV), one
// with a PrevKv the watcher did not ask for is copied without it.
type eventForms struct {
	h              *Hub
	evs            []*mvccpb.Event
	withPrev, bare []*mvccpb.Event // by index into evs
}

func (f *eventForms) get(i int, prevKV bool) *mvccpb.Event {
	ev := f.evs[i]
	switch {
	case prevKV && ev.PrevKv == nil:
		if f.withPrev == nil {
			f.withPrev = make([]*mvccpb.Event, len(f.evs))
		}
		if f.withPrev[i] == nil {
			f.withPrev[i] = f.h.withPrevKV(ev)
		}
		return f.withPrev[i]
	case !prevKV && ev.PrevKv != nil:
		if f.bare == nil {
			f.bare = make([]*mvccpb.Event, len(f.evs))
		}
		if f.bare[i] == nil {
			f.bare[i] = &mvccpb.Event{Type: ev.Type, Kv: ev.Kv}
		}
		return f.bare[i]
	}
	return ev
}

// withPrevKV returns ev with PrevKv set to the key as it was at the revision
// before, as etcd fills it for prev_kv watchers: none for a create, and
// none if that revision is compacted or the key did not exist.
func (h *Hub) withPrevKV(ev *mvccpb.Event) *mvccpb.Event {
	kv := ev.Kv
	if ev.Type == mvccpb.Event_PUT && kv.CreateRevision == kv.ModRevision || kv.ModRevision <= 1 {
		return ev
	}
	resp, err := h.src.Range(&pb.RangeRequest{Key: kv.Key, Revision: kv.ModRevision - 1})
	if err != nil || len(resp.Kvs) == 0 {
		return ev
	}
	return &mvccpb.Event{Type: ev.Type, Kv: kv, PrevKv: resp.Kvs[0]}
}

// progressNotify sends a progress notification to every synced watcher
// that asked for them and got no events since the last call, as etcd's
// progress ticker does. A full stream misses it.
func (h *Hub) progressNotify() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.progressWatchers {
		if w.eventsSent {
			w.eventsSent = false
			continue
		}
		if w.state == stateSynced && h.rev >= w.startRev {
			h.trySend(w.s, Response{WatchID: w.id, Revision: h.rev})
		}
	}
}

// progressAll answers s's RequestProgress if it can: when every watcher of
// s is synced, it sends a progress notification with WatchID -1 at the
// hub's revision. It reports whether the request is settled (answered, or
// nothing to answer for: a stream without watchers, as etcd). Called with
// mu held.
func (h *Hub) progressAll(s *Stream) bool {
	if len(s.watchers) == 0 {
		return true
	}
	for _, w := range s.watchers {
		if w.state == stateCompacted {
			continue // canceled by the hub; it gets nothing more
		}
		if w.state != stateSynced || h.rev < w.startRev {
			return false
		}
	}
	return h.trySend(s, Response{WatchID: InvalidWatchID, Revision: h.rev})
}

// flushProgress answers the deferred progress requests that can be now.
// Called with mu held.
func (h *Hub) flushProgress() {
	for s := range h.progressPending {
		if h.progressAll(s) {
			delete(h.progressPending, s)
		}
	}
}

// WantPrevKV reports whether a watcher that asked prev_kv may get events:
// the store's Options.EventPrevKV.
func (h *Hub) WantPrevKV() bool { return h.prevKVWatchers.Load() > 0 }

// retire uncounts w from prevKVWatchers as it leaves the hub's live
// states. Called with mu held, before w.state changes.
func (h *Hub) retire(w *watcher) {
	if w.prevKV && w.state != stateCanceled && w.state != stateCompacted {
		h.prevKVWatchers.Add(-1)
	}
}

// remove takes w out of the hub, whatever its state. Called with mu held.
func (h *Hub) remove(w *watcher) {
	h.retire(w)
	switch w.state {
	case stateSynced:
		h.synced.remove(w)
	case stateUnsynced:
		h.unsynced.remove(w)
	case stateVictim:
		delete(h.victims, w)
		w.pending = nil
	}
	delete(h.progressWatchers, w)
	w.state = stateCanceled
}

// closeStream cancels s's watchers and closes its channel. Called with mu
// held.
func (h *Hub) closeStream(s *Stream) {
	if s.closed {
		return
	}
	for _, w := range s.watchers {
		h.remove(w)
	}
	s.closed = true
	delete(h.streams, s)
	delete(h.progressPending, s)
	close(s.ch)
}
