package fsx

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestFaultFS_PassesEverythingThroughUntilToldToFail(t *testing.T) {
	dir := t.TempDir()
	f := NewFaultFS(OS{})
	name := filepath.Join(dir, "a")
	file := mustCreate(t, f, name, pattern(100, 'a'))
	defer file.Close()
	mustNoErr(t, file.Datasync())
	mustNoErr(t, file.Sync())
	mustNoErr(t, f.SyncDir(dir))
	if _, err := file.Write(pattern(10, 'b')); err != nil {
		t.Fatal(err)
	}
	mustNoErr(t, f.Rename(name, filepath.Join(dir, "b")))
	got, err := f.ReadFile(filepath.Join(dir, "b"))
	mustNoErr(t, err)
	if want := append(pattern(10, 'b'), pattern(90, 'a')...); !bytes.Equal(got, want) {
		t.Fatalf("read back %q, want %q", got, want)
	}
	if st := f.Failed(); st != (FaultStats{}) {
		t.Fatalf("failed calls without a fault: %+v", st)
	}
}

func TestFaultFS_FailedSyncsReturnTheErrorWithTheName(t *testing.T) {
	dir := t.TempDir()
	f := NewFaultFS(OS{})
	before := mustCreate(t, f, filepath.Join(dir, "before"), pattern(10, 'a'))
	defer before.Close()
	f.FailSyncs(syscall.EIO)
	after := mustCreate(t, f, filepath.Join(dir, "after"), pattern(10, 'a'))
	defer after.Close()
	tests := []struct {
		name string
		sync func() error
		path string
	}{
		{"Datasync of a file open before", before.Datasync, before.Name()},
		{"Sync of a file open before", before.Sync, before.Name()},
		{"Datasync of a file opened after", after.Datasync, after.Name()},
		{"Sync of a file opened after", after.Sync, after.Name()},
		{"SyncDir", func() error { return f.SyncDir(dir) }, dir},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.sync()
			var pe *fs.PathError
			if !errors.Is(err, syscall.EIO) || !errors.As(err, &pe) || pe.Path != tt.path {
				t.Fatalf("got %v, want EIO naming %s", err, tt.path)
			}
		})
	}
	if st := f.Failed(); st.Syncs != int64(len(tests)) || st.Writes != 0 {
		t.Fatalf("stats %+v after %d failed syncs", st, len(tests))
	}
	// Writes still pass; syncs pass again once healed.
	if _, err := after.WriteAt(pattern(5, 'b'), 0); err != nil {
		t.Fatalf("write while syncs fail: %v", err)
	}
	f.FailSyncs(nil)
	mustNoErr(t, after.Datasync())
	mustNoErr(t, f.SyncDir(dir))
}

func TestFaultFS_FailedSyncDoesNotReachTheWrappedFS(t *testing.T) {
	c := NewCrashFS(1)
	f := NewFaultFS(c)
	file := mustCreate(t, f, "/a", pattern(10, 'a'))
	f.FailSyncs(syscall.EIO)
	if err := file.Datasync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Datasync: %v", err)
	}
	if err := f.SyncDir("/"); !errors.Is(err, syscall.EIO) {
		t.Fatalf("SyncDir: %v", err)
	}
	if st := c.Stats(); st.Datasyncs != 0 || st.DirSyncs != 0 {
		t.Fatalf("the failed syncs reached the wrapped file system: %+v", st)
	}
}

func TestFaultFS_FailedWritesWriteNothing(t *testing.T) {
	dir := t.TempDir()
	f := NewFaultFS(OS{})
	file := mustCreate(t, f, filepath.Join(dir, "a"), pattern(10, 'a'))
	defer file.Close()
	f.FailWrites(syscall.ENOSPC)
	if n, err := file.WriteAt(pattern(10, 'b'), 0); n != 0 || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("WriteAt: %d, %v", n, err)
	}
	if n, err := file.Write(pattern(10, 'b')); n != 0 || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Write: %d, %v", n, err)
	}
	if got := readOrNil(t, f, file.Name()); !bytes.Equal(got, pattern(10, 'a')) {
		t.Fatalf("after failed writes the file holds %q", got)
	}
	mustNoErr(t, file.Datasync()) // syncs still pass
	if st := f.Failed(); st != (FaultStats{Writes: 2}) {
		t.Fatalf("stats %+v", st)
	}
	f.FailWrites(nil)
	if _, err := file.WriteAt(pattern(10, 'b'), 0); err != nil {
		t.Fatal(err)
	}
}

func TestFaultFS_KeepsTheDirectIOOfTheWrappedFS(t *testing.T) {
	t.Run("over OS", func(t *testing.T) {
		dir := t.TempDir()
		name := filepath.Join(dir, "a")
		if err := os.WriteFile(name, make([]byte, SectorSize), 0o600); err != nil {
			t.Fatal(err)
		}
		if probe, err := (OS{}).OpenDirect(name); err != nil {
			t.Skipf("%s does not take O_DIRECT: %v", dir, err)
		} else {
			probe.Close()
		}
		f := NewFaultFS(OS{})
		df, err := f.OpenDirect(name)
		if err != nil {
			t.Fatal(err)
		}
		defer df.Close()
		buf := AlignedBuf(SectorSize)
		copy(buf, "direct")
		if _, err := df.WriteAt(buf, 0); err != nil {
			t.Fatalf("direct write: %v", err)
		}
		mustNoErr(t, df.Datasync())
		f.FailSyncs(syscall.EIO)
		f.FailWrites(syscall.EIO)
		if _, err := df.WriteAt(buf, 0); !errors.Is(err, syscall.EIO) {
			t.Fatalf("direct write while writes fail: %v", err)
		}
		if err := df.Datasync(); !errors.Is(err, syscall.EIO) {
			t.Fatalf("Datasync of a direct file while syncs fail: %v", err)
		}
	})
	t.Run("over CrashFS, whose direct files check alignment", func(t *testing.T) {
		c := NewCrashFS(1)
		mustCreate(t, c, "/a", nil).Close()
		df, err := NewFaultFS(c).OpenDirect("/a")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := df.WriteAt(make([]byte, 10), 0); err == nil {
			t.Fatal("an unaligned direct write went through the wrapper")
		}
	})
	t.Run("over an FS without direct I/O", func(t *testing.T) {
		c := NewCrashFS(1)
		mustCreate(t, c, "/a", nil).Close()
		plain := struct{ FS }{c} // hides CrashFS.OpenDirect
		if _, err := NewFaultFS(plain).OpenDirect("/a"); !errors.Is(err, ErrDirectUnsupported) {
			t.Fatalf("OpenDirect: %v, want ErrDirectUnsupported", err)
		}
	})
}
