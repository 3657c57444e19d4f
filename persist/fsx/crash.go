package fsx

import (
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// CrashFS is an in-memory file system that simulates power loss; the
// package comment gives the crash model. The zero value is not usable;
// call NewCrashFS.
type CrashFS struct {
	mu      sync.Mutex
	rng     *rand.Rand
	root    *node
	gen     uint64 // bumped by Crash; Files of an older generation are dead
	ops     int64  // mutating operations so far
	crashAt int64  // power fails during this operation; 0: never
	down    bool   // power has failed; everything returns ErrCrashed until Crash
	syncs   int64
	writes  int64

	failSync     map[int64]error
	failWrite    map[int64]error
	stats        CrashStats
	refuseDirect bool
}

// CrashStats counts what was done to a CrashFS.
type CrashStats struct {
	Ops          int64 // mutating operations (what CrashAfter counts)
	Writes       int64
	BytesWritten int64
	Datasyncs    int64
	Fsyncs       int64
	DirSyncs     int64
	Crashes      int64
}

var (
	_ FS       = (*CrashFS)(nil)
	_ DirectFS = (*CrashFS)(nil)
)
var _ File = (*crashFile)(nil)

// NewCrashFS returns an empty CrashFS (only the root directory) whose
// crash outcomes are drawn from seed.
func NewCrashFS(seed int64) *CrashFS {
	return &CrashFS{
		rng:       rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15)),
		root:      newDir(0o755),
		failSync:  map[int64]error{},
		failWrite: map[int64]error{},
	}
}

// CrashAfter makes power fail during the n-th mutating operation from now
// (n >= 1): that operation and every later one return ErrCrashed, until
// Crash. n <= 0 cancels.
func (c *CrashFS) CrashAfter(n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n <= 0 {
		c.crashAt = 0
		return
	}
	c.crashAt = c.ops + n
}

// Down reports whether power has failed (the CrashAfter point was reached)
// and Crash has not been called since.
func (c *CrashFS) Down() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.down
}

// Ops returns the number of mutating operations so far.
func (c *CrashFS) Ops() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ops
}

// Stats returns the counters.
func (c *CrashFS) Stats() CrashStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// FailSync makes the n-th sync from now (Datasync, Sync or SyncDir; n >= 1)
// fail with err. The changes it would have made durable are dropped from
// the durable future, as Linux does after a failed fsync: the cache still
// shows them, and a later successful sync does not save them.
func (c *CrashFS) FailSync(n int64, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failSync[c.syncs+n] = err
}

// FailWrite makes the n-th write from now (n >= 1) fail with err, changing
// nothing.
func (c *CrashFS) FailWrite(n int64, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failWrite[c.writes+n] = err
}

// Crash is power loss and reboot: what survives is drawn according to the
// crash model, every File opened before becomes unusable, locks are
// released, and the file system works again.
func (c *CrashFS) Crash() {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := map[*node]bool{}
	var visit func(n *node)
	visit = func(n *node) {
		if seen[n] {
			return
		}
		seen[n] = true
		if n.dir {
			d := maps.Clone(n.dents)
			k := c.rng.IntN(len(n.dpending) + 1)
			for _, dc := range n.dpending[:k] {
				dc.apply(d)
			}
			n.dents, n.ents, n.dpending = d, maps.Clone(d), nil
			for _, name := range slices.Sorted(maps.Keys(d)) {
				visit(d[name])
			}
			return
		}
		b := n.durable
		k := c.rng.IntN(len(n.pending) + 1)
		for _, ch := range n.pending[:k] {
			b = ch.apply(b)
		}
		if k < len(n.pending) && n.pending[k].kind == chWrite {
			b = c.tear(b, n.pending[k])
		}
		n.durable, n.data, n.pending, n.lock = b, slices.Clone(b), nil, nil
	}
	visit(c.root)
	c.gen++
	c.down = false
	c.crashAt = 0
	c.stats.Crashes++
}

// tear applies the first k of the sector pieces of a write, 0 <= k < pieces.
func (c *CrashFS) tear(b []byte, ch change) []byte {
	end := ch.off + int64(len(ch.data))
	cuts := []int64{ch.off}
	for s := (ch.off/SectorSize + 1) * SectorSize; s < end; s += SectorSize {
		cuts = append(cuts, s)
	}
	k := c.rng.IntN(len(cuts)) // pieces kept; cuts[k] is where they stop
	if k == 0 {
		return b
	}
	part := change{kind: chWrite, off: ch.off, data: ch.data[:cuts[k]-ch.off]}
	return part.apply(b)
}

// step counts a mutating operation. inflight is true when power fails
// during it: the caller records the change as unsynced and returns
// ErrCrashed.
func (c *CrashFS) step() (inflight bool, err error) {
	if c.down {
		return false, ErrCrashed
	}
	c.ops++
	c.stats.Ops++
	if c.crashAt > 0 && c.ops >= c.crashAt {
		c.down = true
		return true, nil
	}
	return false, nil
}

// Nodes.

type node struct {
	dir  bool
	mode fs.FileMode

	// Files: data is what reads see; durable plus pending replays to data
	// unless a sync failed.
	data, durable []byte
	pending       []change
	lock          *crashFile

	// Directories.
	ents, dents map[string]*node
	dpending    []dirChange
}

func newDir(perm fs.FileMode) *node {
	return &node{dir: true, mode: fs.ModeDir | perm.Perm(), ents: map[string]*node{}, dents: map[string]*node{}}
}

type changeKind int

const (
	chWrite    changeKind = iota
	chTruncate            // set the size
	chAllocate            // grow to at least size
)

type change struct {
	kind changeKind
	off  int64
	data []byte
	size int64
}

func resize(b []byte, n int64) []byte {
	if int64(len(b)) >= n {
		return b[:n]
	}
	return append(b, make([]byte, n-int64(len(b)))...)
}

// apply returns b with the change made; it may modify b in place.
func (ch change) apply(b []byte) []byte {
	switch ch.kind {
	case chWrite:
		if end := ch.off + int64(len(ch.data)); int64(len(b)) < end {
			b = resize(b, end)
		}
		copy(b[ch.off:], ch.data)
	case chTruncate:
		b = resize(b, ch.size)
	case chAllocate:
		if int64(len(b)) < ch.size {
			b = resize(b, ch.size)
		}
	}
	return b
}

type dirChangeKind int

const (
	dcLink dirChangeKind = iota
	dcUnlink
	dcRename
)

type dirChange struct {
	kind     dirChangeKind
	name, to string
	n        *node
}

func (dc dirChange) apply(m map[string]*node) {
	switch dc.kind {
	case dcLink:
		m[dc.name] = dc.n
	case dcUnlink:
		delete(m, dc.name)
	case dcRename:
		delete(m, dc.name)
		m[dc.to] = dc.n
	}
}

func (n *node) change(ch change) {
	n.data = ch.apply(n.data)
	ch.data = slices.Clone(ch.data)
	n.pending = append(n.pending, ch)
}

func (n *node) dirChange(dc dirChange) {
	dc.apply(n.ents)
	n.dpending = append(n.dpending, dc)
}

// Paths. Every name is taken relative to the root, so "a/b" and "/a/b"
// are the same file.

func clean(name string) string { return path.Clean("/" + filepath.ToSlash(name)) }

func pathErr(op, name string, err error) error { return &fs.PathError{Op: op, Path: name, Err: err} }

func (c *CrashFS) lookup(p string) *node {
	n := c.root
	if p == "/" {
		return n
	}
	for _, part := range splitPath(p) {
		if !n.dir {
			return nil
		}
		if n = n.ents[part]; n == nil {
			return nil
		}
	}
	return n
}

func splitPath(p string) []string {
	var out []string
	for _, s := range strings.Split(p, "/") {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// parent returns the directory holding p and p's last element.
func (c *CrashFS) parent(op, name string) (*node, string, error) {
	p := clean(name)
	if p == "/" {
		return nil, "", pathErr(op, name, syscall.EINVAL)
	}
	d := c.lookup(path.Dir(p))
	if d == nil {
		return nil, "", pathErr(op, name, fs.ErrNotExist)
	}
	if !d.dir {
		return nil, "", pathErr(op, name, syscall.ENOTDIR)
	}
	return d, path.Base(p), nil
}

// FS methods.

func (c *CrashFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down {
		return nil, ErrCrashed
	}
	d, base, err := c.parent("open", name)
	if err != nil {
		return nil, err
	}
	n := d.ents[base]
	switch {
	case n == nil && flag&os.O_CREATE == 0:
		return nil, pathErr("open", name, fs.ErrNotExist)
	case n == nil:
		inflight, err := c.step()
		if err != nil {
			return nil, err
		}
		n = &node{mode: perm.Perm()}
		d.dirChange(dirChange{kind: dcLink, name: base, n: n})
		if inflight {
			return nil, ErrCrashed
		}
	case flag&(os.O_CREATE|os.O_EXCL) == os.O_CREATE|os.O_EXCL:
		return nil, pathErr("open", name, fs.ErrExist)
	case n.dir:
		return nil, pathErr("open", name, syscall.EISDIR)
	case flag&os.O_TRUNC != 0 && flag&(os.O_WRONLY|os.O_RDWR) != 0:
		inflight, err := c.step()
		if err != nil {
			return nil, err
		}
		n.change(change{kind: chTruncate})
		if inflight {
			return nil, ErrCrashed
		}
	}
	return &crashFile{c: c, n: n, name: name, gen: c.gen, flag: flag}, nil
}

// OpenDirect opens an existing file read-write for direct I/O. Its writes
// have the same crash semantics as any other (direct I/O does not make a
// write durable: only a sync does), but they must be aligned as a device
// requires: an offset or length that is not a multiple of SectorSize, or
// a buffer not aligned to DirectAlign, is refused with EINVAL (a bug of the
// caller, not ErrDirectUnsupported). After RefuseDirect(true) it fails
// with ErrDirectUnsupported, as on tmpfs.
func (c *CrashFS) OpenDirect(name string) (File, error) {
	c.mu.Lock()
	refuse := c.refuseDirect
	c.mu.Unlock()
	if refuse {
		return nil, fmt.Errorf("%w: open %s", ErrDirectUnsupported, name)
	}
	f, err := c.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	f.(*crashFile).direct = true
	return f, nil
}

// RefuseDirect makes OpenDirect fail from now on (refuse) or work again.
func (c *CrashFS) RefuseDirect(refuse bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refuseDirect = refuse
}

func (c *CrashFS) ReadFile(name string) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down {
		return nil, ErrCrashed
	}
	n := c.lookup(clean(name))
	switch {
	case n == nil:
		return nil, pathErr("open", name, fs.ErrNotExist)
	case n.dir:
		return nil, pathErr("read", name, syscall.EISDIR)
	}
	return slices.Clone(n.data), nil
}

func (c *CrashFS) ReadDir(name string) ([]fs.DirEntry, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down {
		return nil, ErrCrashed
	}
	n := c.lookup(clean(name))
	switch {
	case n == nil:
		return nil, pathErr("open", name, fs.ErrNotExist)
	case !n.dir:
		return nil, pathErr("readdirent", name, syscall.ENOTDIR)
	}
	var out []fs.DirEntry
	for _, k := range slices.Sorted(maps.Keys(n.ents)) {
		out = append(out, fs.FileInfoToDirEntry(n.ents[k].info(k)))
	}
	return out, nil
}

func (c *CrashFS) Stat(name string) (fs.FileInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down {
		return nil, ErrCrashed
	}
	p := clean(name)
	n := c.lookup(p)
	if n == nil {
		return nil, pathErr("stat", name, fs.ErrNotExist)
	}
	return n.info(path.Base(p)), nil
}

func (c *CrashFS) Mkdir(name string, perm fs.FileMode) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mkdir(name, perm)
}

func (c *CrashFS) mkdir(name string, perm fs.FileMode) error {
	if c.down {
		return ErrCrashed
	}
	d, base, err := c.parent("mkdir", name)
	if err != nil {
		return err
	}
	if d.ents[base] != nil {
		return pathErr("mkdir", name, fs.ErrExist)
	}
	inflight, err := c.step()
	if err != nil {
		return err
	}
	d.dirChange(dirChange{kind: dcLink, name: base, n: newDir(perm)})
	if inflight {
		return ErrCrashed
	}
	return nil
}

func (c *CrashFS) MkdirAll(name string, perm fs.FileMode) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down {
		return ErrCrashed
	}
	p := "/"
	for _, part := range splitPath(clean(name)) {
		p = path.Join(p, part)
		n := c.lookup(p)
		if n == nil {
			if err := c.mkdir(p, perm); err != nil {
				return err
			}
			continue
		}
		if !n.dir {
			return pathErr("mkdir", p, syscall.ENOTDIR)
		}
	}
	return nil
}

func (c *CrashFS) Rename(oldpath, newpath string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down {
		return ErrCrashed
	}
	d, from, err := c.parent("rename", oldpath)
	if err != nil {
		return err
	}
	d2, to, err := c.parent("rename", newpath)
	if err != nil {
		return err
	}
	if d != d2 {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: syscall.EXDEV}
	}
	n := d.ents[from]
	if n == nil {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: fs.ErrNotExist}
	}
	if from == to {
		return nil
	}
	if old := d.ents[to]; old != nil && (old.dir || n.dir) {
		if !old.dir || !n.dir || len(old.ents) > 0 {
			return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: syscall.EEXIST}
		}
	}
	inflight, err := c.step()
	if err != nil {
		return err
	}
	d.dirChange(dirChange{kind: dcRename, name: from, to: to, n: n})
	if inflight {
		return ErrCrashed
	}
	return nil
}

func (c *CrashFS) Remove(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down {
		return ErrCrashed
	}
	d, base, err := c.parent("remove", name)
	if err != nil {
		return err
	}
	n := d.ents[base]
	switch {
	case n == nil:
		return pathErr("remove", name, fs.ErrNotExist)
	case n.dir && len(n.ents) > 0:
		return pathErr("remove", name, syscall.ENOTEMPTY)
	}
	return c.unlink(d, base)
}

func (c *CrashFS) unlink(d *node, base string) error {
	inflight, err := c.step()
	if err != nil {
		return err
	}
	d.dirChange(dirChange{kind: dcUnlink, name: base})
	if inflight {
		return ErrCrashed
	}
	return nil
}

func (c *CrashFS) RemoveAll(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down {
		return ErrCrashed
	}
	d, base, err := c.parent("removeall", name)
	if err != nil {
		if clean(name) == "/" {
			return err
		}
		return nil // a missing parent: nothing to remove
	}
	if d.ents[base] == nil {
		return nil
	}
	return c.unlink(d, base)
}

func (c *CrashFS) SyncDir(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down {
		return ErrCrashed
	}
	n := c.lookup(clean(name))
	switch {
	case n == nil:
		return pathErr("open", name, fs.ErrNotExist)
	case !n.dir:
		return pathErr("fsync", name, syscall.ENOTDIR)
	}
	c.syncs++
	if err, ok := c.failSync[c.syncs]; ok {
		delete(c.failSync, c.syncs)
		n.dpending = nil
		return err
	}
	inflight, err := c.step()
	if err != nil {
		return err
	}
	if inflight {
		return ErrCrashed
	}
	n.dents, n.dpending = maps.Clone(n.ents), nil
	c.stats.DirSyncs++
	return nil
}

// File.

type crashFile struct {
	c      *CrashFS
	n      *node
	name   string
	gen    uint64
	flag   int
	off    int64
	closed bool
	direct bool // opened by OpenDirect: writes must be aligned
}

// usable is called with c.mu held.
func (f *crashFile) usable(op string) error {
	switch {
	case f.closed:
		return pathErr(op, f.name, fs.ErrClosed)
	case f.gen != f.c.gen || f.c.down:
		return ErrCrashed
	}
	return nil
}

func (f *crashFile) readable() bool { return f.flag&(os.O_WRONLY|os.O_RDWR) != os.O_WRONLY }
func (f *crashFile) writable() bool { return f.flag&(os.O_WRONLY|os.O_RDWR) != 0 }

func (f *crashFile) Name() string { return f.name }

func (f *crashFile) Read(p []byte) (int, error) {
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	n, err := f.readAt(p, f.off)
	f.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

func (f *crashFile) ReadAt(p []byte, off int64) (int, error) {
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	return f.readAt(p, off)
}

func (f *crashFile) readAt(p []byte, off int64) (int, error) {
	if err := f.usable("read"); err != nil {
		return 0, err
	}
	if !f.readable() {
		return 0, pathErr("read", f.name, syscall.EBADF)
	}
	if off < 0 {
		return 0, pathErr("read", f.name, syscall.EINVAL)
	}
	if off >= int64(len(f.n.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.n.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *crashFile) Write(p []byte) (int, error) {
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	off := f.off
	if f.flag&os.O_APPEND != 0 {
		off = int64(len(f.n.data))
	}
	n, err := f.write(p, off)
	f.off = off + int64(n)
	return n, err
}

func (f *crashFile) WriteAt(p []byte, off int64) (int, error) {
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	if f.flag&os.O_APPEND != 0 {
		return 0, pathErr("write", f.name, syscall.EINVAL)
	}
	return f.write(p, off)
}

func (f *crashFile) write(p []byte, off int64) (int, error) {
	c := f.c
	if err := f.usable("write"); err != nil {
		return 0, err
	}
	if !f.writable() {
		return 0, pathErr("write", f.name, syscall.EBADF)
	}
	if off < 0 || f.direct && (off%SectorSize != 0 || len(p)%SectorSize != 0 || !IsAligned(p)) {
		return 0, pathErr("write", f.name, syscall.EINVAL)
	}
	c.writes++
	if err, ok := c.failWrite[c.writes]; ok {
		delete(c.failWrite, c.writes)
		return 0, err
	}
	inflight, err := c.step()
	if err != nil {
		return 0, err
	}
	f.n.change(change{kind: chWrite, off: off, data: p})
	c.stats.Writes++
	c.stats.BytesWritten += int64(len(p))
	if inflight {
		return 0, ErrCrashed
	}
	return len(p), nil
}

func (f *crashFile) Datasync() error { return f.sync(&f.c.stats.Datasyncs) }
func (f *crashFile) Sync() error     { return f.sync(&f.c.stats.Fsyncs) }

func (f *crashFile) sync(count *int64) error {
	c := f.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := f.usable("sync"); err != nil {
		return err
	}
	c.syncs++
	if err, ok := c.failSync[c.syncs]; ok {
		delete(c.failSync, c.syncs)
		f.n.pending = nil // lost for good; the cache keeps showing them
		return err
	}
	inflight, err := c.step()
	if err != nil {
		return err
	}
	if inflight {
		return ErrCrashed
	}
	for _, ch := range f.n.pending {
		f.n.durable = ch.apply(f.n.durable)
	}
	f.n.pending = nil
	*count++
	return nil
}

func (f *crashFile) Allocate(size int64) error {
	return f.resize("fallocate", change{kind: chAllocate, size: size})
}

func (f *crashFile) Truncate(size int64) error {
	return f.resize("truncate", change{kind: chTruncate, size: size})
}

func (f *crashFile) resize(op string, ch change) error {
	c := f.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := f.usable(op); err != nil {
		return err
	}
	if !f.writable() {
		return pathErr(op, f.name, syscall.EBADF)
	}
	if ch.size < 0 {
		return pathErr(op, f.name, syscall.EINVAL)
	}
	inflight, err := c.step()
	if err != nil {
		return err
	}
	f.n.change(ch)
	if inflight {
		return ErrCrashed
	}
	return nil
}

func (f *crashFile) Stat() (fs.FileInfo, error) {
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	if err := f.usable("stat"); err != nil {
		return nil, err
	}
	return f.n.info(path.Base(clean(f.name))), nil
}

func (f *crashFile) Lock() error {
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	if err := f.usable("flock"); err != nil {
		return err
	}
	if l := f.n.lock; l != nil && l != f {
		return pathErr("flock", f.name, ErrLocked)
	}
	f.n.lock = f
	return nil
}

// Close releases the lock. Closing a File that did not survive a crash
// is not an error.
func (f *crashFile) Close() error {
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	if f.closed {
		return pathErr("close", f.name, fs.ErrClosed)
	}
	f.closed = true
	if f.n.lock == f {
		f.n.lock = nil
	}
	return nil
}

// File info.

type info struct {
	name string
	size int64
	mode fs.FileMode
}

func (n *node) info(name string) fs.FileInfo {
	return info{name: name, size: int64(len(n.data)), mode: n.mode}
}

func (i info) Name() string       { return i.name }
func (i info) Size() int64        { return i.size }
func (i info) Mode() fs.FileMode  { return i.mode }
func (i info) ModTime() time.Time { return time.Time{} }
func (i info) IsDir() bool        { return i.mode.IsDir() }
func (i info) Sys() any           { return nil }
