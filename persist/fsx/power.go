package fsx

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
)

// PowerFS wraps a real file system (OS) and keeps, for every file and
// directory changed through it, the changes made since its last
// successful sync, with what each overwrote. PowerOff undoes the changes a
// power loss may drop, by the crash model of CrashFS (the package
// comment), on the real files, so that a running process can lose its
// unsynced writes as if the machine had lost power: every file and every
// directory independently keeps a random prefix of its unsynced changes,
// the first write lost may be torn at a SectorSize boundary, and the rest
// is undone. Writes that did not go through the PowerFS (other files,
// other processes) are not touched: for them it is as if the disk had
// written everything before the power failed, one of the outcomes the
// model allows.
//
// Removed and replaced files are kept (renamed) in a backup directory,
// which must be on the same file system as the directories changed,
// until the directory that held them is synced, so that PowerOff can put
// them back. Every File of a PowerFS keeps a second descriptor of its
// file, for reading the bytes a write overwrites and for undoing it.
//
// Arm makes the next sync that finds unsynced changes (of a file or a
// directory) power off instead of syncing: the sync is in flight when
// power fails, and at least the last change it covered is lost. After
// PowerOff every call fails with ErrCrashed. PowerFS is for tests and
// test builds: it reads before every write and serializes writes to a
// file. The zero value is not usable; call NewPowerFS. Safe for
// concurrent use.
type PowerFS struct {
	inner     FS
	backupDir string
	onOff     func(PowerLoss)

	// Every call holds gate for reading; PowerOff holds it for writing,
	// so it sees no call half done.
	gate sync.RWMutex

	mu      sync.Mutex // the fields below; files' and dirs' contents
	rng     *rand.Rand
	choose  func(n int) int // how many of n unsynced changes survive; tests set it
	seq     uint64
	backups uint64
	files   map[fileID]*powerInode
	dirs    map[string][]*entryChange
	armed   bool
	off     bool
}

// PowerLoss is what PowerOff did.
type PowerLoss struct {
	Files, Dirs  int   // with unsynced changes
	Kept, Lost   int   // unsynced changes kept and undone (a torn write counts as lost)
	Torn         int   // writes of which a prefix of sectors was kept
	BytesLost    int64 // bytes of unsynced writes undone
	Tripped      bool  // by an armed sync, not by a direct call
	TrippedFile  string
	BackupErrors int // backups that could not be removed afterwards
}

func (l PowerLoss) String() string {
	return fmt.Sprintf("%d unsynced changes lost (%d bytes written, %d writes torn), %d kept, in %d files and %d directories",
		l.Lost, l.BytesLost, l.Torn, l.Kept, l.Files, l.Dirs)
}

type fileID struct{ dev, ino uint64 }

// powerInode is the state of one file (inode) with open Files or
// unsynced changes.
type powerInode struct {
	id      fileID
	name    string       // a name it had, for reports
	undo    File         // read-write, buffered: reads what writes overwrite, undoes them
	refs    int          // open Files; PowerFS.mu
	changes []fileChange // unsynced, oldest first; PowerFS.mu
	mu      sync.Mutex   // serializes writes and syncs to the file; taken before PowerFS.mu
}

// fileChange is one unsynced write or size change, undone by writing old
// at off and setting the size back to oldSize.
type fileChange struct {
	seq     uint64
	write   bool
	off     int64
	n       int64  // bytes written
	old     []byte // what the write or a shrink overwrote, from off
	oldSize int64
}

type entryKind int

const (
	entryCreate entryKind = iota
	entryMkdir
	entryRename
	entryRemove
)

// entryChange is one unsynced change of a directory's entries. backup holds
// the file a remove took away or a rename replaced.
type entryChange struct {
	seq      uint64
	kind     entryKind
	name, to string // full paths
	backup   string
}

var (
	_ FS       = (*PowerFS)(nil)
	_ DirectFS = (*PowerFS)(nil)
	_ File     = (*powerFile)(nil)
)

// NewPowerFS wraps inner, which must give files inode numbers (OS does),
// keeping removed files in backupDir (emptied and created now, on the
// file system of the directories to be changed). Outcomes of PowerOff are
// drawn from seed. onOff, if not nil, is called by PowerOff with what it
// did, before any call blocked behind it goes on (and fails): a process
// simulating power loss kills itself there.
func NewPowerFS(inner FS, backupDir string, seed int64, onOff func(PowerLoss)) (*PowerFS, error) {
	if err := inner.RemoveAll(backupDir); err != nil {
		return nil, err
	}
	if err := inner.MkdirAll(backupDir, 0o700); err != nil {
		return nil, err
	}
	return &PowerFS{
		inner:     inner,
		backupDir: backupDir,
		onOff:     onOff,
		rng:       rand.New(rand.NewPCG(uint64(seed), 0x51ed27c0ffee)),
		files:     map[fileID]*powerInode{},
		dirs:      map[string][]*entryChange{},
	}, nil
}

// enter starts a call: it holds the gate for reading until the returned
// error is nil and the caller calls p.gate.RUnlock.
func (p *PowerFS) enter() error {
	p.gate.RLock()
	p.mu.Lock()
	off := p.off
	p.mu.Unlock()
	if off {
		p.gate.RUnlock()
		return ErrCrashed
	}
	return nil
}

// Arm makes the next sync that has unsynced changes to make durable call
// PowerOff instead, and fail with ErrCrashed.
func (p *PowerFS) Arm() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.armed = true
}

// trip reports whether an armed PowerFS should power off at a sync of
// pending changes, disarming it.
func (p *PowerFS) trip(pending int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.armed || pending == 0 || p.off {
		return false
	}
	p.armed = false
	return true
}

func (p *PowerFS) nextSeq() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seq++
	return p.seq
}

// Off reports whether PowerOff has run.
func (p *PowerFS) Off() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.off
}

// PowerOff cuts the power: it waits for the calls in progress, undoes
// what the crash model lets a power loss drop, removes the backups, calls
// onOff, and from then on every call fails with ErrCrashed. A second call
// does nothing and returns the zero PowerLoss.
func (p *PowerFS) PowerOff() PowerLoss { return p.powerOff(nil, "") }

// powerOff is PowerOff; the file or directory whose sync tripped it loses
// at least its last change.
func (p *PowerFS) powerOff(tripFile *powerInode, tripDir string) PowerLoss {
	p.gate.Lock()
	defer p.gate.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.off {
		return PowerLoss{}
	}
	p.off = true
	var loss PowerLoss
	switch {
	case tripFile != nil:
		loss.Tripped, loss.TrippedFile = true, tripFile.name
	case tripDir != "":
		loss.Tripped, loss.TrippedFile = true, tripDir
	}
	type undo struct {
		seq uint64
		do  func() error
	}
	var undos []undo
	for _, id := range slices.SortedFunc(maps.Keys(p.files), func(a, b fileID) int { return cmp.Or(cmp.Compare(a.dev, b.dev), cmp.Compare(a.ino, b.ino)) }) {
		in := p.files[id]
		n := len(in.changes)
		if n == 0 {
			continue
		}
		loss.Files++
		k := p.survivors(n, in == tripFile)
		loss.Kept += k
		loss.Lost += n - k
		for i := n - 1; i >= k; i-- {
			ch := in.changes[i]
			keep := int64(0) // bytes of a torn write kept, from ch.off
			if i == k && ch.write {
				if keep = p.tear(ch); keep > 0 {
					loss.Torn++
				}
			}
			if ch.write {
				loss.BytesLost += ch.n - keep
			}
			undos = append(undos, undo{ch.seq, func() error { return in.revert(ch, keep) }})
		}
	}
	for _, dir := range slices.Sorted(maps.Keys(p.dirs)) {
		chs := p.dirs[dir]
		loss.Dirs++
		k := p.survivors(len(chs), dir == tripDir)
		loss.Kept += k
		loss.Lost += len(chs) - k
		for _, dc := range chs[k:] {
			undos = append(undos, undo{dc.seq, func() error { return p.revertDir(dc) }})
		}
	}
	// Newest first: each undo finds the state its change left.
	slices.SortFunc(undos, func(a, b undo) int { return cmp.Compare(b.seq, a.seq) })
	var errs []error
	for _, u := range undos {
		if err := u.do(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, in := range p.files {
		in.undo.Close()
	}
	p.files, p.dirs = map[fileID]*powerInode{}, map[string][]*entryChange{}
	if err := p.inner.RemoveAll(p.backupDir); err != nil {
		loss.BackupErrors++
	}
	if len(errs) > 0 {
		// The files are not in a state power loss could leave: a test
		// must not go on as if they were.
		panic(fmt.Sprintf("fsx: PowerOff could not undo the unsynced changes: %v", errors.Join(errs...)))
	}
	if p.onOff != nil {
		p.onOff(loss)
	}
	return loss
}

// survivors draws how many of n unsynced changes survive; at least one is
// lost when lose is set (the one an armed sync was making durable).
func (p *PowerFS) survivors(n int, lose bool) int {
	if p.choose != nil {
		return min(p.choose(n), n)
	}
	if lose {
		return p.rng.IntN(n)
	}
	return p.rng.IntN(n + 1)
}

// tear draws how many bytes from its start of a write that does not
// survive whole reach the disk: whole pieces, cut at SectorSize file
// offsets, never all of them.
func (p *PowerFS) tear(ch fileChange) int64 {
	var cuts []int64 // lengths from ch.off at piece ends, but the last
	for c := (ch.off/SectorSize + 1) * SectorSize; c < ch.off+ch.n; c += SectorSize {
		cuts = append(cuts, c-ch.off)
	}
	if p.choose != nil || len(cuts) == 0 {
		return 0
	}
	k := p.rng.IntN(len(cuts) + 1)
	if k == 0 {
		return 0
	}
	return cuts[k-1]
}

// revert undoes ch, keeping its first keep bytes if it is a write.
func (in *powerInode) revert(ch fileChange, keep int64) error {
	if ch.write && int64(len(ch.old)) > keep {
		if _, err := in.undo.WriteAt(ch.old[keep:], ch.off+keep); err != nil {
			return fmt.Errorf("undoing a write to %s: %w", in.name, err)
		}
	}
	size := ch.oldSize
	if ch.write && keep > 0 {
		size = max(size, ch.off+keep)
	} else if len(ch.old) > 0 {
		// A shrink: the cut bytes go back.
		if err := in.undo.Truncate(ch.oldSize); err != nil {
			return fmt.Errorf("undoing a truncation of %s: %w", in.name, err)
		}
		if _, err := in.undo.WriteAt(ch.old, ch.off); err != nil {
			return fmt.Errorf("undoing a truncation of %s: %w", in.name, err)
		}
	}
	if err := in.undo.Truncate(size); err != nil {
		return fmt.Errorf("undoing a change of size of %s: %w", in.name, err)
	}
	return nil
}

// revertDir undoes dc.
func (p *PowerFS) revertDir(dc *entryChange) error {
	var err error
	switch dc.kind {
	case entryCreate, entryMkdir:
		err = p.inner.RemoveAll(dc.name)
	case entryRename:
		if err = p.inner.Rename(dc.to, dc.name); err == nil && dc.backup != "" {
			err = p.inner.Rename(dc.backup, dc.to)
		}
	case entryRemove:
		err = p.inner.Rename(dc.backup, dc.name)
	}
	if err != nil {
		return fmt.Errorf("undoing a change of directory %s: %w", filepath.Dir(dc.name), err)
	}
	return nil
}

func absPath(name string) string {
	if a, err := filepath.Abs(name); err == nil {
		return a
	}
	return filepath.Clean(name)
}

// recordDir records a change of the directory of dc.name.
func (p *PowerFS) recordDir(dc *entryChange) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seq++
	dc.seq = p.seq
	dir := filepath.Dir(dc.name)
	p.dirs[dir] = append(p.dirs[dir], dc)
}

// backup moves name out of the way, into the backup directory, and
// returns where it is now.
func (p *PowerFS) backup(name string) (string, error) {
	p.mu.Lock()
	p.backups++
	b := filepath.Join(p.backupDir, strconv.FormatUint(p.backups, 10))
	p.mu.Unlock()
	if err := p.inner.Rename(name, b); err != nil {
		return "", err
	}
	return b, nil
}

func (p *PowerFS) exists(name string) (bool, error) {
	_, err := p.inner.Stat(name)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return false, err
}

func (p *PowerFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer p.gate.RUnlock()
	name = absPath(name)
	created := false
	if flag&os.O_CREATE != 0 {
		had, err := p.exists(name)
		if err != nil {
			return nil, err
		}
		created = !had
	}
	// O_TRUNC and O_APPEND are done here, so that they are recorded.
	f, err := p.inner.OpenFile(name, flag&^(os.O_TRUNC|os.O_APPEND), perm)
	if err != nil {
		return nil, err
	}
	if created {
		p.recordDir(&entryChange{kind: entryCreate, name: name})
	}
	if flag&(os.O_WRONLY|os.O_RDWR) == 0 {
		return f, nil // it changes nothing
	}
	pf, err := p.track(f, name, flag)
	if err != nil {
		return nil, err
	}
	if flag&os.O_TRUNC != 0 && flag&(os.O_WRONLY|os.O_RDWR) != 0 {
		if err := pf.truncate(0); err != nil {
			pf.close()
			return nil, err
		}
	}
	return pf, nil
}

// OpenDirect opens name for direct I/O through the wrapped file system;
// ErrDirectUnsupported if it has none.
func (p *PowerFS) OpenDirect(name string) (File, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer p.gate.RUnlock()
	dfs, ok := p.inner.(DirectFS)
	if !ok {
		return nil, fmt.Errorf("%w: open %s: %T has no direct I/O", ErrDirectUnsupported, name, p.inner)
	}
	name = absPath(name)
	f, err := dfs.OpenDirect(name)
	if err != nil {
		return nil, err
	}
	return p.track(f, name, os.O_RDWR)
}

// track wraps f, opened by name, sharing the state of its inode with the
// other Files of it. On error it closes f.
func (p *PowerFS) track(f File, name string, flag int) (*powerFile, error) {
	id, err := inode(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	p.mu.Lock()
	in := p.files[id]
	if in != nil {
		in.refs++
	}
	p.mu.Unlock()
	if in == nil {
		undo, err := p.inner.OpenFile(name, os.O_RDWR, 0)
		if err == nil {
			var uid fileID
			if uid, err = inode(undo); err == nil && uid != id {
				err = fmt.Errorf("fsx: %s was replaced while being opened", name)
			}
			if err != nil {
				undo.Close()
			}
		}
		if err != nil {
			f.Close()
			return nil, err
		}
		p.mu.Lock()
		if in = p.files[id]; in != nil {
			undo.Close() // opened meanwhile by another caller
		} else {
			in = &powerInode{id: id, name: name, undo: undo}
			p.files[id] = in
		}
		in.refs++
		p.mu.Unlock()
	}
	return &powerFile{File: f, fs: p, in: in, append: flag&os.O_APPEND != 0}, nil
}

func inode(f File) (fileID, error) {
	fi, err := f.Stat()
	if err != nil {
		return fileID{}, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, fmt.Errorf("fsx: PowerFS needs inode numbers; %s has none", f.Name())
	}
	return fileID{uint64(st.Dev), uint64(st.Ino)}, nil
}

func (p *PowerFS) ReadFile(name string) ([]byte, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer p.gate.RUnlock()
	return p.inner.ReadFile(name)
}

func (p *PowerFS) ReadDir(name string) ([]fs.DirEntry, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer p.gate.RUnlock()
	return p.inner.ReadDir(name)
}

func (p *PowerFS) Stat(name string) (fs.FileInfo, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer p.gate.RUnlock()
	return p.inner.Stat(name)
}

func (p *PowerFS) Mkdir(name string, perm fs.FileMode) error {
	if err := p.enter(); err != nil {
		return err
	}
	defer p.gate.RUnlock()
	return p.mkdir(absPath(name), perm)
}

func (p *PowerFS) mkdir(name string, perm fs.FileMode) error {
	if err := p.inner.Mkdir(name, perm); err != nil {
		return err
	}
	p.recordDir(&entryChange{kind: entryMkdir, name: name})
	return nil
}

// MkdirAll creates the missing directories one by one, so that each is
// recorded in its parent.
func (p *PowerFS) MkdirAll(name string, perm fs.FileMode) error {
	if err := p.enter(); err != nil {
		return err
	}
	defer p.gate.RUnlock()
	var missing []string
	for d := absPath(name); ; d = filepath.Dir(d) {
		had, err := p.exists(d)
		if err != nil {
			return err
		}
		if had {
			break
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := p.mkdir(missing[i], perm); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	return nil
}

func (p *PowerFS) Rename(oldpath, newpath string) error {
	if err := p.enter(); err != nil {
		return err
	}
	defer p.gate.RUnlock()
	oldpath, newpath = absPath(oldpath), absPath(newpath)
	if filepath.Dir(oldpath) != filepath.Dir(newpath) {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: errors.New("fsx: PowerFS renames only within a directory")}
	}
	if oldpath == newpath {
		return p.inner.Rename(oldpath, newpath)
	}
	if _, err := p.inner.Stat(oldpath); err != nil {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
	}
	dc := &entryChange{kind: entryRename, name: oldpath, to: newpath}
	had, err := p.exists(newpath)
	if err != nil {
		return err
	}
	if had {
		if dc.backup, err = p.backup(newpath); err != nil {
			return err
		}
	}
	if err := p.inner.Rename(oldpath, newpath); err != nil {
		if dc.backup != "" {
			p.inner.Rename(dc.backup, newpath)
		}
		return err
	}
	p.recordDir(dc)
	return nil
}

// Remove and RemoveAll move name to the backup directory until its
// directory is synced.
func (p *PowerFS) Remove(name string) error { return p.remove(name, false) }

func (p *PowerFS) RemoveAll(name string) error { return p.remove(name, true) }

func (p *PowerFS) remove(name string, all bool) error {
	if err := p.enter(); err != nil {
		return err
	}
	defer p.gate.RUnlock()
	name = absPath(name)
	fi, err := p.inner.Stat(name)
	if err != nil {
		if all && errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	if !all && fi.IsDir() {
		entries, err := p.inner.ReadDir(name)
		if err != nil {
			return err
		}
		if len(entries) > 0 {
			return &fs.PathError{Op: "remove", Path: name, Err: syscall.ENOTEMPTY}
		}
	}
	b, err := p.backup(name)
	if err != nil {
		return err
	}
	p.recordDir(&entryChange{kind: entryRemove, name: name, backup: b})
	return nil
}

func (p *PowerFS) SyncDir(name string) error {
	if err := p.enter(); err != nil {
		return err
	}
	name = absPath(name)
	p.mu.Lock()
	n := len(p.dirs[name])
	p.mu.Unlock()
	if p.trip(n) {
		p.gate.RUnlock()
		p.powerOff(nil, name)
		return &fs.PathError{Op: "fsync", Path: name, Err: ErrCrashed}
	}
	defer p.gate.RUnlock()
	if err := p.inner.SyncDir(name); err != nil {
		return err
	}
	p.mu.Lock()
	done := p.dirs[name][:n]
	p.dirs[name] = slices.Clone(p.dirs[name][n:])
	if len(p.dirs[name]) == 0 {
		delete(p.dirs, name)
	}
	p.mu.Unlock()
	for _, dc := range done {
		if dc.backup != "" {
			// Durable now: the backup is garbage.
			p.inner.RemoveAll(dc.backup)
		}
	}
	return nil
}

// powerFile is a File of a PowerFS. Read and Write go through ReadAt and
// WriteAt at its own offset, so that every write has one.
type powerFile struct {
	File
	fs     *PowerFS
	in     *powerInode
	append bool

	mu     sync.Mutex
	pos    int64
	closed bool
}

func (f *powerFile) Read(b []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.ReadAt(b, f.pos)
	f.pos += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

func (f *powerFile) ReadAt(b []byte, off int64) (int, error) {
	if err := f.fs.enter(); err != nil {
		return 0, err
	}
	defer f.fs.gate.RUnlock()
	return f.File.ReadAt(b, off)
}

func (f *powerFile) Write(b []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	off := f.pos
	if f.append {
		fi, err := f.in.undo.Stat()
		if err != nil {
			return 0, err
		}
		off = fi.Size()
	}
	n, err := f.WriteAt(b, off)
	f.pos = off + int64(n)
	return n, err
}

func (f *powerFile) WriteAt(b []byte, off int64) (int, error) {
	if err := f.fs.enter(); err != nil {
		return 0, err
	}
	defer f.fs.gate.RUnlock()
	in := f.in
	in.mu.Lock()
	defer in.mu.Unlock()
	size, err := in.size()
	if err != nil {
		return 0, err
	}
	var old []byte
	if off < size {
		old = make([]byte, min(int64(len(b)), size-off))
		if _, err := in.undo.ReadAt(old, off); err != nil && err != io.EOF {
			return 0, fmt.Errorf("fsx: PowerFS: reading what a write to %s overwrites: %w", f.Name(), err)
		}
	}
	seq := f.fs.nextSeq()
	n, err := f.File.WriteAt(b, off)
	if n > 0 {
		if len(old) > n {
			old = old[:n]
		}
		f.fs.record(in, fileChange{seq: seq, write: true, off: off, n: int64(n), old: old, oldSize: size})
	}
	return n, err
}

// record adds ch to the unsynced changes of in.
func (p *PowerFS) record(in *powerInode, ch fileChange) {
	p.mu.Lock()
	defer p.mu.Unlock()
	in.changes = append(in.changes, ch)
}

func (in *powerInode) size() (int64, error) {
	fi, err := in.undo.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

func (f *powerFile) Truncate(size int64) error {
	if err := f.fs.enter(); err != nil {
		return err
	}
	defer f.fs.gate.RUnlock()
	return f.truncate(size)
}

func (f *powerFile) truncate(size int64) error {
	return f.resize(size, func() error { return f.File.Truncate(size) })
}

func (f *powerFile) Allocate(size int64) error {
	if err := f.fs.enter(); err != nil {
		return err
	}
	defer f.fs.gate.RUnlock()
	return f.resize(size, func() error { return f.File.Allocate(size) })
}

// resize records and does a change of size to size (do), keeping the
// bytes a shrink cuts off.
func (f *powerFile) resize(size int64, do func() error) error {
	in := f.in
	in.mu.Lock()
	defer in.mu.Unlock()
	oldSize, err := in.size()
	if err != nil {
		return err
	}
	ch := fileChange{off: size, oldSize: oldSize}
	if size < oldSize {
		ch.old = make([]byte, oldSize-size)
		if _, err := in.undo.ReadAt(ch.old, size); err != nil && err != io.EOF {
			return fmt.Errorf("fsx: PowerFS: reading what a truncation of %s cuts: %w", f.Name(), err)
		}
	}
	ch.seq = f.fs.nextSeq()
	err = do()
	newSize, serr := in.size()
	if serr != nil {
		// Whether it changed is unknown: assume it did.
		f.fs.record(in, ch)
		return cmp.Or(err, serr)
	}
	if newSize != oldSize {
		f.fs.record(in, ch)
	}
	return err
}

func (f *powerFile) Datasync() error { return f.sync(f.File.Datasync) }
func (f *powerFile) Sync() error     { return f.sync(f.File.Sync) }

// sync makes the changes recorded so far durable with do, or powers off
// if the PowerFS is armed.
func (f *powerFile) sync(do func() error) error {
	if err := f.fs.enter(); err != nil {
		return err
	}
	p, in := f.fs, f.in
	in.mu.Lock()
	p.mu.Lock()
	n := len(in.changes)
	p.mu.Unlock()
	if p.trip(n) {
		// PowerOff waits for every call, this one too.
		in.mu.Unlock()
		p.gate.RUnlock()
		p.powerOff(in, "")
		return &fs.PathError{Op: "fdatasync", Path: f.Name(), Err: ErrCrashed}
	}
	err := do()
	if err == nil {
		p.mu.Lock()
		in.changes = slices.Clone(in.changes[n:])
		p.mu.Unlock()
	}
	in.mu.Unlock()
	p.gate.RUnlock()
	return err
}

func (f *powerFile) Close() error {
	f.mu.Lock()
	first := !f.closed
	f.closed = true
	f.mu.Unlock()
	if first {
		f.close()
	}
	return f.File.Close()
}

// close drops f's reference to its inode's state, which goes when no File
// holds it and nothing is unsynced.
func (f *powerFile) close() {
	p, in := f.fs, f.in
	p.mu.Lock()
	defer p.mu.Unlock()
	in.refs--
	if in.refs == 0 && len(in.changes) == 0 && p.files[in.id] == in {
		delete(p.files, in.id)
		in.undo.Close()
	}
}
