package backend

import (
	"errors"
	"fmt"
	"io"
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

// Snapshot commits the pending writes (ForceCommit) and takes a snapshot
// of the result. It fails with the sticky failure (ErrFailed).
func (b *Backend) Snapshot() (*Snapshot, error) {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	if b.closed.Load() {
		return nil, ErrClosed
	}
	if err := b.commitLocked(); err != nil {
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
