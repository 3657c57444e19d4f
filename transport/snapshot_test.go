package transport

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// receiveFunc adapts a function to SnapshotReceiver.
type receiveFunc func(ctx context.Context, m *raftpb.Message, size int64, db io.Reader) error

func (f receiveFunc) ReceiveSnapshot(ctx context.Context, m *raftpb.Message, size int64, db io.Reader) error {
	return f(ctx, m, size, db)
}

// snapStore is a SnapshotReceiver that keeps every db it reads in full and
// every error it sees.
type snapStore struct {
	mu   sync.Mutex
	dbs  [][]byte
	errs []error
}

func (s *snapStore) ReceiveSnapshot(_ context.Context, _ *raftpb.Message, size int64, db io.Reader) error {
	b, err := io.ReadAll(db)
	if err == nil && int64(len(b)) != size {
		err = errors.New("wrong size")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.errs = append(s.errs, err)
		return err
	}
	s.dbs = append(s.dbs, b)
	return nil
}

func (s *snapStore) stored() ([][]byte, []error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.dbs), slices.Clone(s.errs)
}

// dbReader is a db for SendSnapshot that records whether it was closed.
type dbReader struct {
	io.Reader
	closed atomic.Bool
}

func newDB(b []byte) *dbReader { return &dbReader{Reader: bytes.NewReader(b)} }

func (d *dbReader) Close() error {
	d.closed.Store(true)
	return nil
}

func withSnapshots(r SnapshotReceiver) func(*Config) {
	return func(c *Config) { c.Snapshots = r }
}

// snapshotsDelivered returns the MsgSnaps r's Raft got.
func snapshotsDelivered(r *fakeRaft) []*raftpb.Message {
	var out []*raftpb.Message
	for _, m := range r.messages(0) {
		if m.GetType() == raftpb.MsgSnap {
			out = append(out, m)
		}
	}
	return out
}

// waitSnapshotReports waits until want are exactly the snapshot reports r
// made about peer.
func waitSnapshotReports(tb testing.TB, r *fakeRaft, peer uint64, want ...raft.SnapshotStatus) {
	tb.Helper()
	r.waitUntil(tb, "the snapshot reports", func() bool { return len(r.snapshotReports(peer)) >= len(want) })
	if got := r.snapshotReports(peer); !slices.Equal(got, want) {
		tb.Fatalf("snapshot reports %v, want %v", got, want)
	}
}

// waitClosed waits until db was closed.
func waitClosed(tb testing.TB, r *fakeRaft, db *dbReader) {
	tb.Helper()
	r.waitUntil(tb, "the db is closed", db.closed.Load)
}

func TestSnapshot_LargeSnapshotCrossesWhileMessagesKeepFlowingInOrder(t *testing.T) {
	checkNoLeaks(t)
	const (
		dbSize = 24 << 20
		n      = 3000
	)
	db := dbOf(dbSize, 7)
	started, resume := make(chan struct{}), make(chan struct{})
	type result struct {
		db             []byte
		err            error
		msgsWhenStored int
	}
	results := make(chan result, 1)
	var b *member
	recv := receiveFunc(func(ctx context.Context, m *raftpb.Message, size int64, r io.Reader) error {
		// Read a few chunks, then stop reading until the test has seen
		// all the messages: they must get past a stalled snapshot.
		var buf bytes.Buffer
		_, err := io.CopyN(&buf, r, 1<<20)
		close(started)
		if err == nil {
			select {
			case <-resume:
			case <-ctx.Done():
				return ctx.Err()
			}
			_, err = io.Copy(&buf, r)
		}
		results <- result{buf.Bytes(), err, len(b.raft.messages(1))}
		return err
	})
	a := newMember(t, 1, "", withSnapshots(&snapStore{}))
	b = newMember(t, 2, "", withSnapshots(recv))
	connect(a, b)

	dbr := newDB(db)
	a.SendSnapshot(snapMsg(1, 2, 500), dbr, dbSize)
	select {
	case <-started:
	case <-time.After(waitTimeout):
		t.Fatal("the snapshot did not start")
	}
	// Heartbeats and appends while the snapshot is mid-stream.
	for i := range n {
		if i%4 == 0 {
			a.Send([]*raftpb.Message{{Type: raftpb.MsgHeartbeat.Enum(), From: proto.Uint64(1), To: proto.Uint64(2), Term: proto.Uint64(3)}})
		}
		a.Send([]*raftpb.Message{msg(1, 2, uint64(i))})
	}
	b.raft.waitUntil(t, "all messages arrive during the snapshot", func() bool {
		apps := 0
		for _, m := range b.raft.messages(1) {
			if m.GetType() == raftpb.MsgApp {
				apps++
			}
		}
		return apps == n
	})
	if s := snapshotsDelivered(b.raft); len(s) != 0 {
		t.Fatal("the MsgSnap reached Raft before its db was read")
	}
	close(resume)

	res := <-results
	if res.err != nil || !bytes.Equal(res.db, db) {
		t.Fatalf("receiver got %d bytes, err %v; want the %d-byte db", len(res.db), res.err, dbSize)
	}
	waitSnapshotReports(t, a.raft, 2, raft.SnapshotFinish)
	waitClosed(t, a.raft, dbr)
	var apps []*raftpb.Message
	for _, m := range b.raft.messages(1) {
		if m.GetType() == raftpb.MsgApp {
			apps = append(apps, m)
		}
	}
	checkInOrder(t, apps, 1, 2, n)
	if want := n + (n+3)/4; res.msgsWhenStored != want {
		t.Fatalf("%d messages delivered when the db was stored, want all %d", res.msgsWhenStored, want)
	}
	s := snapshotsDelivered(b.raft)
	if len(s) != 1 || !proto.Equal(s[0], snapMsg(1, 2, 500)) {
		t.Fatalf("Raft got snapshots %v, want the one MsgSnap", s)
	}
}

func TestSnapshot_CorruptChunkIsRefusedAndTheNextSnapshotSucceeds(t *testing.T) {
	checkNoLeaks(t)
	store := &snapStore{}
	a := newMember(t, 1, "", withSnapshots(&snapStore{}))
	b := newMember(t, 2, "", withSnapshots(store))
	var corrupted atomic.Bool
	a.mangleChunk = func(i int, wire []byte) {
		if i == 3 && corrupted.CompareAndSwap(false, true) {
			wire[chunkHeaderLen+100] ^= 0x40
		}
	}
	connect(a, b)
	a.Send([]*raftpb.Message{msg(1, 2, 0)})
	b.raft.waitForMessages(t, 1, 1)

	db := dbOf(3<<20, 1)
	first := newDB(db)
	a.SendSnapshot(snapMsg(1, 2, 10), first, int64(len(db)))
	waitSnapshotReports(t, a.raft, 2, raft.SnapshotFailure)
	waitClosed(t, a.raft, first)
	a.raft.waitUntil(t, "a reports b unreachable", func() bool { return a.raft.unreachableCount(2) > 0 })
	dbs, errs := store.stored()
	if len(dbs) != 0 || len(errs) != 1 || !errors.Is(errs[0], ErrSnapshotCorrupt) {
		t.Fatalf("receiver stored %d dbs and saw %v; want one ErrSnapshotCorrupt", len(dbs), errs)
	}
	if !b.log.has("refused snapshot", "CRC") || !a.log.has("sending snapshot failed", "CRC") {
		t.Fatal("the refusal and its reason are not logged on both sides")
	}
	if len(snapshotsDelivered(b.raft)) != 0 {
		t.Fatal("a corrupt snapshot reached Raft")
	}

	second := newDB(db)
	a.SendSnapshot(snapMsg(1, 2, 11), second, int64(len(db)))
	waitSnapshotReports(t, a.raft, 2, raft.SnapshotFailure, raft.SnapshotFinish)
	waitClosed(t, a.raft, second)
	if dbs, _ := store.stored(); len(dbs) != 1 || !bytes.Equal(dbs[0], db) {
		t.Fatal("the second snapshot was not stored intact")
	}
	if s := snapshotsDelivered(b.raft); len(s) != 1 || s[0].GetSnapshot().GetMetadata().GetIndex() != 11 {
		t.Fatalf("Raft got snapshots %v, want only index 11", s)
	}
	// The message stream was never interrupted.
	a.Send([]*raftpb.Message{msg(1, 2, 1)})
	b.raft.waitForMessages(t, 1, 3)
	if b.log.has("peer disconnected") || a.log.has("lost connection") {
		t.Fatal("a bad snapshot stream closed the connection")
	}
}

func TestSnapshot_DbShorterThanItsSizeFailsAndTheReceiverSeesATruncatedStream(t *testing.T) {
	checkNoLeaks(t)
	store := &snapStore{}
	a := newMember(t, 1, "", withSnapshots(&snapStore{}))
	b := newMember(t, 2, "", withSnapshots(store))
	connect(a, b)

	db := newDB(dbOf(1<<20, 2))
	a.SendSnapshot(snapMsg(1, 2, 10), db, 2<<20)
	waitSnapshotReports(t, a.raft, 2, raft.SnapshotFailure)
	waitClosed(t, a.raft, db)
	b.raft.waitUntil(t, "the receiver sees the stream break", func() bool {
		_, errs := store.stored()
		return len(errs) == 1
	})
	if _, errs := store.stored(); !errors.Is(errs[0], ErrSnapshotCorrupt) {
		t.Fatalf("receiver saw %v, want ErrSnapshotCorrupt", errs[0])
	}
	if !a.log.has("sending snapshot failed", "reading the db") {
		t.Fatal("the sender does not say the db was short")
	}
}

func TestSnapshot_OversizeSnapshotIsRefusedBeforeItsDbIsRead(t *testing.T) {
	checkNoLeaks(t)
	var calls atomic.Int32
	recv := receiveFunc(func(context.Context, *raftpb.Message, int64, io.Reader) error {
		calls.Add(1)
		return nil
	})
	a := newMember(t, 1, "", withSnapshots(&snapStore{}))
	b := newMember(t, 2, "", withSnapshots(recv), func(c *Config) { c.MaxSnapshotBytes = 1 << 20 })
	connect(a, b)

	db := newDB(dbOf(4<<20, 3))
	a.SendSnapshot(snapMsg(1, 2, 10), db, 4<<20)
	waitSnapshotReports(t, a.raft, 2, raft.SnapshotFailure)
	waitClosed(t, a.raft, db)
	if !b.log.has("refused snapshot", "snapshot too large") {
		t.Fatal("the receiver does not log the refusal")
	}
	a.raft.waitUntil(t, "the sender logs the reason", func() bool {
		return a.log.has("sending snapshot failed", "peer refused the snapshot", "snapshot too large")
	})
	if calls.Load() != 0 || len(snapshotsDelivered(b.raft)) != 0 {
		t.Fatal("an oversize snapshot reached the receiver or Raft")
	}
}

// openRawSnapshot opens a snapshot stream on raw's connection, writes
// stream after the kind byte and returns the listener's ack.
func openRawSnapshot(tb testing.TB, raw *rawPeer, stream []byte) (*snapshotAck, error) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	str, err := raw.conn.OpenStreamSync(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	defer str.CancelRead(0)
	_ = str.SetDeadline(time.Now().Add(waitTimeout))
	_, _ = str.Write(append([]byte{streamKindSnapshot}, stream...))
	_ = str.Close()
	return readAck(str)
}

func TestSnapshot_BadStreamsFromAnAuthenticatedPeerAreRefusedAlone(t *testing.T) {
	const rawID = 9
	db := dbOf(10_000, 4)
	good := func(m *raftpb.Message) []byte { return encodeSnapshotStream(t, m, db, 4096) }
	corrupt := good(snapMsg(rawID, 2, 1))
	corrupt[len(corrupt)-20] ^= 1
	for _, tc := range []struct {
		name   string
		stream []byte
		reason string
	}{
		{"size above the limit", func() []byte {
			h, _ := appendSnapshotHeader(nil, snapMsg(rawID, 2, 1), 1<<40)
			return h
		}(), "snapshot too large"},
		{"sender other than the authenticated peer", good(snapMsg(5, 2, 1)), "on a connection from 9"},
		{"recipient other than this member", good(snapMsg(rawID, 3, 1)), "on a connection from 9"},
		{"chunk CRC mismatch", corrupt, "CRC"},
		{"truncated", good(snapMsg(rawID, 2, 1))[:6000], "stream ended"},
		{"header above the frame limit", func() []byte {
			m := snapMsg(rawID, 2, 1)
			m.Snapshot.Data = make([]byte, 5000)
			return good(m)
		}(), "frame too large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkNoLeaks(t)
			store := &snapStore{}
			b := newMember(t, 2, "", withSnapshots(store), func(c *Config) { c.MaxFrameBytes = 4096 })
			udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { udp.Close() })
			b.AddPeer(rawID, udp.LocalAddr().String())
			raw := dialRaw(t, rawID, udp, b)

			ack, err := openRawSnapshot(t, raw, tc.stream)
			if err != nil {
				t.Fatalf("no ack: %v", err)
			}
			if ack.Status != ackRefused || !bytes.Contains([]byte(ack.Reason), []byte(tc.reason)) {
				t.Fatalf("ack %+v, want a refusal naming %q", ack, tc.reason)
			}
			if !b.log.has("refused snapshot", "remote=127.0.0.1:") {
				t.Fatal("the refusal is not logged with the remote address")
			}
			if dbs, _ := store.stored(); len(dbs) != 0 || len(snapshotsDelivered(b.raft)) != 0 {
				t.Fatal("a bad snapshot was stored or reached Raft")
			}

			// The connection serves on: messages, then a good snapshot.
			f, err := EncodeFrame([]*raftpb.Message{msg(rawID, 2, 0)})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := raw.str.Write(f); err != nil {
				t.Fatal(err)
			}
			b.raft.waitForMessages(t, rawID, 1)
			ack, err = openRawSnapshot(t, raw, good(snapMsg(rawID, 2, 2)))
			if err != nil || ack.Status != ackStored {
				t.Fatalf("good snapshot after a bad one: ack %+v, %v", ack, err)
			}
			if dbs, _ := store.stored(); len(dbs) != 1 || !bytes.Equal(dbs[0], db) {
				t.Fatal("the good snapshot was not stored")
			}
			if s := snapshotsDelivered(b.raft); len(s) != 1 {
				t.Fatalf("Raft got %d snapshots, want 1", len(s))
			}
		})
	}
}

func TestSnapshot_StreamsWithoutAnAuthenticatedHelloAreRefused(t *testing.T) {
	for _, tc := range []struct {
		name  string
		hello bool // send a valid hello from an ID b does not know
		code  quic.ApplicationErrorCode
	}{
		{"no hello at all", false, codeProtocol},
		{"hello from an unknown member", true, codeUnknownMember},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkNoLeaks(t)
			var calls atomic.Int32
			recv := receiveFunc(func(context.Context, *raftpb.Message, int64, io.Reader) error {
				calls.Add(1)
				return nil
			})
			b := newMember(t, 2, "", withSnapshots(recv))
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
			t.Cleanup(func() { conn.CloseWithError(0, "") })
			str, err := conn.OpenStreamSync(ctx)
			if err != nil {
				t.Fatal(err)
			}
			stream := append([]byte{streamKindSnapshot}, encodeSnapshotStream(t, snapMsg(7, 2, 1), dbOf(1000, 5), 256)...)
			if tc.hello {
				// A stream opened while the hello is still under way.
				if second, err := conn.OpenStreamSync(ctx); err == nil {
					_, _ = second.Write(stream)
				}
				err = dialHello(ctx, conn, str, authParams{token: testToken, self: 7, clusterID: testClusterID}, 2)
				if err == nil {
					t.Fatal("b accepted a hello from a member it does not know")
				}
			} else {
				_, _ = str.Write(stream)
			}
			select {
			case <-conn.Context().Done():
			case <-ctx.Done():
				t.Fatal("the connection stayed open")
			}
			var appErr *quic.ApplicationError
			if err := context.Cause(conn.Context()); !errors.As(err, &appErr) || appErr.ErrorCode != tc.code {
				t.Fatalf("connection closed with %v, want application error %#x", err, tc.code)
			}
			if calls.Load() != 0 || len(b.raft.messages(0)) != 0 {
				t.Fatal("an unauthenticated snapshot reached the receiver or Raft")
			}
		})
	}
}

func TestSnapshot_FinishIsReportedOnlyAfterTheReceiverAcked(t *testing.T) {
	checkNoLeaks(t)
	read, release := make(chan struct{}), make(chan struct{})
	recv := receiveFunc(func(ctx context.Context, _ *raftpb.Message, _ int64, db io.Reader) error {
		if _, err := io.Copy(io.Discard, db); err != nil {
			return err
		}
		close(read)
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	a := newMember(t, 1, "", withSnapshots(&snapStore{}))
	b := newMember(t, 2, "", withSnapshots(recv))
	connect(a, b)

	db := newDB(dbOf(2<<20, 6))
	a.SendSnapshot(snapMsg(1, 2, 10), db, 2<<20)
	select {
	case <-read:
	case <-time.After(waitTimeout):
		t.Fatal("the receiver did not get the db")
	}
	// Everything is written and the end marker checked; the sender must
	// still wait for the ack. Give a premature report time to show.
	time.Sleep(300 * time.Millisecond)
	if r := a.raft.snapshotReports(2); len(r) != 0 {
		t.Fatalf("reported %v before the receiver stored the db", r)
	}
	close(release)
	waitSnapshotReports(t, a.raft, 2, raft.SnapshotFinish)
	if len(snapshotsDelivered(b.raft)) != 1 {
		t.Fatal("Finish reported but Raft did not get the MsgSnap")
	}
	waitClosed(t, a.raft, db)
}

func TestSnapshot_ASecondSnapshotToTheSamePeerFailsFast(t *testing.T) {
	checkNoLeaks(t)
	entered, release := make(chan struct{}, 2), make(chan struct{})
	recv := receiveFunc(func(ctx context.Context, _ *raftpb.Message, _ int64, db io.Reader) error {
		entered <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		_, err := io.Copy(io.Discard, db)
		return err
	})
	a := newMember(t, 1, "", withSnapshots(&snapStore{}))
	b := newMember(t, 2, "", withSnapshots(recv))
	connect(a, b)

	first, second := newDB(dbOf(1<<20, 1)), newDB(dbOf(1<<20, 2))
	a.SendSnapshot(snapMsg(1, 2, 10), first, 1<<20)
	<-entered
	a.SendSnapshot(snapMsg(1, 2, 11), second, 1<<20)
	if !second.closed.Load() {
		t.Fatal("the refused db was not closed")
	}
	waitSnapshotReports(t, a.raft, 2, raft.SnapshotFailure)
	close(release)
	waitSnapshotReports(t, a.raft, 2, raft.SnapshotFailure, raft.SnapshotFinish)
	waitClosed(t, a.raft, first)
	if s := snapshotsDelivered(b.raft); len(s) != 1 || s[0].GetSnapshot().GetMetadata().GetIndex() != 10 {
		t.Fatalf("Raft got %v, want only the first snapshot", s)
	}
}

func TestSnapshot_SendDropsAMsgSnapWhenSnapshotsAreStreamed(t *testing.T) {
	checkNoLeaks(t)
	a := newMember(t, 1, "", withSnapshots(&snapStore{}))
	b := newMember(t, 2, "", withSnapshots(&snapStore{}))
	connect(a, b)
	a.Send([]*raftpb.Message{snapMsg(1, 2, 10), msg(1, 2, 0)})
	b.raft.waitForMessages(t, 1, 1)
	waitSnapshotReports(t, a.raft, 2, raft.SnapshotFailure)
	if !a.log.has("dropping a MsgSnap passed to Send") {
		t.Fatal("the drop is not logged")
	}
	if len(snapshotsDelivered(b.raft)) != 0 {
		t.Fatal("the MsgSnap was sent as a message")
	}
}

func TestSnapshot_SendSnapshotRefusesWhatItCannotSend(t *testing.T) {
	checkNoLeaks(t)
	a := newMember(t, 1, "", withSnapshots(&snapStore{}))
	for _, tc := range []struct {
		name string
		m    *raftpb.Message
		size int64
		peer uint64
	}{
		{"unknown peer", snapMsg(1, 3, 1), 0, 3},
		{"not a MsgSnap", msg(1, 3, 1), 0, 3},
		{"from another member", snapMsg(4, 3, 1), 0, 3},
		{"negative size", snapMsg(1, 3, 1), -1, 3},
	} {
		db := newDB(nil)
		a.SendSnapshot(tc.m, db, tc.size)
		if !db.closed.Load() {
			t.Fatalf("%s: db not closed", tc.name)
		}
	}
	waitSnapshotReports(t, a.raft, 3, raft.SnapshotFailure, raft.SnapshotFailure, raft.SnapshotFailure, raft.SnapshotFailure)
}

func TestSnapshot_ClosingTheReceiverMidTransferFailsTheSenderAndLeaksNothing(t *testing.T) {
	checkNoLeaks(t)
	started := make(chan struct{})
	recv := receiveFunc(func(ctx context.Context, _ *raftpb.Message, _ int64, db io.Reader) error {
		if _, err := io.CopyN(io.Discard, db, 1<<20); err != nil {
			return err
		}
		close(started)
		<-ctx.Done()
		return ctx.Err()
	})
	a := newMember(t, 1, "", withSnapshots(&snapStore{}))
	b := newMember(t, 2, "", withSnapshots(recv))
	connect(a, b)

	db := newDB(dbOf(8<<20, 8))
	a.SendSnapshot(snapMsg(1, 2, 10), db, 8<<20)
	<-started
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	waitSnapshotReports(t, a.raft, 2, raft.SnapshotFailure)
	waitClosed(t, a.raft, db)
}

func TestSnapshot_EmptyDbCrosses(t *testing.T) {
	checkNoLeaks(t)
	store := &snapStore{}
	a := newMember(t, 1, "", withSnapshots(&snapStore{}))
	b := newMember(t, 2, "", withSnapshots(store))
	connect(a, b)
	a.SendSnapshot(snapMsg(1, 2, 10), newDB(nil), 0)
	waitSnapshotReports(t, a.raft, 2, raft.SnapshotFinish)
	if dbs, errs := store.stored(); len(dbs) != 1 || len(dbs[0]) != 0 || len(errs) != 0 {
		t.Fatalf("stored %d dbs, errors %v", len(dbs), errs)
	}
}

func TestSnapshot_StreamOfUnknownKindIsResetAndTheConnectionStays(t *testing.T) {
	checkNoLeaks(t)
	const rawID = 9
	b := newMember(t, 2, "", withSnapshots(&snapStore{}))
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { udp.Close() })
	b.AddPeer(rawID, udp.LocalAddr().String())
	raw := dialRaw(t, rawID, udp, b)

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	str, err := raw.conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := str.Write([]byte{'X', 1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	_ = str.SetReadDeadline(time.Now().Add(waitTimeout))
	_, err = str.Read(make([]byte, 1))
	var se *quic.StreamError
	if !errors.As(err, &se) || se.ErrorCode != streamCodeUnknownKind || !se.Remote {
		t.Fatalf("read %v, want the stream reset with %#x", err, streamCodeUnknownKind)
	}
	if !b.log.has("refusing a peer stream of unknown kind", "kind=0x58") {
		t.Fatal("the unknown kind is not logged")
	}
	f, err := EncodeFrame([]*raftpb.Message{msg(rawID, 2, 0)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.str.Write(f); err != nil {
		t.Fatal(err)
	}
	b.raft.waitForMessages(t, rawID, 1)
}
