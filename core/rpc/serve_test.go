package rpc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/edgekv/edgekv/core/mvcc"
	"github.com/edgekv/edgekv/core/server"
)

// fakeBackend keeps the latest value per key; enough to test translation.
type fakeBackend struct {
	mu  sync.Mutex
	kvs map[string]string
	err error
}

func (f *fakeBackend) Range(_ context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	resp := &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: 1}}
	if v, ok := f.kvs[string(r.Key)]; ok {
		resp.Kvs = []*mvccpb.KeyValue{{Key: r.Key, Value: []byte(v)}}
		resp.Count = 1
	}
	return resp, nil
}

func (f *fakeBackend) Put(_ context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	f.kvs[string(r.Key)] = string(r.Value)
	return &pb.PutResponse{Header: &pb.ResponseHeader{Revision: 2}}, nil
}

func (f *fakeBackend) DeleteRange(context.Context, *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	return nil, f.err
}
func (f *fakeBackend) Txn(context.Context, *pb.TxnRequest) (*pb.TxnResponse, error) {
	return nil, f.err
}
func (f *fakeBackend) Compact(context.Context, *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	return nil, f.err
}
func (f *fakeBackend) Status(context.Context) (*pb.StatusResponse, error) {
	return &pb.StatusResponse{Header: &pb.ResponseHeader{}, Version: "3.7.0"}, nil
}
func (f *fakeBackend) MemberList(context.Context, bool) (*pb.MemberListResponse, error) {
	return &pb.MemberListResponse{Members: []*pb.Member{{ID: 1, Name: "a"}}}, nil
}

func (f *fakeBackend) HashKV(context.Context, int64) (*pb.HashKVResponse, error) {
	return nil, f.err
}
func (f *fakeBackend) MemberAdd(context.Context, []string, bool) (*pb.MemberAddResponse, error) {
	return nil, f.err
}
func (f *fakeBackend) MemberRemove(context.Context, uint64) (*pb.MemberRemoveResponse, error) {
	return nil, f.err
}

func startServer(t *testing.T, b Backend) string {
	t.Helper()
	s, err := New(Config{Backend: b, MaxRequestBytes: 1 << 20, Version: "3.7.0", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	t.Cleanup(s.Stop)
	return l.Addr().String()
}

func TestServe_GRPCAndHTTPShareOnePort(t *testing.T) {
	b := &fakeBackend{kvs: map[string]string{}}
	addr := startServer(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := pb.NewKVClient(conn).Put(ctx, &pb.PutRequest{Key: []byte("foo"), Value: []byte("bar")}); err != nil {
		t.Fatal(err)
	}

	// The JSON gateway reads it back; keys are base64 as in etcd.
	resp, err := http.Post("http://"+addr+"/v3/kv/range", "application/json", bytes.NewBufferString(`{"key":"Zm9v"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var out struct {
		Kvs []struct{ Key, Value []byte } `json:"kvs"`
	}
	if err := json.Unmarshal(body, &out); err != nil || len(out.Kvs) != 1 || string(out.Kvs[0].Value) != "bar" {
		t.Fatalf("gateway range: %s (%v)", body, err)
	}

	hr, err := http.Get("http://" + addr + "/health")
	if err != nil {
		t.Fatal(err)
	}
	hb, _ := io.ReadAll(hr.Body)
	hr.Body.Close()
	if hr.StatusCode != 200 || !bytes.Contains(hb, []byte(`"health":"true"`)) {
		t.Fatalf("/health: %d %s", hr.StatusCode, hb)
	}

	alarms, err := pb.NewMaintenanceClient(conn).Alarm(ctx, &pb.AlarmRequest{Action: pb.AlarmRequest_GET})
	if err != nil || len(alarms.Alarms) != 0 {
		t.Fatalf("alarm list: %v %v", alarms, err)
	}
}

func TestServe_ErrorsAreEtcds(t *testing.T) {
	cases := []struct {
		err  error
		want error
	}{
		{mvcc.ErrCompacted, rpctypes.ErrGRPCCompacted},
		{mvcc.ErrFutureRev, rpctypes.ErrGRPCFutureRev},
		{server.ErrRequestTooLarge, rpctypes.ErrGRPCRequestTooLarge},
		{server.ErrNoLeader, rpctypes.ErrGRPCNoLeader},
		{errors.Join(errors.New("context"), mvcc.ErrDuplicateKey), rpctypes.ErrGRPCDuplicateKey},
	}
	for _, c := range cases {
		t.Run(c.err.Error(), func(t *testing.T) {
			b := &fakeBackend{kvs: map[string]string{}, err: c.err}
			addr := startServer(t, b)
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err = pb.NewKVClient(conn).Put(ctx, &pb.PutRequest{Key: []byte("k")})
			// The client library turns the status back into etcd's error.
			if got := rpctypes.Error(err); got.Error() != rpctypes.Error(c.want).Error() {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
}

func TestServe_OversizedGatewayBodyIsRefused(t *testing.T) {
	addr := startServer(t, &fakeBackend{kvs: map[string]string{}})
	big := bytes.Repeat([]byte("a"), 3<<20)
	resp, err := http.Post("http://"+addr+"/v3/kv/put", "application/json", bytes.NewReader(append(append([]byte(`{"key":"YQ==","value":"`), big...), `"}`...)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == 200 {
		t.Fatal("a body over the limit was accepted")
	}
}

// A client that waits for each answer sees no ping from the server, and
// the server offers it windowBytes to send in: with a fixed window gRPC
// does not probe the connection's bandwidth, which took a window update
// and a ping from the server, and the client's ping ack, for every such
// request.
func TestServe_RequestsCostNoBandwidthPings(t *testing.T) {
	addr := startServer(t, &fakeBackend{kvs: map[string]string{}})
	var (
		mu   sync.Mutex
		read bytes.Buffer // everything the server sent
	)
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		return &recordingConn{Conn: c, mu: &mu, read: &read}, nil
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithContextDialer(dial))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv := pb.NewKVClient(conn)
	for i := range 20 {
		if _, err := kv.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: bytes.Repeat([]byte("v"), 100+i)}); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close()

	mu.Lock()
	defer mu.Unlock()
	fr := http2.NewFramer(nil, &read)
	var pings, window int
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			break // the end of what was recorded
		}
		switch f := f.(type) {
		case *http2.PingFrame:
			if !f.IsAck() {
				pings++
			}
		case *http2.SettingsFrame:
			if v, ok := f.Value(http2.SettingInitialWindowSize); ok {
				window = int(v)
			}
		}
	}
	if pings != 0 {
		t.Errorf("the server sent %d pings during 20 requests", pings)
	}
	if window != windowBytes {
		t.Errorf("the server's initial stream window is %d bytes, want %d", window, windowBytes)
	}
}

// recordingConn keeps a copy of everything read from the connection.
type recordingConn struct {
	net.Conn
	mu   *sync.Mutex
	read *bytes.Buffer
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.read.Write(p[:n])
	c.mu.Unlock()
	return n, err
}
