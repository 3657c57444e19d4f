package rpc

import (
	"context"
	"math"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
)

// loopback is an in-memory gRPC connection to this server's own services.
// The JSON gateway calls the streaming methods (/v3/lease/keepalive)
// through it, as etcd's gateway calls its own gRPC endpoint: the
// in-process registration (Register*HandlerServer) cannot stream.
type loopback struct {
	l    *bufconn.Listener
	conn *grpc.ClientConn
}

func newLoopback(gs *grpc.Server) (*loopback, error) {
	l := bufconn.Listen(1 << 20)
	conn, err := grpc.NewClient("passthrough:///edgekv-loopback",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return l.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32)),
	)
	if err != nil {
		l.Close()
		return nil, err
	}
	go gs.Serve(l)
	return &loopback{l: l, conn: conn}, nil
}

// close closes the connection; the gRPC server's Stop closes the listener.
func (lb *loopback) close() { lb.conn.Close() }
