package wal

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/edgekv/edgekv/persist/fsx"
)

func poolFiles(t testing.TB, dir string) (free, next []string) {
	t.Helper()
	_, pool, err := listDir(fsx.OS{}, dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range pool {
		if strings.HasSuffix(name, freeExt) {
			free = append(free, name)
		} else {
			next = append(next, name)
		}
	}
	return free, next
}

// saveUntil saves one entry per Save from *last+1 until the WAL has n
// segments.
func saveUntil(t testing.TB, w *WAL, dir string, last *uint64, n int) {
	t.Helper()
	for len(segmentFiles(t, dir)) < n {
		*last++
		mustSave(t, w, hardState(1, 1, *last), ents(1, *last, *last))
	}
}

func TestWAL_PurgedSegmentsAreRecycled(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(t)
	o.SegmentSize = 4 << 10
	o.MaxWALs = 2
	w := createWALWith(t, dir, o)
	var last uint64
	saveUntil(t, w, dir, &last, 6)
	marker := last
	if err := w.SaveSnapshot(SnapshotMarker{Index: marker, Term: 1}); err != nil {
		t.Fatal(err)
	}
	removed, err := w.PurgeBefore(marker)
	if err != nil || removed != 4 {
		t.Fatalf("PurgeBefore: removed %d, %v; want 4", removed, err)
	}
	if n := len(segmentFiles(t, dir)); n != 2 {
		t.Fatalf("%d segments left, want MaxWALs = 2", n)
	}
	free, _ := poolFiles(t, dir)
	if len(free) != maxFreeSegments {
		t.Fatalf("free pool: %v, want %d files (the rest deleted)", free, maxFreeSegments)
	}

	// The next cuts reuse the pool instead of creating files.
	created := w.Stats().SegmentsCreated
	saveUntil(t, w, dir, &last, 4)
	st := w.Stats()
	if st.SegmentsCreated != created || st.SegmentsRecycled < 2 {
		t.Fatalf("after purge: %+v (created %d before)", st, created)
	}
	// A recycled segment holds stale records past its data, and they are
	// neither data nor corruption.
	files := segmentFiles(t, dir)
	tail := files[len(files)-1]
	data, _ := os.ReadFile(tail)
	if allZero(data[dataEnd(t, tail)+terminatorSize:]) {
		t.Fatalf("%s has no stale bytes: not recycled", tail)
	}
	mustClose(t, w)
	lg, logs := newLogger(t)
	o.Logger = lg
	_, got := openWALWith(t, dir, o)
	if got.Snapshot != (SnapshotMarker{Index: marker, Term: 1}) {
		t.Fatalf("snapshot: %+v", got.Snapshot)
	}
	checkEntries(t, got.Entries, ents(1, marker+1, last))
	checkHardState(t, got.HardState, hardState(1, 1, last))
	if strings.Contains(logs.buf.String(), "torn") {
		t.Fatalf("stale records taken for a torn write: %s", logs.buf.String())
	}
}

func TestWAL_FlippedByteInARecycledSegmentRefusesToStart(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(t)
	o.SegmentSize = 4 << 10
	o.MaxWALs = 1
	w := createWALWith(t, dir, o)
	var last uint64
	saveUntil(t, w, dir, &last, 4)
	if err := w.SaveSnapshot(SnapshotMarker{Index: last, Term: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.PurgeBefore(last); err != nil {
		t.Fatal(err)
	}
	// The first cut after the purge takes the file prepared before it;
	// the second a recycled one. Then a few Saves into it.
	cuts := w.Stats().Cuts
	for w.Stats().Cuts < cuts+2 {
		last++
		mustSave(t, w, hardState(1, 1, last), ents(1, last, last))
	}
	for range 3 {
		last++
		mustSave(t, w, hardState(1, 1, last), ents(1, last, last))
	}
	if w.Stats().SegmentsRecycled == 0 || w.Stats().Cuts != cuts+2 {
		t.Fatalf("stats: %+v", w.Stats())
	}
	mustClose(t, w)
	files := segmentFiles(t, dir)
	tail := files[len(files)-1]
	if data, _ := os.ReadFile(tail); allZero(data[dataEnd(t, tail)+terminatorSize:]) {
		t.Fatalf("%s has no stale bytes: not recycled", tail)
	}
	e := recordsOf(records(t, tail), recEntries)[0]
	patchFile(t, tail, e.off+1, []byte{0x7f}) // the length
	_, _, err := OpenWithOptions(dir, o)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), filepath.Base(tail)) {
		t.Fatalf("Open: %v", err)
	}
}

func TestWAL_PurgeKeepsWhatIsStillNeeded(t *testing.T) {
	o := testOptions(t)
	o.SegmentSize = 4 << 10
	tests := []struct {
		name     string
		maxWALs  int
		markerAt int                      // segments when the marker is saved; 0: 3
		marker   func(last uint64) uint64 // index of the marker
		purge    func(last uint64) uint64
		wantKeep func(segs []segment, marker uint64) int // segments that must stay
	}{
		{
			name: "never the segment holding the latest marker", maxWALs: 1,
			marker: func(last uint64) uint64 { return last },
			purge:  func(last uint64) uint64 { return 1 << 40 },
			wantKeep: func(segs []segment, _ uint64) int {
				return len(segs) - 2 // the marker's segment (the third) and after
			},
		},
		{
			name: "never entries above the index", maxWALs: 1,
			marker: func(last uint64) uint64 { return last },
			purge:  func(last uint64) uint64 { return 2 },
			wantKeep: func(segs []segment, _ uint64) int {
				n := len(segs)
				for i := 0; i+1 < len(segs) && segs[i+1].index <= 3; i++ {
					n--
				}
				return n
			},
		},
		{
			name: "at least MaxWALs", maxWALs: 5, markerAt: 8,
			marker:   func(last uint64) uint64 { return last },
			purge:    func(last uint64) uint64 { return last },
			wantKeep: func(segs []segment, _ uint64) int { return 5 },
		},
		{
			name: "nothing when MaxWALs is negative", maxWALs: -1,
			marker:   func(last uint64) uint64 { return last },
			purge:    func(last uint64) uint64 { return last },
			wantKeep: func(segs []segment, _ uint64) int { return len(segs) },
		},
		{
			name: "nothing without a marker", maxWALs: 1,
			marker:   func(last uint64) uint64 { return 0 },
			purge:    func(last uint64) uint64 { return last },
			wantKeep: func(segs []segment, _ uint64) int { return len(segs) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			o.MaxWALs = tt.maxWALs
			w := createWALWith(t, dir, o)
			var last uint64
			markerAt := tt.markerAt
			if markerAt == 0 {
				markerAt = 3
			}
			saveUntil(t, w, dir, &last, markerAt)
			marker := tt.marker(last)
			if marker > 0 {
				if err := w.SaveSnapshot(SnapshotMarker{Index: marker, Term: 1}); err != nil {
					t.Fatal(err)
				}
			}
			saveUntil(t, w, dir, &last, 8)
			segs := append([]segment(nil), w.segs...)
			want := tt.wantKeep(segs, marker)
			removed, err := w.PurgeBefore(tt.purge(last))
			if err != nil {
				t.Fatal(err)
			}
			if kept := len(segmentFiles(t, dir)); kept != want || removed != len(segs)-want {
				t.Fatalf("kept %d of %d segments (removed %d), want %d kept", kept, len(segs), removed, want)
			}
			mustClose(t, w)
			_, st := openWALWith(t, dir, o)
			checkEntries(t, st.Entries, ents(1, marker+1, last))
		})
	}
}

func TestWAL_SyncOrWriteErrorStopsTheWAL(t *testing.T) {
	errIO := errors.New("injected EIO")
	tests := []struct {
		name   string
		inject func(c *fsx.CrashFS)
		cut    bool
	}{
		{"failed fdatasync", func(c *fsx.CrashFS) { c.FailSync(1, errIO) }, false},
		{"failed write", func(c *fsx.CrashFS) { c.FailWrite(1, errIO) }, false},
		{"failed directory fsync at a cut", func(c *fsx.CrashFS) { c.FailSync(1, errIO) }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fsx.NewCrashFS(1)
			o := testOptions(t)
			o.FS = c
			w := createWALWith(t, "/wal", o)
			mustSave(t, w, hardState(1, 1, 1), ents(1, 1, 2))
			if tt.cut {
				w.opts.SegmentSize = 1
			}
			tt.inject(c)
			err := w.Save(hardState(1, 1, 3), ents(1, 3, 3))
			if !errors.Is(err, errIO) || errors.Is(err, ErrFailed) {
				t.Fatalf("failing Save: %v", err)
			}
			// Fail-stop: nothing is written any more, even if the disk
			// would take it now.
			if err := w.Save(nil, ents(1, 3, 3)); !errors.Is(err, ErrFailed) || !errors.Is(err, errIO) {
				t.Fatalf("Save after a failure: %v", err)
			}
			if err := w.SaveSnapshot(SnapshotMarker{Index: 1, Term: 1}); !errors.Is(err, ErrFailed) {
				t.Fatalf("SaveSnapshot after a failure: %v", err)
			}
			if _, err := w.PurgeBefore(1); !errors.Is(err, ErrFailed) {
				t.Fatalf("PurgeBefore after a failure: %v", err)
			}
			mustClose(t, w)
			// After power loss, what was acknowledged is there.
			c.Crash()
			_, st := openWALWith(t, "/wal", o)
			if n := len(st.Entries); n < 2 || n > 3 {
				t.Fatalf("entries after the failure: %v", view(st.Entries))
			}
			checkEntries(t, st.Entries[:2], ents(1, 1, 2))
		})
	}
}

func TestWAL_SlowFdatasyncIsLoggedAndEverySyncObserved(t *testing.T) {
	dir := t.TempDir()
	lg, logs := newLogger(t)
	o := testOptions(t)
	o.Logger = lg
	var observed []time.Duration
	o.OnSync = func(d time.Duration) { observed = append(observed, d) }
	w := createWALWith(t, dir, o)
	clock := time.Unix(0, 0)
	step := 10 * time.Millisecond
	w.now = func() time.Time { clock = clock.Add(step); return clock }
	mustSave(t, w, nil, ents(1, 1, 1))
	if strings.Contains(logs.buf.String(), "slow fdatasync") {
		t.Fatalf("a 10ms sync was reported slow: %s", logs.buf.String())
	}
	step = 1500 * time.Millisecond
	mustSave(t, w, nil, ents(1, 2, 2))
	if len(observed) != 2 || observed[0] != 10*time.Millisecond || observed[1] != 1500*time.Millisecond {
		t.Fatalf("observed %v", observed)
	}
	out := logs.buf.String()
	if !strings.Contains(out, "slow fdatasync") || !strings.Contains(out, "took=1.5s") || !strings.Contains(out, "expected-duration=1s") {
		t.Fatalf("no slow fdatasync warning: %s", out)
	}
}

func TestWAL_BackgroundPreparationRacesNothing(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(t)
	o.inlinePrepare = false
	o.SegmentSize = 4 << 10
	o.MaxWALs = 2
	w := createWALWith(t, dir, o)
	var mu sync.Mutex
	var committed uint64 // last index Save returned for
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() { // snapshots and purges from another goroutine
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			mu.Lock()
			c := committed
			mu.Unlock()
			if c == 0 {
				continue
			}
			if err := w.SaveSnapshot(SnapshotMarker{Index: c, Term: 1}); err != nil {
				t.Error(err)
				return
			}
			if _, err := w.PurgeBefore(c); err != nil {
				t.Error(err)
				return
			}
		}
	})
	const n = 300
	for i := uint64(1); i <= n; i++ {
		mustSave(t, w, hardState(1, 1, i), []*raftpb.Entry{ent(1, i, strings.Repeat("v", 200))})
		mu.Lock()
		committed = i
		mu.Unlock()
	}
	close(stop)
	wg.Wait()
	st := w.Stats()
	if st.Cuts < 10 || st.SegmentsRecycled == 0 {
		t.Fatalf("stats: %+v", st)
	}
	mustClose(t, w)
	_, got := openWALWith(t, dir, o)
	var want []*raftpb.Entry
	for i := got.Snapshot.Index + 1; i <= n; i++ {
		want = append(want, ent(1, i, strings.Repeat("v", 200)))
	}
	checkEntries(t, got.Entries, want)
	checkHardState(t, got.HardState, hardState(1, 1, n))
}
