package wal

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/edgekv/edgekv/persist/fsx"
)

var testMD = Metadata{Name: "m1", MemberID: 0x1111, ClusterID: 0x2222, Token: "tok"}

// testLogger sends logs to t.Log and keeps them for assertions.
type testLogger struct {
	t   testing.TB
	buf bytes.Buffer
}

func (l *testLogger) Write(p []byte) (int, error) {
	l.t.Helper()
	l.t.Log(string(bytes.TrimRight(p, "\n")))
	l.buf.Write(p)
	return len(p), nil
}

func newLogger(t testing.TB) (*slog.Logger, *testLogger) {
	tl := &testLogger{t: t}
	return slog.New(slog.NewTextHandler(tl, nil)), tl
}

func ent(term, index uint64, data string) *raftpb.Entry {
	return &raftpb.Entry{Term: proto.Uint64(term), Index: proto.Uint64(index), Type: raftpb.EntryNormal.Enum(), Data: []byte(data)}
}

// ents makes entries [from, to] in term, with data naming both.
func ents(term, from, to uint64) []*raftpb.Entry {
	var out []*raftpb.Entry
	for i := from; i <= to; i++ {
		out = append(out, ent(term, i, fmt.Sprintf("t%d-i%d", term, i)))
	}
	return out
}

func hardState(term, vote, commit uint64) *raftpb.HardState {
	return &raftpb.HardState{Term: proto.Uint64(term), Vote: proto.Uint64(vote), Commit: proto.Uint64(commit)}
}

// testOptions: the real file system, small segments, preparation inline
// so that counts are exact, logs to t.
func testOptions(t testing.TB) Options {
	lg, _ := newLogger(t)
	return Options{Logger: lg, SegmentSize: 64 << 10, inlinePrepare: true}
}

func createWAL(t testing.TB, dir string) *WAL {
	t.Helper()
	return createWALWith(t, dir, testOptions(t))
}

func createWALWith(t testing.TB, dir string, o Options) *WAL {
	t.Helper()
	w, err := CreateWithOptions(dir, testMD, o)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

func openWAL(t testing.TB, dir string) (*WAL, *State) {
	t.Helper()
	return openWALWith(t, dir, testOptions(t))
}

func openWALWith(t testing.TB, dir string, o Options) (*WAL, *State) {
	t.Helper()
	w, st, err := OpenWithOptions(dir, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { w.Close() })
	return w, st
}

func mustSave(t testing.TB, w *WAL, hs *raftpb.HardState, es []*raftpb.Entry) {
	t.Helper()
	if err := w.Save(hs, es); err != nil {
		t.Fatalf("Save: %v", err)
	}
}

func mustClose(t testing.TB, w *WAL) {
	t.Helper()
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

type entryView struct {
	Term, Index uint64
	Type        raftpb.EntryType
	Data        string
}

func view(es []*raftpb.Entry) []entryView {
	out := make([]entryView, len(es))
	for i, e := range es {
		out[i] = entryView{e.GetTerm(), e.GetIndex(), e.GetType(), string(e.GetData())}
	}
	return out
}

func checkEntries(t testing.TB, got, want []*raftpb.Entry) {
	t.Helper()
	g, w := view(got), view(want)
	if fmt.Sprint(g) != fmt.Sprint(w) {
		t.Fatalf("entries:\n got %v\nwant %v", g, w)
	}
}

func checkHardState(t testing.TB, got, want *raftpb.HardState) {
	t.Helper()
	if got == nil {
		t.Fatalf("hard state is nil")
	}
	if got.GetTerm() != want.GetTerm() || got.GetVote() != want.GetVote() || got.GetCommit() != want.GetCommit() {
		t.Fatalf("hard state: got %v, want %v", got, want)
	}
}

// segmentFiles lists the segment paths of dir in order.
func segmentFiles(t testing.TB, dir string) []string {
	t.Helper()
	segs, _, err := listDir(fsx.OS{}, dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range segs {
		out = append(out, filepath.Join(dir, s.name))
	}
	return out
}

// seedOf returns the CRC seed of a segment file, from its name.
func seedOf(t testing.TB, path string) uint32 {
	t.Helper()
	s, ok := parseSegmentName(filepath.Base(path))
	if !ok {
		t.Fatalf("%s is not a segment", path)
	}
	return crcSeed(s.seq)
}

type recordAt struct {
	off, n int
	typ    byte
}

// records lists the records of a segment file up to the end of its data.
func records(t testing.TB, path string) []recordAt {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	seed := seedOf(t, path)
	var out []recordAt
	for off := 0; off < len(data); {
		typ, _, n, err := decodeRecord(data[off:], seed)
		if err != nil {
			break
		}
		out = append(out, recordAt{off, n, typ})
		off += n
	}
	return out
}

// recordsOf returns the records of one type.
func recordsOf(rs []recordAt, typ byte) []recordAt {
	var out []recordAt
	for _, r := range rs {
		if r.typ == typ {
			out = append(out, r)
		}
	}
	return out
}

// dataEnd is where the data of a segment file ends.
func dataEnd(t testing.TB, path string) int {
	t.Helper()
	rs := records(t, path)
	last := rs[len(rs)-1]
	return last.off + last.n
}

// writeRaw writes records at the end of a segment's data as a Save would,
// bypassing Save's checks.
func writeRaw(t testing.TB, path string, recs ...rec) {
	t.Helper()
	end := dataEnd(t, path)
	seed := seedOf(t, path)
	b := finishWrite(appendRecs(nil, seed, recs), seed, int64(end))
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, int64(end)); err != nil {
		t.Fatal(err)
	}
}

func entriesRec(t testing.TB, es []*raftpb.Entry) rec {
	t.Helper()
	recs, _, err := entryRecs(nil, nil, es, maxRecordLen-1)
	if err != nil || len(recs) != 1 {
		t.Fatalf("entryRecs: %v", err)
	}
	return recs[0]
}

func snapshotRecFor(t testing.TB, index, term uint64) rec {
	t.Helper()
	p, err := encodeSnapshot(SnapshotMarker{Index: index, Term: term})
	if err != nil {
		t.Fatal(err)
	}
	return rec{typ: recSnapshot, payload: p}
}

func patchFile(t testing.TB, path string, off int, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, int64(off)); err != nil {
		t.Fatal(err)
	}
}
