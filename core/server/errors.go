package server

import "errors"

// Errors returned by the server. core/rpc maps each to etcd's own error.
var (
	ErrStopped         = errors.New("etcdserver: server stopped")
	ErrTimeout         = errors.New("etcdserver: request timed out")
	ErrNoLeader        = errors.New("etcdserver: no leader")
	ErrRequestTooLarge = errors.New("etcdserver: request is too large")
	ErrLeaseNotFound   = errors.New("etcdserver: requested lease not found")
	ErrNoSpace         = errors.New("etcdserver: mvcc: database space exceeded")

	// ErrDataDirConflict is returned by New when the data directory belongs
	// to another member or cluster.
	ErrDataDirConflict = errors.New("data dir conflict")
)
