package backend

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"sync"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Snapshot is a consistent copy of the whole database as of a commit, for
// sending to a follower. It holds a bbolt read transaction until Close, so
// it must be closed (see the package documentation on long reads). Read it
// with WriteTo (io.Copy does), or with Read, which streams through a pipe;
// not both, and from one goroutine.
type Snapshot struct {
	tx   *bolt.Tx
	once sync.Once

	pr   *io.PipeReader // set by the first Read
	done chan struct{}  // closed when the Read goroutine let go of tx
}

// Snapshot commits the pending writes (ForceCommit: everything published
// so far, waiting for a commit in progress) and takes a snapshot of the
// result. It fails with the sticky failure (ErrFailed).
func (b *Backend) Snapshot() (*Snapshot, error) {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	if b.closed.Load() {
		return nil, ErrClosed
	}
	if err := b.commitWaitLocked(); err != nil {
		return nil, err
	}
	b.dbMu.RLock()
	defer b.dbMu.RUnlock()
	tx, err := b.db.Begin(false)
	if err != nil {
		return nil, fmt.Errorf("backend: snapshot: %w", err)
	}
	return &Snapshot{tx: tx}, nil
}

// Size is the number of bytes the snapshot writes.
func (s *Snapshot) Size() int64 { return s.tx.Size() }

// Get reads key from bucket as of the snapshot, e.g. the consistent index
// it covers; nil if absent. The value is valid until Close.
func (s *Snapshot) Get(bucket, key []byte) []byte {
	if bk := s.tx.Bucket(bucket); bk != nil {
		return bk.Get(key)
	}
	return nil
}

// WriteTo writes the database file to w: exactly Size bytes on success.
func (s *Snapshot) WriteTo(w io.Writer) (int64, error) {
	if s.pr != nil {
		return io.Copy(w, onlyReader{s.pr})
	}
	n, err := s.tx.WriteTo(w)
	if err != nil {
		return n, fmt.Errorf("backend: writing snapshot: %w", err)
	}
	return n, nil
}

// onlyReader hides the WriterTo of a reader from io.Copy.
type onlyReader struct{ io.Reader }

// Read reads the database file, streaming it from a goroutine.
func (s *Snapshot) Read(p []byte) (int, error) {
	if s.pr == nil {
		pr, pw := io.Pipe()
		s.pr, s.done = pr, make(chan struct{})
		go func() {
			defer close(s.done)
			_, err := s.tx.WriteTo(pw)
			pw.CloseWithError(err) // nil: io.EOF for the reader
		}()
	}
	return s.pr.Read(p)
}

// Close releases the read transaction. It is safe to call more than once.
func (s *Snapshot) Close() error {
	var err error
	s.once.Do(func() {
		if s.pr != nil {
			// The writing goroutine's next write fails; wait for it to
			// let go of the transaction.
			s.pr.CloseWithError(errSnapshotClosed)
			<-s.done
		}
		err = s.rollback()
	})
	return err
}

var errSnapshotClosed = errors.New("backend: snapshot closed")

func (s *Snapshot) rollback() error {
	if err := s.tx.Rollback(); err != nil && !errors.Is(err, berrors.ErrTxClosed) {
		return err
	}
	return nil
}

// Range iterates the keys of bucket in [from, to) as of the snapshot (nil
// from: from the first key; nil to: to the last). Keys and values are
// valid until Close.
func (s *Snapshot) Range(bucket, from, to []byte) iter.Seq2[[]byte, []byte] {
	return overlay(bucket, s.tx.Bucket(bucket), from, to)
}

// copyBatch bounds the writes of one transaction of CopyTo.
const copyBatch = 16 << 20

// CopyTo writes the snapshot's database, with every value passed through
// transform (which returns the value to store, or an error that stops the
// copy), into a new bbolt file at path, which must not exist or be empty
// (a file just made with os.CreateTemp). The copy is
// compact (as after a defragmentation) and is not synced: it is meant for
// a temporary file that is streamed and then removed. On error the file is
// removed.
func (s *Snapshot) CopyTo(path string, transform func(bucket, key, value []byte) ([]byte, error)) (err error) {
	dst, err := bolt.Open(path, 0o600, &bolt.Options{NoSync: true, FreelistType: bolt.FreelistMapType, NoFreelistSync: true})
	if err != nil {
		return fmt.Errorf("backend: creating %s: %w", path, err)
	}
	defer func() {
		if cerr := dst.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("backend: closing %s: %w", path, cerr)
		}
		if err != nil {
			os.Remove(path)
		}
	}()
	tx, err := dst.Begin(true)
	if err != nil {
		return fmt.Errorf("backend: copying: %w", err)
	}
	defer func() {
		if tx != nil {
			_ = tx.Rollback()
		}
	}()
	size := 0
	err = s.tx.ForEach(func(name []byte, src *bolt.Bucket) error {
		name = bytes.Clone(name)
		bk, err := tx.CreateBucket(name)
		if err != nil {
			return err
		}
		if err := bk.SetSequence(src.Sequence()); err != nil {
			return err
		}
		return src.ForEach(func(k, v []byte) error {
			if v == nil {
				return fmt.Errorf("nested bucket %q/%x", name, k)
			}
			v, err := transform(name, k, v)
			if err != nil {
				return err
			}
			if size >= copyBatch {
				// A new transaction: bucket handles do not carry over.
				if err := tx.Commit(); err != nil {
					return err
				}
				if tx, err = dst.Begin(true); err != nil {
					return err
				}
				size = 0
			}
			b := tx.Bucket(name)
			b.FillPercent = seqFillPercent // keys arrive in order
			size += len(k) + len(v)
			return b.Put(bytes.Clone(k), bytes.Clone(v))
		})
	})
	if err != nil {
		return fmt.Errorf("backend: copying to %s: %w", path, err)
	}
	err = tx.Commit()
	tx = nil
	if err != nil {
		return fmt.Errorf("backend: copying to %s: %w", path, err)
	}
	return nil
}
