package backend

import (
	"fmt"
	"iter"
	"maps"
	"slices"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// BatchTx is the writer's handle on the batch, from BeginBatch to End or
// Abort. Its reads (Get, Range) see everything written so far, committed or
// not. It is not safe for concurrent use.
//
// The batch holds no bbolt transaction: its writes go into the in-memory
// work buffer, and its reads of the committed state use a bbolt read
// transaction for the duration of one Get or one Range iteration only (see
// the package documentation on why the batch must not hold one).
type BatchTx struct {
	b     *Backend
	ended bool
	err   error // a failed Put, Delete or read: End aborts
}

// BeginBatch locks the batch for the writer. It never waits for a commit
// in progress. It fails with the sticky failure (ErrFailed) or ErrClosed.
// Every BeginBatch must be followed by End or Abort.
func (b *Backend) BeginBatch() (*BatchTx, error) {
	b.wmu.Lock()
	if err := b.usableLocked(); err != nil {
		b.wmu.Unlock()
		return nil, err
	}
	return &BatchTx{b: b}, nil
}

func (b *Backend) usableLocked() error {
	if b.closed.Load() {
		return ErrClosed
	}
	return b.Err()
}

// Get returns the value of key in bucket, nil if absent. The value is
// valid until End (it is the buffered value or a copy of the committed
// one) and must not be modified.
func (t *BatchTx) Get(bucket, key []byte) []byte {
	if t.ended {
		return nil
	}
	b := t.b
	if v, ok := b.work.get(bucket, key); ok {
		return v
	}
	// The published view first, then the bbolt transaction: a commit
	// that lands between the two is in the transaction.
	pv := b.view.Load()
	if v, ok := pv.committing.get(bucket, key); ok {
		return v
	}
	var out []byte
	t.view(func(tx *bolt.Tx) {
		if bk := tx.Bucket(bucket); bk != nil {
			if v := bk.Get(key); v != nil {
				out = slices.Clone(v)
			}
		}
	})
	return out
}

// view runs fn in a short bbolt read transaction. A failure to begin one
// fails the batch (End then aborts it).
func (t *BatchTx) view(fn func(*bolt.Tx)) {
	// No dbMu: Restore and Close take wmu, which the batch holds, before
	// they touch db.
	tx, err := t.b.db.Begin(false)
	if err != nil {
		if t.err == nil {
			t.err = fmt.Errorf("backend: begin read: %w", err)
		}
		return
	}
	defer func() { _ = tx.Rollback() }()
	fn(tx)
}

// Range iterates the keys of bucket in [from, to) in order (nil from: from
// the first key; nil to: to the last). Keys and values are valid only
// during the iteration (the committed ones live in a bbolt read
// transaction that ends with it): copy what is kept. Do not write while
// iterating.
func (t *BatchTx) Range(bucket, from, to []byte) iter.Seq2[[]byte, []byte] {
	if t.ended {
		return func(func(k, v []byte) bool) {}
	}
	b := t.b
	return func(yield func(k, v []byte) bool) {
		pv := b.view.Load()
		t.view(func(tx *bolt.Tx) {
			for k, v := range overlay(bucket, tx.Bucket(bucket), from, to, b.work, pv.committing) {
				if !yield(k, v) {
					return
				}
			}
		})
	}
}

// Put stores value under key in bucket. key and value must not be modified
// afterwards. An error fails the batch: End then aborts it.
func (t *BatchTx) Put(bucket, key, value []byte) error {
	return t.write(bucket, entry{key: key, value: value})
}

// Delete removes key from bucket; an absent key is not an error. An error
// fails the batch: End then aborts it.
func (t *BatchTx) Delete(bucket, key []byte) error {
	return t.write(bucket, entry{key: key, deleted: true})
}

func (t *BatchTx) write(bucket []byte, e entry) error {
	if t.ended {
		return ErrBatchEnded
	}
	if t.err != nil {
		return t.err
	}
	b := t.b
	if !b.buckets[string(bucket)] {
		t.err = fmt.Errorf("backend: writing %q/%x: %w: %q", bucket, e.key, ErrBucketNotFound, bucket)
		return t.err
	}
	// bbolt's own checks, made now rather than at the commit, where they
	// would fail the backend.
	switch {
	case len(e.key) == 0:
		t.err = fmt.Errorf("backend: writing %q: %w", bucket, berrors.ErrKeyRequired)
	case len(e.key) > bolt.MaxKeySize:
		t.err = fmt.Errorf("backend: writing %q/%x: %w", bucket, e.key[:16], berrors.ErrKeyTooLarge)
	case !e.deleted && len(e.value) > bolt.MaxValueSize:
		t.err = fmt.Errorf("backend: writing %q/%x: %w", bucket, e.key, berrors.ErrValueTooLarge)
	}
	if t.err != nil {
		return t.err
	}
	b.work.set(bucket, e)
	b.dirty = true
	b.pending++
	if b.pending == 1 {
		gen := b.batchGen
		b.timer = b.clock.AfterFunc(b.interval, func() { b.timerCommit(gen) })
	}
	return nil
}

// Publish makes the batch's writes so far visible to read transactions
// that begin afterwards. It is cheap (a copy-on-write clone), so a caller
// can do it under its own lock to publish together with its own state.
func (t *BatchTx) Publish() {
	if t.ended || t.err != nil {
		return
	}
	t.b.publishLocked()
}

func (b *Backend) publishLocked() {
	if !b.dirty {
		return
	}
	c := b.work.clone()
	b.vmu.Lock()
	b.view.Store(&pubView{committing: b.view.Load().committing, work: c})
	b.vmu.Unlock()
	b.dirty = false
}

// End publishes the batch's writes and unlocks the batch. If BatchLimit
// writes are pending it starts a commit of them in the background: End
// waits only if a previous commit is still running (back-pressure). Its
// error is the batch's own failure or an earlier commit's, after which the
// backend is failed.
func (t *BatchTx) End() error {
	if t.ended {
		return ErrBatchEnded
	}
	if t.err != nil {
		return t.Abort(t.err)
	}
	t.ended = true
	b := t.b
	defer b.wmu.Unlock()
	b.publishLocked()
	if b.pending >= b.limit {
		b.waitInflightLocked()
		if err := b.usableLocked(); err != nil {
			return err
		}
		if b.pending >= b.limit {
			job := b.freezeLocked()
			go b.runCommit(job)
		}
	}
	return b.Err()
}

// Abort ends the batch after an error in the writer: its writes and
// every write not yet handed to a commit are dropped, and the backend is
// failed with cause, so that the caller stops. A commit already running
// completes (it holds whole batches). Readers keep seeing what was
// published.
func (t *BatchTx) Abort(cause error) error {
	if t.ended {
		return ErrBatchEnded
	}
	t.ended = true
	b := t.b
	defer b.wmu.Unlock()
	return b.failLocked(fmt.Errorf("batch aborted: %w", cause))
}

// ForceCommit commits the writes published so far, if any are not yet on
// disk, and returns once they are (waiting for a commit in progress too).
// It may be called from any goroutine but waits for a batch in progress.
func (b *Backend) ForceCommit() error {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	if b.closed.Load() {
		return ErrClosed
	}
	return b.commitWaitLocked()
}

func (b *Backend) timerCommit(gen uint64) {
	b.wmu.Lock()
	if b.closed.Load() || gen != b.batchGen || b.Err() != nil {
		b.wmu.Unlock()
		return
	}
	b.timer = nil // it fired
	// Wait (on the timer's goroutine, not the writer's) for a commit in
	// progress; meanwhile the batch may have been frozen by someone else.
	b.waitInflightLocked()
	if b.closed.Load() || gen != b.batchGen || b.Err() != nil || b.pending == 0 {
		b.wmu.Unlock()
		return
	}
	job := b.freezeLocked()
	b.wmu.Unlock()
	if err := b.runCommit(job); err != nil {
		b.log.Error("backend commit failed; every later write will fail", "error", err)
	}
}

// commitWaitLocked waits for the commit in progress, then commits what is
// pending and waits for that too. It releases wmu while it waits.
func (b *Backend) commitWaitLocked() error {
	b.waitInflightLocked()
	if err := b.usableLocked(); err != nil {
		return err
	}
	if b.pending == 0 {
		return nil
	}
	job := b.freezeLocked()
	b.wmu.Unlock()
	err := b.runCommit(job)
	b.wmu.Lock()
	return err
}

// waitInflightLocked returns, with wmu held, once no commit is in
// progress. It releases wmu while it waits, so the caller must check the
// state again afterwards.
func (b *Backend) waitInflightLocked() {
	for b.inflight != nil {
		job := b.inflight
		select {
		case <-job.done:
			if b.inflight == job {
				b.inflight = nil
			}
			continue
		default:
		}
		b.wmu.Unlock()
		<-job.done
		b.wmu.Lock()
	}
}

// commitJob is one commit: a frozen buffer on its way to bbolt.
type commitJob struct {
	buf       *buffer // immutable
	db        *bolt.DB
	committed func() // Options.Freeze's result; may be nil
	done      chan struct{}
	err       error // set before done is closed
}

// freezeLocked hands the pending writes (whole batches: it runs between
// batches) to a new commit and starts a fresh work buffer. There must be
// pending writes and no commit in progress. The caller runs the commit
// (runCommit) without wmu.
func (b *Backend) freezeLocked() *commitJob {
	b.publishLocked()
	b.stopTimerLocked()
	b.batchGen++
	job := &commitJob{db: b.db, done: make(chan struct{})}
	if b.opts.Freeze != nil {
		job.committed = b.opts.Freeze()
	}
	b.vmu.Lock()
	// The published work buffer holds every write of the batches so far
	// (they all ended, so all were published): it becomes the committing
	// buffer, still visible to readers until bbolt holds it.
	job.buf = b.view.Load().work
	b.view.Store(&pubView{committing: job.buf, work: emptyBuffer})
	b.vmu.Unlock()
	b.work = newBuffer()
	b.pending = 0
	b.dirty = false
	b.inflight = job
	return job
}

// runCommit writes job's buffer into a bbolt write transaction and commits
// it. It runs without wmu, on the committing goroutine, and never
// concurrently with another runCommit, Restore or Close (they wait for
// job.done).
func (b *Backend) runCommit(job *commitJob) error {
	defer close(job.done)
	if b.commitHook != nil {
		b.commitHook(job)
	}
	start := b.clock.Now()
	err := b.writeAndCommit(job)
	if err != nil {
		// The committing buffer stays published: readers keep it.
		job.err = b.fail(fmt.Errorf("commit: %w", err))
		return job.err
	}
	took := b.clock.Now().Sub(start)
	b.storeSizes(job.db)
	if job.committed != nil {
		job.committed()
	}
	if b.opts.OnCommit != nil {
		b.opts.OnCommit(took)
	}
	// Only now, with bbolt holding the buffer, may readers stop seeing
	// it: a read transaction that begins from here on includes it.
	b.vmu.Lock()
	b.view.Store(&pubView{work: b.view.Load().work})
	b.vmu.Unlock()
	b.commits.Add(1)
	return nil
}

func (b *Backend) writeAndCommit(job *commitJob) error {
	tx, err := job.db.Begin(true)
	if err != nil {
		return fmt.Errorf("begin write: %w", err)
	}
	for _, name := range slices.Sorted(maps.Keys(job.buf.buckets)) {
		bk := tx.Bucket([]byte(name))
		if bk == nil {
			_ = tx.Rollback()
			return fmt.Errorf("%w: %q", ErrBucketNotFound, name)
		}
		if b.seq[name] {
			// Keys only grow here: fill pages instead of splitting them
			// in half, as etcd does for its revision-keyed bucket.
			bk.FillPercent = seqFillPercent
		}
		job.buf.buckets[name].Ascend(func(e entry) bool {
			if e.deleted {
				err = bk.Delete(e.key)
			} else {
				err = bk.Put(e.key, e.value)
			}
			if err != nil {
				err = fmt.Errorf("writing %q/%x: %w", name, e.key, err)
				return false
			}
			return true
		})
		if err != nil {
			_ = tx.Rollback()
			return err
		}
	}
	return tx.Commit()
}

// dropBatchLocked drops the writes not handed to a commit, as a crash
// would. No commit may be in progress.
func (b *Backend) dropBatchLocked() {
	b.stopTimerLocked()
	b.batchGen++
	b.pending = 0
	b.work = newBuffer()
	b.dirty = false
}

func (b *Backend) stopTimerLocked() {
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
}

// failLocked makes the backend failed with cause (the first failure
// wins), dropping the writes not handed to a commit, and returns the
// sticky error.
func (b *Backend) failLocked(cause error) error {
	err := b.fail(cause)
	b.stopTimerLocked()
	b.batchGen++
	return err
}

// fail records the sticky failure; any goroutine.
func (b *Backend) fail(cause error) error {
	b.emu.Lock()
	defer b.emu.Unlock()
	if b.err == nil {
		b.err = fmt.Errorf("%w: %w", ErrFailed, cause)
		b.log.Error("backend failed", "error", cause)
	}
	return b.err
}
