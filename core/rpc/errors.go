package rpc

import (
	"context"
	"errors"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/edgekv/edgekv/core/mvcc"
	"github.com/edgekv/edgekv/core/server"
)

// errMap pairs edgekv's errors with the gRPC errors etcd returns for them.
var errMap = []struct {
	err  error
	grpc error
}{
	{mvcc.ErrCompacted, rpctypes.ErrGRPCCompacted},
	{mvcc.ErrFutureRev, rpctypes.ErrGRPCFutureRev},
	{mvcc.ErrKeyNotFound, rpctypes.ErrGRPCKeyNotFound},
	{mvcc.ErrDuplicateKey, rpctypes.ErrGRPCDuplicateKey},
	{mvcc.ErrTooManyOps, rpctypes.ErrGRPCTooManyOps},
	{mvcc.ErrEmptyKey, rpctypes.ErrGRPCEmptyKey},
	{mvcc.ErrValueProvided, rpctypes.ErrGRPCValueProvided},
	{mvcc.ErrLeaseProvided, rpctypes.ErrGRPCLeaseProvided},
	{mvcc.ErrInvalidSortOption, rpctypes.ErrGRPCInvalidSortOption},
	{server.ErrLeaseNotFound, rpctypes.ErrGRPCLeaseNotFound},
	{server.ErrLeaseExists, rpctypes.ErrGRPCLeaseExist},
	{server.ErrLeaseTTLTooLarge, rpctypes.ErrGRPCLeaseTTLTooLarge},
	{server.ErrNotLeader, rpctypes.ErrGRPCNotLeader},
	{server.ErrTimeoutWaitAppliedIndex, rpctypes.ErrGRPCTimeoutWaitAppliedIndex},
	{server.ErrRequestTooLarge, rpctypes.ErrGRPCRequestTooLarge},
	{server.ErrNoLeader, rpctypes.ErrGRPCNoLeader},
	{server.ErrNoSpace, rpctypes.ErrGRPCNoSpace},
	{server.ErrMemberExist, rpctypes.ErrGRPCMemberExist},
	{server.ErrPeerURLExist, rpctypes.ErrGRPCPeerURLExist},
	{server.ErrMemberNotFound, rpctypes.ErrGRPCMemberNotFound},
	{server.ErrMemberBadURLs, rpctypes.ErrGRPCMemberBadURLs},
	{server.ErrTimeout, rpctypes.ErrGRPCTimeout},
	{server.ErrStopped, rpctypes.ErrGRPCStopped},
	{context.Canceled, rpctypes.ErrGRPCCanceled},
	{context.DeadlineExceeded, rpctypes.ErrGRPCDeadlineExceeded},
}

// toGRPCError converts an error from the Backend into the error etcd
// would return.
func toGRPCError(err error) error {
	if err == nil {
		return nil
	}
	for _, e := range errMap {
		if errors.Is(err, e.err) {
			return e.grpc
		}
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codes.Unknown, err.Error())
}
