package transport

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/edgekv/edgekv/core/raftnode"
)

// DefaultMaxFrameBytes is the frame size limit when Config.MaxFrameBytes is 0.
const DefaultMaxFrameBytes = 32 << 20

// DefaultMaxSnapshotBytes is the snapshot size limit when
// Config.MaxSnapshotBytes is 0. (bbolt's own cap is 2 GiB on 32-bit ARM.)
const DefaultMaxSnapshotBytes = 8 << 30

// Timing and sizing of the peer wire.
const (
	// handshakeTimeout bounds dialing plus the hello exchange.
	handshakeTimeout = 5 * time.Second
	// queueLen is the number of messages queued per peer before Send drops.
	queueLen = 4096
	// backoffMin and backoffMax bound the delay between dial attempts.
	backoffMin = 50 * time.Millisecond
	backoffMax = 2 * time.Second

	keepAlivePeriod      = time.Second
	maxIdleTimeout       = 6 * time.Second
	handshakeIdleTimeout = 3 * time.Second
)

// Errors.
var (
	// ErrFrameTooLarge: a frame's length prefix exceeds the limit.
	ErrFrameTooLarge = errors.New("transport: frame too large")
	// ErrMalformedFrame: a frame's bytes are not a valid frame.
	ErrMalformedFrame = errors.New("transport: malformed frame")
	// ErrBadPeerURL: HostPort was given a URL it cannot use.
	ErrBadPeerURL = errors.New("transport: bad peer URL")
	// ErrInvalidConfig: New was given an unusable Config, or
	// DiscoverClusterID unusable arguments.
	ErrInvalidConfig = errors.New("transport: invalid config")

	// ErrSnapshotCorrupt: the db of an incoming snapshot failed a chunk or
	// body CRC, or its stream ended or broke before the end marker. The
	// reader handed to SnapshotReceiver.ReceiveSnapshot returns it.
	ErrSnapshotCorrupt = errors.New("transport: snapshot stream corrupt")
	// ErrSnapshotTooLarge: an incoming snapshot's size exceeds
	// Config.MaxSnapshotBytes; it is refused before any of the db is read.
	ErrSnapshotTooLarge = errors.New("transport: snapshot too large")
)

// Config configures a Transport.
type Config struct {
	ID         uint64 // this member's Raft ID
	ClusterID  uint64
	ListenAddr string // "host:port" (UDP)
	// Token is --initial-cluster-token; peers must prove they know it.
	Token string
	// MaxFrameBytes is the largest frame accepted, and the largest frame
	// written; 0 means DefaultMaxFrameBytes.
	MaxFrameBytes int
	// Logger may be nil: slog.Default().
	Logger *slog.Logger
	// Raft is where inbound messages and delivery reports go.
	Raft raftnode.Raft
	// Snapshots stores the db of incoming snapshots. If nil, snapshot
	// streams are refused and an outgoing MsgSnap passed to Send travels
	// as an ordinary message; if set, Send drops every MsgSnap (the caller
	// uses SendSnapshot).
	Snapshots SnapshotReceiver
	// MaxSnapshotBytes is the largest db accepted from a peer; 0 means
	// DefaultMaxSnapshotBytes.
	MaxSnapshotBytes int64
	// Metrics, if set, is where the transport registers its counters
	// (metrics.go).
	Metrics prometheus.Registerer
}

// Transport is the QUIC peer transport. See the package documentation.
type Transport struct {
	cfg      Config
	log      *slog.Logger
	maxFrame int
	maxSnap  int64
	auth     authParams
	metrics  *metrics

	udp       *net.UDPConn
	qtr       *quic.Transport
	ln        *quic.Listener
	clientTLS *tls.Config
	qconf     *quic.Config // for accepted connections
	dialConf  *quic.Config // for dialed ones

	// mangleChunk, if set before the first SendSnapshot, may alter the
	// wire bytes of each outgoing snapshot chunk (tests only).
	mangleChunk func(i int, wire []byte)

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	rep    reporter

	mu      sync.RWMutex
	closed  bool
	peers   map[uint64]*peer
	inbound map[uint64]*quic.Conn // the current authenticated connection from each peer
}

var _ raftnode.Transport = (*Transport)(nil)

// New generates an in-memory self-signed certificate, binds cfg.ListenAddr
// and starts serving inbound connections. Close releases everything.
func New(cfg Config) (*Transport, error) {
	if cfg.ID == 0 {
		return nil, fmt.Errorf("%w: member ID is 0", ErrInvalidConfig)
	}
	if cfg.Raft == nil {
		return nil, fmt.Errorf("%w: no Raft", ErrInvalidConfig)
	}
	if cfg.MaxFrameBytes < 0 {
		return nil, fmt.Errorf("%w: MaxFrameBytes %d", ErrInvalidConfig, cfg.MaxFrameBytes)
	}
	if cfg.MaxSnapshotBytes < 0 {
		return nil, fmt.Errorf("%w: MaxSnapshotBytes %d", ErrInvalidConfig, cfg.MaxSnapshotBytes)
	}
	t := &Transport{
		cfg:      cfg,
		log:      cfg.Logger,
		maxFrame: cfg.MaxFrameBytes,
		maxSnap:  cfg.MaxSnapshotBytes,
		auth:     authParams{token: cfg.Token, self: cfg.ID, clusterID: cfg.ClusterID},
		peers:    make(map[uint64]*peer),
		inbound:  make(map[uint64]*quic.Conn),
	}
	if t.log == nil {
		t.log = slog.Default()
	}
	t.log = t.log.With("member", fmt.Sprintf("%x", cfg.ID))
	if t.maxFrame == 0 {
		t.maxFrame = DefaultMaxFrameBytes
	}
	// Within what the u32 length prefix and a 32-bit int can express.
	t.maxFrame = min(t.maxFrame, math.MaxInt32)
	if t.maxSnap == 0 {
		t.maxSnap = DefaultMaxSnapshotBytes
	}
	var err error
	if t.metrics, err = newMetrics(cfg.Metrics); err != nil {
		return nil, err
	}
	cert, err := selfSignedCert()
	if err != nil {
		return nil, err
	}
	t.clientTLS = clientTLS()
	t.qconf = &quic.Config{
		HandshakeIdleTimeout: handshakeIdleTimeout,
		MaxIdleTimeout:       maxIdleTimeout,
		KeepAlivePeriod:      keepAlivePeriod,
		// The message stream and a few snapshot streams; see doc.go.
		MaxIncomingStreams:    1 + maxSnapshotStreams,
		MaxIncomingUniStreams: -1,
	}
	t.dialConf = dialQUICConfig()
	laddr, err := net.ResolveUDPAddr("udp", cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("transport: resolving listen address %q: %w", cfg.ListenAddr, err)
	}
	t.udp, err = net.ListenUDP("udp", laddr)
	if err != nil {
		return nil, fmt.Errorf("transport: listening on %q: %w", cfg.ListenAddr, err)
	}
	resetKey := statelessResetKey(cfg)
	t.qtr = &quic.Transport{Conn: t.udp, StatelessResetKey: &resetKey}
	t.ln, err = t.qtr.Listen(serverTLS(cert), t.qconf)
	if err != nil {
		_ = t.qtr.Close()
		_ = t.udp.Close()
		return nil, fmt.Errorf("transport: listening on %q: %w", cfg.ListenAddr, err)
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.rep.kick = make(chan struct{}, 1)
	t.wg.Add(2)
	go t.acceptLoop()
	go t.reportLoop()
	t.log.Info("peer transport listening", "addr", t.udp.LocalAddr().String())
	return t, nil
}

// dialQUICConfig is the QUIC configuration of dialed connections: as for
// accepted ones, except that the listener never opens streams on a
// connection it accepted.
func dialQUICConfig() *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout:  handshakeIdleTimeout,
		MaxIdleTimeout:        maxIdleTimeout,
		KeepAlivePeriod:       keepAlivePeriod,
		MaxIncomingStreams:    -1,
		MaxIncomingUniStreams: -1,
	}
}

// statelessResetKey derives the QUIC stateless reset key from the cluster
// token and member ID, so that a restarted member can reset the connections
// of its previous incarnation at once and peers reconnect without waiting
// for the idle timeout.
func statelessResetKey(cfg Config) quic.StatelessResetKey {
	h := hmac.New(sha256.New, []byte(cfg.Token))
	h.Write([]byte("edgekv stateless reset key"))
	var b [16]byte
	binary.BigEndian.PutUint64(b[0:], cfg.ClusterID)
	binary.BigEndian.PutUint64(b[8:], cfg.ID)
	h.Write(b[:])
	var key quic.StatelessResetKey
	copy(key[:], h.Sum(nil))
	return key
}

// Addr returns the bound UDP address.
func (t *Transport) Addr() net.Addr { return t.udp.LocalAddr() }

// AddPeer starts sending to member id at addr ("host:port") and accepts
// inbound connections from it. Adding a known peer with a new address
// replaces it; queued messages to it are dropped.
func (t *Transport) AddPeer(id uint64, addr string) {
	if id == t.cfg.ID || id == 0 {
		t.log.Warn("ignoring peer with a reserved ID", "peer", fmt.Sprintf("%x", id))
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	if old, ok := t.peers[id]; ok {
		if old.addr == addr {
			return
		}
		old.stop()
	}
	p := newPeer(t, id, addr)
	t.peers[id] = p
	t.wg.Add(1)
	go p.run()
	t.log.Info("added peer", "peer", fmt.Sprintf("%x", id), "addr", addr)
}

// RemovePeer stops sending to member id, drops what is queued for it and
// closes its inbound connection. Further connections from it are refused.
func (t *Transport) RemovePeer(id uint64) {
	t.mu.Lock()
	p, ok := t.peers[id]
	delete(t.peers, id)
	in := t.inbound[id]
	delete(t.inbound, id)
	t.mu.Unlock()
	if !ok {
		return
	}
	p.stop()
	if in != nil {
		_ = in.CloseWithError(codeShutdown, "member removed")
	}
	t.metrics.forget(id)
	t.log.Info("removed peer", "peer", fmt.Sprintf("%x", id))
}

// Send queues msgs for their peers and returns at once. It is called from
// the Raft goroutine. A message for an unknown peer is dropped; a message
// that does not fit its peer's queue is dropped and the peer reported
// unreachable (and a dropped MsgSnap reported as a failed snapshot).
// Send takes ownership of msgs: the caller must not modify them afterwards.
func (t *Transport) Send(msgs []*raftpb.Message) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, m := range msgs {
		if m == nil {
			continue
		}
		to := m.GetTo()
		p := t.peers[to]
		if p == nil {
			if !t.closed {
				t.log.Debug("dropping message to unknown peer", "peer", fmt.Sprintf("%x", to), "type", m.GetType())
			}
			continue
		}
		if t.cfg.Snapshots != nil && m.GetType() == raftpb.MsgSnap {
			t.log.Warn("dropping a MsgSnap passed to Send; snapshots go through SendSnapshot",
				"peer", fmt.Sprintf("%x", to), "index", m.GetSnapshot().GetMetadata().GetIndex())
			t.rep.snapshot(to, raft.SnapshotFailure)
			continue
		}
		select {
		case p.queue <- m:
		default:
			t.log.Debug("peer queue full, dropping message", "peer", fmt.Sprintf("%x", to), "type", m.GetType())
			t.rep.dropped(to, m)
		}
	}
}

// Close closes every connection (telling peers the member is shutting
// down), stops all goroutines and releases the UDP socket. Messages still
// queued are dropped. Close waits for the goroutines; it must not be called
// from inside a Raft method the transport invoked.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	peers := t.peers
	t.peers = make(map[uint64]*peer)
	t.mu.Unlock()

	// Cancelling the context stops the accept loop, the reporter, every
	// peer writer and every reader; each closes its own connection.
	t.cancel()
	for _, p := range peers {
		p.stop()
	}
	errLn := t.ln.Close()
	t.wg.Wait()
	errTr := t.qtr.Close()
	errUDP := t.udp.Close()
	t.log.Info("peer transport closed")
	return errors.Join(errLn, errTr, errUDP)
}

// acceptLoop hands each inbound connection to its own reader goroutine.
func (t *Transport) acceptLoop() {
	defer t.wg.Done()
	for {
		conn, err := t.ln.Accept(t.ctx)
		if err != nil {
			if t.ctx.Err() == nil {
				t.log.Error("accepting peer connections stopped", "err", err)
			}
			return
		}
		t.mu.RLock()
		closed := t.closed
		if !closed {
			t.wg.Add(1)
		}
		t.mu.RUnlock()
		if closed {
			_ = conn.CloseWithError(codeShutdown, "member shutting down")
			return
		}
		go t.serveConn(conn)
	}
}

// serveConn authenticates one inbound connection and delivers the
// messages it carries until it closes.
func (t *Transport) serveConn(conn *quic.Conn) {
	defer t.wg.Done()
	defer closeOnDone(t.ctx, conn, codeShutdown, "member shutting down")()
	remote := conn.RemoteAddr().String()

	acc, err := acceptHello(t.ctx, conn, t.auth, t.isPeer)
	if err != nil {
		var he *handshakeError
		switch {
		case t.ctx.Err() != nil:
		case errors.As(err, &he):
			t.log.Warn("refused peer connection", "remote", remote, "err", err)
		default:
			t.log.Info("peer connection ended before its hello", "remote", remote, "err", err)
		}
		closeOnError(conn, err)
		return
	}
	from, str := acc.from, acc.str
	log := t.log.With("peer", fmt.Sprintf("%x", from), "remote", remote)
	if acc.discovery {
		log.Info("told a joining member the cluster ID")
		t.finishDiscovery(conn)
		return
	}

	t.mu.Lock()
	if t.closed || t.peers[from] == nil {
		t.mu.Unlock()
		_ = conn.CloseWithError(codeUnknownMember, "unknown member")
		return
	}
	old := t.inbound[from]
	t.inbound[from] = conn
	t.mu.Unlock()
	if old != nil {
		_ = old.CloseWithError(codeSuperseded, "superseded by a new connection")
	}
	log.Info("peer connected (inbound)")

	t.wg.Add(1)
	go t.acceptSnapshotStreams(conn, from, log)
	err = t.readLoop(conn, str, from, log)

	t.mu.Lock()
	if t.inbound[from] == conn {
		delete(t.inbound, from)
	}
	t.mu.Unlock()
	if t.ctx.Err() != nil {
		return
	}
	switch {
	case errors.Is(err, ErrFrameTooLarge), errors.Is(err, ErrMalformedFrame):
		log.Warn("closing peer connection", "err", err)
		_ = conn.CloseWithError(codeProtocol, err.Error())
	default:
		log.Info("peer disconnected (inbound)", "err", err)
		_ = conn.CloseWithError(codeNoError, "")
	}
}

// finishDiscovery closes the connection of an answered discovery hello
// once the joiner closed it, having read the reply, or after
// handshakeTimeout. Closing at once could discard the reply before QUIC
// delivered it.
func (t *Transport) finishDiscovery(conn *quic.Conn) {
	timer := time.NewTimer(handshakeTimeout)
	defer timer.Stop()
	select {
	case <-conn.Context().Done():
	case <-timer.C:
	case <-t.ctx.Done():
	}
	_ = conn.CloseWithError(codeNoError, "cluster ID sent")
}

// isPeerShutdown reports whether err says the peer closed the connection
// because it is shutting down or removed this member.
func isPeerShutdown(err error) bool {
	var appErr *quic.ApplicationError
	return errors.As(err, &appErr) && appErr.Remote && appErr.ErrorCode == codeShutdown
}

// closeOnDone closes conn with code and reason once ctx is done. The
// returned function stops that, waiting for a close already under way, so
// no goroutine outlives the caller.
func closeOnDone(ctx context.Context, conn *quic.Conn, code quic.ApplicationErrorCode, reason string) (stop func()) {
	return afterDone(ctx, func() { _ = conn.CloseWithError(code, reason) })
}

// afterDone runs f once ctx is done. The returned function stops that,
// waiting for an f already running, so no goroutine outlives the caller.
func afterDone(ctx context.Context, f func()) (stop func()) {
	done := make(chan struct{})
	stopAfter := context.AfterFunc(ctx, func() {
		defer close(done)
		f()
	})
	return func() {
		if !stopAfter() {
			<-done
		}
	}
}

// readLoop delivers the frames of str to Raft until an error.
func (t *Transport) readLoop(conn *quic.Conn, str *quic.Stream, from uint64, log *slog.Logger) error {
	var buf []byte
	warnedForeign := false
	received := t.metrics.receivedBytes.WithLabelValues(peerLabel(from))
	for {
		payload, err := readFrame(str, &buf, t.maxFrame)
		if err != nil {
			return err
		}
		received.Add(float64(frameHeaderLen + len(payload)))
		msgs, err := decodePayload(payload)
		if err != nil {
			return err
		}
		if cap(buf) > 1<<20 {
			buf = nil // do not pin a large buffer to an idle connection
		}
		for _, m := range msgs {
			if m.GetFrom() != from || m.GetTo() != t.cfg.ID {
				if !warnedForeign {
					log.Warn("dropping message not between the authenticated peer and this member",
						"from", fmt.Sprintf("%x", m.GetFrom()), "to", fmt.Sprintf("%x", m.GetTo()))
					warnedForeign = true
				}
				continue
			}
			if err := t.cfg.Raft.Process(t.ctx, m); err != nil {
				if t.ctx.Err() != nil {
					return err
				}
				log.Debug("raft refused message", "type", m.GetType(), "err", err)
			}
		}
	}
}

// isPeer reports whether id was added with AddPeer.
func (t *Transport) isPeer(id uint64) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.peers[id] != nil
}

// reporter queues reports to Raft so that they are made from one goroutine
// of the transport, never from the caller of Send.
type reporter struct {
	mu      sync.Mutex
	pending []report
	kick    chan struct{}
}

type report struct {
	id     uint64
	snap   bool // a snapshot status, else unreachable
	status raft.SnapshotStatus
}

// unreachable queues ReportUnreachable(id) unless one is already queued.
func (r *reporter) unreachable(id uint64) {
	r.mu.Lock()
	for _, p := range r.pending {
		if p.id == id && !p.snap {
			r.mu.Unlock()
			return
		}
	}
	r.pending = append(r.pending, report{id: id})
	r.mu.Unlock()
	r.signal()
}

// snapshot queues ReportSnapshot(id, status).
func (r *reporter) snapshot(id uint64, status raft.SnapshotStatus) {
	r.mu.Lock()
	r.pending = append(r.pending, report{id: id, snap: true, status: status})
	r.mu.Unlock()
	r.signal()
}

// dropped reports that m was not sent.
func (r *reporter) dropped(to uint64, m *raftpb.Message) {
	r.unreachable(to)
	if m.GetType() == raftpb.MsgSnap {
		r.snapshot(to, raft.SnapshotFailure)
	}
}

func (r *reporter) signal() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

func (r *reporter) take() []report {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.pending
	r.pending = nil
	return p
}

// reportLoop makes the queued reports to Raft.
func (t *Transport) reportLoop() {
	defer t.wg.Done()
	for {
		select {
		case <-t.ctx.Done():
			return
		case <-t.rep.kick:
		}
		for _, r := range t.rep.take() {
			if r.snap {
				t.cfg.Raft.ReportSnapshot(r.id, r.status)
			} else {
				t.cfg.Raft.ReportUnreachable(r.id)
			}
		}
	}
}
