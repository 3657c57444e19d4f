package watch

import (
	"bytes"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// Watch IDs with a meaning, as clientv3's.
const (
	// AutoWatchID in Request.ID asks the stream for the next free ID.
	AutoWatchID int64 = 0
	// InvalidWatchID is the WatchID of a progress notification answering
	// RequestProgress: it speaks for every watcher of the stream.
	InvalidWatchID int64 = -1
)

// Request describes a watcher, with the meanings of etcd's
// WatchCreateRequest.
type Request struct {
	// ID is the watcher's ID on its stream; AutoWatchID picks the lowest
	// free one at or after the last picked.
	ID int64
	// Key is the key to watch; empty means "\x00".
	Key []byte
	// RangeEnd: empty watches Key alone; "\x00" every key >= Key; anything
	// else the range [Key, RangeEnd), which must not be empty.
	RangeEnd []byte
	// StartRev is the first revision to report: 0 means after the current
	// one; a revision already in the past replays the history from there;
	// one below the compaction revision gets the watcher canceled with
	// Response.CompactRevision.
	StartRev int64
	// PrevKV asks for each event's previous key-value pair.
	PrevKV bool
	// NoPut and NoDelete filter out PUT or DELETE events.
	NoPut, NoDelete bool
	// ProgressNotify asks for periodic progress notifications while
	// nothing happens.
	ProgressNotify bool
}

// Response is what a stream's channel carries: events for one watcher, a
// progress notification (no events; WatchID InvalidWatchID when it answers
// RequestProgress), or the cancellation of a watcher whose start revision
// was compacted. Events are shared between watchers and must not be
// modified.
type Response struct {
	WatchID int64
	// Events are in revision order; a response holds every event of each
	// revision it covers that the watcher wants.
	Events []*mvccpb.Event
	// Revision is the revision up to which the watcher has seen every
	// event (of a progress notification: the hub's revision).
	Revision int64
	// CompactRevision is set, with Canceled, when the watcher was canceled
	// because the history it asked for was compacted.
	CompactRevision int64
	Canceled        bool
}

// state is where a watcher is in the hub.
type state uint8

const (
	stateSynced    state = iota + 1 // in synced: gets each revision as it is notified
	stateUnsynced                   // in unsynced: has history to read
	stateVictim                     // in victims: holds a response its stream refused
	stateCompacted                  // canceled by the hub: its history was compacted
	stateCanceled                   // canceled by its stream
)

// watcher is one Watch. Its key, range and options never change after
// creation; the rest is guarded by Hub.mu.
type watcher struct {
	s        *Stream
	id       int64
	kind     kind
	key, end []byte // end: for kindRange, nil means no end
	startRev int64

	prevKV, noPut, noDelete, progressNotify bool

	state state
	// minRev is the first revision the watcher has not been sent.
	minRev int64
	// pending is a victim's refused response.
	pending *Response
	// eventsSent: events went out since the last progress tick.
	eventsSent bool

	touched bool  // Notify's scratch
	idx     []int // Notify's scratch
}

// wants reports whether ev passes the watcher's filters.
func (w *watcher) wants(ev *mvccpb.Event) bool {
	switch ev.Type {
	case mvccpb.Event_PUT:
		return !w.noPut
	case mvccpb.Event_DELETE:
		return !w.noDelete
	}
	return true
}

// Stream is a set of watchers that share one channel of responses, as one
// gRPC Watch stream does. Its methods may be called from any goroutine.
type Stream struct {
	h  *Hub
	ch chan Response

	// Guarded by h.mu.
	watchers map[int64]*watcher
	nextID   int64
	closed   bool
}

// NewStream returns a stream with no watchers.
func (h *Hub) NewStream() *Stream {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := &Stream{h: h, ch: make(chan Response, h.opts.chanLen), watchers: map[int64]*watcher{}}
	if h.closed {
		s.closed = true
		close(s.ch)
		return s
	}
	h.streams[s] = struct{}{}
	return s
}

// Chan returns the stream's responses, in the order each watcher's events
// happened. It is closed by Close (or the hub's Close). The channel is
// bounded: a consumer that does not keep up makes its watchers victims,
// which catch up once it does.
func (s *Stream) Chan() <-chan Response { return s.ch }

// Watch adds a watcher and returns its ID and the hub's revision at that
// moment (the watcher reports revisions after it unless r.StartRev says
// otherwise). Errors: ErrEmptyWatcherRange, ErrWatcherDuplicateID,
// ErrCompacted for a negative start revision, ErrClosed.
func (s *Stream) Watch(r Request) (id, rev int64, err error) {
	key := bytes.Clone(r.Key)
	if len(key) == 0 {
		key = []byte{0}
	}
	w := &watcher{s: s, key: key, startRev: r.StartRev, prevKV: r.PrevKV, noPut: r.NoPut, noDelete: r.NoDelete,
		progressNotify: r.ProgressNotify}
	switch {
	case len(r.RangeEnd) == 0:
		w.kind = kindKey
	case len(r.RangeEnd) == 1 && r.RangeEnd[0] == 0:
		w.kind = kindRange // every key >= key
	case bytes.Compare(key, r.RangeEnd) >= 0:
		return InvalidWatchID, 0, ErrEmptyWatcherRange
	case bytes.Equal(r.RangeEnd, prefixEnd(key)):
		w.kind = kindPrefix
	default:
		w.kind, w.end = kindRange, bytes.Clone(r.RangeEnd)
	}
	if r.StartRev < 0 {
		return InvalidWatchID, 0, ErrCompacted
	}

	h := s.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.closed {
		return InvalidWatchID, 0, ErrClosed
	}
	id = r.ID
	if id == AutoWatchID {
		for s.watchers[s.nextID] != nil {
			s.nextID++
		}
		id = s.nextID
		s.nextID++
	} else if _, dup := s.watchers[id]; dup {
		return InvalidWatchID, 0, ErrWatcherDuplicateID
	}
	w.id = id
	if r.StartRev == 0 || r.StartRev > h.rev {
		w.minRev = max(h.rev+1, r.StartRev)
		w.state = stateSynced
		h.synced.add(w)
	} else {
		w.minRev = r.StartRev
		w.state = stateUnsynced
		h.unsynced.add(w)
		kick(h.syncKick)
	}
	if w.progressNotify {
		h.progressWatchers[w] = struct{}{}
	}
	if w.prevKV {
		h.prevKVWatchers.Add(1)
	}
	s.watchers[id] = w
	return id, h.rev, nil
}

// Cancel removes watcher id; no response for it is sent after Cancel
// returns (some may still be in the channel). Errors: ErrWatcherNotExist.
func (s *Stream) Cancel(id int64) error {
	h := s.h
	h.mu.Lock()
	defer h.mu.Unlock()
	w, ok := s.watchers[id]
	if !ok || s.closed {
		return ErrWatcherNotExist
	}
	h.remove(w)
	delete(s.watchers, id)
	h.flushProgress()
	return nil
}

// RequestProgress asks for a progress notification for the whole stream
// (WatchID InvalidWatchID, Revision the hub's revision). It is sent as soon
// as every watcher of the stream is synced, after the events those watchers
// are due, so its revision is never ahead of what the stream delivered: at
// once if they are, otherwise when the last one catches up. A stream
// without watchers gets none, as in etcd.
func (s *Stream) RequestProgress() {
	h := s.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.closed {
		return
	}
	if !h.progressAll(s) {
		h.progressPending[s] = struct{}{}
		kick(h.victimKick)
	}
}

// Close cancels every watcher of the stream and closes its channel.
func (s *Stream) Close() {
	h := s.h
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closeStream(s)
}
