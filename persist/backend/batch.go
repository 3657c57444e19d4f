package backend

import (
	"fmt"
	"iter"
)

// BatchTx is the writer's handle on the batch, from BeginBatch to End or
// Abort. Its reads (Get, Range) see everything written so far, committed or
// not. It is not safe for concurrent use.
type BatchTx struct {
	b     *Backend
	ended bool
	err   error // a failed Put or Delete: End aborts
}

// BeginBatch locks the batch for the writer, beginning a bbolt write
// transaction if none is open. It fails with the sticky failure (ErrFailed)
// or ErrClosed. Every BeginBatch must be followed by End or Abort.
func (b *Backend) BeginBatch() (*BatchTx, error) {
	b.wmu.Lock()
	if err := b.usableLocked(); err != nil {
		b.wmu.Unlock()
		return nil, err
	}
	if b.tx == nil {
		tx, err := b.db.Begin(true)
		if err != nil {
			err = b.failLocked(fmt.Errorf("begin write: %w", err))
			b.wmu.Unlock()
			return nil, err
		}
		b.tx = tx
	}
	return &BatchTx{b: b}, nil
}

func (b *Backend) usableLocked() error {
	if b.closed.Load() {
		return ErrClosed
	}
	return b.err
}

// Get returns the value of key in bucket, nil if absent; valid until the
// batch commits.
func (t *BatchTx) Get(bucket, key []byte) []byte {
	if t.ended {
		return nil
	}
	if bk := t.b.tx.Bucket(bucket); bk != nil {
		return bk.Get(key)
	}
	return nil
}

// Range iterates the keys of bucket in [from, to) in order (nil from: from
// the first key; nil to: to the last). Do not write while iterating.
func (t *BatchTx) Range(bucket, from, to []byte) iter.Seq2[[]byte, []byte] {
	if t.ended {
		return func(func(k, v []byte) bool) {}
	}
	return emptyBuffer.overlay(bucket, t.b.tx.Bucket(bucket), from, to)
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
	bk := b.tx.Bucket(bucket)
	var err error
	switch {
	case bk == nil:
		err = fmt.Errorf("%w: %q", ErrBucketNotFound, bucket)
	case e.deleted:
		err = bk.Delete(e.key)
	default:
		if b.seq[string(bucket)] {
			// Keys only grow here: fill pages instead of splitting them
			// in half, as etcd does for its revision-keyed bucket.
			bk.FillPercent = seqFillPercent
		}
		err = bk.Put(e.key, e.value)
	}
	if err != nil {
		t.err = fmt.Errorf("backend: writing %q/%x: %w", bucket, e.key, err)
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
	b.buf.Store(b.work.clone())
	b.dirty = false
}

// End publishes the batch's writes, commits if BatchLimit writes are
// pending, and unlocks the batch. Its error is a commit failure or the
// batch's own failure, after which the backend is failed.
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
		return b.commitLocked()
	}
	return nil
}

// Abort ends the batch after an error in the writer: the bbolt transaction
// is rolled back, losing every write since the last commit, and the
// backend is failed with cause, so that the caller stops. Readers keep
// seeing what was published.
func (t *BatchTx) Abort(cause error) error {
	if t.ended {
		return ErrBatchEnded
	}
	t.ended = true
	b := t.b
	defer b.wmu.Unlock()
	return b.failLocked(fmt.Errorf("batch aborted: %w", cause))
}

// ForceCommit commits the pending writes now, if there are any. It may be
// called from any goroutine but waits for a batch in progress.
func (b *Backend) ForceCommit() error {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	if b.closed.Load() {
		return ErrClosed
	}
	return b.commitLocked()
}

func (b *Backend) timerCommit(gen uint64) {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	if b.closed.Load() || gen != b.batchGen || b.err != nil {
		return
	}
	b.timer = nil // it fired
	if err := b.commitLocked(); err != nil {
		b.log.Error("backend commit failed; every later write will fail", "error", err)
	}
}

// commitLocked commits the batch if it has writes. The published buffer
// stays in place during the commit, so readers beginning meanwhile (on the
// old or the new base) still see every write; it is emptied afterwards.
func (b *Backend) commitLocked() error {
	if b.err != nil {
		return b.err
	}
	if b.pending == 0 {
		return nil
	}
	b.publishLocked()
	b.stopTimerLocked()
	start := b.clock.Now()
	err := b.tx.Commit()
	b.tx = nil
	b.batchGen++
	if err != nil {
		return b.failLocked(fmt.Errorf("commit: %w", err))
	}
	took := b.clock.Now().Sub(start)
	b.pending = 0
	b.work = newBuffer()
	b.buf.Store(emptyBuffer)
	b.commits.Add(1)
	if b.opts.OnCommit != nil {
		b.opts.OnCommit(took)
	}
	return nil
}

// dropBatchLocked rolls the batch back, as a crash would.
func (b *Backend) dropBatchLocked() {
	b.stopTimerLocked()
	if b.tx != nil {
		_ = b.tx.Rollback()
		b.tx = nil
	}
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
// wins), rolling back the batch, and returns the sticky error.
func (b *Backend) failLocked(cause error) error {
	if b.err == nil {
		b.err = fmt.Errorf("%w: %w", ErrFailed, cause)
		b.log.Error("backend failed", "error", cause)
	}
	b.stopTimerLocked()
	if b.tx != nil {
		_ = b.tx.Rollback()
		b.tx = nil
	}
	return b.err
}
