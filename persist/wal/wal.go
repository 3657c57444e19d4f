package wal

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/edgekv/edgekv/persist/fsx"
)

const (
	// DefaultSegmentSize suits SD cards and eMMC: see "Sizes" in the
	// package comment.
	DefaultSegmentSize int64 = 16 << 20
	// DefaultMaxWALs is etcd's --max-wals default.
	DefaultMaxWALs = 5
	// maxFreeSegments caps the free pool; PurgeBefore deletes purged
	// segments beyond it.
	maxFreeSegments = 2
	// warnSyncDuration is how long an fdatasync may take before it is
	// logged, as etcd does.
	warnSyncDuration = time.Second
)

// Options configure Create and Open. The zero value is the defaults.
type Options struct {
	// FS is the file system; nil means fsx.OS{}.
	FS fsx.FS
	// SegmentSize is the size segment files are preallocated to, and past
	// which Save starts a new one (--wal-segment-size); 0 means
	// DefaultSegmentSize.
	SegmentSize int64
	// Logger gets repairs and slow syncs; nil means slog.Default().
	Logger *slog.Logger
	// MaxWALs is how many segment files PurgeBefore keeps at least
	// (--max-wals); 0 means DefaultMaxWALs, negative means never purge
	// (etcd's --max-wals=0).
	MaxWALs int
	// OnSync, if set, is called with the duration of every fdatasync of
	// Save and SaveSnapshot (etcd_disk_wal_fsync_duration_seconds), from
	// the goroutine that called them, with the WAL's mutex held.
	OnSync func(time.Duration)

	// Pinned, if set, says whether segment seq still holds values that
	// something outside the WAL points at (core/mvcc's value pointers,
	// read with ReadValue). PurgeBefore then keeps such a segment as a
	// value segment ("<seq>.vlog") instead of recycling it, and recycles
	// a value segment once Pinned says false. It is called from
	// PurgeBefore with the WAL's mutex held, and must not call the WAL.
	// nil: nothing is pinned.
	Pinned func(seq uint64) bool

	// BufferedIO writes through the page cache instead of with direct I/O.
	// By default Save writes with O_DIRECT where the file system allows it
	// (see the package comment), and falls back to buffered writes where
	// it does not.
	BufferedIO bool

	// inlinePrepare prepares the next segment in the goroutine that
	// triggers it rather than in the background, so that a test on
	// CrashFS is deterministic.
	inlinePrepare bool
}

func (o Options) withDefaults() Options {
	if o.FS == nil {
		o.FS = fsx.OS{}
	}
	if o.SegmentSize <= 0 {
		o.SegmentSize = DefaultSegmentSize
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxWALs == 0 {
		o.MaxWALs = DefaultMaxWALs
	}
	return o
}

// Metadata identifies the member a WAL belongs to. It is the first record
// of every segment, and Open checks that all segments agree.
type Metadata struct {
	Name      string
	MemberID  uint64
	ClusterID uint64
	Token     string
}

// SnapshotMarker records that a snapshot at Index (of Term) is durable
// elsewhere, so the entries up to Index are no longer needed.
type SnapshotMarker struct {
	Index uint64
	Term  uint64
}

// State is what Open read back.
type State struct {
	Metadata Metadata
	// HardState is the latest hard state saved; never nil (empty if none).
	HardState *raftpb.HardState
	// Snapshot is the latest snapshot marker, zero if none; entries at or
	// below its index are not in Entries.
	Snapshot SnapshotMarker
	// Entries are consecutive, after conflicting suffixes were replaced.
	Entries []*raftpb.Entry
}

// Stats counts the I/O done since Create or Open.
type Stats struct {
	// By Save and SaveSnapshot, including the cuts they trigger.
	Syncs        uint64 // fdatasync of the tail, plus the directory fsync of each cut
	BytesWritten uint64
	Writes       uint64 // write calls
	Cuts         uint64

	// Preparing segments ahead of the cuts, off the Save path.
	SegmentsCreated  uint64 // new files preallocated
	SegmentsRecycled uint64 // purged files reused
	PrepareSyncs     uint64
	PrepareBytes     uint64
}

// WAL is an open write-ahead log, positioned to append.
type WAL struct {
	fs     fsx.FS
	dir    string
	logger *slog.Logger
	opts   Options

	// Counters, readable from any goroutine.
	syncs, bytes, writes, cuts atomic.Uint64
	prepStats                  prepStats

	mu        sync.Mutex
	f         fsx.File  // tail segment, locked
	df        fsx.File  // the tail opened for direct I/O; nil: Save writes through f
	direct    bool      // open df for each new tail (direct I/O is on and works here)
	dbuf      []byte    // aligned buffer for direct writes
	segs      []segment // live segments, oldest first; the last is the tail
	seed      uint32    // crcSeed of the tail
	off       int64     // where the next write goes: the tail's terminator
	hdrEnd    int64     // end of the metadata header of every segment
	needCarry bool      // the tail has not had its first write (link, hard state, marker)
	prevEnd   int64     // end of the data of the segment before the tail
	mdPayload []byte
	hs        hardStateRec   // last hard state saved, carried into a new segment
	snap      SnapshotMarker // last marker saved, carried into a new segment
	snapSeq   uint64         // segment where snap was first written
	next      uint64         // Save's first entry index may be at most this; 0: any
	prep      *preparer
	lazyPrep  bool // Open left preparing the next segment to the first write
	unsynced  bool // a write since the last fdatasync (a commit-only hard state)
	// hsPending: w.hs only moved the commit index since it was last
	// written. It is written with the next write (or at Close), not on
	// its own: see Save.
	hsPending bool

	vlogs    []uint64 // value segments (.vlog), by sequence, oldest first
	vals     *valueFiles
	locs     locTable
	lastLocs []indexLoc // where the entries of the last write went

	now         func() time.Time // time.Now; tests fake it
	recordLimit int              // payload budget of one entries record
	buf         []byte
	recs        []rec
	payloads    []byte // the entries records' payloads are carved out of it (entryRecs)
	err         error  // sticky: the first write or sync error
	closed      bool
}

// Exist reports whether dir, on the real file system, holds at least one
// segment.
func Exist(dir string) bool { return ExistIn(fsx.OS{}, dir) }

// ExistIn reports whether dir, on fsys, holds at least one segment.
func ExistIn(fsys fsx.FS, dir string) bool {
	segs, _, err := listDir(fsys, dir)
	return err == nil && len(segs) > 0
}

// Create is CreateWithOptions with the defaults: the real file system and
// DefaultSegmentSize.
func Create(dir string, md Metadata) (*WAL, error) {
	return CreateWithOptions(dir, md, Options{})
}

// CreateWithOptions makes a new WAL in dir, which must be missing or an
// empty directory (it is replaced). The first segment is preallocated,
// written and synced in a temporary directory that is then renamed to dir,
// so a crash leaves either no WAL or a whole one. Missing parents are
// created and synced.
func CreateWithOptions(dir string, md Metadata, opts Options) (*WAL, error) {
	o := opts.withDefaults()
	fsys := o.FS
	if ExistIn(fsys, dir) {
		return nil, fmt.Errorf("%w: %s", ErrExist, dir)
	}
	dir = filepath.Clean(dir)
	parent, tmp := filepath.Dir(dir), dir+tmpExt
	if err := fsys.RemoveAll(tmp); err != nil {
		return nil, fmt.Errorf("wal: remove %s: %w", tmp, err)
	}
	if err := fsx.MkdirAllSync(fsys, parent, dirMode); err != nil {
		return nil, fmt.Errorf("wal: create %s: %w", parent, err)
	}
	if err := fsys.Mkdir(tmp, dirMode); err != nil {
		return nil, fmt.Errorf("wal: create %s: %w", tmp, err)
	}
	w, err := newWAL(dir, md, o)
	if err != nil {
		return nil, err
	}
	name := segmentName(0, 0)
	f, err := fsys.OpenFile(join(tmp, name), os.O_RDWR|os.O_CREATE|os.O_EXCL, fileMode)
	if err != nil {
		return nil, fmt.Errorf("wal: create segment: %w", err)
	}
	fail := func(err error) (*WAL, error) {
		f.Close()
		fsys.RemoveAll(tmp)
		return nil, err
	}
	if err := f.Lock(); err != nil {
		return fail(fmt.Errorf("%w: %w", ErrLocked, err))
	}
	if err := f.Allocate(o.SegmentSize); err != nil {
		return fail(fmt.Errorf("wal: preallocate %s: %w", name, err))
	}
	if _, err := f.WriteAt(w.header(0), 0); err != nil {
		return fail(fmt.Errorf("wal: write %s: %w", name, err))
	}
	if err := f.Sync(); err != nil {
		return fail(fmt.Errorf("wal: fsync %s: %w", name, err))
	}
	if err := fsys.SyncDir(tmp); err != nil {
		return fail(fmt.Errorf("wal: fsync directory %s: %w", tmp, err))
	}
	// An existing dir must be empty; Remove fails otherwise. Not every
	// file system lets rename(2) replace an empty directory, so remove it.
	if err := fsys.Remove(dir); err != nil && !isNotExist(err) {
		return fail(fmt.Errorf("wal: %s is not an empty directory: %w", dir, err))
	}
	if err := fsys.Rename(tmp, dir); err != nil {
		return fail(fmt.Errorf("wal: rename %s to %s: %w", tmp, dir, err))
	}
	if err := fsys.SyncDir(parent); err != nil {
		f.Close()
		return nil, fmt.Errorf("wal: fsync directory %s: %w", parent, err)
	}
	w.f, w.seed, w.off = f, crcSeed(0), w.hdrEnd
	w.segs = []segment{{seq: 0, index: 0, name: name}}
	w.vals.setName(0, name)
	w.openDirect()
	w.prep = w.newPreparer(nil)
	w.prep.start(1)
	return w, nil
}

func newWAL(dir string, md Metadata, o Options) (*WAL, error) {
	p, err := encodeMetadata(md)
	if err != nil {
		return nil, fmt.Errorf("wal: encoding metadata: %w", err)
	}
	w := &WAL{
		vals:        newValueFiles(o.FS, dir),
		fs:          o.FS,
		dir:         dir,
		logger:      o.Logger,
		opts:        o,
		mdPayload:   p,
		now:         time.Now,
		recordLimit: maxRecordLen - 1,
		direct:      !o.BufferedIO,
	}
	w.hdrEnd = int64(len(w.header(0)) - terminatorSize)
	return w, nil
}

// header is what a segment starts with: the metadata record, padding to a
// sector boundary and the terminator.
func (w *WAL) header(seq uint64) []byte {
	seed := crcSeed(seq)
	return finishWrite(appendRecord(nil, seed, recMetadata, w.mdPayload), seed, 0)
}

func (w *WAL) newPreparer(pool []string) *preparer {
	return &preparer{
		fs:     w.fs,
		dir:    w.dir,
		size:   w.opts.SegmentSize,
		header: w.header,
		inline: w.opts.inlinePrepare,
		stats:  &w.prepStats,
		pool:   pool,
	}
}

// Open is OpenWithOptions on the real file system with the given logger
// and the other defaults.
func Open(dir string, logger *slog.Logger) (*WAL, *State, error) {
	return OpenWithOptions(dir, Options{Logger: logger})
}

// OpenWithOptions reads the WAL in dir, repairs a torn tail (see the
// package comment) and returns it positioned to append, with what it read.
func OpenWithOptions(dir string, opts Options) (*WAL, *State, error) {
	o := opts.withDefaults()
	fsys, logger := o.FS, o.Logger
	list, err := listFiles(fsys, dir)
	if err != nil {
		if isNotExist(err) {
			return nil, nil, fmt.Errorf("%w in %s", ErrNotFound, dir)
		}
		return nil, nil, fmt.Errorf("wal: list %s: %w", dir, err)
	}
	segs, pool, vlogs := list.segs, list.pool, list.vlogs
	if len(segs) == 0 {
		return nil, nil, fmt.Errorf("%w in %s", ErrNotFound, dir)
	}
	for i := 1; i < len(segs); i++ {
		if segs[i].seq != segs[i-1].seq+1 {
			return nil, nil, fmt.Errorf("%w: segment sequence jumps from %s to %s", ErrCorrupt, segs[i-1].name, segs[i].name)
		}
	}
	if n := len(vlogs); n > 0 && vlogs[n-1] >= segs[0].seq {
		// Value segments are segments the log let go of: all older.
		return nil, nil, fmt.Errorf("%w: value segment %s is not older than the log's first segment %s", ErrCorrupt, vlogName(vlogs[n-1]), segs[0].name)
	}

	tail := segs[len(segs)-1]
	f, err := fsys.OpenFile(join(dir, tail.name), os.O_RDWR, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("wal: open %s: %w", tail.name, err)
	}
	fail := func(err error) (*WAL, *State, error) {
		f.Close()
		return nil, nil, err
	}
	if err := f.Lock(); err != nil {
		return fail(fmt.Errorf("%w: %w", ErrLocked, err))
	}

	var r replayer
	var res segResult
	ends := make([]int64, len(segs))
	links := make([]bool, len(segs))
	for i, s := range segs {
		pin := int64(-1)
		if i+1 < len(segs) {
			pin = peekLink(fsys, join(dir, segs[i+1].name), crcSeed(segs[i+1].seq))
		}
		if i == 0 {
			r.purged = s.seq > 0
		}
		data, err := readSegment(fsys, join(dir, s.name), pin)
		if err != nil {
			return fail(fmt.Errorf("wal: read %s: %w", s.name, err))
		}
		if res, err = r.replaySegment(s.name, s.seq, data, pin, i == len(segs)-1); err != nil {
			return fail(err)
		}
		ends[i], links[i] = int64(res.end), r.segLink
	}
	first := segs[0]
	if first.seq > 0 && !links[0] {
		return fail(fmt.Errorf("%w in %s: the oldest segment carries no state, and the ones before it are gone", ErrCorrupt, first.name))
	}
	st := r.state()
	if first.seq > 0 && len(st.Entries) > 0 && st.Entries[0].GetIndex() > st.Snapshot.Index+1 {
		return fail(fmt.Errorf("%w: entries %d to %d are missing: the segments before %s are gone, and the snapshot marker is at %d",
			ErrCorrupt, st.Snapshot.Index+1, st.Entries[0].GetIndex()-1, first.name, st.Snapshot.Index))
	}

	if res.torn {
		// Reinstate the terminator over the torn record, so that the next
		// write starts where the data ends and a crash before it finds the
		// same end.
		if _, err := f.WriteAt(zeros[:terminatorSize], int64(res.end)); err != nil {
			return fail(fmt.Errorf("wal: repair %s: %w", tail.name, err))
		}
		logger.Warn("wal: repaired a torn write at the tail",
			"file", tail.name, "offset", res.end, "reason", res.bad.Error())
	}
	// What was read must be durable before Raft acts on it: after a crash
	// of the process alone, it may still be only in the page cache.
	if err := f.Datasync(); err != nil {
		return fail(fmt.Errorf("wal: fdatasync %s: %w", tail.name, err))
	}
	if err := fsys.SyncDir(dir); err != nil {
		return fail(fmt.Errorf("wal: fsync directory %s: %w", dir, err))
	}

	w, err := newWAL(dir, r.md, o)
	if err != nil {
		return fail(err)
	}
	w.f, w.segs, w.seed, w.off = f, segs, crcSeed(tail.seq), int64(res.end)
	w.hs, w.snap, w.snapSeq, w.next = r.hs, r.snap, r.snapSeq, r.next
	w.vlogs = vlogs
	for _, seq := range vlogs {
		w.vals.setName(seq, vlogName(seq))
	}
	for _, s := range segs {
		w.vals.setName(s.seq, s.name)
	}
	w.locs.put(r.locs, 0)
	w.openDirect()
	if len(segs) > 1 && !links[len(segs)-1] {
		// Cut, then crashed before the first write: that write must carry.
		w.needCarry, w.prevEnd = true, ends[len(segs)-2]
	}
	// The next segment is prepared at the first write, not here: opening a
	// WAL that the caller then refuses (another member's data dir) must
	// leave the directory as it was.
	w.prep = w.newPreparer(pool)
	w.lazyPrep = true
	return w, st, nil
}

// Save appends ents, then hs, with one write and one fdatasync, and returns
// once they are durable. Either may be empty; if both are, Save does
// nothing. ents must be consecutive and may start at any index up to one
// past the last saved entry, replacing the saved ones from there on.
//
// A write or sync error is returned and the WAL refuses every later write:
// the caller must stop (fail-stop). Call Save from one goroutine (Raft's).
func (w *WAL) Save(hs *raftpb.HardState, ents []*raftpb.Entry) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	saveHS := !isEmptyHardState(hs)
	if !saveHS && len(ents) == 0 {
		return nil
	}
	if err := w.checkEntries(ents); err != nil {
		return err
	}
	// As Raft's MustSync: entries, term and vote must be durable before
	// Raft acts on them; a hard state that only moves the commit index
	// need not be (the leader tells it again after a crash). Such a hard
	// state is not written on its own: it goes out with the next write,
	// which syncs it. On flash that saves a sector write per commit.
	if saveHS && len(ents) == 0 && hs.GetTerm() == w.hs.Term && hs.GetVote() == w.hs.Vote {
		w.hs.Commit = hs.GetCommit()
		w.hsPending = true
		return nil
	}
	recs, payloads, err := entryRecs(w.recs[:0], w.payloads, ents, w.recordLimit)
	if err != nil {
		return err
	}
	if cap(payloads) <= 1<<20 {
		w.payloads = payloads // reuse moderate buffers; let big ones go
	}
	if !saveHS && w.hsPending {
		hs, saveHS = w.hs.proto(), true
	}
	var hsRec hardStateRec
	if saveHS {
		p, err := encodeHardState(hs)
		if err != nil {
			return fmt.Errorf("wal: encoding hard state: %w", err)
		}
		recs = append(recs, rec{typ: recHardState, payload: p})
		hsRec = hardStateRec{Term: hs.GetTerm(), Vote: hs.GetVote(), Commit: hs.GetCommit()}
	}
	w.recs = recs[:0]
	oldNext := w.next
	if err := w.write(recs, true); err != nil {
		return err
	}
	w.hsPending = false
	if len(ents) > 0 {
		w.next = ents[len(ents)-1].GetIndex() + 1
		// Durable now (a Save with entries always syncs): hand out where
		// their data went.
		w.locs.put(w.lastLocs, oldNext)
	}
	if saveHS {
		w.hs = hsRec
	}
	return nil
}

// SaveSnapshot durably records that a snapshot at m.Index is stored
// elsewhere (one write and one fdatasync, like Save). Open then returns m
// and only the entries after it, and PurgeBefore may recycle the segments
// it covers. Markers must not move back (ErrInvalid). Safe to call from
// another goroutine than Save.
func (w *WAL) SaveSnapshot(m SnapshotMarker) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	if m.Index < w.snap.Index {
		return fmt.Errorf("%w: snapshot marker at index %d is behind the one at %d", ErrInvalid, m.Index, w.snap.Index)
	}
	p, err := encodeSnapshot(m)
	if err != nil {
		return fmt.Errorf("wal: encoding snapshot marker: %w", err)
	}
	recs := []rec{{typ: recSnapshot, payload: p}}
	if w.hsPending {
		r, err := w.hardStateRecord()
		if err != nil {
			return err
		}
		recs = append(recs, r)
	}
	if err := w.write(recs, true); err != nil {
		return err
	}
	w.hsPending = false
	w.snap, w.snapSeq = m, w.seq()
	if w.next < m.Index+1 {
		w.next = m.Index + 1
	}
	return nil
}

func (w *WAL) usable() error {
	switch {
	case w.closed:
		return ErrClosed
	case w.err != nil:
		return fmt.Errorf("%w: %w", ErrFailed, w.err)
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

// writeLen is the size of a write of n bytes of records at base: with its
// padding and terminator.
func writeLen(base, n int64) int64 {
	end := base + n
	pad := alignUp(end) - end
	if pad > 0 && pad < minRecordSize {
		pad += sectorSize
	}
	return n + pad + terminatorSize
}

// write frames recs for the tail (cutting first if they would not fit in
// it) and writes them with one write and one fdatasync. Any failure
// poisons the WAL.
func (w *WAL) write(recs []rec, sync bool) error {
	if w.lazyPrep {
		w.lazyPrep = false
		w.prep.start(w.seq() + 1)
	}
	carry, err := w.carry()
	if err != nil {
		return err
	}
	n := int64(recsSize(carry) + recsSize(recs))
	if w.off > w.hdrEnd && w.off+writeLen(w.off, n) > w.opts.SegmentSize {
		if err := w.cut(); err != nil {
			w.err = err
			return err
		}
		if carry, err = w.carry(); err != nil {
			return err
		}
	}
	buf := appendRecs(w.buf[:0], w.seed, carry)
	w.lastLocs = w.lastLocs[:0]
	pos := w.off + int64(len(buf))
	for _, r := range recs {
		for _, sp := range r.spans {
			w.lastLocs = append(w.lastLocs, indexLoc{sp.index, Loc{Seq: w.seq(), Off: pos + minRecordSize + int64(sp.off), Len: sp.n}})
		}
		pos += int64(minRecordSize + len(r.payload))
	}
	buf = appendRecs(buf, w.seed, recs)
	buf = finishWrite(buf, w.seed, w.off)
	if cap(buf) <= 1<<20 {
		w.buf = buf // reuse moderate buffers; let big ones go
	}
	if err := w.writeSync(buf, sync); err != nil {
		w.err = err
		return err
	}
	w.off += int64(len(buf)) - terminatorSize
	w.needCarry = false
	return nil
}

// carry returns the records that start the first write of a segment: the
// link to the previous segment's end, the last hard state and the last
// snapshot marker, so that the segments before can be purged.
func (w *WAL) carry() ([]rec, error) {
	if !w.needCarry {
		return nil, nil
	}
	p, err := encodeLink(w.prevEnd)
	if err != nil {
		return nil, fmt.Errorf("wal: encoding link: %w", err)
	}
	recs := []rec{{typ: recLink, payload: p}}
	if w.hs != (hardStateRec{}) {
		r, err := w.hardStateRecord()
		if err != nil {
			return nil, err
		}
		recs = append(recs, r)
	}
	if w.snap != (SnapshotMarker{}) {
		p, err := encodeSnapshot(w.snap)
		if err != nil {
			return nil, fmt.Errorf("wal: encoding snapshot marker: %w", err)
		}
		recs = append(recs, rec{typ: recSnapshot, payload: p})
	}
	return recs, nil
}

// cut makes the prepared segment the tail: rename it to its segment name
// and sync the directory. Its first write will carry the state.
func (w *WAL) cut() error {
	if w.unsynced {
		// The next segment's link will vouch for everything written here.
		if err := w.f.Datasync(); err != nil {
			return fmt.Errorf("wal: cut: fdatasync %s: %w", w.tailName(), err)
		}
		w.syncs.Add(1)
		w.unsynced = false
	}
	seq := w.seq() + 1
	p, err := w.prep.take(seq)
	if err != nil {
		return fmt.Errorf("wal: cut: %w", err)
	}
	name := segmentName(seq, w.next)
	if err := w.fs.Rename(join(w.dir, p.name), join(w.dir, name)); err != nil {
		p.f.Close()
		return fmt.Errorf("wal: cut: %w", err)
	}
	err = w.fs.SyncDir(w.dir)
	w.syncs.Add(1)
	if err != nil {
		p.f.Close()
		return fmt.Errorf("wal: cut: fsync directory %s: %w", w.dir, err)
	}
	w.cuts.Add(1)
	old, oldName := w.f, w.tailName()
	w.prevEnd = w.off
	w.f, w.seed, w.off, w.needCarry = p.f, crcSeed(seq), w.hdrEnd, true
	w.segs = append(w.segs, segment{seq: seq, index: w.next, name: name})
	w.vals.setName(seq, name)
	w.closeDirect()
	w.openDirect()
	if err := old.Close(); err != nil {
		w.logger.Warn("wal: closing previous segment", "file", oldName, "err", err)
	}
	w.prep.start(seq + 1)
	return nil
}

func (w *WAL) seq() uint64      { return w.segs[len(w.segs)-1].seq }
func (w *WAL) tailName() string { return w.segs[len(w.segs)-1].name }

// openDirect opens the tail for direct I/O, if that is on and the file
// system has it; otherwise Save writes through the page cache.
func (w *WAL) openDirect() {
	dfs, ok := w.fs.(fsx.DirectFS)
	if !w.direct || !ok {
		return
	}
	df, err := dfs.OpenDirect(join(w.dir, w.tailName()))
	if err != nil {
		w.direct = false
		w.logger.Info("wal: writing through the page cache: direct I/O is not available", "file", w.tailName(), "err", err)
		return
	}
	w.df = df
}

func (w *WAL) closeDirect() {
	if w.df == nil {
		return
	}
	if err := w.df.Close(); err != nil {
		w.logger.Warn("wal: closing a segment's direct I/O handle", "file", w.tailName(), "err", err)
	}
	w.df = nil
}

// writeTail writes b at the tail's end: with direct I/O when the tail has
// it, extended to whole sectors (b ends with the terminator, whose sector
// is written out with zeros; the data ends at the terminator either way),
// else through the page cache. It returns the bytes written.
//
// Why direct I/O: b starts on a sector boundary inside a page that the
// last Save's fdatasync cleaned. Through the page cache, every Save
// re-dirties and writes back whole 4 KiB pages, about twice the bytes of
// the records themselves at small group commits; a direct write sends
// only its sectors, and keeps the log out of the page cache, which it is
// only read back from at start. A file system or device that refuses the
// write (EINVAL: logical blocks larger than a sector) falls back to the
// page cache for good; the refused write changed nothing.
func (w *WAL) writeTail(b []byte) (int, error) {
	if w.df != nil {
		// The write starts on a sector boundary, except after Open
		// repaired a torn tail that ended inside a sector: then the
		// sector's data before w.off is written again, unchanged.
		start := w.off / sectorSize * sectorSize
		head := int(w.off - start)
		n := int(alignUp(int64(head + len(b))))
		if cap(w.dbuf) < n {
			w.dbuf = fsx.AlignedBuf(max(n, 64<<10))
		}
		buf := w.dbuf[:n]
		if head > 0 {
			if _, err := w.f.ReadAt(buf[:head], start); err != nil {
				return 0, fmt.Errorf("wal: reading the tail's last sector: %w", err)
			}
		}
		clear(buf[head+copy(buf[head:], b):])
		written, err := w.df.WriteAt(buf, start)
		if !errors.Is(err, fsx.ErrDirectUnsupported) {
			if cap(w.dbuf) > 1<<20 {
				w.dbuf = nil // let big ones go, as w.buf
			}
			return written, err
		}
		w.logger.Info("wal: writing through the page cache: the device refused a direct write", "file", w.tailName(), "err", err)
		w.closeDirect()
		w.direct = false
	}
	return w.f.WriteAt(b, w.off)
}

// writeSync writes b at the tail's end and fdatasyncs, counting both.
func (w *WAL) writeSync(b []byte, sync bool) error {
	n, err := w.writeTail(b)
	w.writes.Add(1)
	w.bytes.Add(uint64(n))
	if err != nil {
		return fmt.Errorf("wal: write %s at offset %d: %w", w.tailName(), w.off, err)
	}
	if !sync {
		w.unsynced = true
		return nil
	}
	w.unsynced = false
	start := w.now()
	err = w.f.Datasync()
	took := w.now().Sub(start)
	w.syncs.Add(1)
	if w.opts.OnSync != nil {
		w.opts.OnSync(took)
	}
	if took > warnSyncDuration {
		w.logger.Warn("slow fdatasync", "file", w.tailName(), "took", took, "expected-duration", warnSyncDuration)
	}
	if err != nil {
		return fmt.Errorf("wal: fdatasync %s: %w", w.tailName(), err)
	}
	return nil
}

func isEmptyHardState(hs *raftpb.HardState) bool {
	return hs.GetTerm() == 0 && hs.GetVote() == 0 && hs.GetCommit() == 0
}

// PurgeBefore takes out of the log the segments that only hold entries
// at or below index (the last snapshot index) and returns how many. It
// keeps at least Options.MaxWALs segments, never goes past the latest
// snapshot marker (neither its index nor the segment it was written in),
// and never touches the tail. A segment taken out that Options.Pinned
// says still holds values becomes a value segment ("<seq>.vlog"), kept
// readable by ReadValue; the others, and the value segments that Pinned
// no longer holds, join the free pool ("<seq>.free") to be reused by later
// cuts; beyond the pool's capacity they are deleted. One directory fsync.
// Safe to call from another goroutine than Save.
func (w *WAL) PurgeBefore(index uint64) (removed int, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return 0, err
	}
	if w.opts.MaxWALs < 0 {
		return 0, nil
	}
	n := w.purgeCount(index)
	pinned := func(seq uint64) bool { return w.opts.Pinned != nil && w.opts.Pinned(seq) }
	var (
		names []string
		rerr  error
		kept  []uint64
	)
	// Value segments whose values are all gone first: they are older.
	for i, seq := range w.vlogs {
		if pinned(seq) {
			kept = append(kept, seq)
			continue
		}
		// No handle may read the file once a later segment writes there.
		w.vals.drop(seq)
		if rerr = w.fs.Rename(join(w.dir, vlogName(seq)), join(w.dir, freeName(seq))); rerr != nil {
			rerr = fmt.Errorf("wal: recycling value segment: %w", rerr)
			kept = append(kept, w.vlogs[i:]...)
			break
		}
		names = append(names, freeName(seq))
	}
	w.vlogs = kept
	changed := len(names) > 0
	for _, s := range w.segs[:n] {
		if rerr != nil {
			break
		}
		if pinned(s.seq) {
			if rerr = w.vals.rename(s.seq, s.name, vlogName(s.seq)); rerr != nil {
				rerr = fmt.Errorf("wal: purge: %w", rerr)
				break
			}
			w.vlogs = append(w.vlogs, s.seq)
		} else {
			w.vals.drop(s.seq)
			if rerr = w.fs.Rename(join(w.dir, s.name), join(w.dir, freeName(s.seq))); rerr != nil {
				rerr = fmt.Errorf("wal: purge: %w", rerr)
				break
			}
			names = append(names, freeName(s.seq))
		}
		removed++
		changed = true
	}
	if !changed {
		return 0, rerr
	}
	w.segs = w.segs[removed:]
	w.prep.addFree(names...)
	for _, name := range w.prep.trim(maxFreeSegments) {
		if err := w.fs.Remove(join(w.dir, name)); err != nil && !isNotExist(err) {
			w.logger.Warn("wal: removing surplus free segment", "file", name, "err", err)
		}
	}
	if err := w.fs.SyncDir(w.dir); err != nil {
		w.err = fmt.Errorf("wal: purge: fsync directory %s: %w", w.dir, err)
		return removed, w.err
	}
	return removed, rerr
}

// purgeCount is how many of the oldest segments PurgeBefore(index) takes
// out of the log.
func (w *WAL) purgeCount(index uint64) int {
	limit := min(index, w.snap.Index)
	n := 0
	for n < len(w.segs)-1 && len(w.segs)-n > w.opts.MaxWALs && w.purgeable(n, limit) {
		n++
	}
	return n
}

// purgeable reports whether segment w.segs[i] (not the tail) is no longer
// needed once a snapshot at limit is durable.
func (w *WAL) purgeable(i int, limit uint64) bool {
	s, next := w.segs[i], w.segs[i+1]
	switch {
	case s.seq >= w.snapSeq: // holds the latest marker, or comes after it
		return false
	case next.index > limit+1: // may hold live entries above limit
		return false
	case i+1 == len(w.segs)-1 && w.needCarry: // the tail does not carry the state yet
		return false
	}
	return true
}

// Stats returns the I/O counters. Safe from any goroutine.
func (w *WAL) Stats() Stats {
	return Stats{
		Syncs:            w.syncs.Load(),
		BytesWritten:     w.bytes.Load(),
		Writes:           w.writes.Load(),
		Cuts:             w.cuts.Load(),
		SegmentsCreated:  w.prepStats.created.Load(),
		SegmentsRecycled: w.prepStats.recycled.Load(),
		PrepareSyncs:     w.prepStats.syncs.Load(),
		PrepareBytes:     w.prepStats.bytes.Load(),
	}
}

// Close releases the tail segment and its lock, after waiting for a
// background preparation. Everything Save returned for is already
// durable, so Close does not sync.
func (w *WAL) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	perr := w.prep.close()
	if w.hsPending && w.err == nil {
		// A clean stop keeps the last commit index.
		if err := w.writeHardState(); err != nil {
			w.f.Close()
			return err
		}
	}
	if w.unsynced && w.err == nil {
		// A clean stop keeps the last commit index too.
		if err := w.f.Datasync(); err != nil {
			w.f.Close()
			return fmt.Errorf("wal: fdatasync %s: %w", w.tailName(), err)
		}
	}
	w.closeDirect()
	w.vals.close()
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("wal: close: %w", err)
	}
	if perr != nil {
		return fmt.Errorf("wal: close: %w", perr)
	}
	return nil
}

// hardStateRecord is the record of the last hard state Save was given.
func (w *WAL) hardStateRecord() (rec, error) {
	p, err := encodeHardState(w.hs.proto())
	if err != nil {
		return rec{}, fmt.Errorf("wal: encoding hard state: %w", err)
	}
	return rec{typ: recHardState, payload: p}, nil
}

// writeHardState writes the pending commit-only hard state, unsynced.
func (w *WAL) writeHardState() error {
	r, err := w.hardStateRecord()
	if err != nil {
		return err
	}
	if err := w.write([]rec{r}, false); err != nil {
		return err
	}
	w.hsPending = false
	return nil
}
