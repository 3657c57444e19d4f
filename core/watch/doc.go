// Package watch fans the applied changes out to watchers, with etcd's watch
// semantics: every watcher gets the events of its key or range in revision
// order, each once, with no gap, from the revision it asked for, and a
// response never splits a revision. It is modelled on etcd's watchableStore.
//
// # Who calls it
//
//   - Notify is called by core/server's apply goroutine after each applied
//     revision that changed something, in revision order, with that
//     revision's events (mvcc's Result.Events: PUT events carry PrevKv when
//     the key existed). The hub keeps the last notified revision as its own
//     revision; catch-up reads the Source only up to it (the store may
//     already be ahead). Notify never waits for a watcher.
//   - Restore is called by the apply goroutine after a snapshot replaced
//     the store: every watcher then re-reads the history from where it was.
//   - Streams (NewStream, and Watch, Cancel, RequestProgress, Close on
//     them) are used by core/rpc, one per gRPC Watch stream, from any
//     goroutine; a stream's responses come out of one bounded channel.
//   - Start runs the background goroutines, Close stops them and closes
//     every stream.
//
// # Watcher groups
//
// A watcher is in one of three places, as in etcd:
//
//   - synced: it has been sent every event up to the hub's revision, and
//     Notify sends it each new revision's events at once. A watcher that
//     starts now or in the future starts here.
//   - unsynced: it has history to read, because it asked for a past
//     revision, was a victim, or the store was restored. A catch-up round
//     (every 100 ms, and at once when a watcher arrives) takes up to 512
//     unsynced watchers, reads the history from the oldest revision they
//     need (at most 1000 events per read, never splitting a revision) and
//     sends each its share; one that reaches the hub's revision joins the
//     synced ones. The read runs without the hub's lock, so Notify is not
//     held up; what was notified meanwhile is read under the lock before
//     the hand-over, so a watcher can neither miss nor repeat a revision.
//     A watcher whose next revision is below the compaction revision is
//     canceled: a Response with CompactRevision and Canceled.
//   - victims: a watcher whose stream channel was full when a response for
//     it was due. It keeps that one response, is retried every 10 ms, and
//     once the response goes through rejoins the unsynced watchers (or the
//     synced ones if nothing happened since).
//
// So a slow consumer costs the hub at most one pending response per
// watcher plus what its stream channel holds (128 responses), and never
// slows Notify, writes, or other watchers.
//
// # Events and PrevKv
//
// A response carries the watcher's events, filtered by its range and by
// NoPut/NoDelete; if filtering leaves nothing, nothing is sent. PrevKv is
// set only for watchers that asked prev_kv: from Notify's events as given,
// and where they carry none (replayed history, or a revision the store
// applied before such a watcher came: the store reads PrevKv only while
// WantPrevKV says a prev_kv watcher exists) by reading the key at the
// revision before the event, as etcd does for every watcher (nothing for a
// create, or when that revision is compacted). Events are copied, never
// modified, and are shared between watchers: consumers must not modify
// them.
//
// # Progress
//
// Every ProgressInterval (etcd's --watch-progress-notify-interval, 10
// minutes by default) each synced watcher that asked progress_notify and
// got no events since the last tick is sent a progress notification: no
// events, Revision the hub's revision. (etcd runs one timer per stream,
// with jitter; the hub runs one for all.) RequestProgress asks for one for
// the whole stream, with WatchID -1: it is sent once every watcher of the
// stream is synced, at once or when the last one catches up. Progress
// notifications go through the stream's channel behind the events already
// sent, so their revision is never ahead of what the stream delivered.
//
// A response's Revision is the revision up to which the watcher has seen
// every event: the notified revision for live events, the end of the
// history read for a catch-up batch. (etcd puts its current revision on a
// catch-up batch even when more history follows; edgekv never reports a
// revision the watcher has not caught up to.)
package watch
