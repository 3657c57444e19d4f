package backend

import "errors"

var (
	// ErrClosed: the backend was closed.
	ErrClosed = errors.New("backend: closed")
	// ErrFailed: an earlier commit or batch failed; nothing more is
	// written. It wraps the first failure. The caller must stop: the
	// uncommitted writes are lost and come back only by replaying the log
	// after a restart.
	ErrFailed = errors.New("backend: failed")
	// ErrBucketNotFound: a write to a bucket that Options.Buckets did not
	// create.
	ErrBucketNotFound = errors.New("backend: bucket not found")
	// ErrBatchEnded: a BatchTx used after End or Abort.
	ErrBatchEnded = errors.New("backend: batch transaction already ended")
)
