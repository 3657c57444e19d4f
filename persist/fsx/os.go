package fsx

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// OS is the real file system, through Linux system calls.
type OS struct{}

var (
	_ FS   = OS{}
	_ File = (*osFile)(nil)
)

func (OS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &osFile{f}, nil
}

func (OS) ReadFile(name string) ([]byte, error)         { return os.ReadFile(name) }
func (OS) ReadDir(name string) ([]fs.DirEntry, error)   { return os.ReadDir(name) }
func (OS) Stat(name string) (fs.FileInfo, error)        { return os.Stat(name) }
func (OS) Mkdir(name string, perm fs.FileMode) error    { return os.Mkdir(name, perm) }
func (OS) MkdirAll(name string, perm fs.FileMode) error { return os.MkdirAll(name, perm) }
func (OS) Rename(oldpath, newpath string) error         { return os.Rename(oldpath, newpath) }
func (OS) Remove(name string) error                     { return os.Remove(name) }
func (OS) RemoveAll(name string) error                  { return os.RemoveAll(name) }

func (OS) SyncDir(name string) error {
	d, err := os.Open(name)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

type osFile struct{ f *os.File }

func (o *osFile) Name() string                             { return o.f.Name() }
func (o *osFile) Read(p []byte) (int, error)               { return o.f.Read(p) }
func (o *osFile) ReadAt(p []byte, off int64) (int, error)  { return o.f.ReadAt(p, off) }
func (o *osFile) Write(p []byte) (int, error)              { return o.f.Write(p) }
func (o *osFile) WriteAt(p []byte, off int64) (int, error) { return o.f.WriteAt(p, off) }
func (o *osFile) Sync() error                              { return o.f.Sync() }
func (o *osFile) Truncate(size int64) error                { return o.f.Truncate(size) }
func (o *osFile) Stat() (fs.FileInfo, error)               { return o.f.Stat() }
func (o *osFile) Close() error                             { return o.f.Close() }

func (o *osFile) Datasync() error {
	fd := int(o.f.Fd())
	defer runtime.KeepAlive(o.f)
	for {
		err := unix.Fdatasync(fd)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return &fs.PathError{Op: "fdatasync", Path: o.f.Name(), Err: err}
		}
		return nil
	}
}

// Allocate uses fallocate(2) mode 0, which reserves the blocks and extends
// the size. Where the file system does not support it, it falls back to
// extending the size (a sparse file).
func (o *osFile) Allocate(size int64) error {
	if size <= 0 {
		return nil // fallocate refuses a length of 0; every file is that long
	}
	fd := int(o.f.Fd())
	defer runtime.KeepAlive(o.f)
	for {
		err := unix.Fallocate(fd, 0, 0, size)
		switch err {
		case nil:
			return nil
		case unix.EINTR:
			continue
		case unix.EOPNOTSUPP, unix.ENOSYS:
			fi, err := o.f.Stat()
			if err != nil {
				return err
			}
			if fi.Size() < size {
				return o.f.Truncate(size)
			}
			return nil
		default:
			return &fs.PathError{Op: "fallocate", Path: o.f.Name(), Err: err}
		}
	}
}

func (o *osFile) Lock() error {
	fd := int(o.f.Fd())
	defer runtime.KeepAlive(o.f)
	for {
		err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		switch err {
		case nil:
			return nil
		case unix.EINTR:
			continue
		case unix.EWOULDBLOCK:
			return fmt.Errorf("%w: %s", ErrLocked, o.f.Name())
		default:
			return &fs.PathError{Op: "flock", Path: o.f.Name(), Err: err}
		}
	}
}

var _ DirectFS = OS{}

// OpenDirect opens name read-write with O_DIRECT. A file system without
// direct I/O (tmpfs) refuses it with EINVAL, reported as
// ErrDirectUnsupported.
func (OS) OpenDirect(name string) (File, error) {
	f, err := os.OpenFile(name, os.O_RDWR|unix.O_DIRECT, 0)
	if errors.Is(err, unix.EINVAL) {
		return nil, fmt.Errorf("%w: open %s: %w", ErrDirectUnsupported, name, err)
	}
	if err != nil {
		return nil, err
	}
	return &directFile{osFile{f}}, nil
}

// directFile is an osFile opened with O_DIRECT; it reports a refused
// write as ErrDirectUnsupported.
type directFile struct{ osFile }

func (d *directFile) WriteAt(p []byte, off int64) (int, error) {
	n, err := d.f.WriteAt(p, off)
	if errors.Is(err, unix.EINVAL) {
		err = fmt.Errorf("%w: %w", ErrDirectUnsupported, err)
	}
	return n, err
}
