package wal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

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
	if st.HardState == nil || len(st.Entries) != 0 || st.Metadata != testMD {
		t.Fatalf("state: %+v", st)
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

func TestWAL_TornTailIsTruncated(t *testing.T) {
	// The log gets three Saves: records are metadata, entries 1-2, hard
	// state, entries 3, entries 4, hard state. whole is how many survive.
	type torn struct {
		name string
		// tear gets the file and the offset and size of the record to
		// damage (for whole == 6, the end of the file and 0), and returns
		// the new contents.
		tear  func(data []byte, off, n int) []byte
		whole int // 5: the last Save's entries record is torn; 6: all survive
	}
	zeros := func(n int) []byte { return make([]byte, n) }
	tests := []torn{
		{"cut mid record", func(d []byte, off, n int) []byte { return d[:off+n/2] }, 5},
		{"cut mid record and zero padded", func(d []byte, off, n int) []byte {
			return append(d[:off+n/2], zeros(4096)...)
		}, 5},
		{"cut mid record, short zero pad", func(d []byte, off, n int) []byte {
			return append(d[:off+n-2], zeros(1)...)
		}, 5},
		{"partial header", func(d []byte, off, n int) []byte { return d[:off+5] }, 5},
		{"partial header and zero padded", func(d []byte, off, n int) []byte {
			return append(d[:off+3], zeros(100)...)
		}, 5},
		{"whole record, zeroed payload sector", func(d []byte, off, n int) []byte {
			copy(d[off+10:off+n], zeros(n-10))
			return append(d, zeros(512)...)
		}, 5},
		{"garbage length then zeros", func(d []byte, off, n int) []byte {
			d = d[:off]
			d = append(d, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4)
			return append(d, zeros(64)...)
		}, 6},
		{"only zeros after the last record", func(d []byte, off, n int) []byte {
			return append(d, zeros(1000)...)
		}, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			w := createWAL(t, dir)
			mustSave(t, w, hardState(1, 1, 1), ents(1, 1, 2))
			mustSave(t, w, nil, ents(1, 3, 3))
			mustSave(t, w, hardState(1, 1, 3), ents(1, 4, 4))
			mustClose(t, w)

			path := segmentFiles(t, dir)[0]
			offs := recordOffsets(t, path)
			if len(offs) != 6 {
				t.Fatalf("want 6 records, have %d", len(offs))
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			lastOff := offs[len(offs)-1]
			// Tear the entries record of the last Save (dropping its hard
			// state record), or add to the end of the whole log.
			off, n := len(data), 0
			if tt.whole == 5 {
				off, n = offs[4], lastOff-offs[4]
				data = data[:lastOff]
			}
			if err := os.WriteFile(path, tt.tear(data, off, n), 0o600); err != nil {
				t.Fatal(err)
			}

			lg, logs := newLogger(t)
			w2, st, err := Open(dir, lg)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			wantEnts, wantHS := ents(1, 1, 4), hardState(1, 1, 3)
			if tt.whole == 5 {
				wantEnts, wantHS = ents(1, 1, 3), hardState(1, 1, 1)
			}
			checkEntries(t, st.Entries, wantEnts)
			checkHardState(t, st.HardState, wantHS)
			if tt.name != "only zeros after the last record" {
				if !strings.Contains(logs.buf.String(), filepath.Base(path)) || !strings.Contains(logs.buf.String(), fmt.Sprintf("offset=%d", off)) {
					t.Fatalf("warning does not name file and offset %d: %s", off, logs.buf.String())
				}
				if fi, _ := os.Stat(path); fi.Size() != int64(off) {
					t.Fatalf("file is %d bytes, want truncated to %d", fi.Size(), off)
				}
			}

			// The repaired log takes new writes and reads back whole.
			next := wantEnts[len(wantEnts)-1].GetIndex() + 1
			mustSave(t, w2, hardState(2, 1, next), ents(2, next, next+1))
			mustClose(t, w2)
			_, st = openWAL(t, dir)
			checkEntries(t, st.Entries, append(wantEnts, ents(2, next, next+1)...))
			checkHardState(t, st.HardState, hardState(2, 1, next))
		})
	}
}

func TestWAL_FlippedByteMidLogRefusesToStart(t *testing.T) {
	tests := []struct {
		name   string
		record int // which record to damage
		at     int // byte within it
	}{
		{"payload of an early entries record", 1, 12},
		{"crc of an early record", 1, 5},
		{"type of an early record", 2, 8},
		{"length of an early record", 1, 0},
		{"metadata record", 0, 10},
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
			offs := recordOffsets(t, path)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			off := offs[tt.record]
			data[off+tt.at] ^= 0x10
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}

			lg, _ := newLogger(t)
			_, _, err = Open(dir, lg)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open: got %v, want ErrCorrupt", err)
			}
			want := fmt.Sprintf("in %s at offset %d", filepath.Base(path), off)
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("error %q does not say %q", err, want)
			}
			// Nothing was truncated.
			after, _ := os.ReadFile(path)
			if len(after) != len(data) {
				t.Fatalf("file changed size from %d to %d", len(data), len(after))
			}
		})
	}
}

func TestWAL_BadRecordInEarlierSegmentIsCorruptionEvenAtItsEnd(t *testing.T) {
	dir := t.TempDir()
	w := createWAL(t, dir)
	w.segmentSize = 256
	for i := uint64(1); i <= 20; i++ {
		mustSave(t, w, hardState(1, 1, i), ents(1, i, i))
	}
	mustClose(t, w)
	files := segmentFiles(t, dir)
	if len(files) < 3 {
		t.Fatalf("want at least 3 segments, have %d", len(files))
	}
	// Cut the first segment's last record in half: a torn tail, but not in
	// the last segment.
	offs := recordOffsets(t, files[0])
	fi, _ := os.Stat(files[0])
	last := offs[len(offs)-1]
	if err := os.Truncate(files[0], int64(last)+(fi.Size()-int64(last))/2); err != nil {
		t.Fatal(err)
	}
	lg, _ := newLogger(t)
	_, _, err := Open(dir, lg)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), fmt.Sprintf("%s at offset %d", filepath.Base(files[0]), last)) {
		t.Fatalf("Open: %v", err)
	}
}

func TestWAL_SegmentsAreCutAndReplayedInOrder(t *testing.T) {
	dir := t.TempDir()
	w := createWAL(t, dir)
	w.segmentSize = 256
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
		// Each segment begins with metadata; later ones carry the hard state.
		data, _ := os.ReadFile(f)
		typ, _, n, err := decodeRecord(data)
		if err != nil || typ != recMetadata {
			t.Fatalf("%s does not start with metadata: %v", f, err)
		}
		if i > 0 {
			if typ, _, _, err := decodeRecord(data[n:]); err != nil || typ != recHardState {
				t.Fatalf("%s: second record is not a hard state: %v", f, err)
			}
		}
	}
	if s, _ := parseSegmentName(filepath.Base(files[1])); s.index < 2 {
		t.Fatalf("second segment named for index %d", s.index)
	}
	if des, _ := os.ReadDir(dir); len(des) != len(files) {
		t.Fatalf("stray files in %s: %v", dir, des)
	}

	w2, st := openWAL(t, dir)
	checkEntries(t, st.Entries, want)
	checkHardState(t, st.HardState, hardState(9, 2, 29))
	mustSave(t, w2, nil, ents(9, 33, 33))
	mustClose(t, w2)
	_, st = openWAL(t, dir)
	checkEntries(t, st.Entries, append(want, ents(9, 33, 33)...))
}

func TestWAL_CutCarriesTheHardStateIntoTheNewSegment(t *testing.T) {
	dir := t.TempDir()
	w := createWAL(t, dir)
	w.segmentSize = 1
	mustSave(t, w, hardState(4, 2, 0), nil) // cut right after
	mustSave(t, w, nil, ents(4, 1, 1))      // and again
	mustClose(t, w)
	files := segmentFiles(t, dir)
	if len(files) != 3 {
		t.Fatalf("want 3 segments, have %d", len(files))
	}
	// Losing the earlier segments (as snapshot-driven purging will) keeps
	// the hard state.
	os.Remove(files[0])
	_, st := openWAL(t, dir)
	checkHardState(t, st.HardState, hardState(4, 2, 0))
	checkEntries(t, st.Entries, ents(4, 1, 1))
}

func TestWAL_SaveWritesOnceAndSyncsOnce(t *testing.T) {
	dir := t.TempDir()
	w := createWAL(t, dir)
	if s := w.Stats(); s != (Stats{}) {
		t.Fatalf("fresh stats: %+v", s)
	}
	fi, _ := os.Stat(segmentFiles(t, dir)[0])
	size := fi.Size()
	saves := []struct {
		hs *raftpb.HardState
		es []*raftpb.Entry
	}{
		{hardState(1, 1, 0), nil},
		{nil, ents(1, 1, 1)},
		{hardState(1, 1, 50), ents(1, 2, 50)},
	}
	for i, s := range saves {
		mustSave(t, w, s.hs, s.es)
		st := w.Stats()
		if st.Writes != uint64(i+1) || st.Syncs != uint64(i+1) {
			t.Fatalf("after %d saves: %+v", i+1, st)
		}
		fi, _ := os.Stat(segmentFiles(t, dir)[0])
		if got := uint64(fi.Size() - size); got != st.BytesWritten {
			t.Fatalf("BytesWritten %d, file grew by %d", st.BytesWritten, got)
		}
	}
	// A cut costs one more write and two more syncs (file and directory).
	w.segmentSize = 1
	before := w.Stats()
	mustSave(t, w, nil, ents(1, 51, 51))
	after := w.Stats()
	if after.Writes-before.Writes != 2 || after.Syncs-before.Syncs != 3 {
		t.Fatalf("save with cut: before %+v after %+v", before, after)
	}
}

func TestWAL_EmptySaveDoesNothing(t *testing.T) {
	dir := t.TempDir()
	w := createWAL(t, dir)
	fi, _ := os.Stat(segmentFiles(t, dir)[0])
	for _, hs := range []*raftpb.HardState{nil, {}, hardState(0, 0, 0)} {
		for _, es := range [][]*raftpb.Entry{nil, {}} {
			mustSave(t, w, hs, es)
		}
	}
	if s := w.Stats(); s != (Stats{}) {
		t.Fatalf("stats after empty saves: %+v", s)
	}
	fi2, _ := os.Stat(segmentFiles(t, dir)[0])
	if fi.Size() != fi2.Size() {
		t.Fatalf("file grew from %d to %d", fi.Size(), fi2.Size())
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
	offs := recordOffsets(t, segmentFiles(t, dir)[0])
	if len(offs) < 5 {
		t.Fatalf("want the batch split, have %d records", len(offs))
	}
	_, st := openWAL(t, dir)
	checkEntries(t, st.Entries, es)
}

func TestWAL_WriteErrorStopsTheWAL(t *testing.T) {
	w := createWAL(t, t.TempDir())
	mustSave(t, w, nil, ents(1, 1, 1))
	w.f.Close() // the next write fails with EBADF
	err := w.Save(nil, ents(1, 2, 2))
	if err == nil || errors.Is(err, ErrFailed) {
		t.Fatalf("first failing Save: %v", err)
	}
	if err2 := w.Save(nil, ents(1, 2, 2)); !errors.Is(err2, ErrFailed) {
		t.Fatalf("Save after a failure: %v", err2)
	}
}

func TestWAL_SaveAfterCloseIsRefused(t *testing.T) {
	w := createWAL(t, t.TempDir())
	mustClose(t, w)
	if err := w.Save(nil, ents(1, 1, 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Save: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestWAL_CreateRefusesADirectoryThatHoldsAWAL(t *testing.T) {
	dir := t.TempDir()
	mustClose(t, createWAL(t, dir))
	if _, err := Create(dir, testMD); !errors.Is(err, ErrExist) {
		t.Fatalf("Create: %v", err)
	}
}

func TestWAL_CreateRefusesANonEmptyDirectory(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "other"), []byte("x"), 0o600)
	if _, err := Create(dir, testMD); err == nil {
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

func TestWAL_OpenWithoutSegmentsIsNotFound(t *testing.T) {
	for _, dir := range []string{t.TempDir(), filepath.Join(t.TempDir(), "missing")} {
		if Exist(dir) {
			t.Fatalf("Exist(%s)", dir)
		}
		if _, _, err := Open(dir, nil); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Open(%s): %v", dir, err)
		}
	}
}

func TestWAL_SecondOpenIsLocked(t *testing.T) {
	dir := t.TempDir()
	createWAL(t, dir) // left open
	if _, _, err := Open(dir, nil); !errors.Is(err, ErrLocked) {
		t.Fatalf("Open: %v", err)
	}
}

func TestWAL_MetadataMismatchRefusesToStart(t *testing.T) {
	dir := t.TempDir()
	w := createWAL(t, dir)
	w.segmentSize = 1
	mustSave(t, w, nil, ents(1, 1, 1))
	mustClose(t, w)
	// Rewrite the second segment's metadata for another member.
	files := segmentFiles(t, dir)
	data, _ := os.ReadFile(files[1])
	_, _, n, _ := decodeRecord(data)
	other := testMD
	other.MemberID++
	p, _ := encodeMetadata(other)
	data = append(appendRecord(nil, recMetadata, p), data[n:]...)
	os.WriteFile(files[1], data, 0o600)

	_, _, err := Open(dir, nil)
	if !errors.Is(err, ErrMetadataMismatch) || !strings.Contains(err.Error(), filepath.Base(files[1])) {
		t.Fatalf("Open: %v", err)
	}
}

func TestWAL_MissingMiddleSegmentIsCorruption(t *testing.T) {
	dir := t.TempDir()
	w := createWAL(t, dir)
	w.segmentSize = 1
	mustSave(t, w, nil, ents(1, 1, 1))
	mustSave(t, w, nil, ents(1, 2, 2))
	mustClose(t, w)
	os.Remove(segmentFiles(t, dir)[1])
	if _, _, err := Open(dir, nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open: %v", err)
	}
}

func TestWAL_IndexGapOnDiskIsCorruption(t *testing.T) {
	dir := t.TempDir()
	w := createWAL(t, dir)
	mustSave(t, w, nil, ents(1, 1, 2))
	mustClose(t, w)
	path := segmentFiles(t, dir)[0]
	fi, _ := os.Stat(path)
	appendRaw(t, path, ents(1, 4, 4))
	_, _, err := Open(dir, nil)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), fmt.Sprintf("at offset %d: index gap", fi.Size())) {
		t.Fatalf("Open: %v", err)
	}
}

// appendRaw appends an entries record to a segment, bypassing Save's checks.
func appendRaw(t testing.TB, path string, es []*raftpb.Entry) {
	t.Helper()
	b, err := appendEntryRecords(nil, es, maxRecordLen-1)
	if err != nil {
		t.Fatal(err)
	}
	appendBytes(t, path, b)
}

func appendBytes(t testing.TB, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

func TestWAL_SnapshotMarkerDropsCoveredEntries(t *testing.T) {
	marker := func(index, term uint64) []byte {
		p, err := encodeSnapshotForTest(index, term)
		if err != nil {
			t.Fatal(err)
		}
		return appendRecord(nil, recSnapshot, p)
	}
	dir := t.TempDir()
	w := createWAL(t, dir)
	mustSave(t, w, nil, ents(1, 1, 5))
	mustClose(t, w)
	path := segmentFiles(t, dir)[0]
	appendBytes(t, path, marker(3, 1))
	appendRaw(t, path, ents(1, 6, 6))
	appendBytes(t, path, marker(10, 2))
	appendRaw(t, path, ents(2, 11, 12))

	w2, st := openWAL(t, dir)
	if st.Snapshot != (SnapshotMarker{Index: 10, Term: 2}) {
		t.Fatalf("snapshot: %+v", st.Snapshot)
	}
	checkEntries(t, st.Entries, ents(2, 11, 12))
	mustSave(t, w2, nil, ents(2, 13, 13))
	mustClose(t, w2)

	appendBytes(t, path, marker(5, 1)) // markers never move back
	if _, _, err := Open(dir, nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open: %v", err)
	}
}

func TestWAL_OpenRemovesStaleCutFiles(t *testing.T) {
	dir := t.TempDir()
	mustClose(t, createWAL(t, dir))
	stale := filepath.Join(dir, segmentName(1, 1)+tmpExt)
	os.WriteFile(stale, []byte("half a segment"), 0o600)
	openWAL(t, dir)
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("stale file kept: %v", err)
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
