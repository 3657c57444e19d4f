package transport

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// peer is the sending half towards one member: a bounded queue filled by
// Send and one goroutine that dials, authenticates and writes batches.
type peer struct {
	t      *Transport
	id     uint64
	addr   string
	log    *slog.Logger
	queue  chan *raftpb.Message
	ctx    context.Context
	cancel context.CancelFunc

	// snapBusy is set while a snapshot to the peer is being sent.
	snapBusy atomic.Bool

	sent peerCounters

	connMu      sync.Mutex
	conn        *quic.Conn    // the authenticated connection, nil between connections
	connChanged chan struct{} // closed (and replaced) whenever conn changes
}

func newPeer(t *Transport, id uint64, addr string) *peer {
	ctx, cancel := context.WithCancel(t.ctx)
	return &peer{
		t:      t,
		id:     id,
		addr:   addr,
		log:    t.log.With("peer", fmt.Sprintf("%x", id), "addr", addr),
		queue:  make(chan *raftpb.Message, queueLen),
		ctx:    ctx,
		cancel: cancel,
		sent:   t.metrics.forPeer(id),

		connChanged: make(chan struct{}),
	}
}

// setConn publishes the current authenticated connection (nil for none)
// to snapshot senders.
func (p *peer) setConn(conn *quic.Conn) {
	p.connMu.Lock()
	defer p.connMu.Unlock()
	p.conn = conn
	close(p.connChanged)
	p.connChanged = make(chan struct{})
}

// waitConn returns the peer's authenticated connection, waiting for run to
// establish one until ctx is done.
func (p *peer) waitConn(ctx context.Context) (*quic.Conn, error) {
	for {
		p.connMu.Lock()
		conn, changed := p.conn, p.connChanged
		p.connMu.Unlock()
		if conn != nil && conn.Context().Err() == nil {
			return conn, nil
		}
		select {
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-changed:
		}
	}
}

// stop makes run return; it does not wait.
func (p *peer) stop() { p.cancel() }

// run connects to the peer and writes its queue until stopped, redialling
// with backoff after every failure.
func (p *peer) run() {
	defer p.t.wg.Done()
	var b backoff
	failing := false
	for {
		conn, str, err := p.connect()
		if err != nil {
			if p.ctx.Err() != nil {
				return
			}
			if failing {
				p.log.Debug("dialing peer failed", "err", err)
			} else {
				p.log.Warn("dialing peer failed; retrying with backoff", "err", err)
				failing = true
			}
			p.t.rep.unreachable(p.id)
			// What was queued is stale by now; Raft resends what it
			// still needs once the peer is back.
			if n := p.dropQueued(); n > 0 {
				p.log.Debug("dropped messages queued for an unreachable peer", "count", n)
			}
			if !sleepCtx(p.ctx, b.next()) {
				return
			}
			continue
		}
		failing = false
		connected := time.Now()
		p.log.Info("peer connected (outbound)", "remote", conn.RemoteAddr().String())

		p.setConn(conn)
		err = p.writeLoop(conn, str)
		p.setConn(nil)
		if p.ctx.Err() != nil {
			return
		}
		if isPeerShutdown(err) {
			p.log.Info("peer closed the connection", "err", err)
		} else {
			p.log.Warn("lost connection to peer", "err", err)
		}
		_ = conn.CloseWithError(codeNoError, "")
		p.t.rep.unreachable(p.id)
		if time.Since(connected) > backoffMax {
			b.reset()
		}
		if !sleepCtx(p.ctx, b.next()) {
			return
		}
	}
}

// connect dials the peer and runs the hello exchange.
func (p *peer) connect() (*quic.Conn, *quic.Stream, error) {
	ctx, cancel := context.WithTimeout(p.ctx, handshakeTimeout)
	defer cancel()
	raddr, err := net.ResolveUDPAddr("udp", p.addr)
	if err != nil {
		return nil, nil, fmt.Errorf("resolving %q: %w", p.addr, err)
	}
	conn, err := p.t.qtr.Dial(ctx, raddr, p.t.clientTLS, p.t.dialConf)
	if err != nil {
		return nil, nil, fmt.Errorf("dialing: %w", err)
	}
	stop := closeOnDone(p.ctx, conn, codeShutdown, "member shutting down or peer removed")
	defer stop()
	str, err := conn.OpenStreamSync(ctx)
	if err != nil {
		_ = conn.CloseWithError(codeNoError, "")
		return nil, nil, fmt.Errorf("opening message stream: %w", err)
	}
	if err := dialHello(ctx, conn, str, p.t.auth, p.id); err != nil {
		closeOnError(conn, err)
		return nil, nil, fmt.Errorf("hello with %s: %w", conn.RemoteAddr(), err)
	}
	// Messages go before snapshot chunks whenever both are waiting.
	str.SetPriority(messageUrgency, false)
	return conn, str, nil
}

// dropQueued empties the queue, reporting each dropped MsgSnap as failed,
// and returns how many messages it dropped.
func (p *peer) dropQueued() int {
	for n := 0; ; n++ {
		select {
		case m := <-p.queue:
			if m.GetType() == raftpb.MsgSnap {
				p.t.rep.snapshot(p.id, raft.SnapshotFailure)
			}
		default:
			return n
		}
	}
}

// writeLoop writes the queue to str until the connection or the peer
// stops. Each frame holds everything queued, up to the frame size limit,
// and goes out with one Write.
func (p *peer) writeLoop(conn *quic.Conn, str *quic.Stream) error {
	defer closeOnDone(p.ctx, conn, codeShutdown, "member shutting down or peer removed")()
	var (
		carry *raftpb.Message // the message that did not fit the previous frame
		f     frameBuf
	)
	for {
		f.reset()
		if carry != nil {
			p.add(&f, carry) // fits the empty frame, or is dropped
			carry = nil
		}
		for f.n == 0 {
			select {
			case <-p.ctx.Done():
				return p.ctx.Err()
			case <-conn.Context().Done():
				return context.Cause(conn.Context())
			case m := <-p.queue:
				p.add(&f, m)
			}
		}
		// Before writing, the goroutines that are ready to run have their
		// turn: under load the Raft goroutine is usually about to queue
		// more for this peer, which then goes in this frame rather than
		// the next (at 256 clients, a quarter to two fifths as many
		// frames, each a UDP packet). With nothing else ready, Gosched
		// returns at once.
		if carry = p.fill(&f); carry == nil {
			runtime.Gosched()
			carry = p.fill(&f)
		}
		frame := f.frame()
		_, err := str.Write(frame)
		status := raft.SnapshotFinish
		if err != nil {
			status = raft.SnapshotFailure
		} else {
			p.sent.bytes.Add(float64(len(frame)))
			p.sent.frames.Inc()
			p.sent.msgs.Add(float64(f.n))
		}
		for range f.snaps {
			p.t.rep.snapshot(p.id, status)
		}
		if err != nil {
			if carry != nil {
				p.t.rep.dropped(p.id, carry)
			}
			return fmt.Errorf("writing frame: %w", err)
		}
		if cap(f.b) > 1<<20 {
			f.b = nil // do not pin a large buffer to an idle peer
		}
	}
}

// fill adds the queued messages to f until the queue is empty, or returns
// the first one that does not fit.
func (p *peer) fill(f *frameBuf) *raftpb.Message {
	for {
		select {
		case m := <-p.queue:
			if !p.add(f, m) {
				return m
			}
		default:
			return nil
		}
	}
}

// add encodes m into f, or drops and reports it when it would not fit in
// a frame on its own. It returns false, leaving f as it was, when m only
// does not fit next to what f holds.
func (p *peer) add(f *frameBuf, m *raftpb.Message) bool {
	size, ok := f.add(m, p.t.maxFrame)
	if !ok && frameLen(size) > p.t.maxFrame {
		p.log.Warn("dropping message larger than the frame limit",
			"type", m.GetType(), "bytes", size, "limit", p.t.maxFrame)
		p.t.rep.dropped(p.id, m)
		return true
	}
	return ok
}

func isSnap(m *raftpb.Message) int {
	if m.GetType() == raftpb.MsgSnap {
		return 1
	}
	return 0
}

// backoff yields exponentially growing delays with jitter: the n-th delay
// is uniform in [d/2, d) with d = backoffMin * 2^n capped at backoffMax.
type backoff struct{ d time.Duration }

func (b *backoff) next() time.Duration {
	if b.d == 0 {
		b.d = backoffMin
	} else {
		b.d = min(2*b.d, backoffMax)
	}
	return b.d/2 + rand.N(b.d/2)
}

func (b *backoff) reset() { b.d = 0 }

// sleepCtx waits d or until ctx is done, and reports whether d elapsed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
