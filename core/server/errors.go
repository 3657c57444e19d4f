package server

import (
	"errors"

	"github.com/edgekv/edgekv/core/lease"
)

// Errors returned by the server. core/rpc maps each to etcd's own error.
var (
	ErrStopped         = errors.New("etcdserver: server stopped")
	ErrTimeout         = errors.New("etcdserver: request timed out")
	ErrNoLeader        = errors.New("etcdserver: no leader")
	ErrRequestTooLarge = errors.New("etcdserver: request is too large")
	ErrNotLeader       = errors.New("etcdserver: not leader")
	// ErrTimeoutWaitAppliedIndex: the leader could not apply what it had
	// committed within a second, before a lease renewal or time-to-live.
	ErrTimeoutWaitAppliedIndex = errors.New("etcdserver: request timed out, waiting for the applied index took too long")
	ErrNoSpace                 = errors.New("etcdserver: mvcc: database space exceeded")

	// The lessor's errors, as requests see them.
	ErrLeaseNotFound    = lease.ErrLeaseNotFound
	ErrLeaseExists      = lease.ErrLeaseExists
	ErrLeaseTTLTooLarge = lease.ErrLeaseTTLTooLarge

	// ErrDataDirConflict is returned by New when the data directory belongs
	// to another member or cluster.
	ErrDataDirConflict = errors.New("data dir conflict")
)
