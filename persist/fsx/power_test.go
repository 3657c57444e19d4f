package fsx

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// newPowerFS returns a PowerFS over the real file system in a fresh
// directory, and the directory.
func newPowerFS(t *testing.T, seed int64, onOff func(PowerLoss)) (*PowerFS, string) {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p, err := NewPowerFS(OS{}, filepath.Join(root, "backup"), seed, onOff)
	if err != nil {
		t.Fatal(err)
	}
	return p, dir
}

func mustWriteAt(t *testing.T, f File, b []byte, off int64) {
	t.Helper()
	if n, err := f.WriteAt(b, off); err != nil || n != len(b) {
		t.Fatalf("WriteAt(%d bytes at %d) = %d, %v", len(b), off, n, err)
	}
}

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPowerFS_PowerOffUndoesWhatWasNotSynced(t *testing.T) {
	for _, tc := range []struct {
		name string
		keep func(n int) int
		want func(synced, all []byte) []byte
	}{
		{"all lost", func(int) int { return 0 }, func(synced, _ []byte) []byte { return synced }},
		{"all kept", func(n int) int { return n }, func(_, all []byte) []byte { return all }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, dir := newPowerFS(t, 1, nil)
			p.choose = tc.keep
			name := filepath.Join(dir, "f")
			f, err := p.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			mustWriteAt(t, f, bytes.Repeat([]byte("a"), 3000), 0)
			if err := f.Datasync(); err != nil {
				t.Fatal(err)
			}
			if err := p.SyncDir(dir); err != nil {
				t.Fatal(err)
			}
			synced := mustRead(t, name)
			mustWriteAt(t, f, bytes.Repeat([]byte("b"), 2000), 2000) // over the end
			if err := f.Truncate(4500); err != nil {
				t.Fatal(err)
			}
			if _, err := f.Write([]byte("head")); err != nil { // at offset 0
				t.Fatal(err)
			}
			if err := f.Allocate(8192); err != nil {
				t.Fatal(err)
			}
			all := mustRead(t, name)
			loss := p.PowerOff()
			if got, want := mustRead(t, name), tc.want(synced, all); !bytes.Equal(got, want) {
				t.Fatalf("after power off the file is %d bytes %q..., want %d bytes %q...", len(got), got[:min(8, len(got))], len(want), want[:min(8, len(want))])
			}
			if loss.Files != 1 || loss.Lost+loss.Kept != 4 {
				t.Fatalf("PowerLoss = %+v, want 4 changes of 1 file", loss)
			}
			if _, err := f.WriteAt([]byte("x"), 0); !errors.Is(err, ErrCrashed) {
				t.Fatalf("WriteAt after power off: %v, want ErrCrashed", err)
			}
			if _, err := p.OpenFile(name, os.O_RDONLY, 0); !errors.Is(err, ErrCrashed) {
				t.Fatalf("OpenFile after power off: %v, want ErrCrashed", err)
			}
			f.Close()
		})
	}
}

// Over many seeds, each file after power off holds its synced contents
// plus a prefix of the changes made since, the first one left out maybe
// torn at a sector boundary: a state the crash model allows.
func TestPowerFS_EveryOutcomeIsOneTheCrashModelAllows(t *testing.T) {
	for seed := range int64(60) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			p, dir := newPowerFS(t, seed, nil)
			rng := rand.New(rand.NewPCG(uint64(seed), 7))
			type model struct {
				name  string
				f     File
				state []byte   // now
				legal [][]byte // states a crash may leave
			}
			files := make([]*model, 2)
			for i := range files {
				name := filepath.Join(dir, fmt.Sprint("f", i))
				f, err := p.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				files[i] = &model{name: name, f: f, state: []byte{}}
			}
			if err := p.SyncDir(dir); err != nil {
				t.Fatal(err)
			}
			for _, m := range files {
				m.legal = [][]byte{{}}
			}
			for range 40 {
				m := files[rng.IntN(len(files))]
				switch r := rng.IntN(10); {
				case r < 6:
					off := int64(rng.IntN(6000))
					b := make([]byte, 1+rng.IntN(1500))
					for i := range b {
						b[i] = byte('a' + rng.IntN(26))
					}
					mustWriteAt(t, m.f, b, off)
					// Torn: whole sectors of the write, from its start.
					for c := (off/SectorSize + 1) * SectorSize; c < off+int64(len(b)); c += SectorSize {
						m.legal = append(m.legal, applyWrite(m.state, b[:c-off], off))
					}
					m.state = applyWrite(m.state, b, off)
				case r < 7:
					size := int64(rng.IntN(7000))
					if err := m.f.Truncate(size); err != nil {
						t.Fatal(err)
					}
					m.state = resize(bytes.Clone(m.state), size)
				case r < 8:
					size := int64(rng.IntN(9000))
					if err := m.f.Allocate(size); err != nil {
						t.Fatal(err)
					}
					if size > int64(len(m.state)) {
						m.state = resize(bytes.Clone(m.state), size)
					}
				default:
					if err := m.f.Datasync(); err != nil {
						t.Fatal(err)
					}
					m.legal = nil
				}
				m.legal = append(m.legal, m.state)
			}
			loss := p.PowerOff()
			for _, m := range files {
				got := mustRead(t, m.name)
				ok := false
				for _, l := range m.legal {
					ok = ok || bytes.Equal(got, l)
				}
				if !ok {
					t.Fatalf("%s after power off: %d bytes, not one of the %d states the crash model allows (%v)", m.name, len(got), len(m.legal), loss)
				}
			}
		})
	}
}

func applyWrite(state, b []byte, off int64) []byte {
	s := bytes.Clone(state)
	if end := off + int64(len(b)); end > int64(len(s)) {
		s = resize(s, end)
	}
	copy(s[off:], b)
	return s
}

func TestPowerFS_UndoesDirectoryChangesNotSynced(t *testing.T) {
	for _, keep := range []bool{false, true} {
		t.Run(fmt.Sprintf("keep=%v", keep), func(t *testing.T) {
			p, dir := newPowerFS(t, 1, nil)
			p.choose = func(n int) int {
				if keep {
					return n
				}
				return 0
			}
			path := func(n string) string { return filepath.Join(dir, n) }
			for _, n := range []string{"a", "b", "c"} {
				if err := os.WriteFile(path(n), []byte(n), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			// A change made durable by SyncDir stays.
			if err := p.Rename(path("c"), path("c2")); err != nil {
				t.Fatal(err)
			}
			if err := p.SyncDir(dir); err != nil {
				t.Fatal(err)
			}
			f, err := p.OpenFile(path("new"), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			mustWriteAt(t, f, []byte("new"), 0)
			if err := f.Sync(); err != nil { // the data, not the name
				t.Fatal(err)
			}
			f.Close()
			if err := p.Rename(path("a"), path("b")); err != nil { // replaces b
				t.Fatal(err)
			}
			if err := p.Remove(path("c2")); err != nil {
				t.Fatal(err)
			}
			if err := p.MkdirAll(path("d/e"), 0o755); err != nil {
				t.Fatal(err)
			}
			loss := p.PowerOff()
			want := map[string]string{"a": "a", "b": "b", "c2": "c"}
			if keep {
				want = map[string]string{"b": "a", "new": "new", "d": ""}
			}
			got := map[string]string{}
			ents, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range ents {
				if e.IsDir() {
					got[e.Name()] = ""
					continue
				}
				got[e.Name()] = string(mustRead(t, path(e.Name())))
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("after power off the directory holds %v, want %v (%v)", got, want, loss)
			}
			if _, err := os.Stat(p.backupDir); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("backup directory left behind: %v", err)
			}
		})
	}
}

func TestPowerFS_ArmedSyncPowersOffAndLosesItsWrite(t *testing.T) {
	var got []PowerLoss
	p, dir := newPowerFS(t, 3, func(l PowerLoss) { got = append(got, l) })
	name := filepath.Join(dir, "f")
	f, err := p.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := p.SyncDir(dir); err != nil {
		t.Fatal(err)
	}
	p.Arm()
	if err := f.Datasync(); err != nil { // nothing to lose: syncs
		t.Fatal(err)
	}
	mustWriteAt(t, f, []byte("lost"), 0)
	if err := f.Datasync(); !errors.Is(err, ErrCrashed) {
		t.Fatalf("armed Datasync: %v, want ErrCrashed", err)
	}
	if len(got) != 1 || !got[0].Tripped || got[0].Lost != 1 || got[0].BytesLost != 4 || got[0].TrippedFile != name {
		t.Fatalf("onOff calls %+v, want one tripped by %s losing the 4-byte write", got, name)
	}
	if b := mustRead(t, name); len(b) != 0 {
		t.Fatalf("file holds %q after power off, want nothing", b)
	}
	if !p.Off() || p.PowerOff() != (PowerLoss{}) || len(got) != 1 {
		t.Fatal("a second PowerOff did something")
	}
}

func TestPowerFS_ArmedDirectorySyncPowersOff(t *testing.T) {
	p, dir := newPowerFS(t, 3, nil)
	p.Arm()
	if err := p.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := p.SyncDir(dir); !errors.Is(err, ErrCrashed) {
		t.Fatalf("armed SyncDir: %v, want ErrCrashed", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "d")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the directory made before the tripped sync survived: %v", err)
	}
}

func TestPowerFS_DirectWritesAreUndoneToo(t *testing.T) {
	p, dir := newPowerFS(t, 1, nil)
	p.choose = func(int) int { return 0 }
	name := filepath.Join(dir, "f")
	f, err := p.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Allocate(4 * SectorSize); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := p.SyncDir(dir); err != nil {
		t.Fatal(err)
	}
	df, err := p.OpenDirect(name)
	if errors.Is(err, ErrDirectUnsupported) {
		t.Skipf("%s: %v", dir, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer df.Close()
	buf := AlignedBuf(2 * SectorSize)
	copy(buf, bytes.Repeat([]byte("s"), len(buf)))
	if _, err := df.WriteAt(buf, 0); errors.Is(err, ErrDirectUnsupported) {
		t.Skipf("%s: %v", dir, err)
	} else if err != nil {
		t.Fatal(err)
	}
	if err := df.Datasync(); err != nil {
		t.Fatal(err)
	}
	copy(buf, bytes.Repeat([]byte("u"), len(buf)))
	mustWriteAt(t, df, buf, SectorSize)
	p.PowerOff()
	want := append(bytes.Repeat([]byte("s"), 2*SectorSize), make([]byte, 2*SectorSize)...)
	if got := mustRead(t, name); !bytes.Equal(got, want) {
		t.Fatalf("after power off the file is %q, want the synced direct write only", got)
	}
}
