package watch

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

func eventsString(evs []*mvccpb.Event) string {
	var parts []string
	for _, ev := range evs {
		s := fmt.Sprintf("%s %s@%d", ev.Type, ev.Kv.Key, ev.Kv.ModRevision)
		if ev.Type == mvccpb.Event_PUT {
			s += "=" + string(ev.Kv.Value)
		}
		if ev.PrevKv != nil {
			s += fmt.Sprintf(" (prev %s@%d)", ev.PrevKv.Value, ev.PrevKv.ModRevision)
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

// render writes a response as a line: its revision and events, or what else
// it is.
func render(r Response) string {
	switch {
	case r.Canceled:
		return fmt.Sprintf("canceled, compacted at %d", r.CompactRevision)
	case len(r.Events) == 0:
		return fmt.Sprintf("progress @%d", r.Revision)
	default:
		return fmt.Sprintf("@%d %s", r.Revision, eventsString(r.Events))
	}
}

// byWatcher renders responses per watch ID, in the order each watcher got
// them (the order between watchers of one revision is unspecified).
func byWatcher(rs []Response) map[int64][]string {
	out := map[int64][]string{}
	for _, r := range rs {
		out[r.WatchID] = append(out[r.WatchID], render(r))
	}
	return out
}

// expect checks what s delivered since the last check, per watcher.
func expect(t *testing.T, s *Stream, want map[int64][]string) {
	t.Helper()
	got := byWatcher(drain(s))
	for _, id := range slices.Sorted(maps.Keys(mergeKeys(got, want))) {
		if !slices.Equal(got[id], want[id]) {
			t.Errorf("watcher %d got:\n\t%s\nwant:\n\t%s", id, strings.Join(got[id], "\n\t"), strings.Join(want[id], "\n\t"))
		}
	}
}

func mergeKeys(a, b map[int64][]string) map[int64]bool {
	m := map[int64]bool{}
	for k := range a {
		m[k] = true
	}
	for k := range b {
		m[k] = true
	}
	return m
}

func TestHub_SyncedWatchersGetEachRevisionOfTheirKeysInOrder(t *testing.T) {
	f := newFixture(t, Options{})
	s := f.hub.NewStream()
	ids := []int64{
		f.watch(s, Request{Key: []byte("foo")}),                                 // the key
		f.watch(s, Request{Key: []byte("foo"), RangeEnd: []byte("fop")}),        // the prefix
		f.watch(s, Request{Key: []byte("b"), RangeEnd: []byte("fooa")}),         // a range
		f.watch(s, Request{Key: []byte("foo1"), RangeEnd: []byte{0}}),           // from a key
		f.watch(s, Request{RangeEnd: []byte{0}}),                                // everything
		f.watch(s, Request{Key: []byte("\xff"), RangeEnd: []byte{0}}),           // nothing written
		f.watch(s, Request{Key: []byte("c"), RangeEnd: prefixEnd([]byte("c"))}), // another prefix
	}
	if !slices.Equal(ids, []int64{0, 1, 2, 3, 4, 5, 6}) {
		t.Fatalf("auto IDs %v, want 0..6", ids)
	}

	f.write(put("foo", "1"))                    // 2
	f.write(put("foo1", "a"), put("zoo", "z"))  // 3: one revision, two events
	f.write(put("a", "x"))                      // 4
	f.write(del("foo"), del("missing"))         // 5
	f.write(put("fop", "edge"), put("c", "in")) // 6

	expect(t, s, map[int64][]string{
		0: {"@2 PUT foo@2=1", "@5 DELETE foo@5"},
		1: {"@2 PUT foo@2=1", "@3 PUT foo1@3=a", "@5 DELETE foo@5"},
		2: {"@2 PUT foo@2=1", "@3 PUT foo1@3=a", "@5 DELETE foo@5", "@6 PUT c@6=in"},
		3: {"@3 PUT foo1@3=a, PUT zoo@3=z", "@6 PUT fop@6=edge"},
		4: {"@2 PUT foo@2=1", "@3 PUT foo1@3=a, PUT zoo@3=z", "@4 PUT a@4=x", "@5 DELETE foo@5", "@6 PUT fop@6=edge, PUT c@6=in"},
		6: {"@6 PUT c@6=in"},
	})
}

func TestHub_FiltersAndPrevKVApplyPerWatcherAndSharedEventsAreNotModified(t *testing.T) {
	f := newFixture(t, Options{})
	s := f.hub.NewStream()
	f.watch(s, Request{Key: []byte("k")})                            // 0
	f.watch(s, Request{Key: []byte("k"), PrevKV: true})              // 1
	f.watch(s, Request{Key: []byte("k"), NoPut: true})               // 2
	f.watch(s, Request{Key: []byte("k"), NoDelete: true})            // 3
	f.watch(s, Request{Key: []byte("k"), NoPut: true, PrevKV: true}) // 4
	f.watch(s, Request{Key: []byte("k"), NoPut: true, NoDelete: true})

	var notified [][]*mvccpb.Event
	for _, ops := range [][]op{{put("k", "v1")}, {put("k", "v2")}, {del("k")}} {
		rev, evs := f.src.write(ops...)
		notified = append(notified, evs)
		f.hub.Notify(rev, evs)
	}
	expect(t, s, map[int64][]string{
		0: {"@2 PUT k@2=v1", "@3 PUT k@3=v2", "@4 DELETE k@4"},
		1: {"@2 PUT k@2=v1", "@3 PUT k@3=v2 (prev v1@2)", "@4 DELETE k@4 (prev v2@3)"},
		2: {"@4 DELETE k@4"},
		3: {"@2 PUT k@2=v1", "@3 PUT k@3=v2"},
		4: {"@4 DELETE k@4 (prev v2@3)"},
	})
	if got := eventsString(notified[2]); got != "DELETE k@4 (prev v2@3)" {
		t.Fatalf("the notified event was modified: %s", got)
	}
}

func TestHub_PastStartRevisionReplaysHistoryWithPrevKVThenGoesLive(t *testing.T) {
	f := newFixture(t, Options{})
	f.write(put("a", "1"))                // 2
	f.write(put("a", "2"), put("b", "x")) // 3
	f.write(del("a"))                     // 4
	f.write(put("a", "3"))                // 5

	s := f.hub.NewStream()
	id, rev, err := s.Watch(Request{Key: []byte("a"), StartRev: 2, PrevKV: true})
	if err != nil || rev != 5 {
		t.Fatalf("Watch: id %d rev %d err %v; want rev 5", id, rev, err)
	}
	f.watch(s, Request{Key: []byte("a"), RangeEnd: []byte("c"), StartRev: 3}) // 1
	f.watch(s, Request{Key: []byte("a"), StartRev: 5})                        // 2: the current revision is the past
	f.watch(s, Request{Key: []byte("a"), StartRev: 7})                        // 3: the future
	expect(t, s, nil)                                                         // nothing before catch-up

	f.syncAll()
	f.write(put("a", "4")) // 6
	f.write(put("a", "5")) // 7
	expect(t, s, map[int64][]string{
		0: {"@5 PUT a@2=1, PUT a@3=2 (prev 1@2), DELETE a@4 (prev 2@3), PUT a@5=3", "@6 PUT a@6=4 (prev 3@5)", "@7 PUT a@7=5 (prev 4@6)"},
		1: {"@5 PUT a@3=2, PUT b@3=x, DELETE a@4, PUT a@5=3", "@6 PUT a@6=4", "@7 PUT a@7=5"},
		2: {"@5 PUT a@5=3", "@6 PUT a@6=4", "@7 PUT a@7=5"},
		3: {"@7 PUT a@7=5"},
	})
	if n := f.hub.unsynced.size(); n != 0 {
		t.Fatalf("%d watchers still unsynced", n)
	}
}

func TestHub_CatchUpReadsInBoundedBatchesThatNeverSplitARevision(t *testing.T) {
	f := newFixture(t, Options{batchEvents: 3})
	f.write(put("k1", "a"), put("k2", "a"), put("k3", "a")) // 2
	f.write(put("k1", "b"))                                 // 3
	f.write(put("k1", "c"), put("k2", "c"))                 // 4
	f.write(put("k3", "d"), put("k2", "d"), put("k1", "d")) // 5
	f.write(put("other", "x"))                              // 6

	s := f.hub.NewStream()
	f.watch(s, Request{Key: []byte("k"), RangeEnd: []byte("l"), StartRev: 1})
	f.watch(s, Request{Key: []byte("k2"), StartRev: 4})
	var rounds int
	for ; f.hub.unsynced.size() > 0; rounds++ {
		if rounds > 10 {
			t.Fatal("catch-up does not finish")
		}
		f.hub.syncUnsynced()
	}
	if rounds != 4 {
		t.Errorf("%d rounds, want 4 (history [1,3) [3,5) [5,6) [6,7) in reads of at most 3 events)", rounds)
	}
	expect(t, s, map[int64][]string{
		0: {
			"@2 PUT k1@2=a, PUT k2@2=a, PUT k3@2=a",
			"@4 PUT k1@3=b, PUT k1@4=c, PUT k2@4=c",
			"@5 PUT k3@5=d, PUT k2@5=d, PUT k1@5=d",
		},
		1: {"@4 PUT k2@4=c", "@5 PUT k2@5=d"},
	})
}

func TestHub_CatchUpGetsWhatIsNotifiedWhileItReadsWithoutGapsOrDuplicates(t *testing.T) {
	f := newFixture(t, Options{})
	f.write(put("k", "1")) // 2
	f.write(put("k", "2")) // 3
	s := f.hub.NewStream()
	f.watch(s, Request{Key: []byte("k"), StartRev: 2})

	// While the round reads the history without the hub's lock, two more
	// revisions are applied and notified.
	notified := false
	f.src.onHistory = func() {
		if !notified {
			notified = true
			f.write(put("k", "3")) // 4
			f.write(put("k", "4")) // 5
		}
	}
	f.hub.syncUnsynced()
	f.src.onHistory = nil
	f.write(put("k", "5")) // 6
	expect(t, s, map[int64][]string{
		0: {"@5 PUT k@2=1, PUT k@3=2, PUT k@4=3, PUT k@5=4", "@6 PUT k@6=5"},
	})
	if f.hub.synced.size() != 1 {
		t.Fatal("the watcher did not join the synced ones")
	}
}

func TestHub_WatchFromACompactedRevisionIsCanceledWithTheCompactRevision(t *testing.T) {
	f := newFixture(t, Options{chanLen: 1})
	for i := range 5 {
		f.write(put("k", fmt.Sprint(i))) // 2..6
	}
	f.src.compactTo(4)
	s := f.hub.NewStream()
	f.watch(s, Request{Key: []byte("k"), StartRev: 3}) // 0: below the compaction
	f.watch(s, Request{Key: []byte("k"), StartRev: 4}) // 1: at it, as etcd: not compacted
	f.hub.syncUnsynced()
	// The channel holds one response: watcher 0's cancellation went first
	// or waits; drain and run rounds until both are done.
	var got []Response
	for range 5 {
		got = append(got, drain(s)...)
		f.hub.syncVictims()
		f.hub.syncUnsynced()
	}
	got = append(got, drain(s)...)
	want := map[int64][]string{
		0: {"canceled, compacted at 4"},
		1: {"@6 PUT k@4=2, PUT k@5=3, PUT k@6=4"},
	}
	if g := byWatcher(got); !equalMaps(g, want) {
		t.Fatalf("got %v, want %v", g, want)
	}
	f.write(put("k", "again"))
	expect(t, s, map[int64][]string{1: {"@7 PUT k@7=again"}})
	// The canceled watcher keeps its ID until the client cancels it, as in
	// etcd; Cancel then succeeds.
	if _, _, err := s.Watch(Request{ID: 0, Key: []byte("x")}); err != nil {
		t.Fatalf("auto ID: %v", err)
	}
	if err := s.Cancel(0); err != nil {
		t.Fatalf("Cancel of a compacted watcher: %v", err)
	}
}

func equalMaps(a, b map[int64][]string) bool {
	return maps.EqualFunc(a, b, func(x, y []string) bool { return slices.Equal(x, y) })
}

func TestHub_SlowStreamDoesNotBlockNotifyAndHoldsAtMostOnePendingResponse(t *testing.T) {
	const chanLen = 4
	f := newFixture(t, Options{chanLen: chanLen})
	slow := f.hub.NewStream() // never read
	fast := f.hub.NewStream()
	f.watch(slow, Request{Key: []byte("k")})
	f.watch(slow, Request{Key: []byte("k"), RangeEnd: []byte("l")})
	f.watch(fast, Request{Key: []byte("k")})

	done := make(chan struct{})
	var fastGot int
	go func() {
		defer close(done)
		for i := range 1000 {
			f.write(put("k", fmt.Sprint(i)))
			fastGot += len(drain(fast))
		}
	}()
	<-done // a blocking Notify would hang here (and the test time out)
	if fastGot != 1000 {
		t.Fatalf("the fast stream got %d responses, want 1000", fastGot)
	}
	h := f.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(slow.ch) != chanLen {
		t.Fatalf("slow channel holds %d responses, want %d", len(slow.ch), chanLen)
	}
	for _, w := range slow.watchers {
		if w.state != stateVictim || w.pending == nil || len(w.pending.Events) != 1 {
			t.Fatalf("slow watcher %d: state %d pending %v; want a victim holding one response of one event", w.id, w.state, w.pending)
		}
		if h.synced.has(w) || h.unsynced.has(w) {
			t.Fatalf("victim %d is also in a group", w.id)
		}
	}
}

func TestHub_VictimsRecoverWithEveryEventOnceAndInOrder(t *testing.T) {
	f := newFixture(t, Options{chanLen: 2, batchEvents: 4})
	s := f.hub.NewStream()
	f.watch(s, Request{Key: []byte("k"), RangeEnd: []byte("l")})
	f.watch(s, Request{Key: []byte("k1")})
	var got []Response
	for i := range 40 {
		f.write(put(fmt.Sprintf("k%d", i%3), fmt.Sprint(i)))
		if i%7 == 0 {
			// The consumer wakes up now and then and takes one response.
			select {
			case r := <-s.Chan():
				got = append(got, r)
			default:
			}
		}
		if i%5 == 0 {
			f.hub.syncVictims()
			f.hub.syncUnsynced()
		}
	}
	for range 100 {
		got = append(got, drain(s)...)
		f.hub.syncVictims()
		f.hub.syncUnsynced()
	}
	got = append(got, drain(s)...)
	if f.hub.synced.size() != 2 {
		t.Fatalf("%d synced watchers, want 2", f.hub.synced.size())
	}
	saw := collectEvents(got)
	wantAll := f.src.expectedEvents(2, func(k []byte) bool { return bytes.HasPrefix(k, []byte("k")) })
	want1 := f.src.expectedEvents(2, func(k []byte) bool { return string(k) == "k1" })
	for id, want := range map[int64]*seen{0: wantAll, 1: want1} {
		if saw[id] == nil || !slices.Equal(saw[id].revs, want.revs) || !slices.Equal(saw[id].keys, want.keys) {
			t.Errorf("watcher %d saw %v, want %v", id, saw[id], want)
		}
	}
	checkRevisionsNeverGoBack(t, got)
}

// checkRevisionsNeverGoBack checks per watcher that response revisions grow
// and that every event is at or below its response's revision.
func checkRevisionsNeverGoBack(t *testing.T, rs []Response) {
	t.Helper()
	last := map[int64]int64{}
	for _, r := range rs {
		if r.Revision < last[r.WatchID] {
			t.Fatalf("watcher %d: response @%d after @%d", r.WatchID, r.Revision, last[r.WatchID])
		}
		last[r.WatchID] = r.Revision
		for _, ev := range r.Events {
			if ev.Kv.ModRevision > r.Revision {
				t.Fatalf("watcher %d: event @%d in a response @%d", r.WatchID, ev.Kv.ModRevision, r.Revision)
			}
		}
	}
}

func TestHub_RequestProgressWaitsUntilEveryWatcherIsSyncedAndIsNeverAhead(t *testing.T) {
	f := newFixture(t, Options{})
	f.write(put("a", "1")) // 2
	f.write(put("a", "2")) // 3
	s := f.hub.NewStream()
	f.watch(s, Request{Key: []byte("a")})              // synced
	f.watch(s, Request{Key: []byte("a"), StartRev: 2}) // unsynced
	s.RequestProgress()
	expect(t, s, nil) // deferred: watcher 1 has history to read

	f.write(put("a", "3")) // 4
	f.hub.syncUnsynced()
	// Watcher 1's catch-up (up to 4), then the progress at 4, never ahead
	// of it.
	got := drain(s)
	want := []string{"0 @4 PUT a@4=3", "1 @4 PUT a@2=1, PUT a@3=2, PUT a@4=3", "-1 progress @4"}
	var lines []string
	for _, r := range got {
		lines = append(lines, fmt.Sprintf("%d %s", r.WatchID, render(r)))
	}
	if !slices.Equal(lines, want) {
		t.Fatalf("got %q, want %q", lines, want)
	}

	// All synced: answered at once.
	s.RequestProgress()
	expect(t, s, map[int64][]string{-1: {"progress @4"}})

	// A stream without watchers gets nothing, as in etcd.
	empty := f.hub.NewStream()
	empty.RequestProgress()
	expect(t, empty, nil)
}

func TestHub_RequestProgressOnAFullStreamIsRetried(t *testing.T) {
	f := newFixture(t, Options{chanLen: 1})
	s := f.hub.NewStream()
	f.watch(s, Request{Key: []byte("a")})
	f.write(put("a", "1")) // fills the channel
	s.RequestProgress()
	f.hub.syncVictims() // still full
	expect(t, s, map[int64][]string{0: {"@2 PUT a@2=1"}})
	f.hub.syncVictims()
	expect(t, s, map[int64][]string{-1: {"progress @2"}})
}

func TestHub_PeriodicProgressGoesToQuietSyncedWatchersThatAskedForIt(t *testing.T) {
	f := newFixture(t, Options{})
	f.write(put("a", "1")) // 2
	s := f.hub.NewStream()
	f.watch(s, Request{Key: []byte("a"), ProgressNotify: true})                // 0
	f.watch(s, Request{Key: []byte("b"), ProgressNotify: true})                // 1
	f.watch(s, Request{Key: []byte("a")})                                      // 2: did not ask
	f.watch(s, Request{Key: []byte("a"), ProgressNotify: true, StartRev: 2})   // 3: unsynced
	f.watch(s, Request{Key: []byte("a"), ProgressNotify: true, StartRev: 100}) // 4: starts later

	f.hub.progressNotify()
	expect(t, s, map[int64][]string{0: {"progress @2"}, 1: {"progress @2"}})

	f.write(put("a", "2")) // 3: watcher 0 got events since the last tick
	f.hub.progressNotify()
	expect(t, s, map[int64][]string{0: {"@3 PUT a@3=2"}, 1: {"progress @3"}, 2: {"@3 PUT a@3=2"}})
	f.hub.progressNotify()
	expect(t, s, map[int64][]string{0: {"progress @3"}, 1: {"progress @3"}})
}

func TestHub_RestoreMakesWatchersReadTheHistoryTheyMissed(t *testing.T) {
	f := newFixture(t, Options{})
	f.write(put("a", "1")) // 2
	s := f.hub.NewStream()
	f.watch(s, Request{Key: []byte("a")})                // 0
	f.watch(s, Request{Key: []byte("b")})                // 1: nothing happened to b so far
	f.watch(s, Request{Key: []byte("a"), StartRev: 100}) // 2: starts in the future
	other := f.hub.NewStream()
	f.watch(other, Request{Key: []byte("a")})

	// A snapshot brings revisions 3..6 without notifications.
	f.src.write(put("a", "2"))
	f.src.write(put("b", "x"))
	f.src.write(put("c", "y"))
	f.src.write(put("a", "3"))
	f.hub.Restore(f.src.current())
	if f.hub.Rev() != 6 {
		t.Fatalf("hub revision %d after Restore, want 6", f.hub.Rev())
	}
	f.syncAll()
	f.write(put("a", "4")) // 7
	expect(t, s, map[int64][]string{
		0: {"@6 PUT a@3=2, PUT a@6=3", "@7 PUT a@7=4"},
		1: {"@6 PUT b@4=x"},
	})

	// A snapshot that also compacted past where a watcher was cancels it.
	f.src.write(put("a", "5")) // 8
	f.src.write(put("a", "6")) // 9
	f.src.compactTo(9)
	f.hub.Restore(f.src.current())
	f.syncAll()
	expect(t, other, map[int64][]string{0: {"@6 PUT a@3=2, PUT a@6=3", "@7 PUT a@7=4", "canceled, compacted at 9"}})
}

func TestStream_IDsRangesAndClose(t *testing.T) {
	f := newFixture(t, Options{})
	s := f.hub.NewStream()
	if id := f.watch(s, Request{Key: []byte("a"), ID: 1}); id != 1 {
		t.Fatalf("explicit ID: got %d", id)
	}
	if id := f.watch(s, Request{Key: []byte("a")}); id != 0 {
		t.Fatalf("first auto ID: got %d, want 0", id)
	}
	if id := f.watch(s, Request{Key: []byte("a")}); id != 2 {
		t.Fatalf("auto ID skips used ones: got %d, want 2", id)
	}
	if _, _, err := s.Watch(Request{Key: []byte("a"), ID: 2}); err != ErrWatcherDuplicateID {
		t.Fatalf("duplicate ID: %v", err)
	}
	if _, _, err := s.Watch(Request{Key: []byte("b"), RangeEnd: []byte("a")}); err != ErrEmptyWatcherRange {
		t.Fatalf("empty range: %v", err)
	}
	if _, _, err := s.Watch(Request{Key: []byte("b"), RangeEnd: []byte("b")}); err != ErrEmptyWatcherRange {
		t.Fatalf("empty range: %v", err)
	}
	if _, _, err := s.Watch(Request{Key: []byte("b"), StartRev: -1}); err != ErrCompacted {
		t.Fatalf("negative start revision: %v", err)
	}
	if err := s.Cancel(7); err != ErrWatcherNotExist {
		t.Fatalf("cancel of an unknown ID: %v", err)
	}
	if err := s.Cancel(1); err != nil {
		t.Fatal(err)
	}
	f.write(put("a", "x"))
	expect(t, s, map[int64][]string{0: {"@2 PUT a@2=x"}, 2: {"@2 PUT a@2=x"}})
	if err := s.Cancel(1); err != ErrWatcherNotExist {
		t.Fatalf("second cancel: %v", err)
	}

	s.Close()
	if _, ok := <-s.Chan(); ok {
		t.Fatal("channel open after Close")
	}
	if _, _, err := s.Watch(Request{Key: []byte("a")}); err != ErrClosed {
		t.Fatalf("Watch after Close: %v", err)
	}
	f.write(put("a", "y")) // no send on the closed channel
	s.Close()
	if f.hub.synced.size() != 0 {
		t.Fatalf("%d watchers left after Close", f.hub.synced.size())
	}
}

func TestHub_CloseClosesEveryStream(t *testing.T) {
	f := newFixture(t, Options{})
	s := f.hub.NewStream()
	f.watch(s, Request{Key: []byte("a")})
	f.hub.Start()
	f.hub.Close()
	if _, ok := <-s.Chan(); ok {
		t.Fatal("stream open after the hub's Close")
	}
	if _, _, err := f.hub.NewStream().Watch(Request{Key: []byte("a")}); err != ErrClosed {
		t.Fatalf("Watch after the hub's Close: %v", err)
	}
	f.write(put("a", "x"))
}

func TestHub_CatchUpCopesWithCancelRestoreAndCompactionDuringItsRead(t *testing.T) {
	setup := func(t *testing.T) (*fixture, *Stream) {
		f := newFixture(t, Options{})
		f.write(put("k", "1")) // 2
		f.write(put("k", "2")) // 3
		s := f.hub.NewStream()
		f.watch(s, Request{Key: []byte("k"), StartRev: 2})
		return f, s
	}
	once := func(fn func()) func() {
		done := false
		return func() {
			if !done {
				done = true
				fn()
			}
		}
	}

	t.Run("canceled", func(t *testing.T) {
		f, s := setup(t)
		f.src.onHistory = once(func() {
			if err := s.Cancel(0); err != nil {
				t.Error(err)
			}
		})
		f.hub.syncUnsynced()
		expect(t, s, nil)
		if f.hub.synced.size()+f.hub.unsynced.size()+len(f.hub.victims) != 0 {
			t.Fatal("the canceled watcher is still in the hub")
		}
	})
	t.Run("restored", func(t *testing.T) {
		f, s := setup(t)
		f.src.onHistory = once(func() {
			f.src.write(put("k", "3")) // 4, from a snapshot
			f.hub.Restore(f.src.current())
		})
		f.hub.syncUnsynced() // void: the store changed under it
		expect(t, s, nil)
		f.syncAll()
		expect(t, s, map[int64][]string{0: {"@4 PUT k@2=1, PUT k@3=2, PUT k@4=3"}})
	})
	t.Run("compacted", func(t *testing.T) {
		f, s := setup(t)
		f.src.onHistory = once(func() { f.src.compactTo(3) })
		f.hub.syncUnsynced() // the read fails; the next round cancels
		expect(t, s, nil)
		f.hub.syncUnsynced()
		expect(t, s, map[int64][]string{0: {"canceled, compacted at 3"}})
	})
}

// The store reads PrevKv only while WantPrevKV says so: a prev_kv watcher
// that came after the store applied a revision without it gets PrevKv read
// at the revision before, and a watcher without prev_kv gets none.
func TestHub_PrevKVWatcherGetsPrevKVTheEventsLack(t *testing.T) {
	f := newFixture(t, Options{})
	f.write(put("k", "v1"))                  // 2
	f.write(put("k", "v2"), put("n", "new")) // 3
	s := f.hub.NewStream()
	f.watch(s, Request{Key: []byte("k"), RangeEnd: []byte("o"), PrevKV: true}) // 0
	f.watch(s, Request{Key: []byte("k"), RangeEnd: []byte("o")})               // 1
	for _, ops := range [][]op{{put("k", "v3"), put("n", "again")}, {del("k")}, {put("m", "created")}} {
		rev, evs := f.src.write(ops...)
		bare := make([]*mvccpb.Event, len(evs))
		for i, ev := range evs {
			bare[i] = &mvccpb.Event{Type: ev.Type, Kv: ev.Kv}
		}
		f.hub.Notify(rev, bare)
	}
	expect(t, s, map[int64][]string{
		0: {"@4 PUT k@4=v3 (prev v2@3), PUT n@4=again (prev new@3)", "@5 DELETE k@5 (prev v3@4)", "@6 PUT m@6=created"},
		1: {"@4 PUT k@4=v3, PUT n@4=again", "@5 DELETE k@5", "@6 PUT m@6=created"},
	})
}

// WantPrevKV counts the prev_kv watchers that may still get events.
func TestHub_WantPrevKVWhileAPrevKVWatcherLives(t *testing.T) {
	f := newFixture(t, Options{})
	want := func(w bool) {
		t.Helper()
		if got := f.hub.WantPrevKV(); got != w {
			t.Fatalf("WantPrevKV = %v, want %v", got, w)
		}
	}
	s := f.hub.NewStream()
	f.watch(s, Request{Key: []byte("k")})
	want(false)
	a := f.watch(s, Request{Key: []byte("k"), PrevKV: true})
	b := f.watch(s, Request{Key: []byte("k"), PrevKV: true})
	want(true)
	if err := s.Cancel(a); err != nil {
		t.Fatal(err)
	}
	want(true)
	if err := s.Cancel(b); err != nil {
		t.Fatal(err)
	}
	want(false)
	f.watch(s, Request{Key: []byte("k"), PrevKV: true})
	want(true)
	s.Close()
	want(false)

	// Canceled by the hub because its history was compacted.
	for i := range 3 {
		f.write(put("k", fmt.Sprint(i)))
	}
	f.src.compactTo(f.src.current())
	s2 := f.hub.NewStream()
	f.watch(s2, Request{Key: []byte("k"), StartRev: 2, PrevKV: true})
	want(true)
	f.hub.syncUnsynced()
	if got := byWatcher(drain(s2)); len(got[0]) != 1 || !strings.HasPrefix(got[0][0], "canceled") {
		t.Fatalf("got %v, want the watcher canceled", got)
	}
	want(false)
	s2.Close()
	want(false)
}
