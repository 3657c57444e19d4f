package wal

import (
	"errors"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/edgekv/edgekv/persist/fsx"
)

// On the real file system, through the fsx.FaultFS that edgekv's fault
// build (cmd/edgekv/faults_on.go) puts under its WAL: direct I/O stays on,
// the first failed fdatasync fails its Save, and the WAL refuses every
// later write even once the disk would take it again.
func TestWAL_FailingSyncsOnTheRealDiskStopTheWALForGood(t *testing.T) {
	dir := t.TempDir()
	direct := directAvailable(t, dir)
	faults := fsx.NewFaultFS(fsx.OS{})
	o := testOptions(t)
	o.FS = faults
	w := createWALWith(t, filepath.Join(dir, "wal"), o)
	if direct && w.df == nil {
		t.Fatal("no direct I/O handle through FaultFS on a file system that has direct I/O")
	}
	mustSave(t, w, hardState(1, 1, 1), ents(1, 1, 2))

	faults.FailSyncs(syscall.EIO)
	err := w.Save(hardState(1, 1, 2), ents(1, 3, 3))
	if !errors.Is(err, syscall.EIO) || errors.Is(err, ErrFailed) {
		t.Fatalf("Save while fdatasync fails: %v", err)
	}
	if direct && w.df == nil {
		t.Fatal("the failed sync turned direct I/O off")
	}
	faults.FailSyncs(nil) // the disk "recovers": the WAL must not
	if err := w.Save(nil, ents(1, 3, 3)); !errors.Is(err, ErrFailed) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("Save after a failed sync: %v", err)
	}
	if err := w.SaveSnapshot(SnapshotMarker{Index: 1, Term: 1}); !errors.Is(err, ErrFailed) {
		t.Fatalf("SaveSnapshot after a failed sync: %v", err)
	}
	if _, err := w.PurgeBefore(1); !errors.Is(err, ErrFailed) {
		t.Fatalf("PurgeBefore after a failed sync: %v", err)
	}
	if st := faults.Failed(); st.Syncs != 1 || st.Writes != 0 {
		t.Fatalf("FaultFS failed %+v; want exactly the one fdatasync", st)
	}
	mustClose(t, w)

	// A restart (no power loss) finds what was acknowledged, and at most
	// the entry whose sync failed.
	_, st := openWALWith(t, filepath.Join(dir, "wal"), testOptions(t))
	if n := len(st.Entries); n < 2 || n > 3 {
		t.Fatalf("entries after the failure: %v", view(st.Entries))
	}
	checkEntries(t, st.Entries[:2], ents(1, 1, 2))
}
