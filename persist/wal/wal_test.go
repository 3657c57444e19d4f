package wal

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

func TestWAL_RoundTripGivesBackWhatWasSaved(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wal")
	w := createWAL(t, dir)
	if !Exist(dir) {
		t.Fatal("Exist is false after Create")
	}
	mustSave(t, w, hardState(1, 1, 0), ents(1, 1, 3))
	mustSave(t, w, nil, ents(1, 4, 4))
	big := ent(2, 5, strings.Repeat("x", 100_000))
	conf := ent(2, 6, "cc")
	conf.Type = raftpb.EntryConfChange.Enum()
	empty := &raftpb.Entry{} // getters give zero; set index and term only
	empty.Index, empty.Term = ent(2, 7, "").Index, ent(2, 7, "").Term
	mustSave(t, w, hardState(2, 3, 5), []*raftpb.Entry{big, conf, empty})
	mustClose(t, w)

	_, st := openWAL(t, dir)
	if st.Metadata != testMD {
		t.Fatalf("metadata: got %+v, want %+v", st.Metadata, testMD)
	}
	checkHardState(t, st.HardState, hardState(2, 3, 5))
	want := append(ents(1, 1, 4), big, conf, empty)
	checkEntries(t, st.Entries, want)
}

func TestWAL_OpenOfFreshWALGivesEmptyState(t *testing.T) {
	dir := t.TempDir()
	mustClose(t, createWAL(t, dir))
	_, st := openWAL(t, dir)
	if st.HardState == nil || len(st.Entries) != 0 || st.Metadata != testMD || st.Snapshot != (SnapshotMarker{}) {
		t.Fatalf("state: %+v", st)
	}
}

func TestWAL_SegmentsArePreallocatedAndEveryWriteEndsOnASector(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(t)
	o.SegmentSize = 8 << 10
	w := createWALWith(t, dir, o)
	for i := uint64(1); i <= 60; i++ {
		mustSave(t, w, hardState(1, 1, i), ents(1, i, i))
		if w.off%sectorSize != 0 {
			t.Fatalf("save %d: next write at %d, not on a sector boundary", i, w.off)
		}
	}
	files := segmentFiles(t, dir)
	if len(files) < 3 {
		t.Fatalf("want several segments, have %d", len(files))
	}
	for _, f := range files {
		if fi, _ := os.Stat(f); fi.Size() != o.SegmentSize {
			t.Fatalf("%s is %d bytes, want preallocated to %d", f, fi.Size(), o.SegmentSize)
		}
	}
	// The next segment is ready before the cut that needs it.
	next := filepath.Join(dir, nextName(w.seq()+1))
	if fi, err := os.Stat(next); err != nil || fi.Size() != o.SegmentSize {
		t.Fatalf("next segment not prepared: %v", err)
	}
}

func TestWAL_ConflictingSuffixIsReplaced(t *testing.T) {
	tests := []struct {
		name  string
		saves [][]*raftpb.Entry
		want  []*raftpb.Entry
	}{
		{
			name:  "suffix from the middle",
			saves: [][]*raftpb.Entry{ents(1, 1, 5), ents(2, 3, 4)},
			want:  append(ents(1, 1, 2), ents(2, 3, 4)...),
		},
		{
			name:  "last entry only",
			saves: [][]*raftpb.Entry{ents(1, 1, 5), ents(2, 5, 6)},
			want:  append(ents(1, 1, 4), ents(2, 5, 6)...),
		},
		{
			name:  "whole log",
			saves: [][]*raftpb.Entry{ents(1, 1, 5), ents(3, 1, 2)},
			want:  ents(3, 1, 2),
		},
		{
			name:  "twice, then appended",
			saves: [][]*raftpb.Entry{ents(1, 1, 5), ents(2, 4, 8), ents(3, 2, 2), ents(3, 3, 4)},
			want:  append(ents(1, 1, 1), ents(3, 2, 4)...),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			w := createWAL(t, dir)
			for _, es := range tt.saves {
				mustSave(t, w, nil, es)
			}
			mustClose(t, w)
			w2, st := openWAL(t, dir)
			checkEntries(t, st.Entries, tt.want)

			// Appending after reopening continues from the replayed tail.
			last := tt.want[len(tt.want)-1].GetIndex()
			mustSave(t, w2, nil, ents(9, last+1, last+1))
			mustClose(t, w2)
			_, st = openWAL(t, dir)
			checkEntries(t, st.Entries, append(tt.want, ents(9, last+1, last+1)...))
		})
	}
}

func TestWAL_TornTailIsRepaired(t *testing.T) {
	// Two Saves return; a third, 4 sectors long, is torn: k of its sectors
	// reach the disk, the rest hold what was there before (zeros in a
	// fresh segment, stale bytes in a recycled one).
	stale := bytes.Repeat([]byte("stale record bytes "), 200)
	tests := []struct {
		name  string
		kept  int    // sectors of the third write that survive
		old   []byte // what the rest of the file held; nil: zeros
		torn  bool   // a warning and a repair are expected
		patch func(d []byte, off int)
	}{
		{name: "nothing reached the disk", kept: 0},
		{name: "nothing reached a recycled segment", kept: 0, old: stale},
		{name: "one sector, zeros after", kept: 1, torn: true},
		{name: "three sectors, zeros after", kept: 3, torn: true},
		{name: "one sector, stale bytes after", kept: 1, old: stale, torn: true},
		{name: "three sectors, stale bytes after", kept: 3, old: stale, torn: true},
		{name: "garbage length then zeros", torn: true, patch: func(d []byte, off int) {
			copy(d[off:], []byte{0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4})
		}},
		{name: "half a header", torn: true, patch: func(d []byte, off int) {
			copy(d[off:], []byte{0x10, 0x20, 0, 0})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			w := createWAL(t, dir)
			mustSave(t, w, hardState(1, 1, 1), ents(1, 1, 2))
			mustSave(t, w, hardState(1, 1, 2), ents(1, 3, 3))
			off := int(w.off)
			path := segmentFiles(t, dir)[0]
			before, _ := os.ReadFile(path)
			mustSave(t, w, hardState(1, 1, 4), []*raftpb.Entry{ent(1, 4, strings.Repeat("y", 1800))})
			write := int(w.off) - off
			after, _ := os.ReadFile(path)
			mustClose(t, w)
			if write < 4*sectorSize {
				t.Fatalf("third write is %d bytes, want 4 sectors", write)
			}

			// Build the file as the crash left it.
			data := before
			if tt.old != nil {
				for i := off + terminatorSize; i < len(data); i++ {
					data[i] = tt.old[i%len(tt.old)]
				}
			}
			copy(data[off:off+tt.kept*sectorSize], after[off:])
			if tt.patch != nil {
				tt.patch(data, off)
			}
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}

			lg, logs := newLogger(t)
			o := testOptions(t)
			o.Logger = lg
			w2, st := openWALWith(t, dir, o)
			checkEntries(t, st.Entries, ents(1, 1, 3))
			checkHardState(t, st.HardState, hardState(1, 1, 2))
			warned := strings.Contains(logs.buf.String(), "torn")
			if warned != tt.torn {
				t.Fatalf("torn warning: %v, want %v: %s", warned, tt.torn, logs.buf.String())
			}
			if tt.torn && (!strings.Contains(logs.buf.String(), filepath.Base(path)) || !strings.Contains(logs.buf.String(), fmt.Sprintf("offset=%d", off))) {
				t.Fatalf("warning does not name file and offset %d: %s", off, logs.buf.String())
			}
			repaired, _ := os.ReadFile(path)
			if !allZero(repaired[off : off+terminatorSize]) {
				t.Fatalf("no terminator at %d after repair", off)
			}
			if fi, _ := os.Stat(path); fi.Size() != int64(len(data)) {
				t.Fatalf("file changed size from %d to %d", len(data), fi.Size())
			}

			// The repaired log takes new writes and reads back whole.
			mustSave(t, w2, hardState(2, 1, 4), ents(2, 4, 5))
			mustClose(t, w2)
			lg3, logs3 := newLogger(t)
			o.Logger = lg3
			_, st = openWALWith(t, dir, o)
			checkEntries(t, st.Entries, append(ents(1, 1, 3), ents(2, 4, 5)...))
			checkHardState(t, st.HardState, hardState(2, 1, 4))
			if strings.Contains(logs3.buf.String(), "torn") {
				t.Fatalf("second open found a torn write: %s", logs3.buf.String())
			}
		})
	}
}

func TestWAL_FlippedByteMidLogRefusesToStart(t *testing.T) {
	tests := []struct {
		name string
		// pick chooses the damaged record among those of the segment.
		pick func(rs []recordAt) recordAt
		at   int // byte within it
	}{
		{"payload of an early entries record", func(rs []recordAt) recordAt { return recordsOf(rs, recEntries)[0] }, 12},
		{"crc of an early entries record", func(rs []recordAt) recordAt { return recordsOf(rs, recEntries)[0] }, 5},
		{"length of an early entries record", func(rs []recordAt) recordAt { return recordsOf(rs, recEntries)[1] }, 0},
		{"high byte of a length", func(rs []recordAt) recordAt { return recordsOf(rs, recEntries)[1] }, 3},
		{"type of an early hard state record", func(rs []recordAt) recordAt { return recordsOf(rs, recHardState)[0] }, 8},
		{"padding of an early write", func(rs []recordAt) recordAt { return recordsOf(rs, recPad)[2] }, 20},
		{"metadata record", func(rs []recordAt) recordAt { return rs[0] }, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			w := createWAL(t, dir)
			for i := uint64(1); i <= 5; i++ {
				mustSave(t, w, hardState(1, 1, i), ents(1, i, i))
			}
			mustClose(t, w)
			path := segmentFiles(t, dir)[0]
			r := tt.pick(records(t, path))
			data, _ := os.ReadFile(path)
			data[r.off+tt.at] ^= 0x10
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}

			_, _, err := OpenWithOptions(dir, testOptions(t))
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open: got %v, want ErrCorrupt", err)
			}
			want := fmt.Sprintf("in %s at offset %d", filepath.Base(path), r.off)
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("error %q does not say %q", err, want)
			}
			after, _ := os.ReadFile(path)
			if !bytes.Equal(after, data) {
				t.Fatal("Open changed the file")
			}
		})
	}
}

// manySegments makes a WAL of at least n segments, with entries 1..last.
func manySegments(t *testing.T, dir string, o Options, n int) (last uint64) {
	t.Helper()
	w := createWALWith(t, dir, o)
	for len(segmentFiles(t, dir)) < n {
		last++
		mustSave(t, w, hardState(1, 1, last), ents(1, last, last))
	}
	mustClose(t, w)
	return last
}

func TestWAL_BadRecordAtTheEndOfAFullSegmentIsCorruption(t *testing.T) {
	o := testOptions(t)
	o.SegmentSize = 4 << 10
	for _, tt := range []struct {
		name string
		typ  byte
	}{
		{"its last entries record", recEntries},
		{"its last hard state record", recHardState},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			manySegments(t, dir, o, 3)
			files := segmentFiles(t, dir)
			// Zero the last record of that type in the first segment: a
			// torn tail, but not in the last segment.
			rs := recordsOf(records(t, files[0]), tt.typ)
			r := rs[len(rs)-1]
			patchFile(t, files[0], r.off, make([]byte, r.n))
			_, _, err := OpenWithOptions(dir, o)
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), fmt.Sprintf("%s at offset %d", filepath.Base(files[0]), r.off)) {
				t.Fatalf("Open: %v", err)
			}
		})
	}
}

func TestWAL_SegmentsAreCutAndReplayedInOrder(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(t)
	o.SegmentSize = 4 << 10
	w := createWALWith(t, dir, o)
	var want []*raftpb.Entry
	for i := uint64(1); i <= 40; i++ {
		es := ents(1+i/10, i, i)
		mustSave(t, w, hardState(1+i/10, 1, i), es)
		want = append(want, es...)
	}
	// Overwrite a suffix that lies in an earlier segment.
	over := ents(9, 30, 32)
	mustSave(t, w, hardState(9, 2, 29), over)
	want = append(want[:29], over...)
	mustClose(t, w)

	files := segmentFiles(t, dir)
	if len(files) < 4 {
		t.Fatalf("want several segments, have %d", len(files))
	}
	for i, f := range files {
		s, _ := parseSegmentName(filepath.Base(f))
		if s.seq != uint64(i) {
			t.Fatalf("segment %d has sequence %d", i, s.seq)
		}
		// Each segment begins with metadata; later ones carry a link and the hard state.
		rs := records(t, f)
		if rs[0].typ != recMetadata || rs[0].off != 0 {
			t.Fatalf("%s does not start with metadata", f)
		}
		if i > 0 {
			var types []byte
			for _, r := range rs[1:] {
				if r.typ != recPad {
					types = append(types, r.typ)
				}
			}
			if len(types) < 2 || types[0] != recLink || types[1] != recHardState {
				t.Fatalf("%s: records after the header are %v, want link then hard state", f, types)
			}
		}
	}
	if s, _ := parseSegmentName(filepath.Base(files[1])); s.index < 2 {
		t.Fatalf("second segment named for index %d", s.index)
	}
	des, _ := os.ReadDir(dir)
	for _, de := range des {
		if _, ok := parseSegmentName(de.Name()); ok {
			continue
		}
		if _, _, ok := parsePoolName(de.Name()); !ok {
			t.Fatalf("stray file in %s: %s", dir, de.Name())
		}
	}

	w2, st := openWALWith(t, dir, o)
	checkEntries(t, st.Entries, want)
	checkHardState(t, st.HardState, hardState(9, 2, 29))
	mustSave(t, w2, nil, ents(9, 33, 33))
	mustClose(t, w2)
	_, st = openWALWith(t, dir, o)
	checkEntries(t, st.Entries, append(want, ents(9, 33, 33)...))
}

func TestWAL_CutCarriesTheStateIntoTheNewSegment(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(t)
	o.SegmentSize = 1 // every Save after the first in a segment cuts
	w := createWALWith(t, dir, o)
	mustSave(t, w, hardState(4, 2, 0), nil)
	mustSave(t, w, nil, ents(4, 1, 3))
	if err := w.SaveSnapshot(SnapshotMarker{Index: 3, Term: 4}); err != nil {
		t.Fatal(err)
	}
	mustSave(t, w, nil, ents(4, 4, 4))
	mustClose(t, w)
	files := segmentFiles(t, dir)
	if len(files) != 4 {
		t.Fatalf("want 4 segments, have %d", len(files))
	}
	// Losing the earlier segments (as purging does) keeps the hard state
	// and the marker.
	os.Remove(files[0])
	os.Remove(files[1])
	os.Remove(files[2])
	_, st := openWALWith(t, dir, o)
	checkHardState(t, st.HardState, hardState(4, 2, 0))
	if st.Snapshot != (SnapshotMarker{Index: 3, Term: 4}) {
		t.Fatalf("snapshot: %+v", st.Snapshot)
	}
	checkEntries(t, st.Entries, ents(4, 4, 4))
}

func TestWAL_SaveWritesOnceAndSyncsOnce(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(t)
	var observed int
	o.OnSync = func(time.Duration) { observed++ }
	w := createWALWith(t, dir, o)
	if s := w.Stats(); s.Syncs != 0 || s.Writes != 0 || s.BytesWritten != 0 {
		t.Fatalf("fresh stats: %+v", s)
	}
	saves := []struct {
		hs *raftpb.HardState
		es []*raftpb.Entry
	}{
		{hardState(1, 1, 0), nil},
		{nil, ents(1, 1, 1)},
		{hardState(1, 1, 50), ents(1, 2, 50)},
	}
	var written uint64
	for i, s := range saves {
		start := w.off
		mustSave(t, w, s.hs, s.es)
		st := w.Stats()
		if st.Writes != uint64(i+1) || st.Syncs != uint64(i+1) || observed != i+1 {
			t.Fatalf("after %d saves: %+v, %d observed", i+1, st, observed)
		}
		if w.df != nil {
			// Direct I/O writes the terminator's sector whole.
			written += uint64(alignUp(w.off - start + terminatorSize))
		} else {
			written += uint64(w.off-start) + terminatorSize
		}
		if st.BytesWritten != written {
			t.Fatalf("BytesWritten %d, want %d", st.BytesWritten, written)
		}
	}
	// A cut costs one directory fsync more, no write: the next segment
	// was prepared ahead.
	w.opts.SegmentSize = 1
	before := w.Stats()
	mustSave(t, w, nil, ents(1, 51, 51))
	after := w.Stats()
	if after.Writes-before.Writes != 1 || after.Syncs-before.Syncs != 2 || after.Cuts-before.Cuts != 1 {
		t.Fatalf("save with cut: before %+v after %+v", before, after)
	}
	if after.PrepareSyncs-before.PrepareSyncs != 1 {
		t.Fatalf("preparing the next segment: before %+v after %+v", before, after)
	}
}

func TestWAL_EmptySaveDoesNothing(t *testing.T) {
	dir := t.TempDir()
	w := createWAL(t, dir)
	data, _ := os.ReadFile(segmentFiles(t, dir)[0])
	for _, hs := range []*raftpb.HardState{nil, {}, hardState(0, 0, 0)} {
		for _, es := range [][]*raftpb.Entry{nil, {}} {
			mustSave(t, w, hs, es)
		}
	}
	if s := w.Stats(); s.Writes != 0 || s.Syncs != 0 {
		t.Fatalf("stats after empty saves: %+v", s)
	}
	data2, _ := os.ReadFile(segmentFiles(t, dir)[0])
	if !bytes.Equal(data, data2) {
		t.Fatal("the segment changed")
	}
}

func TestWAL_SaveRefusesEntriesReplayWouldReject(t *testing.T) {
	tests := []struct {
		name string
		es   []*raftpb.Entry
	}{
		{"gap after the last entry", ents(1, 5, 5)},
		{"not consecutive", []*raftpb.Entry{ent(1, 3, ""), ent(1, 5, "")}},
		{"index zero", []*raftpb.Entry{ent(1, 0, "")}},
		{"nil entry", []*raftpb.Entry{nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := createWAL(t, t.TempDir())
			mustSave(t, w, nil, ents(1, 1, 3))
			before := w.Stats()
			if err := w.Save(hardState(1, 1, 1), tt.es); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Save: got %v, want ErrInvalid", err)
			}
			if w.Stats() != before {
				t.Fatal("a refused Save wrote")
			}
			// Not fatal: the WAL still works.
			mustSave(t, w, nil, ents(1, 4, 4))
		})
	}
}

func TestWAL_LargeBatchIsSplitIntoRecordsThatFit(t *testing.T) {
	dir := t.TempDir()
	w := createWAL(t, dir)
	w.recordLimit = 300
	es := ents(1, 1, 40)
	mustSave(t, w, hardState(1, 1, 40), es)
	if s := w.Stats(); s.Writes != 1 || s.Syncs != 1 {
		t.Fatalf("stats: %+v", s)
	}
	if err := w.Save(nil, []*raftpb.Entry{ent(1, 41, strings.Repeat("x", 300))}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("oversized entry: %v", err)
	}
	mustClose(t, w)
	if rs := recordsOf(records(t, segmentFiles(t, dir)[0]), recEntries); len(rs) < 4 {
		t.Fatalf("want the batch split, have %d entries records", len(rs))
	}
	_, st := openWAL(t, dir)
	checkEntries(t, st.Entries, es)
}

func TestWAL_SaveAfterCloseIsRefused(t *testing.T) {
	w := createWAL(t, t.TempDir())
	mustClose(t, w)
	if err := w.Save(nil, ents(1, 1, 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Save: %v", err)
	}
	if err := w.SaveSnapshot(SnapshotMarker{Index: 1}); !errors.Is(err, ErrClosed) {
		t.Fatalf("SaveSnapshot: %v", err)
	}
	if _, err := w.PurgeBefore(1); !errors.Is(err, ErrClosed) {
		t.Fatalf("PurgeBefore: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestWAL_CreateRefusesADirectoryThatHoldsAWAL(t *testing.T) {
	dir := t.TempDir()
	mustClose(t, createWAL(t, dir))
	if _, err := CreateWithOptions(dir, testMD, testOptions(t)); !errors.Is(err, ErrExist) {
		t.Fatalf("Create: %v", err)
	}
}

func TestWAL_CreateRefusesANonEmptyDirectory(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "other"), []byte("x"), 0o600)
	if _, err := CreateWithOptions(dir, testMD, testOptions(t)); err == nil {
		t.Fatal("Create succeeded over a non-empty directory")
	}
	if _, err := os.Stat(filepath.Join(dir, "other")); err != nil {
		t.Fatalf("Create touched the directory: %v", err)
	}
	if _, err := os.Stat(dir + ".tmp"); !os.IsNotExist(err) {
		t.Fatalf("temporary directory left behind: %v", err)
	}
}

func TestWAL_CreateMakesMissingParents(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b", "wal")
	mustClose(t, createWAL(t, dir))
	if !Exist(dir) {
		t.Fatal("no WAL after Create")
	}
}

func TestWAL_DefaultsKeepTheOldSignaturesWorking(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wal")
	w, err := Create(dir, testMD)
	if err != nil {
		t.Fatal(err)
	}
	mustSave(t, w, hardState(1, 1, 1), ents(1, 1, 1))
	mustClose(t, w)
	if fi, _ := os.Stat(segmentFiles(t, dir)[0]); fi.Size() != DefaultSegmentSize {
		t.Fatalf("segment is %d bytes, want %d", fi.Size(), DefaultSegmentSize)
	}
	w, st, err := Open(dir, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	checkEntries(t, st.Entries, ents(1, 1, 1))
}

func TestWAL_OpenWithoutSegmentsIsNotFound(t *testing.T) {
	for _, dir := range []string{t.TempDir(), filepath.Join(t.TempDir(), "missing")} {
		if Exist(dir) {
			t.Fatalf("Exist(%s)", dir)
		}
		if _, _, err := OpenWithOptions(dir, testOptions(t)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Open(%s): %v", dir, err)
		}
	}
}

func TestWAL_SecondOpenIsLocked(t *testing.T) {
	dir := t.TempDir()
	createWAL(t, dir) // left open
	if _, _, err := OpenWithOptions(dir, testOptions(t)); !errors.Is(err, ErrLocked) {
		t.Fatalf("Open: %v", err)
	}
}

func TestWAL_MetadataMismatchRefusesToStart(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(t)
	o.SegmentSize = 1
	w := createWALWith(t, dir, o)
	mustSave(t, w, nil, ents(1, 1, 1))
	mustSave(t, w, nil, ents(1, 2, 2))
	mustClose(t, w)
	// Rewrite the second segment's metadata for another member.
	files := segmentFiles(t, dir)
	other := testMD
	other.MemberID++
	p, _ := encodeMetadata(other)
	patchFile(t, files[1], 0, appendRecord(nil, seedOf(t, files[1]), recMetadata, p))

	_, _, err := OpenWithOptions(dir, o)
	if !errors.Is(err, ErrMetadataMismatch) || !strings.Contains(err.Error(), filepath.Base(files[1])) {
		t.Fatalf("Open: %v", err)
	}
}

func TestWAL_MissingMiddleSegmentIsCorruption(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(t)
	o.SegmentSize = 1
	w := createWALWith(t, dir, o)
	for i := uint64(1); i <= 3; i++ {
		mustSave(t, w, nil, ents(1, i, i))
	}
	mustClose(t, w)
	os.Remove(segmentFiles(t, dir)[1])
	if _, _, err := OpenWithOptions(dir, o); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open: %v", err)
	}
}

func TestWAL_MissingFirstSegmentsAreCorruptionUnlessASnapshotCoversThem(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(t)
	o.SegmentSize = 1
	w := createWALWith(t, dir, o)
	for i := uint64(1); i <= 3; i++ {
		mustSave(t, w, nil, ents(1, i, i))
	}
	mustClose(t, w)
	os.Remove(segmentFiles(t, dir)[0]) // entries 1 are gone, and no marker covers them
	_, _, err := OpenWithOptions(dir, o)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "entries 1 to 1 are missing") {
		t.Fatalf("Open: %v", err)
	}
}

func TestWAL_IndexGapOnDiskIsCorruption(t *testing.T) {
	dir := t.TempDir()
	w := createWAL(t, dir)
	mustSave(t, w, nil, ents(1, 1, 2))
	mustClose(t, w)
	path := segmentFiles(t, dir)[0]
	end := dataEnd(t, path)
	writeRaw(t, path, entriesRec(t, ents(1, 4, 4)))
	_, _, err := OpenWithOptions(dir, testOptions(t))
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), fmt.Sprintf("at offset %d: index gap", end)) {
		t.Fatalf("Open: %v", err)
	}
}

func TestWAL_SnapshotMarkerDropsCoveredEntries(t *testing.T) {
	dir := t.TempDir()
	w := createWAL(t, dir)
	mustSave(t, w, nil, ents(1, 1, 5))
	if err := w.SaveSnapshot(SnapshotMarker{Index: 3, Term: 1}); err != nil {
		t.Fatal(err)
	}
	mustSave(t, w, nil, ents(1, 6, 6))
	// A follower installing a snapshot past its log.
	if err := w.SaveSnapshot(SnapshotMarker{Index: 10, Term: 2}); err != nil {
		t.Fatal(err)
	}
	mustSave(t, w, nil, ents(2, 11, 12))
	if err := w.SaveSnapshot(SnapshotMarker{Index: 5, Term: 1}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("marker moving back: %v", err)
	}
	mustClose(t, w)

	w2, st := openWAL(t, dir)
	if st.Snapshot != (SnapshotMarker{Index: 10, Term: 2}) {
		t.Fatalf("snapshot: %+v", st.Snapshot)
	}
	checkEntries(t, st.Entries, ents(2, 11, 12))
	mustSave(t, w2, nil, ents(2, 13, 13))
	mustClose(t, w2)

	writeRaw(t, segmentFiles(t, dir)[0], snapshotRecFor(t, 5, 1)) // markers never move back
	if _, _, err := OpenWithOptions(dir, testOptions(t)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open: %v", err)
	}
}

func TestWAL_StatsAreSafeToReadWhileSaving(t *testing.T) {
	w := createWAL(t, t.TempDir())
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				_ = w.Stats()
			}
		}
	})
	for i := uint64(1); i <= 20; i++ {
		mustSave(t, w, nil, ents(1, i, i))
	}
	close(stop)
	wg.Wait()
}

func TestWAL_CommitOnlyHardStateWaitsForTheNextWrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wal")
	w := createWAL(t, dir)
	mustSave(t, w, hardState(1, 1, 0), ents(1, 1, 3))
	before := w.Stats()
	mustSave(t, w, hardState(1, 1, 2), nil)
	mustSave(t, w, hardState(1, 1, 3), nil)
	if after := w.Stats(); after.Writes != before.Writes || after.Syncs != before.Syncs {
		t.Fatalf("a commit-only hard state was written on its own: %+v, then %+v", before, after)
	}
	// The next write carries it.
	mustSave(t, w, nil, ents(1, 4, 4))
	if got := w.Stats().Writes - before.Writes; got != 1 {
		t.Fatalf("%d writes for entries and the pending hard state, want 1", got)
	}
	mustSave(t, w, hardState(1, 1, 4), nil)
	// What a crash now would leave (the files as they are, no Close): the
	// commit written with the entries, not the later one, which is allowed.
	crashed := filepath.Join(t.TempDir(), "crashed")
	if err := os.CopyFS(crashed, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	_, st := openWAL(t, crashed)
	checkHardState(t, st.HardState, hardState(1, 1, 3))

	// A clean Close keeps the last commit.
	mustClose(t, w)
	_, st = openWAL(t, dir)
	checkHardState(t, st.HardState, hardState(1, 1, 4))
}
