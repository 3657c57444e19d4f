package rpc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/etcdserverpb/gw"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/encoding/protojson"
)

// grpcOverheadBytes is the allowance etcd adds to --max-request-bytes for
// gRPC framing, so that an oversized request reaches the server and gets
// etcd's own "request is too large" rather than a transport error.
const grpcOverheadBytes = 512 * 1024

// streamWorkers is how many goroutines gRPC keeps to run requests on; a
// request that finds none free gets a goroutine of its own, as without the
// option. A new goroutine's stack starts at 2 KiB and grows twice while
// gRPC decodes the request, copying itself each time: 4.8% of the members'
// CPU with 256 clients on the emulated SD card, 1.6% with 64 workers and
// 0.9% with 256, which cost 0.13 and 0.7 MiB of idle RSS.
const streamWorkers = 64

// windowBytes is the flow-control window gRPC gives each client stream and
// connection: how much request data a client may send ahead of what the
// server has read. A fixed window turns off grpc-go's bandwidth-delay
// estimator, which otherwise answers a request arriving on an idle
// connection with a window update and a ping, and reads the client's ping
// ack: two more frames each way, a write and a read on each side, for
// every request of a client that waits for its answers. The estimator
// grows the windows for long fat links (up to 16 MiB); 1 MiB is more than
// a loopback or LAN round trip needs at any rate a gateway serves, lets a
// request of the default --max-request-bytes (1.5 MiB) arrive in two
// windows, and bounds what one connection may have buffered here.
const windowBytes = 1 << 20

// Config configures the client-facing server.
type Config struct {
	Backend         Backend
	MaxRequestBytes int
	Version         string       // reported by /version
	Metrics         http.Handler // serves /metrics, if set
	Pprof           bool         // serves /debug/pprof/ (etcd's --enable-pprof)
	Logger          *slog.Logger
}

// Server serves the client API on any number of listeners.
type Server struct {
	cfg  Config
	grpc *grpc.Server
	http *http.Server
	lb   *loopback
	ws   *watchServer

	mu        sync.Mutex
	listeners []net.Listener
}

// New builds the gRPC services and the HTTP handler.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	gs := grpc.NewServer(
		grpc.MaxRecvMsgSize(cfg.MaxRequestBytes+grpcOverheadBytes),
		grpc.MaxSendMsgSize(math.MaxInt32),
		grpc.MaxConcurrentStreams(math.MaxUint32),
		grpc.NumStreamWorkers(streamWorkers),
		grpc.StaticStreamWindowSize(windowBytes),
		grpc.StaticConnWindowSize(windowBytes),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: false}),
	)
	kv := &kvServer{b: cfg.Backend}
	ms := &maintenanceServer{b: cfg.Backend}
	cs := &clusterServer{b: cfg.Backend}
	ls := &leaseServer{b: cfg.Backend, lg: cfg.Logger}
	pb.RegisterKVServer(gs, kv)
	pb.RegisterMaintenanceServer(gs, ms)
	pb.RegisterClusterServer(gs, cs)
	pb.RegisterLeaseServer(gs, ls)
	ws := newWatchServer(cfg.Backend, cfg.Logger, cfg.MaxRequestBytes+grpcOverheadBytes)
	pb.RegisterWatchServer(gs, ws)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)

	gwmux := runtime.NewServeMux(runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.HTTPBodyMarshaler{
		Marshaler: &runtime.JSONPb{
			MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true},
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: true},
		},
	}))
	ctx := context.Background()
	if err := gw.RegisterKVHandlerServer(ctx, gwmux, kv); err != nil {
		return nil, err
	}
	if err := gw.RegisterMaintenanceHandlerServer(ctx, gwmux, ms); err != nil {
		return nil, err
	}
	if err := gw.RegisterClusterHandlerServer(ctx, gwmux, cs); err != nil {
		return nil, err
	}
	lb, err := newLoopback(gs)
	if err != nil {
		return nil, err
	}
	if err := gw.RegisterLeaseHandler(ctx, gwmux, lb.conn); err != nil {
		lb.close()
		return nil, err
	}
	if err := gw.RegisterWatchHandler(ctx, gwmux, lb.conn); err != nil {
		lb.close()
		return nil, err
	}
	s := &Server{cfg: cfg, grpc: gs, lb: lb, ws: ws}
	mux := http.NewServeMux()
	mux.Handle("/v3/", http.MaxBytesHandler(gwmux, int64(cfg.MaxRequestBytes+grpcOverheadBytes)))
	mux.HandleFunc("/health", s.serveHealth)
	mux.HandleFunc("/version", s.serveVersion)
	if cfg.Metrics != nil {
		mux.Handle("/metrics", cfg.Metrics)
	}
	if cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return s, nil
}

// Serve accepts connections on l until Stop. gRPC and HTTP/1 share it.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	s.listeners = append(s.listeners, l)
	s.mu.Unlock()
	grpcL := newChanListener(l.Addr())
	httpL := newChanListener(l.Addr())
	go s.grpc.Serve(grpcL)
	go s.http.Serve(httpL)
	defer grpcL.Close()
	defer httpL.Close()
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return err
		}
		go route(c, grpcL, httpL)
	}
}

// http2Preface is what every HTTP/2 client with prior knowledge (every
// gRPC client over cleartext) sends first.
var http2Preface = []byte("PRI * HTTP/2.0")

// route peeks at a new connection and hands it to gRPC or HTTP/1.
func route(c net.Conn, grpcL, httpL *chanListener) {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReaderSize(c, 64)
	head, err := br.Peek(len(http2Preface))
	c.SetReadDeadline(time.Time{})
	pc := &peekedConn{Conn: c, r: br}
	if err != nil && len(head) == 0 {
		c.Close()
		return
	}
	if bytes.Equal(head, http2Preface) {
		grpcL.deliver(pc)
	} else {
		httpL.deliver(pc)
	}
}

type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (p *peekedConn) Read(b []byte) (int, error) { return p.r.Read(b) }

// chanListener is a net.Listener fed by route.
type chanListener struct {
	addr   net.Addr
	c      chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, c: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *chanListener) deliver(c net.Conn) {
	select {
	case l.c <- c:
	case <-l.closed:
		c.Close()
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.c:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// Stop closes the listeners and stops serving.
func (s *Server) Stop() {
	s.mu.Lock()
	for _, l := range s.listeners {
		l.Close()
	}
	s.mu.Unlock()
	s.grpc.Stop()
	s.lb.close()
	s.ws.stop()
	s.http.Close()
}

// serveHealth answers etcd's /health: healthy when a linearizable read
// succeeds, which needs a leader and a quorum.
func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	type health struct {
		Health string `json:"health"`
		Reason string `json:"reason"`
	}
	h := health{Health: "true"}
	_, err := s.cfg.Backend.Range(ctx, &pb.RangeRequest{Key: []byte("health"), Serializable: r.URL.Query().Get("serializable") == "true"})
	if err != nil {
		h = health{Health: "false", Reason: "RANGE ERROR:" + err.Error()}
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	json.NewEncoder(w).Encode(h)
}

func (s *Server) serveVersion(w http.ResponseWriter, _ *http.Request) {
	json.NewEncoder(w).Encode(map[string]string{"etcdserver": s.cfg.Version, "etcdcluster": s.cfg.Version})
}
