package watchcheck

import (
	"fmt"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"
)

// ByRevision groups the events of a history by revision.
func ByRevision(events []*mvccpb.Event) map[int64][]*mvccpb.Event {
	by := map[int64][]*mvccpb.Event{}
	for _, ev := range events {
		by[ev.Kv.ModRevision] = append(by[ev.Kv.ModRevision], ev)
	}
	return by
}

// CheckHistory checks a history on its own: its revisions never go back,
// and every revision from first to last has an event (every write of the
// run goes to the watched prefix).
func CheckHistory(events []*mvccpb.Event, first, last int64) error {
	var prev int64
	for _, ev := range events {
		r := ev.Kv.ModRevision
		if r < prev {
			return fmt.Errorf("the history goes back from revision %d to %d", prev, r)
		}
		prev = r
	}
	by := ByRevision(events)
	for r := first; r <= last; r++ {
		if len(by[r]) == 0 {
			return fmt.Errorf("the history has no event at revision %d (from %d to %d every revision is a write under the prefix)", r, first, last)
		}
	}
	return nil
}

// CheckReplay replays a history that starts when no key of the prefix
// existed, and checks every event's key-value (create revision, version)
// and prev_kv against the replay. A watcher's events must equal the
// history's, prev_kv included (CheckStream), so this checks theirs too.
func CheckReplay(events []*mvccpb.Event) error {
	state := map[string]*mvccpb.KeyValue{}
	for _, ev := range events {
		k := string(ev.Kv.Key)
		prev := state[k]
		if !proto.Equal(ev.PrevKv, prev) && (ev.PrevKv != nil || prev != nil) {
			return fmt.Errorf("event %s has prev_kv %v, the replay has %v", EventString(ev), ev.PrevKv, prev)
		}
		switch ev.Type {
		case mvccpb.PUT:
			wantCreate, wantVersion := ev.Kv.ModRevision, int64(1)
			if prev != nil {
				wantCreate, wantVersion = prev.CreateRevision, prev.Version+1
			}
			if ev.Kv.CreateRevision != wantCreate || ev.Kv.Version != wantVersion {
				return fmt.Errorf("event %s: create revision %d version %d, the replay gives %d and %d (prev %v)",
					EventString(ev), ev.Kv.CreateRevision, ev.Kv.Version, wantCreate, wantVersion, prev)
			}
			state[k] = ev.Kv
		case mvccpb.DELETE:
			if prev == nil {
				return fmt.Errorf("delete event %s of a key that did not exist", EventString(ev))
			}
			delete(state, k)
		}
	}
	return nil
}

// CheckStream checks a watcher's record, from startRev, against the
// history up to last: the events at or below last must be exactly the
// history's from startRev (nothing missing, repeated, reordered or
// different); the events of one revision must have come in one response;
// and no event may have come after a progress notification at or above
// its revision. It returns how many events it compared.
func CheckStream(rec Record, startRev int64, history []*mvccpb.Event, last int64) (checked int, err error) {
	var want []*mvccpb.Event
	for _, ev := range history {
		if ev.Kv.ModRevision >= startRev && ev.Kv.ModRevision <= last {
			want = append(want, ev)
		}
	}
	got := rec.Events
	for i, w := range want {
		if i >= len(got) {
			return i, fmt.Errorf("the stream ends after %d events; the history goes on with %s (%d events from revision %d to %d missing)",
				len(got), EventString(w), len(want)-i, w.Kv.ModRevision, last)
		}
		g := got[i]
		if proto.Equal(g, w) {
			continue
		}
		var what string
		switch gr, wr := g.Kv.ModRevision, w.Kv.ModRevision; {
		case gr < wr:
			what = "a duplicate or a reorder"
		case gr > wr:
			what = fmt.Sprintf("a gap: revisions %d to %d skipped", wr, gr-1)
		default:
			what = "a different event at the same revision"
		}
		after := "the start"
		if i > 0 {
			after = EventString(got[i-1]) + fmt.Sprintf(" (response %d)", rec.Responses[i-1])
		}
		return i, fmt.Errorf("event %d is %s (response %d), the history has %s: %s; it came after %s",
			i, EventString(g), rec.Responses[i], EventString(w), what, after)
	}
	for i := len(want); i < len(got); i++ {
		if got[i].Kv.ModRevision <= last {
			return len(want), fmt.Errorf("event %d, %s, is not in the history (which has %d events from revision %d to %d)",
				i, EventString(got[i]), len(want), startRev, last)
		}
	}
	for i := 1; i < len(want); i++ {
		if got[i].Kv.ModRevision == got[i-1].Kv.ModRevision && rec.Responses[i] != rec.Responses[i-1] {
			return len(want), fmt.Errorf("the events of revision %d came in two responses (%d and %d): a txn's writes split",
				got[i].Kv.ModRevision, rec.Responses[i-1], rec.Responses[i])
		}
	}
	for _, p := range rec.Progress {
		if p.Before < len(got) && got[p.Before].Kv.ModRevision <= p.Rev {
			return len(want), fmt.Errorf("a progress notification at revision %d came after %d events and before %s: it claimed events it had not sent",
				p.Rev, p.Before, EventString(got[p.Before]))
		}
	}
	return len(want), nil
}

// Check is CheckStream of the watcher's record; the error names the
// watcher, its start, its restarts and the last errors that ended its
// stream.
func (w *Watcher) Check(history []*mvccpb.Event, last int64) (checked int, err error) {
	rec := w.Record()
	checked, err = CheckStream(rec, w.StartRev, history, last)
	if err != nil {
		err = fmt.Errorf("watcher %s (from revision %d, %d events, %d progress notifications, %d restarts, last errors %q): %w",
			w.Name, w.StartRev, len(rec.Events), len(rec.Progress), rec.Restarts, rec.Errs, err)
	}
	return checked, err
}

// EventString is one event, short: type, key, revision, value, whether it
// has a prev_kv.
func EventString(ev *mvccpb.Event) string {
	if ev == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%s %q@%d=%q(prev %v)", ev.Type, ev.Kv.Key, ev.Kv.ModRevision, ev.Kv.Value, ev.PrevKv != nil)
}

// Format lists a record, one line per event (with its response, if the
// record has them) or progress notification, for a file next to a failed
// run's logs.
func Format(rec Record) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d events, %d progress notifications, %d restarts, last errors %q\n",
		len(rec.Events), len(rec.Progress), rec.Restarts, rec.Errs)
	p := 0
	for i, ev := range rec.Events {
		for ; p < len(rec.Progress) && rec.Progress[p].Before == i; p++ {
			fmt.Fprintf(&b, "progress %d\n", rec.Progress[p].Rev)
		}
		if i < len(rec.Responses) {
			fmt.Fprintf(&b, "response %d: ", rec.Responses[i])
		}
		fmt.Fprintln(&b, EventString(ev))
	}
	for ; p < len(rec.Progress); p++ {
		fmt.Fprintf(&b, "progress %d\n", rec.Progress[p].Rev)
	}
	return b.String()
}
