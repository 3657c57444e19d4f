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

func createWAL(t testing.TB, dir string) *WAL {
	t.Helper()
	w, err := Create(dir, testMD)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

func openWAL(t testing.TB, dir string) (*WAL, *State) {
	t.Helper()
	lg, _ := newLogger(t)
	w, st, err := Open(dir, lg)
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
	segs, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range segs {
		out = append(out, filepath.Join(dir, s.name))
	}
	return out
}

// recordOffsets returns the offset of every whole record in a segment file.
func recordOffsets(t testing.TB, path string) []int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var offs []int
	for off := 0; off < len(data); {
		_, _, n, err := decodeRecord(data[off:])
		if err != nil {
			t.Fatalf("%s at %d: %v", path, off, err)
		}
		offs = append(offs, off)
		off += n
	}
	return offs
}
