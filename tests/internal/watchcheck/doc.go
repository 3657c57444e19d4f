// Package watchcheck records etcd watch streams while faults are injected
// and checks them against the history the cluster committed, as etcd's
// robustness suite does. The watch torture test (tests/e2e) and the
// linearizability torture suite (tests/torture) share it.
//
// A Watcher watches a key prefix from a start revision, with prev_kv and
// progress notifications, and asks for a progress notification every
// ProgressEvery. The client resumes a broken stream by itself; when the
// channel ends with an error (the member lost its leader, under
// WithRequireLeader, or the client gave up), Run opens a new watch from
// the revision after the last event it got, as an application would, and
// counts a restart. Run owns the Watcher's record and runs in one
// goroutine per Watcher until its context ends; Record, LastRev and Seen
// may be called from any goroutine meanwhile.
//
// ReadHistory reads the committed history at the end, through a fresh
// watch from the first revision that matters. The checks are pure
// functions of a history and a record, and return an error describing the
// first violation:
//
//   - CheckHistory: the history is in revision order and has an event at
//     every revision of a range (for a prefix that every write goes to);
//   - CheckReplay: every event's key-value (create revision, version) and
//     prev_kv agree with a replay of the history from an empty prefix;
//   - CheckStream (Watcher.Check): a watcher's events are exactly the
//     history's from its start revision on, in order, without duplicate or
//     gap, though its stream broke and resumed; the events of one revision
//     came in one response; and no event at or below the revision of a
//     progress notification arrived after that notification.
package watchcheck
