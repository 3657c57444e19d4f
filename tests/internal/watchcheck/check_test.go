package watchcheck

import (
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

func kv(key string, create, mod, version int64, value string) *mvccpb.KeyValue {
	return &mvccpb.KeyValue{Key: []byte(key), CreateRevision: create, ModRevision: mod, Version: version, Value: []byte(value)}
}

// history: a put, a txn of two puts, a delete, a put re-creating the key.
func history() []*mvccpb.Event {
	a2 := kv("/p/a", 2, 2, 1, "v1")
	a3 := kv("/p/a", 2, 3, 2, "v2")
	b3 := kv("/p/b", 3, 3, 1, "v2")
	return []*mvccpb.Event{
		{Type: mvccpb.PUT, Kv: a2},
		{Type: mvccpb.PUT, Kv: a3, PrevKv: a2},
		{Type: mvccpb.PUT, Kv: b3},
		{Type: mvccpb.DELETE, Kv: &mvccpb.KeyValue{Key: []byte("/p/b"), ModRevision: 4}, PrevKv: b3},
		{Type: mvccpb.PUT, Kv: kv("/p/b", 5, 5, 1, "v3")},
	}
}

// stream is a record of the history's events at the given indexes, in
// the given responses.
func stream(events []int, responses []int, progress ...ProgressMark) Record {
	h := history()
	var r Record
	for _, i := range events {
		r.Events = append(r.Events, h[i])
	}
	r.Responses = responses
	r.Progress = progress
	return r
}

func TestCheckStream_CatchesEveryBrokenGuarantee(t *testing.T) {
	for _, tc := range []struct {
		name     string
		rec      Record
		startRev int64
		last     int64  // 0: 5, the history's last revision
		wantErr  string // "" passes
		checked  int
	}{
		{name: "the whole history passes", rec: stream([]int{0, 1, 2, 3, 4}, []int{0, 1, 1, 2, 3}, ProgressMark{Rev: 3, Before: 3}), startRev: 1, checked: 5},
		{name: "from a later revision passes", rec: stream([]int{3, 4}, []int{0, 1}), startRev: 4, checked: 2},
		{name: "events after the last revision are ignored", rec: stream([]int{0, 1, 2, 3, 4}, []int{0, 1, 1, 2, 3}), startRev: 1, last: 4, checked: 4},
		{name: "a gap", rec: stream([]int{0, 3, 4}, []int{0, 1, 2}), startRev: 1, wantErr: "a gap: revisions 3 to 3 skipped"},
		{name: "a duplicate", rec: stream([]int{0, 0, 1, 2, 3, 4}, []int{0, 1, 2, 2, 3, 4}), startRev: 1, wantErr: "a duplicate or a reorder"},
		{name: "a reorder within a revision", rec: stream([]int{0, 2, 1, 3, 4}, []int{0, 1, 1, 2, 3}), startRev: 1, wantErr: "a different event at the same revision"},
		{name: "a stream that stops early", rec: stream([]int{0, 1, 2}, []int{0, 1, 1}), startRev: 1, wantErr: "the stream ends after 3 events"},
		{name: "a txn split over two responses", rec: stream([]int{0, 1, 2, 3, 4}, []int{0, 1, 2, 3, 4}), startRev: 1, wantErr: "the events of revision 3 came in two responses"},
		{name: "a progress notification ahead of the events", rec: stream([]int{0, 1, 2, 3, 4}, []int{0, 1, 1, 2, 3}, ProgressMark{Rev: 4, Before: 3}), startRev: 1, wantErr: "a progress notification at revision 4 came after 3 events"},
		{name: "an event before the start", rec: stream([]int{2, 3, 4}, []int{0, 1, 2}), startRev: 4, wantErr: "a duplicate or a reorder"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			last := tc.last
			if last == 0 {
				last = 5
			}
			checked, err := CheckStream(tc.rec, tc.startRev, history(), last)
			if tc.wantErr == "" {
				if err != nil || checked != tc.checked {
					t.Fatalf("got %d checked, %v; want %d checked, no error", checked, err, tc.checked)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestCheckHistory_NeedsOrderAndEveryRevision(t *testing.T) {
	h := history()
	if err := CheckHistory(h, 2, 5); err != nil {
		t.Fatalf("the history: %v", err)
	}
	if err := CheckHistory(append(h[:3:3], h[4]), 2, 5); err == nil || !strings.Contains(err.Error(), "no event at revision 4") {
		t.Fatalf("a missing revision: got %v", err)
	}
	if err := CheckHistory([]*mvccpb.Event{h[1], h[0]}, 2, 3); err == nil || !strings.Contains(err.Error(), "goes back") {
		t.Fatalf("a reorder: got %v", err)
	}
}

func TestCheckReplay_CatchesWrongVersionsAndPrevKV(t *testing.T) {
	if err := CheckReplay(history()); err != nil {
		t.Fatalf("the history: %v", err)
	}
	h := history()
	h[1].Kv.Version = 1
	if err := CheckReplay(h); err == nil || !strings.Contains(err.Error(), "version 1, the replay gives 2 and 2") {
		t.Fatalf("a wrong version: got %v", err)
	}
	h = history()
	h[1].PrevKv = nil
	if err := CheckReplay(h); err == nil || !strings.Contains(err.Error(), "prev_kv") {
		t.Fatalf("a missing prev_kv: got %v", err)
	}
	h = history()
	again := &mvccpb.Event{Type: mvccpb.DELETE, Kv: h[3].Kv}
	if err := CheckReplay(append(h[:4:4], again)); err == nil || !strings.Contains(err.Error(), "did not exist") {
		t.Fatalf("a repeated delete: got %v", err)
	}
}
