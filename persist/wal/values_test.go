package wal

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/edgekv/edgekv/core/codec"
	"github.com/edgekv/edgekv/persist/fsx"
)

func crcOf(b []byte) uint32 { return crc32.Checksum(b, crcTable) }

// mustReadLoc reads the bytes a Loc names and checks them.
func mustReadLoc(t testing.TB, w *WAL, l Loc, want []byte) {
	t.Helper()
	got, err := w.ReadValue(l.Seq, l.Off, l.Len, crcOf(want))
	if err != nil {
		t.Fatalf("ReadValue(%+v): %v", l, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("ReadValue(%+v) = %q, want %q", l, got, want)
	}
}

// checkLocs checks that Locate gives, for every entry of es, a Loc whose
// bytes are the entry's data.
func checkLocs(t testing.TB, w *WAL, es []*raftpb.Entry) {
	t.Helper()
	for _, e := range es {
		l, ok := w.Locate(e.GetIndex())
		if !ok {
			t.Fatalf("Locate(%d): not found", e.GetIndex())
		}
		if l.Len != len(e.GetData()) {
			t.Fatalf("Locate(%d) = %+v for %d bytes", e.GetIndex(), l, len(e.GetData()))
		}
		mustReadLoc(t, w, l, e.GetData())
	}
}

// sizedEnt is an entry of n bytes of data that names its index.
func sizedEnt(term, index uint64, n int) *raftpb.Entry {
	data := make([]byte, n)
	for i := range data {
		data[i] = byte('a' + (int(index)+i)%26)
	}
	e := ent(term, index, "")
	e.Data = data
	return e
}

func TestWAL_LocateNamesEachEntrysDataExactly(t *testing.T) {
	// Sizes around every CBOR length boundary, in batches of one and many,
	// across cuts.
	sizes := []int{0, 1, 23, 24, 25, 255, 256, 257, 1000, 4095, 4096, 20000, 65535, 65536, 70000}
	dir := t.TempDir()
	o := testOptions(t)
	o.SegmentSize = 256 << 10
	w := createWALWith(t, dir, o)
	rng := rand.New(rand.NewPCG(1, 2))
	var all []*raftpb.Entry
	var index uint64
	for round := range 40 {
		var batch []*raftpb.Entry
		for range 1 + rng.IntN(6) {
			index++
			batch = append(batch, sizedEnt(1, index, sizes[rng.IntN(len(sizes))]))
		}
		if round%7 == 3 {
			index++
			batch = append(batch, ent(1, index, "")) // nil data
			batch[len(batch)-1].Data = nil
		}
		mustSave(t, w, hardState(1, 1, index), batch)
		all = append(all, batch...)
		checkLocs(t, w, batch)
	}
	if w.Stats().Cuts < 3 {
		t.Fatalf("no cuts to test across: %+v", w.Stats())
	}
	saved := map[uint64]Loc{}
	for _, e := range all {
		saved[e.GetIndex()], _ = w.Locate(e.GetIndex())
	}
	checkLocs(t, w, all)
	mustClose(t, w)

	// Open finds the same locations.
	w, st := openWALWith(t, dir, o)
	checkEntries(t, st.Entries, all)
	for _, e := range all {
		if l, _ := w.Locate(e.GetIndex()); l != saved[e.GetIndex()] {
			t.Fatalf("entry %d: Open located it at %+v, Save at %+v", e.GetIndex(), l, saved[e.GetIndex()])
		}
	}
	checkLocs(t, w, all)
}

func TestWAL_LocateFollowsAConflictingSuffix(t *testing.T) {
	dir := t.TempDir()
	w := createWAL(t, dir)
	mustSave(t, w, hardState(1, 1, 2), ents(1, 1, 10))
	old6, _ := w.Locate(6)
	// Term 2 replaces 6.. with two entries: 6 and 7 move, 8..10 go.
	repl := ents(2, 6, 7)
	mustSave(t, w, hardState(2, 1, 2), repl)
	check := func(w *WAL) {
		t.Helper()
		checkLocs(t, w, append(ents(1, 1, 5), repl...))
		for i := uint64(8); i <= 10; i++ {
			if l, ok := w.Locate(i); ok {
				t.Fatalf("Locate(%d) = %+v after the suffix was dropped", i, l)
			}
		}
	}
	check(w)
	// The replaced record's bytes are still there, unchanged.
	mustReadLoc(t, w, old6, []byte("t1-i6"))
	mustClose(t, w)
	w, _ = openWALWith(t, dir, testOptions(t))
	check(w)
}

func TestWAL_ReleaseForgetsLocations(t *testing.T) {
	w := createWAL(t, t.TempDir())
	mustSave(t, w, nil, ents(1, 1, 10))
	w.Release(4)
	for i := uint64(1); i <= 10; i++ {
		if _, ok := w.Locate(i); ok != (i > 4) {
			t.Fatalf("Locate(%d) found %v after Release(4)", i, ok)
		}
	}
	w.Release(100)
	mustSave(t, w, nil, ents(1, 11, 12))
	checkLocs(t, w, ents(1, 11, 12))
	if _, ok := w.Locate(10); ok {
		t.Fatal("Locate(10) after Release(100)")
	}
}

func TestWAL_ReadValueNeverReturnsOtherBytes(t *testing.T) {
	dir := t.TempDir()
	w := createWAL(t, dir)
	mustSave(t, w, nil, ents(1, 1, 3))
	l, _ := w.Locate(2)
	data := []byte("t1-i2")
	name := filepath.Base(segmentFiles(t, dir)[0])
	tests := []struct {
		name        string
		seq         uint64
		off         int64
		n           int
		crc         uint32
		wantInError string
	}{
		{"wrong crc", l.Seq, l.Off, l.Len, crcOf(data) ^ 1, name},
		{"wrong offset", l.Seq, l.Off + 1, l.Len, crcOf(data), name},
		{"missing segment", 9, l.Off, l.Len, crcOf(data), "segment 0000000000000009"},
		{"past the end of the file", l.Seq, o64(testOptions(t).SegmentSize) - 2, 5, crcOf(data), name},
		{"negative offset", l.Seq, -1, 5, crcOf(data), "out of bounds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := w.ReadValue(tt.seq, tt.off, tt.n, tt.crc)
			if !errors.Is(err, ErrCorrupt) || b != nil || !strings.Contains(err.Error(), tt.wantInError) {
				t.Fatalf("ReadValue = %q, %v; want ErrCorrupt naming %q", b, err, tt.wantInError)
			}
		})
	}
	mustReadLoc(t, w, l, data)
	mustClose(t, w)
	if _, err := w.ReadValue(l.Seq, l.Off, l.Len, crcOf(data)); !errors.Is(err, ErrClosed) {
		t.Fatalf("ReadValue after Close: %v", err)
	}
}

func o64(n int64) int64 { return n }

// pinSet is a Pinned for tests: the segments holding pointers.
type pinSet struct {
	mu   sync.Mutex
	pins map[uint64]int
}

func (p *pinSet) pin(seq uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pins == nil {
		p.pins = map[uint64]int{}
	}
	p.pins[seq]++
}

func (p *pinSet) unpin(seq uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pins[seq]--; p.pins[seq] <= 0 {
		delete(p.pins, seq)
	}
}

func (p *pinSet) pinned(seq uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pins[seq] > 0
}

func vlogFiles(t testing.TB, dir string) []uint64 {
	t.Helper()
	l, err := listFiles(fsx.OS{}, dir)
	if err != nil {
		t.Fatal(err)
	}
	return l.vlogs
}

func TestWAL_PinnedSegmentsAreKeptAsValueSegmentsUntilReleased(t *testing.T) {
	dir := t.TempDir()
	var pins pinSet
	o := testOptions(t)
	o.SegmentSize = 4 << 10
	o.MaxWALs = 1
	o.Pinned = pins.pinned
	w := createWALWith(t, dir, o)
	var last uint64
	saveUntil(t, w, dir, &last, 6)
	// A pointer into the first and the third segment.
	type ptr struct {
		loc  Loc
		data []byte
	}
	var ptrs []ptr
	for i := uint64(1); i <= last; i++ {
		l, _ := w.Locate(i)
		if l.Seq == 0 || l.Seq == 2 {
			ptrs = append(ptrs, ptr{l, []byte(fmt.Sprintf("t1-i%d", i))})
			pins.pin(l.Seq)
		}
	}
	if err := w.SaveSnapshot(SnapshotMarker{Index: last, Term: 1}); err != nil {
		t.Fatal(err)
	}
	removed, err := w.PurgeBefore(last)
	if err != nil || removed != 5 {
		t.Fatalf("PurgeBefore: %d, %v", removed, err)
	}
	if got := vlogFiles(t, dir); fmt.Sprint(got) != "[0 2]" {
		t.Fatalf("value segments %v, want [0 2]", got)
	}
	if got := w.Reclaimable(last); fmt.Sprint(got) != "[0 2]" {
		t.Fatalf("Reclaimable = %v", got)
	}
	for _, p := range ptrs {
		mustReadLoc(t, w, p.loc, p.data)
	}
	// Open does not replay value segments, and still reads them.
	mustClose(t, w)
	w, st := openWALWith(t, dir, o)
	if st.Snapshot.Index != last || len(st.Entries) != 0 {
		t.Fatalf("state after reopen: snapshot %+v, %d entries", st.Snapshot, len(st.Entries))
	}
	for _, p := range ptrs {
		mustReadLoc(t, w, p.loc, p.data)
	}

	// Release the first segment's values: it is recycled at the next
	// purge, and reads of it fail instead of returning new bytes.
	for _, p := range ptrs {
		if p.loc.Seq == 0 {
			pins.unpin(0)
		}
	}
	if _, err := w.PurgeBefore(last); err != nil {
		t.Fatal(err)
	}
	if got := vlogFiles(t, dir); fmt.Sprint(got) != "[2]" {
		t.Fatalf("value segments %v, want [2]", got)
	}
	if free, _ := poolFiles(t, dir); len(free) == 0 {
		t.Fatal("the released value segment did not join the free pool")
	}
	for _, p := range ptrs {
		if p.loc.Seq == 0 {
			if _, err := w.ReadValue(p.loc.Seq, p.loc.Off, p.loc.Len, crcOf(p.data)); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("reading a recycled segment: %v", err)
			}
		} else {
			mustReadLoc(t, w, p.loc, p.data)
		}
	}
	// Cuts reuse the pool; the value segment left is untouched.
	saveUntil(t, w, dir, &last, 4)
	if w.Stats().SegmentsRecycled == 0 {
		t.Fatalf("nothing recycled: %+v", w.Stats())
	}
	for _, p := range ptrs[len(ptrs)-1:] {
		mustReadLoc(t, w, p.loc, p.data)
	}
}

func TestWAL_OpenRefusesAValueSegmentThatIsNotOlderThanTheLog(t *testing.T) {
	dir := t.TempDir()
	w := createWAL(t, dir)
	mustSave(t, w, nil, ents(1, 1, 2))
	mustClose(t, w)
	if err := os.WriteFile(filepath.Join(dir, vlogName(0)), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := OpenWithOptions(dir, testOptions(t)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open: %v", err)
	}
}

// TestWAL_ReadValueRacesNothing reads pinned values from many goroutines
// while Save cuts segments and PurgeBefore turns them into value segments
// and recycles the released ones (run with -race).
func TestWAL_ReadValueRacesNothing(t *testing.T) {
	dir := t.TempDir()
	var pins pinSet
	o := testOptions(t)
	o.inlinePrepare = false
	o.SegmentSize = 4 << 10
	o.MaxWALs = 1
	o.Pinned = pins.pinned
	w := createWALWith(t, dir, o)

	type ptr struct {
		loc  Loc
		data []byte
	}
	var (
		mu   sync.RWMutex // readers hold it shared, as a read view holds its pointers
		live []ptr
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 9))
			for {
				select {
				case <-stop:
					return
				default:
				}
				mu.RLock()
				if len(live) == 0 {
					mu.RUnlock()
					continue
				}
				p := live[rng.IntN(len(live))]
				got, err := w.ReadValue(p.loc.Seq, p.loc.Off, p.loc.Len, crcOf(p.data))
				mu.RUnlock()
				if err != nil || !bytes.Equal(got, p.data) {
					t.Errorf("ReadValue(%+v) = %q, %v; want %q", p.loc, got, err, p.data)
					return
				}
			}
		})
	}
	rng := rand.New(rand.NewPCG(3, 4)) // this goroutine's only
	for i := uint64(1); i <= 400; i++ {
		e := sizedEnt(1, i, 100+rng.IntN(200))
		mustSave(t, w, hardState(1, 1, i), []*raftpb.Entry{e})
		l, _ := w.Locate(i)
		w.Release(i)
		mu.Lock()
		if rng.IntN(3) == 0 {
			live = append(live, ptr{l, e.GetData()})
			pins.pin(l.Seq)
		}
		if len(live) > 20 && rng.IntN(2) == 0 {
			k := rng.IntN(len(live))
			pins.unpin(live[k].loc.Seq)
			live = append(live[:k], live[k+1:]...)
		}
		mu.Unlock()
		if i%10 == 0 {
			if err := w.SaveSnapshot(SnapshotMarker{Index: i, Term: 1}); err != nil {
				t.Fatal(err)
			}
			if _, err := w.PurgeBefore(i); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(stop)
	wg.Wait()
	if w.Stats().SegmentsRecycled == 0 || len(vlogFiles(t, dir)) == 0 {
		t.Fatalf("nothing recycled or kept: %+v, value segments %v", w.Stats(), vlogFiles(t, dir))
	}
}

// renameHookFS calls hook after each rename to a value segment name.
type renameHookFS struct {
	fsx.FS
	hook func(seq uint64)
}

func (f renameHookFS) Rename(from, to string) error {
	if err := f.FS.Rename(from, to); err != nil {
		return err
	}
	var seq uint64
	if _, err := fmt.Sscanf(filepath.Base(to), "%016x.vlog", &seq); err == nil && f.hook != nil {
		f.hook(seq)
	}
	return nil
}

func TestWAL_AReadDuringARenameFindsTheFile(t *testing.T) {
	dir := t.TempDir()
	var pins pinSet
	var readErr chan error
	var hook func(seq uint64)
	o := testOptions(t)
	o.SegmentSize = 4 << 10
	o.MaxWALs = 1
	o.Pinned = pins.pinned
	o.FS = renameHookFS{FS: fsx.OS{}, hook: func(seq uint64) { hook(seq) }}
	w := createWALWith(t, dir, o)
	// The first value, never read before: a read has no handle yet and
	// opens the file by name.
	first := sizedEnt(1, 1, 300)
	mustSave(t, w, hardState(1, 1, 1), []*raftpb.Entry{first})
	loc, _ := w.Locate(1)
	pins.pin(loc.Seq)
	// While the purge renames the segment to a value segment, a reader
	// opens it: it must find the file under one name or the other.
	hook = func(seq uint64) {
		if seq != loc.Seq || readErr != nil {
			return
		}
		readErr = make(chan error, 1)
		go func() {
			got, err := w.ReadValue(loc.Seq, loc.Off, loc.Len, crcOf(first.GetData()))
			if err == nil && !bytes.Equal(got, first.GetData()) {
				err = fmt.Errorf("read %q", got)
			}
			readErr <- err
		}()
		time.Sleep(50 * time.Millisecond) // the reader runs into the rename
	}
	for i := uint64(2); i <= 60; i++ {
		mustSave(t, w, hardState(1, 1, i), []*raftpb.Entry{sizedEnt(1, i, 300)})
	}
	if err := w.SaveSnapshot(SnapshotMarker{Index: 60, Term: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.PurgeBefore(60); err != nil {
		t.Fatal(err)
	}
	if readErr == nil {
		t.Fatalf("segment %d was not renamed to a value segment: %v", loc.Seq, vlogFiles(t, dir))
	}
	if err := <-readErr; err != nil {
		t.Fatalf("ReadValue during the rename: %v", err)
	}
}

func TestEntrySpans_MatchTheEncoder(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for range 200 {
		var es []*raftpb.Entry
		idx := rng.Uint64N(1 << 40)
		for range 1 + rng.IntN(5) {
			idx++
			e := sizedEnt(rng.Uint64N(1<<33), idx, []int{0, 3, 24, 300, 70000}[rng.IntN(5)])
			typ := raftpb.EntryType(rng.IntN(3))
			e.Type = &typ
			if rng.IntN(8) == 0 {
				e.Data = nil
			}
			es = append(es, e)
		}
		recs, _, err := entryRecs(nil, nil, es, maxRecordLen-1)
		if err != nil {
			t.Fatal(err)
		}
		var spans []entrySpan
		for _, r := range recs {
			spans = append(spans, r.spans...)
			for _, sp := range r.spans {
				if sp.off+sp.n > len(r.payload) {
					t.Fatalf("span %+v past a payload of %d", sp, len(r.payload))
				}
			}
		}
		if len(spans) != len(es) {
			t.Fatalf("%d spans for %d entries", len(spans), len(es))
		}
		for i, sp := range spans {
			if sp.index != es[i].GetIndex() || sp.n != len(es[i].GetData()) {
				t.Fatalf("span %+v for entry %d of %d bytes", sp, es[i].GetIndex(), len(es[i].GetData()))
			}
		}
	}
}

// Records carved out of a scratch buffer reused from call to call, several
// per call, are the records a fresh encoding gives: none overlaps another.
func TestEntryRecs_ReusedScratchGivesTheSameRecords(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	var scratch []byte
	var recs []rec
	for round := range 300 {
		es := make([]*raftpb.Entry, 1+rng.IntN(30))
		for i := range es {
			es[i] = sizedEnt(1, uint64(round*100+i), rng.IntN(300))
			for j := range es[i].Data {
				es[i].Data[j] = byte(rng.Uint32())
			}
		}
		budget := []int{2000, 5000, maxRecordLen - 1}[rng.IntN(3)]
		var err error
		if recs, scratch, err = entryRecs(recs[:0], scratch, es, budget); err != nil {
			t.Fatal(err)
		}
		want, _, err := entryRecs(nil, nil, es, budget)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != len(want) {
			t.Fatalf("round %d: %d records, want %d", round, len(recs), len(want))
		}
		for i := range recs {
			if !bytes.Equal(recs[i].payload, want[i].payload) || fmt.Sprint(recs[i].spans) != fmt.Sprint(want[i].spans) {
				t.Fatalf("round %d: record %d of %d differs from a fresh encoding", round, i, len(recs))
			}
		}
	}
}

func FuzzEntrySpans(f *testing.F) {
	f.Add(fuzzEntries(ents(1, 1, 3)).payload)
	f.Add(fuzzEntries([]*raftpb.Entry{sizedEnt(1<<40, 1<<50, 300)}).payload)
	f.Add([]byte{0x81, 0x84, 0x01, 0x02, 0x20, 0xf6})
	f.Add([]byte{0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, p []byte) {
		spans, err := entrySpans(p, nil)
		if err != nil {
			return
		}
		// Whatever it accepts is an array of entries whose data lies where
		// it says: the decoder agrees.
		var recs []entryRec
		if codec.Unmarshal(p, &recs) != nil {
			return // e.g. a non-minimal head the decoder refuses
		}
		if len(recs) != len(spans) {
			t.Fatalf("%d spans, %d entries", len(spans), len(recs))
		}
		for i, sp := range spans {
			if sp.index != recs[i].Index || !bytes.Equal(p[sp.off:sp.off+sp.n], recs[i].Data) {
				t.Fatalf("span %+v, entry %d with %x", sp, recs[i].Index, recs[i].Data)
			}
		}
	})
}

// The entries record written by hand is the one Marshal writes, and its
// spans are the ones entrySpans finds: terms and indexes at every head
// length, every entry type, nil, empty and longer data.
func TestEncodeEntries_AsMarshal(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	nums := []uint64{0, 1, 23, 24, 255, 256, 65535, 65536, 1<<32 - 1, 1 << 32, 1<<64 - 1}
	for round := range 200 {
		es := make([]*raftpb.Entry, 1+rng.IntN(40))
		for i := range es {
			var data []byte
			switch rng.IntN(4) {
			case 1:
				data = []byte{}
			case 2:
				data = make([]byte, rng.IntN(300))
			case 3:
				data = make([]byte, 65536+rng.IntN(10))
			}
			for j := range data {
				data[j] = byte(rng.Uint32())
			}
			term, index := nums[rng.IntN(len(nums))], nums[rng.IntN(len(nums))]
			typ := raftpb.EntryType(rng.IntN(3))
			es[i] = &raftpb.Entry{Term: &term, Index: &index, Type: &typ, Data: data}
		}
		got, spans := encodeEntries(nil, es)
		recs := make([]entryRec, len(es))
		for i, e := range es {
			recs[i] = entryRec{Term: e.GetTerm(), Index: e.GetIndex(), Type: e.GetType(), Data: e.GetData()}
		}
		want, err := codec.Marshal(recs)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("round %d: encodeEntries wrote\n%x\nMarshal\n%x", round, got, want)
		}
		wantSpans, err := entrySpans(want, nil)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(spans) != fmt.Sprint(wantSpans) {
			t.Fatalf("round %d: spans %v, entrySpans finds %v", round, spans, wantSpans)
		}
	}
}

func BenchmarkEntryRecs(b *testing.B) {
	es := ents(1, 1, 64)
	for _, e := range es {
		e.Data = make([]byte, 300)
	}
	b.ReportAllocs()
	var recs []rec
	var scratch []byte
	for b.Loop() {
		var err error
		if recs, scratch, err = entryRecs(recs[:0], scratch, es, maxRecordLen-1); err != nil {
			b.Fatal(err)
		}
	}
}
