package fsx

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"unsafe"
)

// SectorSize is the unit in which a write in flight can be torn by power
// loss: each 512-byte sector is written whole or not at all.
const SectorSize = 512

var (
	// File.Lock: another File holds the lock.
	ErrLocked = errors.New("fsx: file is locked by another user")

	// CrashFS: power failed (CrashAfter), or the File belongs to a process
	// that did not survive Crash.
	ErrCrashed = errors.New("fsx: simulated power loss")
)

// FS is a file system. Names are paths in the host's syntax.
type FS interface {
	// OpenFile opens name with the os.O_* flags (O_RDONLY, O_WRONLY,
	// O_RDWR, O_CREATE, O_EXCL, O_TRUNC, O_APPEND).
	OpenFile(name string, flag int, perm fs.FileMode) (File, error)
	ReadFile(name string) ([]byte, error)
	// ReadDir lists a directory sorted by name.
	ReadDir(name string) ([]fs.DirEntry, error)
	Stat(name string) (fs.FileInfo, error)
	Mkdir(name string, perm fs.FileMode) error
	MkdirAll(name string, perm fs.FileMode) error
	// Rename replaces newpath if it is a file. Both must be in one directory.
	Rename(oldpath, newpath string) error
	Remove(name string) error
	RemoveAll(name string) error
	// SyncDir makes the entry changes of directory name durable.
	SyncDir(name string) error
}

// File is an open file.
type File interface {
	// Name is the name it was opened with.
	Name() string
	io.Reader
	io.ReaderAt
	io.Writer // at the file offset; at the end with O_APPEND
	io.WriterAt
	// Datasync makes the file's data and size durable (fdatasync).
	Datasync() error
	// Sync is fsync: Datasync plus the rest of the inode's metadata.
	Sync() error
	// Allocate makes the file at least size bytes long, with its blocks
	// reserved where the file system can (fallocate), so that writes
	// inside it need not change its size. New bytes read as zeros.
	Allocate(size int64) error
	Truncate(size int64) error
	Stat() (fs.FileInfo, error)
	// Lock takes an exclusive lock on the file, held until Close;
	// ErrLocked (wrapped) if another File holds it.
	Lock() error
	Close() error
}

// MkdirAllSync creates dir and any missing parents, like MkdirAll, and
// syncs the parent of every directory it creates, so that the whole chain
// survives power loss.
func MkdirAllSync(fsys FS, dir string, perm fs.FileMode) error {
	dir = filepath.Clean(dir)
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := fsys.Stat(d)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("fsx: %s is not a directory", d)
			}
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		missing = append(missing, d)
		if p := filepath.Dir(d); p == d {
			break
		}
	}
	for i := len(missing) - 1; i >= 0; i-- {
		d := missing[i]
		if err := fsys.Mkdir(d, perm); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		if err := fsys.SyncDir(filepath.Dir(d)); err != nil {
			return err
		}
	}
	return nil
}

// DirectAlign is the memory alignment of a buffer written with direct I/O:
// a page, which satisfies every logical block size Linux supports.
const DirectAlign = 4096

// DirectFS is a file system that can open a file for direct I/O
// (O_DIRECT): writes bypass the page cache and go to the device as they
// are, so a write of a few sectors costs those sectors, not whole pages
// re-dirtied in the cache. Offsets and lengths must be multiples of
// SectorSize and buffers aligned to DirectAlign (AlignedBuf); a write that
// the device or file system cannot take that way fails with an error
// matching ErrDirectUnsupported and changes nothing. Durability is as for
// any File: only Datasync or Sync make a direct write durable (the device
// may hold it in its volatile cache until then).
type DirectFS interface {
	OpenDirect(name string) (File, error)
}

// ErrDirectUnsupported is matched (errors.Is) by the errors of OpenDirect
// and of a direct write that the file system or device refuses (EINVAL):
// tmpfs, or a device whose logical blocks are larger than SectorSize. The
// caller falls back to buffered I/O.
var ErrDirectUnsupported = errors.New("fsx: direct I/O not supported here")

// AlignedBuf returns a zeroed buffer of n bytes whose first byte is
// aligned to DirectAlign.
func AlignedBuf(n int) []byte {
	b := make([]byte, n+DirectAlign)
	off := DirectAlign - int(uintptr(unsafe.Pointer(unsafe.SliceData(b)))%DirectAlign)
	if off == DirectAlign {
		off = 0
	}
	return b[off : off+n : off+n]
}

// IsAligned reports whether b starts at a DirectAlign boundary.
func IsAligned(b []byte) bool {
	return len(b) == 0 || uintptr(unsafe.Pointer(unsafe.SliceData(b)))%DirectAlign == 0
}
