package fsx

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"slices"
	"testing"
)

// helpers over testing.TB.

func mustCreate(t testing.TB, fsys FS, name string, data []byte) File {
	t.Helper()
	f, err := fsys.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	if len(data) > 0 {
		if _, err := f.WriteAt(data, 0); err != nil {
			t.Fatalf("write %s: %v", name, err)
		}
	}
	return f
}

func mustNoErr(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// readOrNil reads a file, nil if it does not exist.
func readOrNil(t testing.TB, fsys FS, name string) []byte {
	t.Helper()
	b, err := fsys.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	return b
}

func pattern(n int, c byte) []byte { return bytes.Repeat([]byte{c}, n) }

func TestCrashFS_SyncedDataAndNamesSurviveEveryCrash(t *testing.T) {
	for seed := int64(0); seed < 50; seed++ {
		c := NewCrashFS(seed)
		mustNoErr(t, c.MkdirAll("/d", 0o700))
		mustNoErr(t, c.SyncDir("/"))
		f := mustCreate(t, c, "/d/a", pattern(3000, 'a'))
		mustNoErr(t, f.Datasync())
		mustNoErr(t, c.SyncDir("/d"))
		c.Crash()
		if got := readOrNil(t, c, "/d/a"); !bytes.Equal(got, pattern(3000, 'a')) {
			t.Fatalf("seed %d: synced file has %d bytes", seed, len(got))
		}
		if _, err := f.WriteAt([]byte("x"), 0); !errors.Is(err, ErrCrashed) {
			t.Fatalf("seed %d: file from before the crash still writes: %v", seed, err)
		}
	}
}

func TestCrashFS_UnsyncedWriteSurvivesAsASectorPrefix(t *testing.T) {
	old := pattern(4096, 'o')
	const off, n = 100, 2000 // pieces: [100,512) [512,1024) [1024,1536) [1536,2048) [2048,2100)
	seen := map[int]bool{}
	for seed := int64(0); seed < 300; seed++ {
		c := NewCrashFS(seed)
		f := mustCreate(t, c, "/a", old)
		mustNoErr(t, f.Datasync())
		mustNoErr(t, c.SyncDir("/"))
		if _, err := f.WriteAt(pattern(n, 'n'), off); err != nil {
			t.Fatal(err)
		}
		c.Crash()
		got := readOrNil(t, c, "/a")
		if len(got) != len(old) {
			t.Fatalf("seed %d: size %d", seed, len(got))
		}
		// The new bytes are exactly [off, cut) for a sector boundary cut.
		cut := off
		for cut < off+n && got[cut] == 'n' {
			cut++
		}
		want := slices.Clone(old)
		copy(want[off:cut], pattern(cut-off, 'n'))
		if !bytes.Equal(got, want) {
			t.Fatalf("seed %d: not a prefix of the write", seed)
		}
		if cut != off && cut != off+n && cut%SectorSize != 0 {
			t.Fatalf("seed %d: write torn at %d, not at a sector boundary", seed, cut)
		}
		seen[cut] = true
	}
	for _, cut := range []int{off, 512, 1024, 1536, 2048, off + n} {
		if !seen[cut] {
			t.Errorf("300 seeds never tore the write at %d (saw %v)", cut, seen)
		}
	}
}

func TestCrashFS_UnsyncedChangesSurviveInOrder(t *testing.T) {
	// Three appends, unsynced: what survives is a prefix of them.
	outcomes := map[string]bool{}
	for seed := int64(0); seed < 200; seed++ {
		c := NewCrashFS(seed)
		f := mustCreate(t, c, "/a", nil)
		mustNoErr(t, f.Sync())
		mustNoErr(t, c.SyncDir("/"))
		for _, s := range []string{"1111", "2222", "3333"} {
			if _, err := f.Write([]byte(s)); err != nil {
				t.Fatal(err)
			}
		}
		c.Crash()
		got := string(readOrNil(t, c, "/a"))
		switch got {
		case "", "1111", "11112222", "111122223333":
		default:
			t.Fatalf("seed %d: %q is not a prefix of the appends", seed, got)
		}
		outcomes[got] = true
	}
	if len(outcomes) != 4 {
		t.Fatalf("outcomes: %v", outcomes)
	}
}

func TestCrashFS_DirectoryChangesNeedADirectorySync(t *testing.T) {
	lost, kept := 0, 0
	for seed := int64(0); seed < 100; seed++ {
		c := NewCrashFS(seed)
		f := mustCreate(t, c, "/a", []byte("data"))
		mustNoErr(t, f.Datasync()) // data durable, name not
		c.Crash()
		if readOrNil(t, c, "/a") == nil {
			lost++
		} else {
			kept++
		}
	}
	if lost == 0 || kept == 0 {
		t.Fatalf("an unsynced create should sometimes survive and sometimes not: lost %d kept %d", lost, kept)
	}

	// Renames survive in order: b -> c never without a -> b.
	for seed := int64(0); seed < 100; seed++ {
		c := NewCrashFS(seed)
		f := mustCreate(t, c, "/a", []byte("x"))
		mustNoErr(t, f.Sync())
		mustNoErr(t, c.SyncDir("/"))
		mustNoErr(t, c.Rename("/a", "/b"))
		mustNoErr(t, c.Rename("/b", "/c"))
		c.Crash()
		des, err := c.ReadDir("/")
		mustNoErr(t, err)
		if len(des) != 1 {
			t.Fatalf("seed %d: %d entries after two renames", seed, len(des))
		}
	}

	// After SyncDir, always there.
	c := NewCrashFS(1)
	mustCreate(t, c, "/a", nil)
	mustNoErr(t, c.Rename("/a", "/b"))
	mustNoErr(t, c.SyncDir("/"))
	c.Crash()
	if _, err := c.Stat("/b"); err != nil {
		t.Fatalf("synced rename lost: %v", err)
	}
}

func TestCrashFS_SameSeedSameOutcome(t *testing.T) {
	run := func(seed int64) []byte {
		c := NewCrashFS(seed)
		f := mustCreate(t, c, "/a", pattern(5000, 'a'))
		mustNoErr(t, f.Sync())
		mustNoErr(t, c.SyncDir("/"))
		f.WriteAt(pattern(3000, 'b'), 700)
		f.Truncate(4000)
		f.WriteAt(pattern(100, 'c'), 4500)
		c.Crash()
		return readOrNil(t, c, "/a")
	}
	for seed := int64(0); seed < 20; seed++ {
		if !bytes.Equal(run(seed), run(seed)) {
			t.Fatalf("seed %d: two runs differ", seed)
		}
	}
}

func TestCrashFS_CrashAfterStopsTheNthOperationAndEverythingAfter(t *testing.T) {
	c := NewCrashFS(7)
	f := mustCreate(t, c, "/a", nil)
	before := c.Ops()
	c.CrashAfter(3)
	if _, err := f.Write([]byte("1")); err != nil { // op 1
		t.Fatal(err)
	}
	if err := f.Datasync(); err != nil { // op 2
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("2")); !errors.Is(err, ErrCrashed) { // op 3: in flight
		t.Fatalf("op 3: %v", err)
	}
	if !c.Down() {
		t.Fatal("not down after the crash point")
	}
	if err := f.Datasync(); !errors.Is(err, ErrCrashed) {
		t.Fatalf("sync after power failed: %v", err)
	}
	if _, err := c.OpenFile("/b", os.O_CREATE|os.O_RDWR, 0o600); !errors.Is(err, ErrCrashed) {
		t.Fatalf("create after power failed: %v", err)
	}
	if got := c.Ops() - before; got != 3 {
		t.Fatalf("counted %d operations, want 3", got)
	}
	c.Crash()
	if c.Down() {
		t.Fatal("still down after Crash")
	}
	if _, err := f.Read(make([]byte, 1)); !errors.Is(err, ErrCrashed) {
		t.Fatalf("old file after Crash: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("closing an old file: %v", err)
	}
	// The machine works again. The name of /a was never synced.
	g, err := c.OpenFile("/c", os.O_CREATE|os.O_RDWR, 0o600)
	mustNoErr(t, err)
	_, err = g.Write([]byte("ok"))
	mustNoErr(t, err)
}

func TestCrashFS_FailedSyncLosesTheDataForGood(t *testing.T) {
	errIO := errors.New("injected EIO")
	c := NewCrashFS(3)
	f := mustCreate(t, c, "/a", nil)
	mustNoErr(t, f.Sync())
	mustNoErr(t, c.SyncDir("/"))
	c.FailSync(1, errIO)
	f.WriteAt([]byte("lost"), 0)
	if err := f.Datasync(); !errors.Is(err, errIO) {
		t.Fatalf("sync: %v", err)
	}
	// The cache still shows the data, and a retry "succeeds"...
	if got := readOrNil(t, c, "/a"); string(got) != "lost" {
		t.Fatalf("cache: %q", got)
	}
	mustNoErr(t, f.Datasync())
	// ...but it never reached the disk.
	c.Crash()
	if got := readOrNil(t, c, "/a"); len(got) != 0 {
		t.Fatalf("after crash: %q, want empty", got)
	}
}

func TestCrashFS_FailedWriteChangesNothing(t *testing.T) {
	errIO := errors.New("injected EIO")
	c := NewCrashFS(3)
	f := mustCreate(t, c, "/a", []byte("keep"))
	c.FailWrite(2, errIO)
	_, err := f.WriteAt([]byte("1"), 10)
	mustNoErr(t, err)
	if _, err := f.WriteAt([]byte("2"), 20); !errors.Is(err, errIO) {
		t.Fatalf("second write: %v", err)
	}
	if fi, _ := f.Stat(); fi.Size() != 11 {
		t.Fatalf("size %d after the failed write, want 11", fi.Size())
	}
}

func TestCrashFS_LockIsExclusiveUntilCloseOrCrash(t *testing.T) {
	c := NewCrashFS(1)
	f := mustCreate(t, c, "/a", nil)
	mustNoErr(t, f.Lock())
	g, err := c.OpenFile("/a", os.O_RDWR, 0)
	mustNoErr(t, err)
	if err := g.Lock(); !errors.Is(err, ErrLocked) {
		t.Fatalf("second lock: %v", err)
	}
	mustNoErr(t, f.Close())
	mustNoErr(t, g.Lock())
	mustNoErr(t, c.SyncDir("/"))
	c.Crash()
	h, err := c.OpenFile("/a", os.O_RDWR, 0)
	mustNoErr(t, err)
	if err := h.Lock(); err != nil {
		t.Fatalf("lock after crash: %v", err)
	}
}

func TestCrashFS_FilesBehaveLikeOSFiles(t *testing.T) {
	for _, tt := range []struct {
		name string
		fsys func(t *testing.T) (FS, string)
	}{
		{"CrashFS", func(t *testing.T) (FS, string) { return NewCrashFS(1), "/t" }},
		{"OS", func(t *testing.T) (FS, string) { return OS{}, t.TempDir() }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fsys, dir := tt.fsys(t)
			mustNoErr(t, MkdirAllSync(fsys, dir+"/x/y", 0o700))
			if fi, err := fsys.Stat(dir + "/x/y"); err != nil || !fi.IsDir() {
				t.Fatalf("MkdirAllSync: %v", err)
			}
			name := dir + "/x/y/f"
			f := mustCreate(t, fsys, name, []byte("hello"))
			defer f.Close()
			if _, err := fsys.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600); !errors.Is(err, fs.ErrExist) {
				t.Fatalf("O_EXCL on an existing file: %v", err)
			}
			mustNoErr(t, f.Allocate(4096))
			fi, err := f.Stat()
			mustNoErr(t, err)
			if fi.Size() != 4096 {
				t.Fatalf("size after Allocate: %d", fi.Size())
			}
			mustNoErr(t, f.Allocate(100)) // never shrinks
			buf := make([]byte, 8)
			if n, err := f.ReadAt(buf, 2); n != 8 || err != nil || string(buf) != "llo\x00\x00\x00\x00\x00" {
				t.Fatalf("ReadAt: %d %v %q", n, err, buf)
			}
			if n, err := f.ReadAt(buf, 4090); n != 6 || err != io.EOF {
				t.Fatalf("ReadAt past the end: %d %v", n, err)
			}
			mustNoErr(t, f.Truncate(3))
			mustNoErr(t, f.Datasync())
			mustNoErr(t, f.Sync())
			if b, _ := fsys.ReadFile(name); string(b) != "hel" {
				t.Fatalf("after Truncate: %q", b)
			}
			mustNoErr(t, fsys.Rename(name, dir+"/x/y/g"))
			mustNoErr(t, fsys.SyncDir(dir+"/x/y"))
			des, err := fsys.ReadDir(dir + "/x/y")
			mustNoErr(t, err)
			if len(des) != 1 || des[0].Name() != "g" || !des[0].Type().IsRegular() {
				t.Fatalf("ReadDir: %v", des)
			}
			mustNoErr(t, f.Lock())
			g, err := fsys.OpenFile(dir+"/x/y/g", os.O_RDWR, 0)
			mustNoErr(t, err)
			defer g.Close()
			if err := g.Lock(); !errors.Is(err, ErrLocked) {
				t.Fatalf("second Lock: %v", err)
			}
			if err := fsys.Remove(dir + "/x"); err == nil {
				t.Fatal("removed a non-empty directory")
			}
			mustNoErr(t, fsys.RemoveAll(dir+"/x"))
			mustNoErr(t, fsys.RemoveAll(dir+"/x"))
			if _, err := fsys.Stat(dir + "/x"); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("after RemoveAll: %v", err)
			}
		})
	}
}
