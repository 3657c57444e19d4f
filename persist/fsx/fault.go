package fsx

import (
	"fmt"
	"io/fs"
	"sync"
)

// FaultFS wraps a file system and passes every call through to it until
// told to fail: after FailSyncs(err), every Datasync, Sync and SyncDir
// returns err (as a *fs.PathError naming the file) without reaching the
// wrapped file system; after FailWrites(err), every Write and WriteAt
// does the same, writing nothing. It is for tests of the reaction to a
// failing disk (fail-stop) on a real file system, where CrashFS's
// FailSync and FailWrite do it in memory.
//
// FaultFS keeps the direct I/O of the file system it wraps: OpenDirect
// opens through the wrapped DirectFS and returns a File that fails in the
// same way, and reports ErrDirectUnsupported if the wrapped file system
// has no direct I/O. It does not model what happens to the data after a
// failed sync (the page cache forgetting it): a caller must stop at the
// first error, as the package comment says. The zero value is not usable;
// call NewFaultFS. Safe for concurrent use.
type FaultFS struct {
	inner FS

	mu       sync.Mutex
	syncErr  error
	writeErr error
	failed   FaultStats
}

// FaultStats counts the calls a FaultFS failed.
type FaultStats struct {
	Syncs  int64 // Datasync, Sync and SyncDir
	Writes int64 // Write and WriteAt
}

var (
	_ FS       = (*FaultFS)(nil)
	_ DirectFS = (*FaultFS)(nil)
	_ File     = (*faultFile)(nil)
)

// NewFaultFS returns a FaultFS that passes everything through to inner.
func NewFaultFS(inner FS) *FaultFS { return &FaultFS{inner: inner} }

// FailSyncs makes every Datasync, Sync and SyncDir from now on fail with
// err, on every File already open and every one opened later; nil makes
// them pass through again.
func (f *FaultFS) FailSyncs(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.syncErr = err
}

// FailWrites makes every Write and WriteAt from now on fail with err,
// writing nothing; nil makes them pass through again.
func (f *FaultFS) FailWrites(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writeErr = err
}

// Failed returns how many calls failed because of FailSyncs and FailWrites.
func (f *FaultFS) Failed() FaultStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed
}

// syncFault returns the error a sync of name fails with, or nil.
func (f *FaultFS) syncFault(op, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.syncErr == nil {
		return nil
	}
	f.failed.Syncs++
	return &fs.PathError{Op: op, Path: name, Err: f.syncErr}
}

// writeFault returns the error a write to name fails with, or nil.
func (f *FaultFS) writeFault(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.writeErr == nil {
		return nil
	}
	f.failed.Writes++
	return &fs.PathError{Op: "write", Path: name, Err: f.writeErr}
}

func (f *FaultFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	file, err := f.inner.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &faultFile{File: file, fs: f}, nil
}

// OpenDirect opens name for direct I/O through the wrapped file system;
// ErrDirectUnsupported if it is not a DirectFS.
func (f *FaultFS) OpenDirect(name string) (File, error) {
	dfs, ok := f.inner.(DirectFS)
	if !ok {
		return nil, fmt.Errorf("%w: open %s: %T has no direct I/O", ErrDirectUnsupported, name, f.inner)
	}
	file, err := dfs.OpenDirect(name)
	if err != nil {
		return nil, err
	}
	return &faultFile{File: file, fs: f}, nil
}

func (f *FaultFS) ReadFile(name string) ([]byte, error)         { return f.inner.ReadFile(name) }
func (f *FaultFS) ReadDir(name string) ([]fs.DirEntry, error)   { return f.inner.ReadDir(name) }
func (f *FaultFS) Stat(name string) (fs.FileInfo, error)        { return f.inner.Stat(name) }
func (f *FaultFS) Mkdir(name string, perm fs.FileMode) error    { return f.inner.Mkdir(name, perm) }
func (f *FaultFS) MkdirAll(name string, perm fs.FileMode) error { return f.inner.MkdirAll(name, perm) }
func (f *FaultFS) Rename(oldpath, newpath string) error         { return f.inner.Rename(oldpath, newpath) }
func (f *FaultFS) Remove(name string) error                     { return f.inner.Remove(name) }
func (f *FaultFS) RemoveAll(name string) error                  { return f.inner.RemoveAll(name) }

func (f *FaultFS) SyncDir(name string) error {
	if err := f.syncFault("fsync", name); err != nil {
		return err
	}
	return f.inner.SyncDir(name)
}

// faultFile is a File of a FaultFS: the wrapped file, with its syncs and
// writes failing when the FaultFS says so.
type faultFile struct {
	File
	fs *FaultFS
}

func (f *faultFile) Write(p []byte) (int, error) {
	if err := f.fs.writeFault(f.Name()); err != nil {
		return 0, err
	}
	return f.File.Write(p)
}

func (f *faultFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.fs.writeFault(f.Name()); err != nil {
		return 0, err
	}
	return f.File.WriteAt(p, off)
}

func (f *faultFile) Datasync() error {
	if err := f.fs.syncFault("fdatasync", f.Name()); err != nil {
		return err
	}
	return f.File.Datasync()
}

func (f *faultFile) Sync() error {
	if err := f.fs.syncFault("fsync", f.Name()); err != nil {
		return err
	}
	return f.File.Sync()
}
