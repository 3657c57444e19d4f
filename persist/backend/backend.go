package backend

import (
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Defaults, as etcd's.
const (
	DefaultBatchInterval = 100 * time.Millisecond
	DefaultBatchLimit    = 10000
	// DefaultInitialMmapSize is bbolt's first mapping: small enough for
	// the address space of 32-bit ARM, large enough that a small database
	// never remaps.
	DefaultInitialMmapSize = 64 << 20
)

// seqFillPercent is how full pages of SeqBuckets get, as etcd's
// UnsafeSeqPut: nearly full, since nothing is inserted before the end.
const seqFillPercent = 0.9

// Options configures a Backend. The zero value is usable.
type Options struct {
	// Logger receives the backend's logs; nil discards them.
	Logger *slog.Logger
	// Buckets are created at Open if missing.
	Buckets [][]byte
	// SeqBuckets are buckets whose keys are only ever appended in
	// increasing order (the revision-keyed "key" bucket): their pages are
	// filled to seqFillPercent instead of bbolt's default half.
	SeqBuckets [][]byte
	// BatchInterval is the longest a write waits before it is committed;
	// 0: DefaultBatchInterval.
	BatchInterval time.Duration
	// BatchLimit commits at BatchTx.End once this many writes are pending;
	// 0: DefaultBatchLimit, 1: every batch that wrote.
	BatchLimit int
	// InitialMmapSize is bbolt's initial memory map; 0:
	// DefaultInitialMmapSize.
	InitialMmapSize int
	// Freeze, if set, is called when a commit takes the pending writes:
	// with the batch locked, between batches, so the writer's own state
	// then describes exactly the writes being committed (core/mvcc
	// captures its consistent index here). The function it returns, if
	// not nil, is called once that commit is on disk, before OnCommit;
	// not at all if the commit fails. Both run on the committing
	// goroutine, which holds no lock the writer or readers take: they
	// must be quick and must not call the Backend.
	Freeze func() (committed func())
	// OnCommit, if set, is called after each successful commit with its
	// duration (etcd_disk_backend_commit_duration_seconds), on the
	// committing goroutine (see Freeze). It must be quick and must not
	// call the Backend.
	OnCommit func(time.Duration)
	// Clock drives the batch timer; nil: the real clock.
	Clock Clock
	// OpenFile opens the database file, as bbolt's option of that name;
	// nil: os.OpenFile. Tests use it to make the disk fail.
	OpenFile func(name string, flag int, perm os.FileMode) (*os.File, error)
}

// Backend is a bbolt file with batched commits. See the package
// documentation for the threading contract.
type Backend struct {
	path     string
	opts     Options
	seq      map[string]bool // SeqBuckets
	log      *slog.Logger
	clock    Clock
	interval time.Duration
	limit    int

	// dbMu guards db against Restore: readers hold it shared while they
	// begin a read transaction; Restore and Close hold it exclusively.
	dbMu sync.RWMutex
	db   *bolt.DB

	// view is what readers see over bbolt: the committing buffer (the
	// writes of the commit in progress, until bbolt holds them) and the
	// published work buffer (every write published since). It is loaded
	// just before a bbolt read transaction begins, so it always covers
	// that transaction. vmu serializes its stores (the writer's Publish
	// and freeze, the committer's drop of the committing buffer).
	view atomic.Pointer[pubView]
	vmu  sync.Mutex

	// wmu serializes the writer, the freezing of a batch for a commit,
	// and Restore; it guards the fields below. A commit itself runs
	// without it.
	wmu      sync.Mutex
	buckets  map[string]bool // Options.Buckets: the ones Put may write
	work     *buffer         // the writes not yet handed to a commit, the writer's copy
	pending  int             // writes in work
	dirty    bool            // work has writes that are not published
	timer    Timer
	batchGen uint64     // bumped by every freeze and drop: stale timers do nothing
	inflight *commitJob // the commit in progress (or just finished); nil: none
	closed   atomic.Bool

	emu sync.Mutex
	err error // sticky failure, wraps ErrFailed

	commits atomic.Int64

	// size and inUse are Size and SizeInUse as of the last commit (or
	// open), kept by whoever changed the file so that reading them, which
	// every put's quota check does, opens no bbolt transaction.
	size, inUse atomic.Int64

	// commitHook, if set (tests), runs on the committing goroutine before
	// the commit writes anything.
	commitHook func(*commitJob)
}

// pubView is the published state over bbolt; immutable.
type pubView struct {
	committing *buffer // nil: no commit in progress
	work       *buffer
}

// Open opens (creating if missing) the bbolt file at path and creates the
// buckets of opts.Buckets that are missing (the only write at Open, and
// only when something is missing).
func Open(path string, opts Options) (*Backend, error) {
	b := &Backend{
		path:     path,
		opts:     opts,
		log:      opts.Logger,
		clock:    opts.Clock,
		interval: opts.BatchInterval,
		limit:    opts.BatchLimit,
		work:     newBuffer(),
		seq:      map[string]bool{},
		buckets:  map[string]bool{},
	}
	for _, name := range opts.Buckets {
		b.buckets[string(name)] = true
	}
	for _, name := range opts.SeqBuckets {
		b.seq[string(name)] = true
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if b.clock == nil {
		b.clock = realClock{}
	}
	if b.interval <= 0 {
		b.interval = DefaultBatchInterval
	}
	if b.limit <= 0 {
		b.limit = DefaultBatchLimit
	}
	db, err := b.openDB(path)
	if err != nil {
		return nil, err
	}
	b.db = db
	b.view.Store(&pubView{work: emptyBuffer})
	b.storeSizes(db)
	return b, nil
}

func (b *Backend) openDB(path string) (*bolt.DB, error) {
	mmap := b.opts.InitialMmapSize
	if mmap <= 0 {
		mmap = DefaultInitialMmapSize
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:         10 * time.Second,
		InitialMmapSize: mmap,
		FreelistType:    bolt.FreelistMapType,
		// As etcd: the freelist is rebuilt at open rather than written on
		// every commit, which saves pages per commit (flash wear).
		NoFreelistSync: true,
		OpenFile:       b.opts.OpenFile,
	})
	if err != nil {
		return nil, fmt.Errorf("backend: opening %s: %w", path, err)
	}
	if err := createBuckets(db, b.opts.Buckets); err != nil {
		db.Close()
		return nil, fmt.Errorf("backend: opening %s: %w", path, err)
	}
	return db, nil
}

func createBuckets(db *bolt.DB, names [][]byte) error {
	missing := false
	_ = db.View(func(tx *bolt.Tx) error {
		for _, name := range names {
			if tx.Bucket(name) == nil {
				missing = true
			}
		}
		return nil
	})
	if !missing {
		return nil
	}
	return db.Update(func(tx *bolt.Tx) error {
		for _, name := range names {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("creating bucket %q: %w", name, err)
			}
		}
		return nil
	})
}

// Close commits the pending writes (unless the backend failed), waiting
// for a commit in progress, and closes the file. It waits for open read
// transactions and snapshots. It returns the commit error, or the earlier
// failure.
func (b *Backend) Close() error {
	b.wmu.Lock()
	if b.closed.Load() {
		b.wmu.Unlock()
		return nil
	}
	err := b.commitWaitLocked()
	if errors.Is(err, ErrClosed) {
		// Closed by another Close while this one waited.
		b.wmu.Unlock()
		return nil
	}
	b.waitInflightLocked()
	b.stopTimerLocked()
	b.closed.Store(true)
	b.wmu.Unlock()

	b.dbMu.Lock()
	defer b.dbMu.Unlock()
	if cerr := b.db.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("backend: closing %s: %w", b.path, cerr))
	}
	return err
}

// Err is the failure that stopped the backend (wrapping ErrFailed), or
// nil.
func (b *Backend) Err() error {
	b.emu.Lock()
	defer b.emu.Unlock()
	return b.err
}

// Commits is the number of commits since Open.
func (b *Backend) Commits() int64 { return b.commits.Load() }

// Pending is the number of writes not yet handed to a commit (a commit in
// progress does not count).
func (b *Backend) Pending() int {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	return b.pending
}

// Size is the size of the database in bytes, as of the last commit.
func (b *Backend) Size() int64 { return b.size.Load() }

// SizeInUse is Size minus the pages on bbolt's free list, as etcd reports
// it, as of the last commit.
func (b *Backend) SizeInUse() int64 { return b.inUse.Load() }

// storeSizes records db's sizes for Size and SizeInUse. It runs where the
// file changed (open, commit, restore), never concurrently with itself:
// bbolt counts the free pages as a write transaction ends.
func (b *Backend) storeSizes(db *bolt.DB) {
	var size int64
	_ = db.View(func(tx *bolt.Tx) error {
		size = tx.Size()
		return nil
	})
	b.size.Store(size)
	b.inUse.Store(size - int64(db.Stats().FreePageN)*int64(db.Info().PageSize))
}

// ReadTx is a read transaction: the last commit with the writes published
// since laid over it. It is safe for one goroutine; call Done when finished
// (a read transaction pins the pages it reads).
type ReadTx struct {
	tx *bolt.Tx
	pv *pubView
}

// ReadTx begins a read transaction. It may be called from any goroutine,
// concurrently with the writer and with commits.
func (b *Backend) ReadTx() (*ReadTx, error) {
	b.dbMu.RLock()
	defer b.dbMu.RUnlock()
	if b.closed.Load() {
		return nil, ErrClosed
	}
	// The view first: a commit that lands between the two leaves the
	// transaction newer than the view's base, which the view still covers
	// (it holds the latest value of every key written since, and drops the
	// committing buffer only once bbolt holds it).
	pv := b.view.Load()
	tx, err := b.db.Begin(false)
	if err != nil {
		return nil, fmt.Errorf("backend: begin read: %w", err)
	}
	return &ReadTx{tx: tx, pv: pv}, nil
}

// Get returns the value of key in bucket, nil if absent. The value is valid
// until Done.
func (t *ReadTx) Get(bucket, key []byte) []byte {
	if v, ok := t.pv.work.get(bucket, key); ok {
		return v
	}
	if v, ok := t.pv.committing.get(bucket, key); ok {
		return v
	}
	if bk := t.tx.Bucket(bucket); bk != nil {
		return bk.Get(key)
	}
	return nil
}

// Range iterates the keys of bucket in [from, to) in order (nil from: from
// the first key; nil to: to the last). Keys and values are valid until Done.
func (t *ReadTx) Range(bucket, from, to []byte) iter.Seq2[[]byte, []byte] {
	return overlay(bucket, t.tx.Bucket(bucket), from, to, t.pv.work, t.pv.committing)
}

// HasBucket reports whether bucket exists.
func (t *ReadTx) HasBucket(bucket []byte) bool { return t.tx.Bucket(bucket) != nil }

// Done ends the read transaction.
func (t *ReadTx) Done() { _ = t.tx.Rollback() }

// Restore replaces the database with the bbolt file at path (a snapshot
// received from the leader), moving it into place: path must be on the
// same file system as the database. check, if not nil, is called first
// with a read transaction on the new file; its error refuses the file and
// leaves the backend as it was. Then a commit in progress is waited for,
// the writes not yet handed to a commit are dropped (the snapshot
// supersedes them), Restore waits for open read transactions and
// snapshots to end, and the file is synced, renamed over the database, the
// directory synced, and the database reopened. An error after that point
// leaves the backend failed (ErrFailed).
//
// It must not run concurrently with a batch (call it from the writer's
// goroutine).
func (b *Backend) Restore(path string, check func(*ReadTx) error) error {
	if check != nil {
		if err := checkFile(path, check); err != nil {
			return fmt.Errorf("backend: restoring from %s: %w", path, err)
		}
	}
	b.wmu.Lock()
	defer b.wmu.Unlock()
	if b.closed.Load() {
		return ErrClosed
	}
	if err := b.Err(); err != nil {
		return err
	}
	// A commit in progress completes first: it cannot be called back.
	b.waitInflightLocked()
	if err := b.usableLocked(); err != nil {
		return err
	}
	b.dropBatchLocked()

	b.dbMu.Lock()
	defer b.dbMu.Unlock()
	if err := b.db.Close(); err != nil {
		return b.failLocked(fmt.Errorf("restore: closing %s: %w", b.path, err))
	}
	if err := replaceFile(path, b.path); err != nil {
		// The old file may still be intact, but the handle is gone:
		// stop, and let a restart open whichever file is in place.
		return b.failLocked(fmt.Errorf("restore: %w", err))
	}
	db, err := b.openDB(b.path)
	if err != nil {
		return b.failLocked(fmt.Errorf("restore: %w", err))
	}
	b.db = db
	b.storeSizes(db)
	b.vmu.Lock()
	b.view.Store(&pubView{work: emptyBuffer})
	b.vmu.Unlock()
	b.log.Info("backend restored from snapshot", "path", b.path, "from", path)
	return nil
}

func checkFile(path string, check func(*ReadTx) error) error {
	db, err := bolt.Open(path, 0o400, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		return err
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error { return check(&ReadTx{tx: tx, pv: &pubView{work: emptyBuffer}}) })
}

// replaceFile syncs from, renames it to to and syncs the directory.
func replaceFile(from, to string) error {
	f, err := os.Open(from)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("syncing %s: %w", from, err)
	}
	if err := os.Rename(from, to); err != nil {
		return err
	}
	dir, err := os.Open(filepath.Dir(to))
	if err != nil {
		return err
	}
	err = dir.Sync()
	if cerr := dir.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("syncing directory of %s: %w", to, err)
	}
	return nil
}
