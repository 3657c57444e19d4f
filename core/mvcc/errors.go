package mvcc

import "errors"

// Errors returned to clients, one per etcd error; core/rpc maps each to its
// rpctypes counterpart. All are per request: the request changed nothing.
var (
	// ErrCompacted: the revision asked for has been compacted
	// (rpctypes.ErrGRPCCompacted), also for a compaction at or below the
	// current compaction revision.
	ErrCompacted = errors.New("mvcc: required revision has been compacted")
	// ErrFutureRev: the revision asked for is newer than the store
	// (rpctypes.ErrGRPCFutureRev).
	ErrFutureRev = errors.New("mvcc: required revision is a future revision")
	// ErrKeyNotFound: a put with ignore_value or ignore_lease on a missing
	// key, or an empty request op in a txn (rpctypes.ErrGRPCKeyNotFound).
	ErrKeyNotFound = errors.New("etcdserver: key not found")
	// ErrDuplicateKey: a txn writes one key more than once
	// (rpctypes.ErrGRPCDuplicateKey).
	ErrDuplicateKey = errors.New("etcdserver: duplicate key given in txn request")
	// ErrTooManyOps: a txn has more operations than allowed
	// (rpctypes.ErrGRPCTooManyOps).
	ErrTooManyOps = errors.New("etcdserver: too many operations in txn request")
	// ErrEmptyKey: a request without a key (rpctypes.ErrGRPCEmptyKey).
	ErrEmptyKey = errors.New("etcdserver: key is not provided")
	// ErrValueProvided: a put with ignore_value and a value
	// (rpctypes.ErrGRPCValueProvided).
	ErrValueProvided = errors.New("etcdserver: value is provided")
	// ErrLeaseProvided: a put with ignore_lease and a lease
	// (rpctypes.ErrGRPCLeaseProvided).
	ErrLeaseProvided = errors.New("etcdserver: lease is provided")
	// ErrInvalidSortOption: an unknown sort order or target
	// (rpctypes.ErrGRPCInvalidSortOption).
	ErrInvalidSortOption = errors.New("etcdserver: invalid sort option")
)
