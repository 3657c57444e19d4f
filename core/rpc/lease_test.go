package rpc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/edgekv/edgekv/core/lease"
	"github.com/edgekv/edgekv/core/server"
)

// The plain fake has no leases: every lease call fails with its error.
func (f *fakeBackend) LeaseGrant(context.Context, *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	return nil, f.leaseErr()
}
func (f *fakeBackend) LeaseRevoke(context.Context, *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	return nil, f.leaseErr()
}
func (f *fakeBackend) LeaseKeepAlive(context.Context, int64) (*pb.LeaseKeepAliveResponse, error) {
	return nil, f.leaseErr()
}
func (f *fakeBackend) LeaseTimeToLive(context.Context, *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	return nil, f.leaseErr()
}
func (f *fakeBackend) LeaseLeases(context.Context) (*pb.LeaseLeasesResponse, error) {
	return nil, f.leaseErr()
}

func (f *fakeBackend) leaseErr() error {
	if f.err != nil {
		return f.err
	}
	return server.ErrNoLeader
}

// leaseFake is a lease table with the server's answers, enough to test
// translation.
type leaseFake struct {
	*fakeBackend
	mu     sync.Mutex
	nextID int64
	leases map[int64]*pb.LeaseTimeToLiveResponse
	kaErr  error // fails keep-alives
}

func newLeaseFake() *leaseFake {
	return &leaseFake{fakeBackend: &fakeBackend{kvs: map[string]string{}}, nextID: 100, leases: map[int64]*pb.LeaseTimeToLiveResponse{}}
}

func hdr() *pb.ResponseHeader {
	return &pb.ResponseHeader{ClusterId: 1, MemberId: 2, Revision: 3, RaftTerm: 4}
}

func (f *leaseFake) LeaseGrant(_ context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.TTL > lease.MaxLeaseTTL {
		return nil, server.ErrLeaseTTLTooLarge
	}
	id := r.ID
	if id == 0 {
		f.nextID++
		id = f.nextID
	}
	if _, ok := f.leases[id]; ok {
		return nil, server.ErrLeaseExists
	}
	f.leases[id] = &pb.LeaseTimeToLiveResponse{ID: id, TTL: r.TTL, GrantedTTL: r.TTL, Keys: [][]byte{[]byte("k")}}
	return &pb.LeaseGrantResponse{Header: hdr(), ID: id, TTL: r.TTL}, nil
}

func (f *leaseFake) LeaseRevoke(_ context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.leases[r.ID]; !ok {
		return nil, server.ErrLeaseNotFound
	}
	delete(f.leases, r.ID)
	return &pb.LeaseRevokeResponse{Header: hdr()}, nil
}

func (f *leaseFake) LeaseKeepAlive(_ context.Context, id int64) (*pb.LeaseKeepAliveResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.kaErr != nil {
		return nil, f.kaErr
	}
	resp := &pb.LeaseKeepAliveResponse{Header: hdr(), ID: id}
	if l, ok := f.leases[id]; ok {
		resp.TTL = l.GrantedTTL
	}
	return resp, nil
}

func (f *leaseFake) LeaseTimeToLive(_ context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.leases[r.ID]
	if !ok {
		return &pb.LeaseTimeToLiveResponse{Header: hdr(), ID: r.ID, TTL: -1}, nil
	}
	resp := &pb.LeaseTimeToLiveResponse{Header: hdr(), ID: l.ID, TTL: l.TTL, GrantedTTL: l.GrantedTTL}
	if r.Keys {
		resp.Keys = l.Keys
	}
	return resp, nil
}

func (f *leaseFake) LeaseLeases(context.Context) (*pb.LeaseLeasesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &pb.LeaseLeasesResponse{Header: hdr()}
	for id := range f.leases {
		resp.Leases = append(resp.Leases, &pb.LeaseStatus{ID: id})
	}
	sort.Slice(resp.Leases, func(i, j int) bool { return resp.Leases[i].ID < resp.Leases[j].ID })
	return resp, nil
}

func dialLease(t *testing.T, addr string) pb.LeaseClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewLeaseClient(conn)
}

func ctx10s(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestLease_GRPCServiceAnswersAsEtcd(t *testing.T) {
	f := newLeaseFake()
	c := dialLease(t, startServer(t, f))
	ctx := ctx10s(t)

	g, err := c.LeaseGrant(ctx, &pb.LeaseGrantRequest{TTL: 60})
	if err != nil || g.ID != 101 || g.TTL != 60 {
		t.Fatalf("grant: %v %v", g, err)
	}
	if _, err := c.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: 101, TTL: 5}); rpctypes.Error(err) != rpctypes.ErrLeaseExist {
		t.Fatalf("grant of an existing ID: %v", err)
	}
	if _, err := c.LeaseGrant(ctx, &pb.LeaseGrantRequest{TTL: lease.MaxLeaseTTL + 1}); rpctypes.Error(err) != rpctypes.ErrLeaseTTLTooLarge {
		t.Fatalf("grant of a too large TTL: %v", err)
	}

	// One stream, several renewals, answered in order; a lease that does
	// not exist gets TTL 0.
	ka, err := c.LeaseKeepAlive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []int64{101, 999, 101} {
		if err := ka.Send(&pb.LeaseKeepAliveRequest{ID: id}); err != nil {
			t.Fatal(err)
		}
		resp, err := ka.Recv()
		want := int64(60)
		if id == 999 {
			want = 0
		}
		if err != nil || resp.ID != id || resp.TTL != want || resp.Header.MemberId != 2 {
			t.Fatalf("keep-alive of %d: %v %v, want TTL %d", id, resp, err, want)
		}
	}
	ka.CloseSend()
	if _, err := ka.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("stream after CloseSend: %v", err)
	}

	ttl, err := c.LeaseTimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: 101, Keys: true})
	if err != nil || ttl.GrantedTTL != 60 || len(ttl.Keys) != 1 {
		t.Fatalf("time to live: %v %v", ttl, err)
	}
	if ttl, err := c.LeaseTimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: 999}); err != nil || ttl.TTL != -1 {
		t.Fatalf("time to live of a missing lease: %v %v", ttl, err)
	}
	ls, err := c.LeaseLeases(ctx, &pb.LeaseLeasesRequest{})
	if err != nil || len(ls.Leases) != 1 || ls.Leases[0].ID != 101 {
		t.Fatalf("leases: %v %v", ls, err)
	}
	if _, err := c.LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: 101}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: 101}); rpctypes.Error(err) != rpctypes.ErrLeaseNotFound {
		t.Fatalf("second revoke: %v", err)
	}
}

func TestLease_AFailedRenewalEndsTheStreamWithEtcdsError(t *testing.T) {
	f := newLeaseFake()
	f.kaErr = server.ErrNoLeader
	c := dialLease(t, startServer(t, f))
	ka, err := c.LeaseKeepAlive(ctx10s(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := ka.Send(&pb.LeaseKeepAliveRequest{ID: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := ka.Recv(); rpctypes.Error(err) != rpctypes.ErrNoLeader {
		t.Fatalf("got %v, want etcd's no leader", err)
	}
}

// postJSON posts body to the gateway and decodes the answer into out.
func postJSON(t *testing.T, addr, path, body string, out any) {
	t.Helper()
	resp, err := http.Post("http://"+addr+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%s: %d %s", path, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("%s: %s: %v", path, b, err)
	}
}

func TestLease_GatewayServesEveryLeasePathAndEtcdsAliases(t *testing.T) {
	f := newLeaseFake()
	addr := startServer(t, f)

	// int64 fields are JSON strings, as in etcd's gateway.
	var g struct {
		ID, TTL string
		Header  struct{ MemberID string } `json:"header"`
	}
	postJSON(t, addr, "/v3/lease/grant", `{"TTL": 30}`, &g)
	if g.ID != "101" || g.TTL != "30" {
		t.Fatalf("grant: %+v", g)
	}
	postJSON(t, addr, "/v3/lease/grant", `{"TTL": 40, "ID": 7}`, &g)

	for _, path := range []string{"/v3/lease/timetolive", "/v3/kv/lease/timetolive"} {
		var ttl struct {
			ID, TTL, GrantedTTL string
			Keys                []string `json:"keys"`
		}
		postJSON(t, addr, path, `{"ID": 101, "keys": true}`, &ttl)
		if ttl.GrantedTTL != "30" || len(ttl.Keys) != 1 || ttl.Keys[0] != "aw==" {
			t.Fatalf("%s: %+v", path, ttl)
		}
	}
	for _, path := range []string{"/v3/lease/leases", "/v3/kv/lease/leases"} {
		var ls struct {
			Leases []struct{ ID string } `json:"leases"`
		}
		postJSON(t, addr, path, `{}`, &ls)
		if len(ls.Leases) != 2 || ls.Leases[0].ID != "7" || ls.Leases[1].ID != "101" {
			t.Fatalf("%s: %+v", path, ls)
		}
	}

	// Keep-alive streams: each JSON object in the body is one request, each
	// answer one {"result": ...} line.
	resp, err := http.Post("http://"+addr+"/v3/lease/keepalive", "application/json",
		bytes.NewBufferString(`{"ID": 101}{"ID": 7}{"ID": 55}`))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(resp.Body)
	var ttls []string
	for sc.Scan() {
		var line struct {
			Result struct{ ID, TTL string } `json:"result"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("keep-alive line %q: %v", sc.Text(), err)
		}
		ttls = append(ttls, line.Result.ID+":"+line.Result.TTL)
	}
	resp.Body.Close()
	if strings.Join(ttls, " ") != "101:30 7:40 55:" {
		t.Fatalf("keep-alive answers %q", ttls)
	}

	var rv struct {
		Header struct{ Revision string } `json:"header"`
	}
	postJSON(t, addr, "/v3/lease/revoke", `{"ID": 101}`, &rv)
	postJSON(t, addr, "/v3/kv/lease/revoke", `{"ID": 7}`, &rv)
	if rv.Header.Revision != "3" || len(f.leases) != 0 {
		t.Fatalf("revoke: %+v, leases left %v", rv, f.leases)
	}
}
