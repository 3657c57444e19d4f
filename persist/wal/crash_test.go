package wal

import (
	"bytes"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/edgekv/edgekv/persist/fsx"
)

// model is what the WAL must give back: the log as Raft sees it after the
// operations that returned.
type model struct {
	log  map[uint64]entryView
	last uint64
	hs   hardStateRec
	snap SnapshotMarker
}

func newModel() *model { return &model{log: map[uint64]entryView{}} }

func (m *model) clone() *model {
	c := *m
	c.log = maps.Clone(m.log)
	return &c
}

func (m *model) save(hs *raftpb.HardState, es []*raftpb.Entry) {
	if len(es) > 0 {
		for i := es[0].GetIndex(); i <= m.last; i++ {
			delete(m.log, i)
		}
		for _, v := range view(es) {
			m.log[v.Index] = v
		}
		m.last = es[len(es)-1].GetIndex()
	}
	if !isEmptyHardState(hs) {
		m.hs = hardStateRec{Term: hs.GetTerm(), Vote: hs.GetVote(), Commit: hs.GetCommit()}
	}
}

func (m *model) marker(s SnapshotMarker) {
	m.snap = s
	m.last = max(m.last, s.Index)
}

func (m *model) entries() []entryView {
	var out []entryView
	for i := m.snap.Index + 1; i <= m.last; i++ {
		out = append(out, m.log[i])
	}
	return out
}

func (m *model) matches(st *State) bool {
	hs := hardStateRec{Term: st.HardState.GetTerm(), Vote: st.HardState.GetVote(), Commit: st.HardState.GetCommit()}
	return hs == m.hs && st.Snapshot == m.snap && fmt.Sprint(view(st.Entries)) == fmt.Sprint(m.entries())
}

// op is one call of the write load.
type op struct {
	kind   string // save, snapshot, purge
	hs     *raftpb.HardState
	es     []*raftpb.Entry
	marker SnapshotMarker
}

// outcomes lists the states a crash during o may leave: o not applied, or
// applied in part (a prefix of its entries, with or without the hard state).
func (m *model) outcomes(o *op) []*model {
	out := []*model{m}
	switch {
	case o == nil:
	case o.kind == "save":
		for j := 1; j <= len(o.es); j++ {
			c := m.clone()
			c.save(nil, o.es[:j])
			out = append(out, c)
		}
		c := m.clone()
		c.save(o.hs, o.es)
		out = append(out, c)
	case o.kind == "snapshot":
		c := m.clone()
		c.marker(o.marker)
		out = append(out, c)
	}
	return out
}

// gen draws a Raft-like write load: appends, hard states, conflicting
// suffixes above the commit index, snapshot markers at or below it (and,
// rarely, past the log, as a follower installing a snapshot), purges.
func (m *model) gen(rng *rand.Rand) op {
	r := rng.IntN(100)
	switch {
	case r < 8 && m.hs.Commit > m.snap.Index:
		return op{kind: "snapshot", marker: SnapshotMarker{Index: m.snap.Index + 1 + rng.Uint64N(m.hs.Commit-m.snap.Index), Term: m.hs.Term}}
	case r < 10:
		idx := m.last + 1 + rng.Uint64N(5)
		return op{kind: "snapshot", marker: SnapshotMarker{Index: idx, Term: m.hs.Term + 1}}
	case r < 20:
		return op{kind: "purge", marker: m.snap}
	}
	term, commit := max(m.hs.Term, 1), max(m.hs.Commit, m.snap.Index)
	start := m.last + 1
	if m.last > commit && rng.IntN(6) == 0 { // Raft overwrites an uncommitted suffix
		start = commit + 1 + rng.Uint64N(m.last-commit)
		term++
	}
	var es []*raftpb.Entry
	for i := range rng.IntN(6) {
		n := rng.IntN(200)
		if rng.IntN(25) == 0 {
			n = 1000 + rng.IntN(3000)
		}
		data := make([]byte, n)
		for k := range data {
			data[k] = byte('a' + rng.IntN(26))
		}
		es = append(es, ent(term, start+uint64(i), string(data)))
	}
	last := m.last
	if len(es) > 0 {
		last = es[len(es)-1].GetIndex()
	}
	var hs *raftpb.HardState
	if len(es) == 0 || term != m.hs.Term || rng.IntN(2) == 0 {
		hs = hardState(term, 1+rng.Uint64N(3), min(commit+rng.Uint64N(last-commit+1), last))
		if hs.GetCommit() < commit {
			hs.Commit = &commit
		}
	}
	return op{kind: "save", hs: hs, es: es}
}

// ptrModel stands for the value pointers a backend keeps into the WAL: Locs
// of acknowledged entries, some of them released again (as a compaction
// does). The WAL must keep every segment they point into (Options.Pinned),
// and each must read back its entry's data, crashes and all.
type ptrModel struct {
	rng  *rand.Rand
	pins pinSet
	ptrs []ptrRec
}

type ptrRec struct {
	index uint64
	loc   Loc
	data  []byte
}

func newPtrModel(seed int64) *ptrModel {
	return &ptrModel{rng: rand.New(rand.NewPCG(uint64(seed), 3))}
}

// saved takes the Locs of entries Save returned for, and keeps pointers to
// about half of them.
func (p *ptrModel) saved(w *WAL, es []*raftpb.Entry) error {
	for _, e := range es {
		l, ok := w.Locate(e.GetIndex())
		if !ok || l.Len != len(e.GetData()) {
			return fmt.Errorf("entry %d of %d bytes saved, located at %+v (%v)", e.GetIndex(), len(e.GetData()), l, ok)
		}
		if p.rng.IntN(2) == 0 {
			p.ptrs = append(p.ptrs, ptrRec{e.GetIndex(), l, e.GetData()})
			p.pins.pin(l.Seq)
		}
	}
	return nil
}

// release drops about a third of the pointers.
func (p *ptrModel) release() {
	kept := p.ptrs[:0]
	for _, r := range p.ptrs {
		if p.rng.IntN(3) == 0 {
			p.pins.unpin(r.loc.Seq)
		} else {
			kept = append(kept, r)
		}
	}
	p.ptrs = kept
}

// check reads every pointer back.
func (p *ptrModel) check(w *WAL) error {
	for _, r := range p.ptrs {
		got, err := w.ReadValue(r.loc.Seq, r.loc.Off, r.loc.Len, crcOf(r.data))
		if err != nil {
			return fmt.Errorf("pointer to entry %d at %+v: %w", r.index, r.loc, err)
		}
		if !bytes.Equal(got, r.data) {
			return fmt.Errorf("pointer to entry %d at %+v: read %q, want %q", r.index, r.loc, got, r.data)
		}
	}
	return nil
}

// checkLocated reads back the data of every entry Open returned, where
// Locate says it is.
func checkLocated(w *WAL, es []*raftpb.Entry) error {
	for _, e := range es {
		l, ok := w.Locate(e.GetIndex())
		if !ok {
			return fmt.Errorf("entry %d read by Open is not located", e.GetIndex())
		}
		got, err := w.ReadValue(l.Seq, l.Off, l.Len, crcOf(e.GetData()))
		if err != nil || !bytes.Equal(got, e.GetData()) {
			return fmt.Errorf("entry %d located at %+v: read %q, %v", e.GetIndex(), l, got, err)
		}
	}
	return nil
}

func (w *WAL) do(o op) error {
	switch o.kind {
	case "save":
		return w.Save(o.hs, o.es)
	case "snapshot":
		return w.SaveSnapshot(o.marker)
	default:
		_, err := w.PurgeBefore(o.marker.Index)
		return err
	}
}

// crashRun is one crash point: a load of steps operations on a fresh
// CrashFS, power failing during operation crashAt of the file system (0:
// after the load).
type crashRun struct {
	seed    int64
	steps   int
	crashAt int64
	// What happened, for the summary.
	inflight string
	torn     bool
	ptrs     int // value pointers read back after the first crash
	vlogs    int // value segments after the first crash
}

func crashOptions(c *fsx.CrashFS, lg *slog.Logger) Options {
	return Options{FS: c, Logger: lg, SegmentSize: 4 << 10, MaxWALs: 2, inlinePrepare: true}
}

// load runs up to n operations. It returns the model of what returned, the
// earlier states a crash may still leave (a hard state that only moves the
// commit index is written without a sync, so the states since the last
// synced write survive, if at all, as an in-order prefix), and the
// operation that failed, if one did. before, if not nil, is called before
// each operation with its number.
func load(w *WAL, m *model, rng *rand.Rand, n int, ptrs *ptrModel, before func(i int)) (*model, []*model, *op) {
	var since []*model // the state at the last sync, then after each unsynced save
	for i := range n {
		if before != nil {
			before(i)
		}
		o := m.gen(rng)
		synced := o.kind != "save" || len(o.es) > 0 || isEmptyHardState(o.hs) ||
			o.hs.GetTerm() != m.hs.Term || o.hs.GetVote() != m.hs.Vote
		if o.kind == "purge" {
			synced = false // syncs the directory, not the tail's data
		}
		if !synced && len(since) == 0 {
			since = append(since, m.clone())
		}
		if o.kind == "purge" {
			ptrs.release()
		}
		if err := w.do(o); err != nil {
			return m, since, &o
		}
		if o.kind == "save" {
			if err := ptrs.saved(w, o.es); err != nil {
				panic(err) // a bug, not a crash outcome
			}
		}
		switch o.kind {
		case "save":
			m.save(o.hs, o.es)
		case "snapshot":
			m.marker(o.marker)
		}
		if synced {
			since = since[:0]
		} else if o.kind == "save" {
			since = append(since, m.clone())
		}
	}
	return m, since, nil
}

// matchOutcome returns the state a recovered WAL st matches: one of the
// earlier ones, or an outcome of the operation inflight on m; nil if none.
func matchOutcome(st *State, earlier []*model, m *model, inflight *op) *model {
	for _, out := range append(earlier, m.outcomes(inflight)...) {
		if out.matches(st) {
			return out
		}
	}
	return nil
}

// run drives the load, crashes, recovers and checks; it returns the total
// number of file-system operations of the load, for choosing crash points.
func (cr *crashRun) run(t *testing.T) int64 {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("seed %d, crash at operation %d (%s): %s", cr.seed, cr.crashAt, cr.inflight, fmt.Sprintf(format, args...))
	}
	var logs strings.Builder
	lg := slog.New(slog.NewTextHandler(&logs, nil))
	rng := rand.New(rand.NewPCG(uint64(cr.seed), 1))
	c := fsx.NewCrashFS(cr.seed)
	c.CrashAfter(cr.crashAt)
	o := crashOptions(c, lg)
	// Half the seeds write through the page cache, half with direct I/O.
	o.BufferedIO = cr.seed%2 == 1
	ptrs := newPtrModel(cr.seed)
	o.Pinned = ptrs.pins.pinned

	m := newModel()
	var inflight *op
	var earlier []*model
	w, err := CreateWithOptions("/data/member/wal", testMD, o)
	created := err == nil
	if created {
		m, earlier, inflight = load(w, m, rng, cr.steps, ptrs, nil)
		if w.Close() == nil && inflight == nil {
			earlier = nil // a clean Close syncs what was written
		}
	}
	total := c.Ops()
	if inflight != nil {
		cr.inflight = inflight.kind
	} else if !created {
		cr.inflight = "create"
	}
	c.Crash()

	if !ExistIn(c, "/data/member/wal") {
		if created {
			fail("Create returned, yet no WAL after the crash")
		}
		return total
	}
	w, st, err := OpenWithOptions("/data/member/wal", o)
	if err != nil {
		fail("Open: %v\n%s", err, logs.String())
	}
	cr.torn = strings.Contains(logs.String(), "torn")
	now := matchOutcome(st, earlier, m, inflight)
	if now == nil {
		fail("recovered state matches no outcome:\n got hs %v snap %+v entries %v\nwant hs %+v snap %+v entries %v",
			st.HardState, st.Snapshot, view(st.Entries), m.hs, m.snap, m.entries())
	}
	// Every value pointer into an acknowledged entry reads back its data,
	// and so does every entry Open located.
	if err := ptrs.check(w); err != nil {
		fail("after the crash: %v", err)
	}
	cr.ptrs = len(ptrs.ptrs)
	if l, err := listFiles(c, "/data/member/wal"); err == nil {
		cr.vlogs = len(l.vlogs)
	}
	if err := checkLocated(w, st.Entries); err != nil {
		fail("after the crash: %v", err)
	}

	// Recovery is repeatable, and appending after it works, even with a
	// second crash on the way.
	second := rng.IntN(3) == 0
	if second {
		c.CrashAfter(1 + rng.Int64N(40))
	}
	now, earlier, inflight = load(w, now.clone(), rng, 10, ptrs, nil)
	if w.Close() == nil && inflight == nil {
		earlier = nil
	}
	c.Crash()
	w, st, err = OpenWithOptions("/data/member/wal", o)
	if err != nil {
		fail("second Open: %v\n%s", err, logs.String())
	}
	before := now
	if now = matchOutcome(st, earlier, now, inflight); now == nil {
		now = before
		fail("after appending (second crash: %v), state matches no outcome:\n got snap %+v entries %v\nwant snap %+v entries %v",
			second, st.Snapshot, view(st.Entries), now.snap, now.entries())
	}
	if err := ptrs.check(w); err != nil {
		fail("after the second crash: %v", err)
	}
	if err := checkLocated(w, st.Entries); err != nil {
		fail("after the second crash: %v", err)
	}
	next := max(now.last, now.snap.Index) + 1
	add := ent(now.hs.Term+1, next, "after")
	if err := w.Save(hardState(now.hs.Term+1, 1, now.hs.Commit), []*raftpb.Entry{add}); err != nil {
		fail("Save after recovery: %v", err)
	}
	w.Close()
	_, st, err = OpenWithOptions("/data/member/wal", o)
	if err != nil {
		fail("third Open: %v", err)
	}
	if got := view(st.Entries); len(got) == 0 || got[len(got)-1] != view([]*raftpb.Entry{add})[0] {
		fail("entry saved after recovery is missing: %v", got)
	}
	return total
}

// TestWAL_PowerLossNeverLosesAnAcknowledgedWrite crashes a WAL on CrashFS
// at thousands of random points of a write load (Saves of random entries
// and hard states, segment cuts, snapshot markers, purges and recycling,
// value segments kept for pointers and recycled once released), torn
// writes included, and checks that Open succeeds and gives back every
// acknowledged write, that every value pointer into an acknowledged entry
// and every entry Open located reads back its data, that recovery
// survives a second crash, and that appending after it works.
func TestWAL_PowerLossNeverLosesAnAcknowledgedWrite(t *testing.T) {
	points := 3000
	if raceEnabled {
		points = 1000
	}
	if testing.Short() {
		points = 200
	}
	const steps = 60
	var torn, kinds = 0, map[string]int{}
	var ptrs, vlogRuns int
	for i := range points {
		seed := int64(i)
		// A dry run counts the operations of this seed's load; the crash
		// point is drawn among them.
		total := (&crashRun{seed: seed, steps: steps}).run(t)
		rng := rand.New(rand.NewPCG(uint64(seed), 2))
		cr := &crashRun{seed: seed, steps: steps, crashAt: 1 + rng.Int64N(total)}
		cr.run(t)
		kinds[cr.inflight]++
		if cr.torn {
			torn++
		}
		ptrs += cr.ptrs
		if cr.vlogs > 0 {
			vlogRuns++
		}
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(kinds)) {
		name := k
		if name == "" {
			name = "after the load"
		}
		parts = append(parts, fmt.Sprintf("%s %d", name, kinds[k]))
	}
	t.Logf("power loss at %d crash points (during %s); %d torn tails repaired; %d value pointers read back, %d runs with value segments",
		points, strings.Join(parts, ", "), torn, ptrs, vlogRuns)
}
