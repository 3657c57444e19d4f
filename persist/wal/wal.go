package wal

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"golang.org/x/sys/unix"
)

// SegmentSize is the size past which Save cuts a new segment. Board
// profiles lower it for small flash. It is read when a WAL is created or
// opened.
var SegmentSize int64 = 64 << 20

// warnSyncDuration is how long an fdatasync may take before it is logged,
// as etcd does.
const warnSyncDuration = time.Second

// Metadata identifies the member a WAL belongs to. It is the first record
// of every segment, and Open checks that all segments agree.
type Metadata struct {
	Name      string
	MemberID  uint64
	ClusterID uint64
	Token     string
}

// SnapshotMarker is the latest snapshot marker record read, zero if none.
type SnapshotMarker struct {
	Index uint64
	Term  uint64
}

// State is what Open read back.
type State struct {
	Metadata Metadata
	// HardState is the latest hard state saved; never nil (empty if none).
	HardState *raftpb.HardState
	// Snapshot is the latest snapshot marker; entries at or below its
	// index are not in Entries.
	Snapshot SnapshotMarker
	// Entries are consecutive, after conflicting suffixes were replaced.
	Entries []*raftpb.Entry
}

// Stats counts the I/O done by Save (including the segment cuts it
// triggers) since Create or Open.
type Stats struct {
	Syncs        uint64 // fdatasync of segments plus fsync of the directory
	BytesWritten uint64
	Writes       uint64 // write system calls
}

// WAL is an open write-ahead log, positioned to append.
type WAL struct {
	dir    string
	logger *slog.Logger

	// Counters, readable from any goroutine.
	syncs, bytes, writes atomic.Uint64

	mu          sync.Mutex
	f           *os.File // tail segment, locked
	seq         uint64   // sequence of the tail segment
	off         int64    // end of data in the tail segment; the next write goes here
	segmentSize int64
	mdRec       []byte       // encoded metadata record, starts every segment
	hs          hardStateRec // last hard state saved, repeated at the head of a new segment
	next        uint64       // Save's first entry index may be at most this; 0: any
	recordLimit int          // payload budget of one entries record
	buf         []byte
	err         error // sticky: the first write or sync error
	closed      bool
}

// Exist reports whether dir holds at least one segment.
func Exist(dir string) bool {
	segs, err := listSegments(dir)
	return err == nil && len(segs) > 0
}

// Create makes a new WAL in dir, which must be missing or an empty
// directory (it is replaced). The first
// segment is written and synced in a temporary directory that is then
// renamed to dir, so a crash leaves either no WAL or a whole one.
func Create(dir string, md Metadata) (*WAL, error) {
	if Exist(dir) {
		return nil, fmt.Errorf("%w: %s", ErrExist, dir)
	}
	dir = filepath.Clean(dir)
	tmp := dir + tmpExt
	if err := os.RemoveAll(tmp); err != nil {
		return nil, fmt.Errorf("wal: remove %s: %w", tmp, err)
	}
	if err := os.MkdirAll(tmp, dirMode); err != nil {
		return nil, fmt.Errorf("wal: create %s: %w", tmp, err)
	}
	w, err := newWAL(dir, md, slog.Default())
	if err != nil {
		return nil, err
	}
	name := segmentName(0, 0)
	f, err := os.OpenFile(filepath.Join(tmp, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, fileMode)
	if err != nil {
		return nil, fmt.Errorf("wal: create segment: %w", err)
	}
	fail := func(err error) (*WAL, error) {
		f.Close()
		os.RemoveAll(tmp)
		return nil, err
	}
	if err := lockFile(f); err != nil {
		return fail(err)
	}
	if err := pwriteAll(f, w.mdRec, 0, nil); err != nil {
		return fail(err)
	}
	if err := fdatasync(f); err != nil {
		return fail(err)
	}
	if err := syncDir(tmp); err != nil {
		return fail(err)
	}
	// An existing dir must be empty; os.Remove fails otherwise. Not every
	// file system lets rename(2) replace an empty directory, so remove it.
	if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fail(fmt.Errorf("wal: %s is not an empty directory: %w", dir, err))
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fail(fmt.Errorf("wal: rename %s to %s: %w", tmp, dir, err))
	}
	if err := syncDir(filepath.Dir(dir)); err != nil {
		f.Close()
		return nil, err
	}
	w.f, w.seq, w.off = f, 0, int64(len(w.mdRec))
	return w, nil
}

func newWAL(dir string, md Metadata, logger *slog.Logger) (*WAL, error) {
	p, err := encodeMetadata(md)
	if err != nil {
		return nil, fmt.Errorf("wal: encoding metadata: %w", err)
	}
	return &WAL{
		dir:         dir,
		logger:      logger,
		segmentSize: SegmentSize,
		mdRec:       appendRecord(nil, recMetadata, p),
		recordLimit: maxRecordLen - 1,
	}, nil
}

// Open reads the WAL in dir, repairs a torn tail (see the package comment)
// and returns it positioned to append, with what it read. A nil logger
// means slog.Default().
func Open(dir string, logger *slog.Logger) (*WAL, *State, error) {
	if logger == nil {
		logger = slog.Default()
	}
	segs, err := listSegments(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, fmt.Errorf("%w in %s", ErrNotFound, dir)
		}
		return nil, nil, fmt.Errorf("wal: list %s: %w", dir, err)
	}
	if len(segs) == 0 {
		return nil, nil, fmt.Errorf("%w in %s", ErrNotFound, dir)
	}
	for i := 1; i < len(segs); i++ {
		if segs[i].seq != segs[i-1].seq+1 {
			return nil, nil, fmt.Errorf("%w: segment sequence jumps from %s to %s", ErrCorrupt, segs[i-1].name, segs[i].name)
		}
	}

	tail := segs[len(segs)-1]
	tailPath := filepath.Join(dir, tail.name)
	f, err := os.OpenFile(tailPath, os.O_WRONLY, fileMode)
	if err != nil {
		return nil, nil, fmt.Errorf("wal: open %s: %w", tailPath, err)
	}
	fail := func(err error) (*WAL, *State, error) {
		f.Close()
		return nil, nil, err
	}
	if err := lockFile(f); err != nil {
		return fail(err)
	}

	var r replayer
	var res scanResult
	for i, s := range segs {
		data, err := os.ReadFile(filepath.Join(dir, s.name))
		if err != nil {
			return fail(fmt.Errorf("wal: read %s: %w", s.name, err))
		}
		if res, err = r.scan(s.name, data, i == len(segs)-1); err != nil {
			return fail(err)
		}
	}
	if res.torn {
		if err := f.Truncate(int64(res.end)); err != nil {
			return fail(fmt.Errorf("wal: truncate %s: %w", tail.name, err))
		}
		if err := fdatasync(f); err != nil {
			return fail(err)
		}
		logger.Warn("wal: truncated torn write at the tail",
			"file", tail.name, "offset", res.end, "reason", res.bad.Error())
	}
	removed, err := removeStaleTemps(dir)
	if err != nil {
		return fail(fmt.Errorf("wal: remove stale segment: %w", err))
	}
	for _, name := range removed {
		logger.Info("wal: removed segment left by an interrupted cut", "file", name)
	}

	w, err := newWAL(dir, r.md, logger)
	if err != nil {
		return fail(err)
	}
	w.f, w.seq, w.off = f, tail.seq, int64(res.end)
	w.hs, w.next = r.hs, r.next
	return w, r.state(), nil
}

// Save appends ents, then hs, with one write and one fdatasync, and returns
// once they are durable. Either may be empty; if both are, Save does
// nothing. ents must be consecutive and may start at any index up to one
// past the last saved entry, replacing the saved ones from there on.
//
// A write or sync error is returned and the WAL refuses every later Save:
// the caller must stop (fail-stop). Call Save only from the Raft goroutine.
func (w *WAL) Save(hs *raftpb.HardState, ents []*raftpb.Entry) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.closed:
		return ErrClosed
	case w.err != nil:
		return fmt.Errorf("%w: %w", ErrFailed, w.err)
	}
	saveHS := !isEmptyHardState(hs)
	if !saveHS && len(ents) == 0 {
		return nil
	}
	if err := w.checkEntries(ents); err != nil {
		return err
	}

	buf, err := appendEntryRecords(w.buf[:0], ents, w.recordLimit)
	if err != nil {
		return err
	}
	var hsRec hardStateRec
	if saveHS {
		p, err := encodeHardState(hs)
		if err != nil {
			return fmt.Errorf("wal: encoding hard state: %w", err)
		}
		buf = appendRecord(buf, recHardState, p)
		hsRec = hardStateRec{Term: hs.GetTerm(), Vote: hs.GetVote(), Commit: hs.GetCommit()}
	}
	if cap(buf) <= 1<<20 {
		w.buf = buf // reuse moderate buffers; let big ones go
	}

	if err := w.writeSync(w.f, buf, w.off); err != nil {
		w.err = err
		return err
	}
	w.off += int64(len(buf))
	if len(ents) > 0 {
		w.next = ents[len(ents)-1].GetIndex() + 1
	}
	if saveHS {
		w.hs = hsRec
	}
	if w.off >= w.segmentSize {
		if err := w.cut(); err != nil {
			w.err = err
			return err
		}
	}
	return nil
}

// checkEntries refuses entries that replay would read as corruption.
func (w *WAL) checkEntries(ents []*raftpb.Entry) error {
	for i, e := range ents {
		switch {
		case e == nil:
			return fmt.Errorf("%w: entry %d is nil", ErrInvalid, i)
		case e.GetIndex() == 0:
			return fmt.Errorf("%w: entry %d has index 0", ErrInvalid, i)
		case i > 0 && e.GetIndex() != ents[i-1].GetIndex()+1:
			return fmt.Errorf("%w: index %d follows %d", ErrInvalid, e.GetIndex(), ents[i-1].GetIndex())
		}
	}
	if len(ents) > 0 && w.next != 0 && ents[0].GetIndex() > w.next {
		return fmt.Errorf("%w: first index %d leaves a gap after %d", ErrInvalid, ents[0].GetIndex(), w.next-1)
	}
	return nil
}

// cut starts a new segment named after the next raft index. It is written
// under a temporary name, synced, renamed, and the directory synced, so a
// segment is never seen without its metadata record.
func (w *WAL) cut() error {
	seq := w.seq + 1
	index := w.next // one past the last entry; 0 if none were ever saved
	name := segmentName(seq, index)
	final := filepath.Join(w.dir, name)
	tmp := final + tmpExt
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("wal: cut: %w", err)
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fileMode)
	if err != nil {
		return fmt.Errorf("wal: cut: %w", err)
	}
	buf := append([]byte(nil), w.mdRec...)
	if w.hs != (hardStateRec{}) {
		p, err := encodeHardState(w.hs.proto())
		if err != nil {
			f.Close()
			return fmt.Errorf("wal: encoding hard state: %w", err)
		}
		buf = appendRecord(buf, recHardState, p)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		return err
	}
	if err := w.writeSync(f, buf, 0); err != nil {
		f.Close()
		return err
	}
	if err := os.Rename(tmp, final); err != nil {
		f.Close()
		return fmt.Errorf("wal: cut: %w", err)
	}
	if err := syncDir(w.dir); err != nil {
		f.Close()
		return err
	}
	w.syncs.Add(1)
	old := w.f
	w.f, w.seq, w.off = f, seq, int64(len(buf))
	if err := old.Close(); err != nil {
		w.logger.Warn("wal: closing previous segment", "file", filepath.Base(old.Name()), "err", err)
	}
	return nil
}

// writeSync writes b at off with as few write calls as the kernel allows
// (one, for a regular file) and fdatasyncs, counting both.
func (w *WAL) writeSync(f *os.File, b []byte, off int64) error {
	if err := pwriteAll(f, b, off, w); err != nil {
		return err
	}
	start := time.Now()
	err := fdatasync(f)
	w.syncs.Add(1)
	if d := time.Since(start); d > warnSyncDuration {
		w.logger.Warn("wal: slow fdatasync", "file", filepath.Base(f.Name()), "took", d, "expected", warnSyncDuration)
	}
	return err
}

// pwriteAll writes all of b at off. w, if not nil, counts the calls.
func pwriteAll(f *os.File, b []byte, off int64, w *WAL) error {
	fd := int(f.Fd())
	defer runtime.KeepAlive(f)
	for len(b) > 0 {
		n, err := unix.Pwrite(fd, b, off)
		if w != nil {
			w.writes.Add(1)
			if n > 0 {
				w.bytes.Add(uint64(n))
			}
		}
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return fmt.Errorf("wal: write %s at offset %d: %w", filepath.Base(f.Name()), off, err)
		case n == 0:
			return fmt.Errorf("wal: write %s at offset %d: %w", filepath.Base(f.Name()), off, io.ErrShortWrite)
		}
		b, off = b[n:], off+int64(n)
	}
	return nil
}

func fdatasync(f *os.File) error {
	fd := int(f.Fd())
	defer runtime.KeepAlive(f)
	for {
		err := unix.Fdatasync(fd)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("wal: fdatasync %s: %w", filepath.Base(f.Name()), err)
		}
		return nil
	}
}

func isEmptyHardState(hs *raftpb.HardState) bool {
	return hs.GetTerm() == 0 && hs.GetVote() == 0 && hs.GetCommit() == 0
}

// Stats returns the I/O counters. Safe from any goroutine.
func (w *WAL) Stats() Stats {
	return Stats{Syncs: w.syncs.Load(), BytesWritten: w.bytes.Load(), Writes: w.writes.Load()}
}

// Close releases the tail segment and its lock. Everything Save returned
// for is already durable, so Close does not sync.
func (w *WAL) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("wal: close: %w", err)
	}
	return nil
}
