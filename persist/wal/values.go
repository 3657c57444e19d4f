package wal

import (
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"sync"

	"github.com/edgekv/edgekv/persist/fsx"
)

// Loc is where the data of a saved entry lies in the segment files: Len
// bytes at file offset Off of segment Seq. The bytes are the entry's Data
// verbatim, and stay there, unchanged, until the segment is recycled: see
// "Values" in the package comment.
type Loc struct {
	Seq uint64
	Off int64
	Len int
}

// locTable holds the Loc of every entry saved or replayed and not yet
// released. Save (Raft's goroutine) adds to it, the apply goroutine reads
// and releases; its own mutex keeps both off the WAL's, which Save holds
// through fdatasync.
type locTable struct {
	mu   sync.Mutex
	locs map[uint64]Loc
	low  uint64 // no index below it is in locs
}

// put records the locations of entries just made durable (consecutive,
// from first to last): a later record of an index replaces the earlier,
// and the entries a conflicting suffix dropped (past last, up to the old
// end) go.
func (t *locTable) put(locs []indexLoc, oldNext uint64) {
	if len(locs) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.locs == nil {
		t.locs = make(map[uint64]Loc)
	}
	for _, l := range locs {
		t.locs[l.index] = l.loc
	}
	first, last := locs[0].index, locs[len(locs)-1].index
	t.low = min(t.low, first)
	if len(t.locs) == len(locs) {
		t.low = first
	}
	if oldNext > last+1 {
		t.dropRange(last+1, oldNext-1)
	}
}

// dropRange deletes the locations of indexes [from, to].
func (t *locTable) dropRange(from, to uint64) {
	if to-from < uint64(len(t.locs)) {
		for i := from; i <= to; i++ {
			delete(t.locs, i)
		}
		return
	}
	for i := range t.locs {
		if i >= from && i <= to {
			delete(t.locs, i)
		}
	}
}

func (t *locTable) get(index uint64) (Loc, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l, ok := t.locs[index]
	return l, ok
}

func (t *locTable) release(upTo uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if upTo < t.low || len(t.locs) == 0 {
		return
	}
	t.dropRange(t.low, upTo)
	t.low = upTo + 1
}

type indexLoc struct {
	index uint64
	loc   Loc
}

// Locate returns where the data of entry index lies, for an entry saved
// (durably: Save returned) or read by Open, and not yet released. A later
// Save of the same index (Raft replaced a conflicting suffix) replaces it.
// Safe from any goroutine.
func (w *WAL) Locate(index uint64) (Loc, bool) { return w.locs.get(index) }

// Release forgets the locations of entries up to index (the caller has
// applied them). Safe from any goroutine.
func (w *WAL) Release(upTo uint64) { w.locs.release(upTo) }

// valueFiles reads values out of segment files: one read-only handle per
// segment sequence, opened at the first read and cached, and the current
// name of each segment that may hold values (live ones and .vlog ones).
// Its own RWMutex: reads run concurrently with each other and with Save;
// dropping a handle (before its file is recycled) waits for reads in
// progress.
type valueFiles struct {
	fs  fsx.FS
	dir string

	mu     sync.RWMutex
	names  map[uint64]string
	files  map[uint64]fsx.File
	closed bool
}

func newValueFiles(fsys fsx.FS, dir string) *valueFiles {
	return &valueFiles{fs: fsys, dir: dir, names: map[uint64]string{}, files: map[uint64]fsx.File{}}
}

// setName records the file name segment seq has now (a rename keeps an
// open handle valid).
func (v *valueFiles) setName(seq uint64, name string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.names[seq] = name
}

// rename renames segment seq's file from the name it has to to, and
// records the new name, both under the lock: a read that opens the file
// meanwhile would look for a name that is gone.
func (v *valueFiles) rename(seq uint64, from, to string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if err := v.fs.Rename(join(v.dir, from), join(v.dir, to)); err != nil {
		return err
	}
	if !v.closed {
		v.names[seq] = to
	}
	return nil
}

// drop closes the handle of segment seq and forgets it: its file is about
// to be recycled, and no read may see what a later segment writes there.
func (v *valueFiles) drop(seq uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if f := v.files[seq]; f != nil {
		f.Close()
	}
	delete(v.files, seq)
	delete(v.names, seq)
}

func (v *valueFiles) close() {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, f := range v.files {
		f.Close()
	}
	v.files, v.names, v.closed = nil, nil, true
}

// read reads n bytes at off of segment seq, and returns the file's name.
func (v *valueFiles) read(seq uint64, off int64, n int) ([]byte, string, error) {
	for {
		v.mu.RLock()
		if v.closed {
			v.mu.RUnlock()
			return nil, "", ErrClosed
		}
		name := v.names[seq]
		if f := v.files[seq]; f != nil {
			b := make([]byte, n)
			m, err := f.ReadAt(b, off)
			v.mu.RUnlock()
			if m == n {
				return b, name, nil
			}
			if err == nil || errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, name, err
		}
		v.mu.RUnlock()
		if name == "" {
			return nil, fmt.Sprintf("segment %016x", seq), errors.New("no such segment")
		}
		if err := v.open(seq); err != nil {
			return nil, name, err
		}
	}
}

func (v *valueFiles) open(seq uint64) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	name := v.names[seq]
	if v.closed || name == "" || v.files[seq] != nil {
		return nil // the caller looks again
	}
	f, err := v.fs.OpenFile(join(v.dir, name), os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	v.files[seq] = f
	return nil
}

// ReadValue reads n bytes at offset off of segment seq (a Loc, or a part
// of one) and checks them against crc, the CRC-32C (Castagnoli) of the
// bytes. A missing segment, a short read or a CRC mismatch is an error
// wrapping ErrCorrupt that names the file and offset: it never returns
// other bytes than the ones asked for. Safe from any goroutine,
// concurrently with everything else; after Close it fails with ErrClosed.
func (w *WAL) ReadValue(seq uint64, off int64, n int, crc uint32) ([]byte, error) {
	if off < 0 || n < 0 || n > maxRecordLen {
		return nil, fmt.Errorf("%w: value of %d bytes at offset %d of segment %016x is out of bounds", ErrCorrupt, n, off, seq)
	}
	b, name, err := w.vals.read(seq, off, n)
	switch {
	case errors.Is(err, ErrClosed):
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("%w: reading a value of %d bytes in %s at offset %d: %v", ErrCorrupt, n, name, off, err)
	case crc32.Checksum(b, crcTable) != crc:
		return nil, fmt.Errorf("%w: value of %d bytes in %s at offset %d: crc mismatch", ErrCorrupt, n, name, off)
	}
	return b, nil
}

// HasSegment reports whether segment seq is there to be read by
// ReadValue: a segment of the log or a value segment.
func (w *WAL) HasSegment(seq uint64) bool {
	w.vals.mu.RLock()
	defer w.vals.mu.RUnlock()
	return w.vals.names[seq] != ""
}

// SegmentSize is the size segment files are preallocated to.
func (w *WAL) SegmentSize() int64 { return w.opts.SegmentSize }

// Reclaimable returns the sequences of the segments that Raft no longer
// needs once a snapshot at index is durable: the ones PurgeBefore(index)
// would take out of the log now, and the value segments (.vlog) kept for
// their values. Whether they are recycled is then up to Options.Pinned.
func (w *WAL) Reclaimable(index uint64) []uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.usable() != nil || w.opts.MaxWALs < 0 {
		return nil
	}
	n := w.purgeCount(index)
	out := make([]uint64, 0, n+len(w.vlogs))
	out = append(out, w.vlogs...)
	for _, s := range w.segs[:n] {
		out = append(out, s.seq)
	}
	return out
}
