package watch

import (
	"errors"

	"github.com/edgekv/edgekv/core/mvcc"
)

// Errors of Stream.Watch and Stream.Cancel. The texts of the first three are
// etcd's: core/rpc sends them to clients as a watch's cancel_reason, as etcd
// does.
var (
	// ErrWatcherDuplicateID: Watch with an ID the stream already uses.
	ErrWatcherDuplicateID = errors.New("mvcc: duplicate watch ID provided on the WatchStream")
	// ErrEmptyWatcherRange: Watch of a range whose end is not after its key.
	ErrEmptyWatcherRange = errors.New("mvcc: watcher range is empty")
	// ErrWatcherNotExist: Cancel of an ID the stream does not have.
	ErrWatcherNotExist = errors.New("mvcc: watcher does not exist")
	// ErrCompacted: Watch with a negative start revision. (A start
	// revision below the compaction revision is not an error of Watch:
	// the watcher is created and then canceled with a Response carrying
	// CompactRevision, as in etcd.) It is the Source's error too.
	ErrCompacted = mvcc.ErrCompacted
	// ErrClosed: Watch on a closed stream or a closed hub.
	ErrClosed = errors.New("watch: stream closed")
)
