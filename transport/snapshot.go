package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/quic-go/quic-go"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// SnapshotReceiver stores an incoming backend snapshot before its MsgSnap
// reaches Raft. It is called from a goroutine of the transport, one per
// snapshot stream, possibly concurrently for snapshots from different
// peers and concurrently with Raft.Process of ordinary messages.
type SnapshotReceiver interface {
	// ReceiveSnapshot is called with the MsgSnap and a reader of exactly
	// size bytes of the db; the reader returns an error (wrapping
	// ErrSnapshotCorrupt) if a chunk CRC fails or the stream ends early.
	// It returns once the db is durably stored; then the transport hands
	// m to Raft.Process. ctx is done when the connection or the transport
	// closes.
	ReceiveSnapshot(ctx context.Context, m *raftpb.Message, size int64, db io.Reader) error
}

// Snapshot streams.
const (
	// maxSnapshotStreams is how many snapshot streams a peer may have open
	// on one connection at once (the sender opens one at a time).
	maxSnapshotStreams = 3
	// snapshotConnTimeout bounds waiting for a connection to the peer and
	// for a stream on it.
	snapshotConnTimeout = 10 * time.Second
	// snapshotIdleTimeout bounds each read or write of a snapshot stream's
	// header and chunks. Waiting for the ack is bounded only by the
	// connection staying alive.
	snapshotIdleTimeout = 30 * time.Second
	// ackWriteTimeout bounds writing the ack, and ackReadTimeout reading
	// the reason of a refusal that interrupted the sender.
	ackWriteTimeout = 5 * time.Second
	ackReadTimeout  = 2 * time.Second

	// Send priorities (RFC 9218 urgency, lower first): message frames go
	// before snapshot chunks whenever both are waiting.
	messageUrgency  = 2
	snapshotUrgency = 5
)

// QUIC stream error codes, sent when a side abandons a stream.
const (
	streamCodeDone        quic.StreamErrorCode = 0x0 // finished; nothing more to read
	streamCodeRefused     quic.StreamErrorCode = 0x1 // the listener refused the stream
	streamCodeCanceled    quic.StreamErrorCode = 0x2 // the dialer gave up, or a member is closing
	streamCodeUnknownKind quic.StreamErrorCode = 0x3 // the first byte names no stream kind
)

// errSnapshotRefused: the receiving member acked an error.
var errSnapshotRefused = errors.New("peer refused the snapshot")

// SendSnapshot sends the MsgSnap m together with the backend db (size
// bytes of it) to m.To on a stream of its own and returns at once. Once the
// peer acknowledges that it stored the db and handed m to Raft, it
// reports raft.SnapshotFinish; on any failure SnapshotFailure and the peer
// unreachable. A snapshot to a peer that already has one in flight fails
// at once. It closes db in every case. Safe to call from any goroutine.
func (t *Transport) SendSnapshot(m *raftpb.Message, db io.ReadCloser, size int64) {
	to := m.GetTo()
	fail := func(reason string) {
		_ = db.Close()
		t.log.Warn("not sending snapshot", "peer", fmt.Sprintf("%x", to), "reason", reason)
		t.rep.snapshot(to, raft.SnapshotFailure)
	}
	switch {
	case m.GetType() != raftpb.MsgSnap || m.Snapshot == nil:
		fail(fmt.Sprintf("a %v message is not a snapshot", m.GetType()))
		return
	case m.GetFrom() != t.cfg.ID:
		fail(fmt.Sprintf("message is from %x, not this member", m.GetFrom()))
		return
	case size < 0:
		fail(fmt.Sprintf("negative size %d", size))
		return
	}
	t.mu.RLock()
	closed, p := t.closed, t.peers[to]
	started := !closed && p != nil && p.snapBusy.CompareAndSwap(false, true)
	if started {
		t.wg.Add(1)
	}
	t.mu.RUnlock()
	switch {
	case started:
		go p.sendSnapshot(m, db, size)
	case closed:
		_ = db.Close()
	case p == nil:
		fail("unknown peer")
	default:
		fail("a snapshot to this peer is already in flight")
	}
}

// sendSnapshot runs SendSnapshot's goroutine.
func (p *peer) sendSnapshot(m *raftpb.Message, db io.ReadCloser, size int64) {
	defer p.t.wg.Done()
	start := time.Now()
	log := p.log.With("index", m.GetSnapshot().GetMetadata().GetIndex(), "bytes", size)
	log.Info("sending snapshot")
	err := p.streamSnapshot(m, db, size)
	if cerr := db.Close(); cerr != nil {
		log.Debug("closing the snapshot db", "err", cerr)
	}
	// Free the slot before reporting, so that Raft may retry at once.
	p.snapBusy.Store(false)
	if err != nil {
		if p.ctx.Err() != nil {
			log.Info("snapshot abandoned: member closing or peer removed", "err", err)
		} else {
			log.Warn("sending snapshot failed", "err", err)
		}
		p.t.rep.snapshot(p.id, raft.SnapshotFailure)
		p.t.rep.unreachable(p.id)
		return
	}
	log.Info("sent snapshot", "took", time.Since(start).Round(time.Millisecond))
	p.t.rep.snapshot(p.id, raft.SnapshotFinish)
}

// streamSnapshot opens a snapshot stream on the peer's connection, writes
// m and db to it and waits for the ack.
func (p *peer) streamSnapshot(m *raftpb.Message, db io.Reader, size int64) error {
	head, err := appendSnapshotHeader([]byte{streamKindSnapshot}, m, size)
	if err != nil {
		return err
	}
	if frame := len(head) - 1 - snapshotSizeLen - frameHeaderLen; frame > p.t.maxFrame {
		return fmt.Errorf("snapshot message is %d bytes, above the frame limit %d", frame, p.t.maxFrame)
	}
	ctx, cancel := context.WithTimeout(p.ctx, snapshotConnTimeout)
	defer cancel()
	conn, err := p.waitConn(ctx)
	if err != nil {
		return fmt.Errorf("no connection to the peer: %w", err)
	}
	str, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return fmt.Errorf("opening a snapshot stream: %w", err)
	}
	str.SetPriority(snapshotUrgency, true)
	defer str.CancelRead(streamCodeDone)
	// Closing the member or removing the peer abandons the stream.
	defer afterDone(p.ctx, func() {
		str.CancelWrite(streamCodeCanceled)
		str.CancelRead(streamCodeCanceled)
	})()

	w := &deadlineWriter{str: str, idle: snapshotIdleTimeout}
	if _, err := w.Write(head); err != nil {
		return p.abandoned(str, &writeError{err})
	}
	if err := writeSnapshotBody(w, db, size, snapshotChunkBytes, p.t.mangleChunk); err != nil {
		return p.abandoned(str, err)
	}
	_ = str.SetWriteDeadline(time.Time{})
	if err := str.Close(); err != nil {
		return fmt.Errorf("closing the snapshot stream: %w", err)
	}
	ack, err := readAck(str)
	if err != nil {
		return fmt.Errorf("waiting for the peer's ack: %w", err)
	}
	if ack.Status != ackStored {
		return fmt.Errorf("%w: %s", errSnapshotRefused, ack.Reason)
	}
	return nil
}

// abandoned resets str after err interrupted the sending and returns err,
// with the peer's reason if the peer refused the stream.
func (p *peer) abandoned(str *quic.Stream, err error) error {
	str.CancelWrite(streamCodeCanceled)
	var se *quic.StreamError
	if !errors.As(err, &se) || !se.Remote || se.ErrorCode != streamCodeRefused {
		return err
	}
	_ = str.SetReadDeadline(time.Now().Add(ackReadTimeout))
	if ack, aerr := readAck(str); aerr == nil && ack.Status == ackRefused {
		return fmt.Errorf("%w: %s", errSnapshotRefused, ack.Reason)
	}
	return err
}

// deadlineWriter gives each Write to a stream idle to make progress.
type deadlineWriter struct {
	str  *quic.Stream
	idle time.Duration
}

func (w *deadlineWriter) Write(b []byte) (int, error) {
	_ = w.str.SetWriteDeadline(time.Now().Add(w.idle))
	return w.str.Write(b)
}

// deadlineReader gives each Read from a stream idle to make progress.
type deadlineReader struct {
	str  *quic.Stream
	idle time.Duration
}

func (r *deadlineReader) Read(b []byte) (int, error) {
	_ = r.str.SetReadDeadline(time.Now().Add(r.idle))
	return r.str.Read(b)
}

// acceptSnapshotStreams serves the streams a peer opens after the message
// stream of conn, an authenticated connection from member from, until
// conn closes.
func (t *Transport) acceptSnapshotStreams(conn *quic.Conn, from uint64, log *slog.Logger) {
	defer t.wg.Done()
	ctx, cancel := context.WithCancel(t.ctx)
	defer cancel()
	defer afterDone(conn.Context(), cancel)()
	for {
		str, err := conn.AcceptStream(ctx)
		if err != nil {
			return
		}
		t.wg.Add(1)
		go t.serveStream(ctx, str, from, log.With("stream", uint64(str.StreamID())))
	}
}

// serveStream serves one stream after the message stream: reads its kind
// and, for a snapshot, receives it and acks. A bad stream is refused on
// its own; the connection stays up.
func (t *Transport) serveStream(ctx context.Context, str *quic.Stream, from uint64, log *slog.Logger) {
	defer t.wg.Done()
	defer afterDone(ctx, func() {
		str.CancelRead(streamCodeCanceled)
		str.CancelWrite(streamCodeCanceled)
	})()

	_ = str.SetReadDeadline(time.Now().Add(snapshotIdleTimeout))
	var kind [1]byte
	if _, err := io.ReadFull(str, kind[:]); err != nil {
		if ctx.Err() == nil {
			log.Info("peer stream ended before its kind", "err", err)
		}
		str.CancelRead(streamCodeCanceled)
		str.CancelWrite(streamCodeCanceled)
		return
	}
	if kind[0] != streamKindSnapshot {
		log.Warn("refusing a peer stream of unknown kind", "kind", fmt.Sprintf("%#x", kind[0]))
		str.CancelRead(streamCodeUnknownKind)
		str.CancelWrite(streamCodeUnknownKind)
		return
	}

	start := time.Now()
	m, size, err := t.receiveSnapshot(ctx, str, from)
	if ctx.Err() != nil {
		return // the deferred cancel resets the stream
	}
	status, reason := uint8(ackStored), ""
	if err != nil {
		log.Warn("refused snapshot", "err", err)
		status, reason = ackRefused, err.Error()
	} else {
		log.Info("received snapshot", "index", m.GetSnapshot().GetMetadata().GetIndex(),
			"bytes", size, "took", time.Since(start).Round(time.Millisecond))
	}
	ack, aerr := appendAckFrame(nil, status, reason)
	if aerr == nil {
		_ = str.SetWriteDeadline(time.Now().Add(ackWriteTimeout))
		_, aerr = str.Write(ack)
	}
	if aerr != nil {
		log.Info("could not ack the snapshot", "err", aerr)
	}
	_ = str.Close()
	code := streamCodeDone
	if err != nil {
		code = streamCodeRefused
	}
	str.CancelRead(code)
}

// receiveSnapshot reads the header and db of a snapshot stream from member
// from, has Config.Snapshots store the db and hands the MsgSnap to Raft.
func (t *Transport) receiveSnapshot(ctx context.Context, str *quic.Stream, from uint64) (*raftpb.Message, int64, error) {
	r := &deadlineReader{str: str, idle: snapshotIdleTimeout}
	m, size, err := readSnapshotHeader(r, t.maxFrame, t.maxSnap)
	if err != nil {
		return nil, 0, fmt.Errorf("snapshot header: %w", err)
	}
	if m.GetFrom() != from || m.GetTo() != t.cfg.ID {
		return nil, 0, fmt.Errorf("%w: snapshot from %x to %x on a connection from %x to %x",
			ErrMalformedFrame, m.GetFrom(), m.GetTo(), from, t.cfg.ID)
	}
	if t.cfg.Snapshots == nil {
		return nil, 0, errors.New("this member takes no snapshot streams")
	}
	body := newSnapshotBody(r, size)
	if err := t.cfg.Snapshots.ReceiveSnapshot(ctx, m, size, body); err != nil {
		return nil, 0, fmt.Errorf("storing the snapshot db: %w", err)
	}
	if err := body.finish(); err != nil {
		return nil, 0, fmt.Errorf("after storing the snapshot db: %w", err)
	}
	if err := t.cfg.Raft.Process(ctx, m); err != nil {
		return nil, 0, fmt.Errorf("raft refused the snapshot: %w", err)
	}
	return m, size, nil
}
