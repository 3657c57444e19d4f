package wal

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/edgekv/edgekv/persist/fsx"
)

// directAvailable reports whether dir's file system takes O_DIRECT.
func directAvailable(t *testing.T, dir string) bool {
	t.Helper()
	p := filepath.Join(dir, "probe")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(p)
	f, err := fsx.OS{}.OpenDirect(p)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

func TestWAL_WritesWithDirectIOWhereAvailable(t *testing.T) {
	dir := t.TempDir()
	if !directAvailable(t, dir) {
		t.Skipf("%s does not take O_DIRECT", dir)
	}
	o := testOptions(t)
	w := createWALWith(t, filepath.Join(dir, "wal"), o)
	if w.df == nil {
		t.Fatal("no direct I/O handle on a file system that has direct I/O")
	}
	mustSave(t, w, hardState(1, 1, 1), ents(1, 1, 100))
	// Force cuts: the new tails get direct handles too.
	w.opts.SegmentSize = 1
	mustSave(t, w, hardState(1, 1, 101), ents(1, 101, 101))
	if w.df == nil || w.Stats().Cuts == 0 {
		t.Fatalf("after a cut: direct handle %v, stats %+v", w.df, w.Stats())
	}
	w.Close()
	w, st := openWALWith(t, filepath.Join(dir, "wal"), o)
	defer w.Close()
	checkEntries(t, st.Entries, ents(1, 1, 101))
	if w.df == nil {
		t.Fatal("no direct I/O handle after Open")
	}
	mustSave(t, w, nil, ents(1, 102, 102))
}

func TestWAL_FallsBackToThePageCacheWithoutDirectIO(t *testing.T) {
	c := fsx.NewCrashFS(1)
	c.RefuseDirect(true)
	o := crashOptions(c, nil)
	w, err := CreateWithOptions("/wal", testMD, o)
	if err != nil {
		t.Fatal(err)
	}
	if w.df != nil || w.direct {
		t.Fatal("direct I/O on after OpenDirect failed")
	}
	mustSave(t, w, hardState(1, 1, 1), ents(1, 1, 3))
	w.Close()
	_, st, err := OpenWithOptions("/wal", o)
	if err != nil {
		t.Fatal(err)
	}
	checkEntries(t, st.Entries, ents(1, 1, 3))
}

// refusingFS opens direct files whose writes the "device" refuses.
type refusingFS struct{ *fsx.CrashFS }

func (r refusingFS) OpenDirect(name string) (fsx.File, error) {
	f, err := r.CrashFS.OpenDirect(name)
	return refusingFile{f}, err
}

type refusingFile struct{ fsx.File }

func (refusingFile) WriteAt([]byte, int64) (int, error) {
	return 0, errors.Join(fsx.ErrDirectUnsupported, errors.New("logical block size 4096"))
}

func TestWAL_FallsBackWhenTheDeviceRefusesADirectWrite(t *testing.T) {
	c := fsx.NewCrashFS(1)
	o := crashOptions(c, nil)
	o.FS = refusingFS{c}
	w, err := CreateWithOptions("/wal", testMD, o)
	if err != nil {
		t.Fatal(err)
	}
	if w.df == nil {
		t.Fatal("no direct handle")
	}
	mustSave(t, w, hardState(1, 1, 1), ents(1, 1, 3))
	if w.df != nil || w.direct {
		t.Fatal("still direct after the device refused a direct write")
	}
	mustSave(t, w, nil, ents(1, 4, 4))
	w.Close()
	_, st, err := OpenWithOptions("/wal", o)
	if err != nil {
		t.Fatal(err)
	}
	checkEntries(t, st.Entries, ents(1, 1, 4))
}
