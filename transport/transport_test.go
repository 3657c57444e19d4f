package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// sendAll sends indexes 0..n-1 from -> to through tr in batches of
// varying size, as the Raft goroutine would.
func sendAll(tr *Transport, from, to uint64, n int) {
	for i := 0; i < n; {
		var batch []*raftpb.Message
		for k := 0; k < 1+i%7 && i < n; k++ {
			batch = append(batch, msg(from, to, uint64(i)))
			i++
		}
		tr.Send(batch)
	}
}

func TestTransport_TwoMembersExchangeManyMessagesInOrder(t *testing.T) {
	checkNoLeaks(t)
	a, b := newMember(t, 1, ""), newMember(t, 2, "")
	connect(a, b)

	const n = 3000
	sendAll(a.Transport, 1, 2, n)
	sendAll(b.Transport, 2, 1, n)

	checkInOrder(t, b.raft.waitForMessages(t, 1, n), 1, 2, n)
	checkInOrder(t, a.raft.waitForMessages(t, 2, n), 2, 1, n)
}

func TestTransport_ThreeMembersDeliverEachSendersMessagesInOrder(t *testing.T) {
	checkNoLeaks(t)
	ms := []*member{newMember(t, 1, ""), newMember(t, 2, ""), newMember(t, 3, "")}
	connect(ms...)

	const n = 1000
	for _, from := range ms {
		for _, to := range ms {
			if from != to {
				sendAll(from.Transport, from.cfg.ID, to.cfg.ID, n)
			}
		}
	}
	for _, to := range ms {
		for _, from := range ms {
			if from != to {
				checkInOrder(t, to.raft.waitForMessages(t, from.cfg.ID, n), from.cfg.ID, to.cfg.ID, n)
			}
		}
	}
}

func TestTransport_BatchesLargerThanTheFrameLimitAreSplit(t *testing.T) {
	checkNoLeaks(t)
	small := func(c *Config) { c.MaxFrameBytes = 4096 }
	a, b := newMember(t, 1, "", small), newMember(t, 2, "", small)
	connect(a, b)

	big := func(i uint64) *raftpb.Message {
		m := msg(1, 2, i)
		m.Entries[0].Data = make([]byte, 1500)
		return m
	}
	var batch []*raftpb.Message
	for i := range uint64(200) {
		batch = append(batch, big(i))
	}
	tooBig := msg(1, 2, 200)
	tooBig.Entries[0].Data = make([]byte, 5000)
	batch = append(batch, tooBig, big(201))
	a.Send(batch)

	got := b.raft.waitForMessages(t, 1, 201)
	for i, m := range got {
		want := uint64(i)
		if i == 200 {
			want = 201 // the oversized message was dropped
		}
		if m.GetIndex() != want {
			t.Fatalf("message %d has index %d, want %d", i, m.GetIndex(), want)
		}
	}
	a.raft.waitUntil(t, "the dropped message is reported", func() bool { return a.raft.unreachableCount(2) > 0 })
}

func TestTransport_FullQueueDropsAndReportsUnreachable(t *testing.T) {
	checkNoLeaks(t)
	a := newMember(t, 1, "")
	// Nobody answers at this address, so the queue never drains.
	silent, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	a.AddPeer(2, silent.LocalAddr().String())

	sendAll(a.Transport, 1, 2, queueLen)
	snap := &raftpb.Message{
		Type: raftpb.MsgSnap.Enum(), From: proto.Uint64(1), To: proto.Uint64(2),
		Snapshot: &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{Index: proto.Uint64(10), Term: proto.Uint64(1)}},
	}
	done := make(chan struct{})
	go func() { // Send must return at once even with a full queue.
		a.Send([]*raftpb.Message{msg(1, 2, queueLen), snap})
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(waitTimeout):
		t.Fatal("Send blocked on a full queue")
	}
	a.raft.waitUntil(t, "the dropped snapshot is reported", func() bool {
		r := a.raft.snapshotReports(2)
		return a.raft.unreachableCount(2) > 0 && len(r) == 1 && r[0] == raft.SnapshotFailure
	})
}

func TestTransport_WrongTokenIsRefusedInBothDirections(t *testing.T) {
	checkNoLeaks(t)
	a := newMember(t, 1, "")
	b := newMember(t, 2, "", func(c *Config) { c.Token = "another-cluster-token" })
	connect(a, b)
	sendAll(a.Transport, 1, 2, 10)
	sendAll(b.Transport, 2, 1, 10)

	for _, m := range []*member{a, b} {
		m.raft.waitUntil(t, "each side refuses the other", func() bool {
			return m.log.has("refused peer connection", "cluster token mismatch", "remote=127.0.0.1:")
		})
	}
	for _, m := range []*member{a, b} {
		other := 3 - m.cfg.ID
		m.raft.waitUntil(t, "each dialer reports its peer unreachable", func() bool {
			return m.raft.unreachableCount(other) > 0 &&
				m.log.has("dialing peer failed", "cluster token mismatch")
		})
	}
	if got := len(a.raft.messages(0)) + len(b.raft.messages(0)); got != 0 {
		t.Fatalf("%d messages were delivered across a token mismatch", got)
	}
}

func TestTransport_WrongClusterIDIsRefused(t *testing.T) {
	checkNoLeaks(t)
	a := newMember(t, 1, "")
	b := newMember(t, 2, "", func(c *Config) { c.ClusterID = 0xdead })
	connect(a, b)
	sendAll(a.Transport, 1, 2, 10)

	b.raft.waitUntil(t, "b refuses a", func() bool {
		return b.log.has("refused peer connection", "cluster ID mismatch")
	})
	a.raft.waitUntil(t, "a reports b unreachable", func() bool { return a.raft.unreachableCount(2) > 0 })
	if got := len(b.raft.messages(0)); got != 0 {
		t.Fatalf("%d messages were delivered across clusters", got)
	}
}

func TestTransport_ListenerThatCannotProveTheTokenIsRefused(t *testing.T) {
	checkNoLeaks(t)
	a := newMember(t, 1, "")
	cert, err := selfSignedCert()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := quic.ListenAddr("127.0.0.1:0", serverTLS(cert), &quic.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	a.AddPeer(2, ln.Addr().String())
	a.Send([]*raftpb.Message{msg(1, 2, 0)})

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	conn, err := ln.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.CloseWithError(0, "") })
	str, err := conn.AcceptStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := readFrame(str, nil, maxHelloBytes)
	if err != nil {
		t.Fatal(err)
	}
	h, err := decodeHello(payload)
	if err != nil {
		t.Fatal(err)
	}
	// Reflecting the dialer's own MAC must not work either.
	reply, err := appendHelloFrame(nil, &hello{From: 2, To: 1, ClusterID: testClusterID, MAC: h.MAC})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := str.Write(reply); err != nil {
		t.Fatal(err)
	}

	select {
	case <-conn.Context().Done():
	case <-ctx.Done():
		t.Fatal("the dialer kept the connection to an impostor")
	}
	var appErr *quic.ApplicationError
	if err := context.Cause(conn.Context()); !errors.As(err, &appErr) || appErr.ErrorCode != codeTokenMismatch || !appErr.Remote {
		t.Fatalf("connection closed with %v, want a remote token mismatch", err)
	}
	a.raft.waitUntil(t, "a reports the impostor unreachable", func() bool { return a.raft.unreachableCount(2) > 0 })
}

// rawPeer is a hand-driven dialer that authenticates correctly and then
// writes whatever bytes a test wants.
type rawPeer struct {
	tr   *quic.Transport
	conn *quic.Conn
	str  *quic.Stream
}

func dialRaw(tb testing.TB, id uint64, udp *net.UDPConn, to *member) *rawPeer {
	tb.Helper()
	tr := &quic.Transport{Conn: udp}
	tb.Cleanup(func() { tr.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	conn, err := tr.Dial(ctx, to.Addr(), clientTLS(), &quic.Config{})
	if err != nil {
		tb.Fatalf("dialing: %v", err)
	}
	tb.Cleanup(func() { conn.CloseWithError(0, "") })
	str, err := conn.OpenStreamSync(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	a := authParams{token: testToken, self: id, clusterID: testClusterID}
	if err := dialHello(ctx, conn, str, a, to.cfg.ID); err != nil {
		tb.Fatalf("hello: %v", err)
	}
	return &rawPeer{tr: tr, conn: conn, str: str}
}

// waitClosedWith waits until the receiver closed the connection and checks
// the code.
func (r *rawPeer) waitClosedWith(tb testing.TB, code quic.ApplicationErrorCode) {
	tb.Helper()
	select {
	case <-r.conn.Context().Done():
	case <-time.After(waitTimeout):
		tb.Fatal("the connection stayed open")
	}
	var appErr *quic.ApplicationError
	if err := context.Cause(r.conn.Context()); !errors.As(err, &appErr) || appErr.ErrorCode != code || !appErr.Remote {
		tb.Fatalf("connection closed with %v, want remote application error %#x", err, code)
	}
}

func TestTransport_BadFrameClosesTheConnectionAndServingContinues(t *testing.T) {
	const rawID = 9
	good := func(from uint64, i uint64) []byte {
		f, err := EncodeFrame([]*raftpb.Message{msg(from, 2, i)})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	unknownType := toWire(msg(rawID, 2, 1))
	bad := int32(1000)
	unknownType.Type = &bad

	for _, tc := range []struct {
		name  string
		bytes []byte
	}{
		{"oversized length prefix", binary.BigEndian.AppendUint32(nil, 4097)},
		{"4 GiB length prefix", []byte{0xff, 0xff, 0xff, 0xff}},
		{"malformed CBOR", rawFrame([]byte{0xff, 0xff, 0xff})},
		{"unknown message type", rawFrame(cborOf([]*wireMessage{unknownType}))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkNoLeaks(t)
			b := newMember(t, 2, "", func(c *Config) { c.MaxFrameBytes = 4096 })
			udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { udp.Close() })
			b.AddPeer(rawID, udp.LocalAddr().String())

			raw := dialRaw(t, rawID, udp, b)
			// A message claiming another sender is dropped, a proper one delivered.
			if _, err := raw.str.Write(append(good(5, 0), good(rawID, 1)...)); err != nil {
				t.Fatal(err)
			}
			got := b.raft.waitForMessages(t, 0, 1)
			if got[0].GetFrom() != rawID || got[0].GetIndex() != 1 {
				t.Fatalf("delivered %v, want only the message from the authenticated peer", got[0])
			}

			if _, err := raw.str.Write(append(tc.bytes, good(rawID, 2)...)); err != nil {
				t.Fatal(err)
			}
			raw.waitClosedWith(t, codeProtocol)
			b.raft.waitUntil(t, "the bad frame is logged", func() bool {
				return b.log.has("closing peer connection", "remote=127.0.0.1:")
			})

			// A well-behaved member still gets through.
			c := newMember(t, 3, "")
			connect(b, c)
			c.Send([]*raftpb.Message{msg(3, 2, 0)})
			b.raft.waitForMessages(t, 3, 1)
			if got := b.raft.messages(rawID); len(got) != 1 {
				t.Fatalf("delivered %d messages from the bad peer, want 1 (before the bad frame)", len(got))
			}
		})
	}
}

func TestTransport_UnknownMemberIsRefused(t *testing.T) {
	checkNoLeaks(t)
	b := newMember(t, 2, "")
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { udp.Close() })
	tr := &quic.Transport{Conn: udp}
	t.Cleanup(func() { tr.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	conn, err := tr.Dial(ctx, b.Addr(), clientTLS(), &quic.Config{})
	if err != nil {
		t.Fatal(err)
	}
	str, err := conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = dialHello(ctx, conn, str, authParams{token: testToken, self: 7, clusterID: testClusterID}, 2)
	var appErr *quic.ApplicationError
	if !errors.As(err, &appErr) || appErr.ErrorCode != codeUnknownMember {
		t.Fatalf("hello from a non-member: %v, want unknown member", err)
	}
}

func TestTransport_ReconnectsAfterThePeerRestartsOnTheSamePort(t *testing.T) {
	checkNoLeaks(t)
	a, b := newMember(t, 1, ""), newMember(t, 2, "")
	connect(a, b)
	a.Send([]*raftpb.Message{msg(1, 2, 0)})
	b.raft.waitForMessages(t, 1, 1)

	addr := b.Addr().String()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	a.raft.waitUntil(t, "a notices b is gone", func() bool { return a.raft.unreachableCount(2) > 0 })

	b2 := newMember(t, 2, addr)
	connect(a, b2)
	// Messages sent while the old connection is being torn down may be
	// lost; keep sending until the new incarnation hears from a.
	next := uint64(1)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	b2.raft.waitUntil(t, "the restarted peer receives messages", func() bool {
		select {
		case <-tick.C:
			a.Send([]*raftpb.Message{msg(1, 2, next)})
			next++
		default:
		}
		return len(b2.raft.messages(1)) > 0
	})
	// Once connected, everything arrives, in order.
	first := b2.raft.messages(1)[0].GetIndex()
	for i := range uint64(100) {
		a.Send([]*raftpb.Message{msg(1, 2, next+i)})
	}
	got := b2.raft.waitForMessages(t, 1, int(next-first)+100)
	for i := 1; i < len(got); i++ {
		if got[i].GetIndex() <= got[i-1].GetIndex() {
			t.Fatalf("out of order after reconnect: index %d after %d", got[i].GetIndex(), got[i-1].GetIndex())
		}
	}
	if last := got[len(got)-1].GetIndex(); last != next+99 {
		t.Fatalf("last index %d, want %d", last, next+99)
	}
}

func TestTransport_RemovedPeerGetsNothingAndIsRefused(t *testing.T) {
	checkNoLeaks(t)
	a, b := newMember(t, 1, ""), newMember(t, 2, "")
	connect(a, b)
	b.Send([]*raftpb.Message{msg(2, 1, 0)})
	a.raft.waitForMessages(t, 2, 1)

	a.RemovePeer(2)
	a.Send([]*raftpb.Message{msg(1, 2, 0)}) // dropped: no longer a peer
	b.Send([]*raftpb.Message{msg(2, 1, 1)})
	a.raft.waitUntil(t, "a refuses the removed member", func() bool {
		return a.log.has("refused peer connection", "unknown member")
	})
	if got := len(a.raft.messages(2)); got != 1 {
		t.Fatalf("a got %d messages from b, want only the one before removal", got)
	}
	if got := len(b.raft.messages(1)); got != 0 {
		t.Fatalf("b got %d messages after a removed it", got)
	}
}

func TestTransport_CloseIsIdempotentAndSendAfterCloseIsDropped(t *testing.T) {
	checkNoLeaks(t)
	a, b := newMember(t, 1, ""), newMember(t, 2, "")
	connect(a, b)
	a.Send([]*raftpb.Message{msg(1, 2, 0)})
	b.raft.waitForMessages(t, 1, 1)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	a.Send([]*raftpb.Message{msg(1, 2, 1)})
	a.AddPeer(3, "127.0.0.1:1")
}

func TestNew_RejectsAnUnusableConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"zero ID", Config{ListenAddr: "127.0.0.1:0", Raft: newFakeRaft()}},
		{"no Raft", Config{ID: 1, ListenAddr: "127.0.0.1:0"}},
		{"negative frame limit", Config{ID: 1, ListenAddr: "127.0.0.1:0", Raft: newFakeRaft(), MaxFrameBytes: -1}},
		{"bad address", Config{ID: 1, ListenAddr: "127.0.0.1", Raft: newFakeRaft()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tr, err := New(tc.cfg); err == nil {
				tr.Close()
				t.Fatal("New accepted it")
			}
		})
	}
}
