package snap

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

func sample(term, index uint64) *raftpb.Snapshot {
	return &raftpb.Snapshot{
		Data: []byte("members"),
		Metadata: &raftpb.SnapshotMetadata{
			Index: new(index), Term: new(term),
			ConfState: &raftpb.ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}},
		},
	}
}

func TestSnap_SaveAndLoadRoundTrip(t *testing.T) {
	s, err := New(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := sample(3, 100)
	if err := s.Save(want); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load(3, 100)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if _, err := s.Load(3, 101); !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("missing snapshot: %v", err)
	}
}

func TestSnap_FlippedByteIsCorrupt(t *testing.T) {
	dir := t.TempDir()
	s, _ := New(dir, nil)
	if err := s.Save(sample(1, 5)); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, fileName(1, 5))
	b, _ := os.ReadFile(path)
	b[len(b)-2] ^= 0x40
	os.WriteFile(path, b, 0o600)
	if _, err := s.Load(1, 5); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("got %v, want ErrCorrupt", err)
	}
}

func TestSnap_PurgeKeepsTheNewest(t *testing.T) {
	dir := t.TempDir()
	s, _ := New(dir, nil)
	for i := uint64(1); i <= 5; i++ {
		if err := s.Save(sample(1, i*10)); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(s.DBPath(i*10), []byte("db"), 0o600)
	}
	if err := s.Purge(2, 40); err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 5; i++ {
		_, err := s.Load(1, i*10)
		if (i >= 4) != (err == nil) {
			t.Errorf("snapshot %d: %v", i*10, err)
		}
		_, err = os.Stat(s.DBPath(i * 10))
		if (i == 5) != (err == nil) {
			t.Errorf("received db %d: %v", i*10, err)
		}
	}
}

func TestSnap_TemporaryFilesGoAtNewNotAtPurge(t *testing.T) {
	dir := t.TempDir()
	s, _ := New(dir, nil)
	// A write in progress when Purge runs (another goroutine's Save, or a
	// backend being received) keeps its temporary file.
	inProgress := []string{filepath.Join(dir, fileName(1, 90)+".tmp"), s.DBPath(90) + ".tmp"}
	for _, p := range inProgress {
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Purge(1, 100); err != nil {
		t.Fatal(err)
	}
	for _, p := range inProgress {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("Purge removed a write in progress: %v", err)
		}
	}
	// At New nothing writes: what a crash left is removed.
	if _, err := New(dir, nil); err != nil {
		t.Fatal(err)
	}
	for _, p := range inProgress {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("New left %s: %v", p, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	b, _ := Encode(sample(2, 7))
	f.Add(b)
	f.Add([]byte{0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		snap, err := Decode(data)
		if err != nil {
			return
		}
		// What decodes re-encodes to something that decodes the same.
		b, err := Encode(snap)
		if err != nil {
			t.Fatal(err)
		}
		again, err := Decode(b)
		if err != nil || !proto.Equal(again, snap) {
			t.Fatalf("re-decode: %v", err)
		}
	})
}
