package bench

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fakeServer is the smallest etcd v3 server the loads need: a map of
// single keys, Txn with Version compares, watches of single keys, leases
// and Status. It is not etcd; it exists so that the loads run against a
// real gRPC server and the real client in go test.
type fakeServer struct {
	pb.UnimplementedKVServer
	pb.UnimplementedWatchServer
	pb.UnimplementedLeaseServer
	pb.UnimplementedMaintenanceServer

	id, leader uint64
	cluster    atomic.Uint64
	// switchClusterAt, when positive, makes write number switchClusterAt
	// change the cluster ID, as if another cluster took the port over.
	switchClusterAt int64

	// fail, when it returns an error, makes a write fail with it.
	fail func(n int64) error
	// hangFrom, when positive, makes write number hangFrom and those after
	// it wait for their context.
	hangFrom int64
	// dropEventsOf, when positive, drops every event for the watch with
	// that id.
	dropEventsOf int64

	writes       atomic.Int64
	keepalives   atomic.Int64
	watchStreams atomic.Int64

	mu        sync.Mutex
	rev       int64
	kvs       map[string]*mvccpb.KeyValue
	leases    map[int64]int64
	nextLease int64
	nextWatch int64
	watches   map[int64]*fakeWatch
}

type fakeWatch struct {
	key []byte
	out chan<- *pb.WatchResponse
	ctx context.Context
}

func newFake() *fakeServer {
	f := &fakeServer{
		id: 1, leader: 1,
		kvs:     map[string]*mvccpb.KeyValue{},
		leases:  map[int64]int64{},
		watches: map[int64]*fakeWatch{},
	}
	f.cluster.Store(7)
	return f
}

// start serves f on a loopback port until the test ends and returns the
// endpoint.
func (f *fakeServer) start(t testing.TB) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	pb.RegisterKVServer(s, f)
	pb.RegisterWatchServer(s, f)
	pb.RegisterLeaseServer(s, f)
	pb.RegisterMaintenanceServer(s, f)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

func (f *fakeServer) header() *pb.ResponseHeader {
	return &pb.ResponseHeader{ClusterId: f.cluster.Load(), MemberId: f.id, Revision: f.rev, RaftTerm: 1}
}

// write admits one write request, or fails it as configured.
func (f *fakeServer) write(ctx context.Context) error {
	n := f.writes.Add(1)
	if n == f.switchClusterAt {
		f.cluster.Store(8)
	}
	if f.hangFrom > 0 && n >= f.hangFrom {
		<-ctx.Done()
		return status.FromContextError(ctx.Err()).Err()
	}
	if f.fail != nil {
		return f.fail(n)
	}
	return nil
}

func (f *fakeServer) version(key string) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if kv := f.kvs[key]; kv != nil {
		return kv.Version
	}
	return 0
}

func (f *fakeServer) keyCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.kvs)
}

func (f *fakeServer) leaseCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.leases)
}

func (f *fakeServer) Status(context.Context, *pb.StatusRequest) (*pb.StatusResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &pb.StatusResponse{Header: f.header(), Leader: f.leader, Version: "3.7.3"}, nil
}

func singleKey(end []byte) error {
	if len(end) > 0 {
		return status.Error(codes.Unimplemented, "fake: ranges of more than one key")
	}
	return nil
}

// Callers hold f.mu.
func (f *fakeServer) rangeLocked(r *pb.RangeRequest) (*pb.RangeResponse, error) {
	if err := singleKey(r.RangeEnd); err != nil {
		return nil, err
	}
	resp := &pb.RangeResponse{Header: f.header()}
	if kv := f.kvs[string(r.Key)]; kv != nil {
		resp.Kvs = []*mvccpb.KeyValue{kv}
		resp.Count = 1
	}
	return resp, nil
}

func (f *fakeServer) putLocked(r *pb.PutRequest) *pb.PutResponse {
	// A fresh message: the old one may still be on its way to a client.
	kv := &mvccpb.KeyValue{Key: r.Key, CreateRevision: f.rev, ModRevision: f.rev, Version: 1, Value: r.Value, Lease: r.Lease}
	if old := f.kvs[string(r.Key)]; old != nil {
		kv.CreateRevision, kv.Version = old.CreateRevision, old.Version+1
	}
	f.kvs[string(r.Key)] = kv
	f.notifyLocked(&mvccpb.Event{Type: mvccpb.PUT, Kv: kv})
	return &pb.PutResponse{Header: f.header()}
}

func (f *fakeServer) deleteLocked(r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	if err := singleKey(r.RangeEnd); err != nil {
		return nil, err
	}
	resp := &pb.DeleteRangeResponse{Header: f.header()}
	if _, ok := f.kvs[string(r.Key)]; ok {
		delete(f.kvs, string(r.Key))
		resp.Deleted = 1
		f.notifyLocked(&mvccpb.Event{Type: mvccpb.DELETE, Kv: &mvccpb.KeyValue{Key: r.Key, ModRevision: f.rev}})
	}
	return resp, nil
}

func (f *fakeServer) notifyLocked(ev *mvccpb.Event) {
	for id, w := range f.watches {
		if string(w.key) != string(ev.Kv.Key) || id == f.dropEventsOf {
			continue
		}
		select {
		case w.out <- &pb.WatchResponse{Header: f.header(), WatchId: id, Events: []*mvccpb.Event{ev}}:
		case <-w.ctx.Done():
		}
	}
}

func (f *fakeServer) Range(_ context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rangeLocked(r)
}

func (f *fakeServer) Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	if err := f.write(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rev++
	return f.putLocked(r), nil
}

func (f *fakeServer) DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	if err := f.write(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rev++
	return f.deleteLocked(r)
}

func (f *fakeServer) Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	if err := f.write(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	ok := true
	for _, c := range r.Compare {
		if c.Target != pb.Compare_VERSION || c.Result != pb.Compare_EQUAL {
			return nil, status.Error(codes.Unimplemented, "fake: only Version = compares")
		}
		if err := singleKey(c.RangeEnd); err != nil {
			return nil, err
		}
		var v int64
		if kv := f.kvs[string(c.Key)]; kv != nil {
			v = kv.Version
		}
		ok = ok && v == c.GetVersion()
	}
	ops := r.Failure
	if ok {
		ops = r.Success
	}
	f.rev++
	resp := &pb.TxnResponse{Succeeded: ok}
	for _, op := range ops {
		switch {
		case op.GetRequestPut() != nil:
			p := f.putLocked(op.GetRequestPut())
			resp.Responses = append(resp.Responses, &pb.ResponseOp{Response: &pb.ResponseOp_ResponsePut{ResponsePut: p}})
		case op.GetRequestRange() != nil:
			g, err := f.rangeLocked(op.GetRequestRange())
			if err != nil {
				return nil, err
			}
			resp.Responses = append(resp.Responses, &pb.ResponseOp{Response: &pb.ResponseOp_ResponseRange{ResponseRange: g}})
		case op.GetRequestDeleteRange() != nil:
			d, err := f.deleteLocked(op.GetRequestDeleteRange())
			if err != nil {
				return nil, err
			}
			resp.Responses = append(resp.Responses, &pb.ResponseOp{Response: &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: d}})
		default:
			return nil, status.Error(codes.Unimplemented, "fake: nested txn")
		}
	}
	resp.Header = f.header()
	return resp, nil
}

func (f *fakeServer) Watch(stream pb.Watch_WatchServer) error {
	f.watchStreams.Add(1)
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	out := make(chan *pb.WatchResponse, 1024)
	var mine []int64
	defer func() {
		f.mu.Lock()
		for _, id := range mine {
			delete(f.watches, id)
		}
		f.mu.Unlock()
	}()
	go func() {
		defer cancel()
		for {
			req, err := stream.Recv()
			if err != nil {
				return
			}
			f.mu.Lock()
			switch {
			case req.GetCreateRequest() != nil:
				cr := req.GetCreateRequest()
				if err := singleKey(cr.RangeEnd); err != nil {
					f.mu.Unlock()
					return
				}
				f.nextWatch++
				id := f.nextWatch
				f.watches[id] = &fakeWatch{key: cr.Key, out: out, ctx: ctx}
				mine = append(mine, id)
				out <- &pb.WatchResponse{Header: f.header(), WatchId: id, Created: true}
			case req.GetCancelRequest() != nil:
				id := req.GetCancelRequest().WatchId
				delete(f.watches, id)
				out <- &pb.WatchResponse{Header: f.header(), WatchId: id, Canceled: true}
			}
			f.mu.Unlock()
		}
	}()
	for {
		select {
		case r := <-out:
			if err := stream.Send(r); err != nil {
				return err
			}
		case <-ctx.Done():
			return nil
		}
	}
}

func (f *fakeServer) LeaseGrant(_ context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextLease++
	f.leases[f.nextLease] = r.TTL
	return &pb.LeaseGrantResponse{Header: f.header(), ID: f.nextLease, TTL: r.TTL}, nil
}

func (f *fakeServer) LeaseRevoke(_ context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.leases[r.ID]; !ok {
		return nil, status.Error(codes.NotFound, "etcdserver: requested lease not found")
	}
	delete(f.leases, r.ID)
	return &pb.LeaseRevokeResponse{Header: f.header()}, nil
}

func (f *fakeServer) LeaseKeepAlive(stream pb.Lease_LeaseKeepAliveServer) error {
	for {
		req, err := stream.Recv()
		if err != nil {
			return nil
		}
		f.keepalives.Add(1)
		f.mu.Lock()
		ttl := f.leases[req.ID]
		resp := &pb.LeaseKeepAliveResponse{Header: f.header(), ID: req.ID, TTL: ttl}
		f.mu.Unlock()
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}
