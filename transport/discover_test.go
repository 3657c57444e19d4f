package transport

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// joinerID is the ID of the member that joins in these tests.
const joinerID = 9

// joinerLog returns a logger for DiscoverClusterID that writes to t.Log.
func joinerLog(tb testing.TB) (*slog.Logger, *logBook) {
	book := &logBook{tb: tb}
	return slog.New(slog.NewTextHandler(book, &slog.HandlerOptions{Level: slog.LevelDebug})), book
}

// silentAddr returns the address of a bound UDP socket that never answers:
// where the joiner will listen once it runs, as the existing members know it.
func silentAddr(tb testing.TB) string {
	tb.Helper()
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { udp.Close() })
	return udp.LocalAddr().String()
}

// checkNotConnected fails if m took the joiner for a connected peer or
// handed anything to Raft.
func checkNotConnected(tb testing.TB, m *member) {
	tb.Helper()
	m.mu.RLock()
	in := m.inbound[joinerID]
	m.mu.RUnlock()
	if in != nil {
		tb.Fatal("the listener keeps the discovery connection as the joiner's inbound connection")
	}
	if got := m.raft.messages(0); len(got) != 0 {
		tb.Fatalf("%d messages reached Raft", len(got))
	}
}

// discovery is a DiscoverClusterID call running in the background.
type discovery struct {
	cancel context.CancelFunc
	done   chan struct{}
	id     uint64
	err    error
}

func discoverInBackground(tb testing.TB, token string, peers map[uint64]string) *discovery {
	tb.Helper()
	logger, _ := joinerLog(tb)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	d := &discovery{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(d.done)
		d.id, d.err = DiscoverClusterID(ctx, joinerID, token, peers, logger)
	}()
	tb.Cleanup(d.stop)
	return d
}

// stop cancels the call and waits for it to return.
func (d *discovery) stop() {
	d.cancel()
	<-d.done
}

// waitFor waits until cond holds, checking every 10 ms.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDiscoverClusterID_AMemberThatKnowsTheJoinerTellsItTheClusterID(t *testing.T) {
	checkNoLeaks(t)
	b := newMember(t, 2, "")
	b.AddPeer(joinerID, silentAddr(t))
	// Member 1's address answers as member 3, so the joiner moves on to 2.
	c := newMember(t, 3, "")
	c.AddPeer(joinerID, silentAddr(t))
	logger, book := joinerLog(t)

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	peers := map[uint64]string{1: c.Addr().String(), 2: b.Addr().String(), joinerID: "ignored:1"}
	got, err := DiscoverClusterID(ctx, joinerID, testToken, peers, logger)
	if err != nil {
		t.Fatalf("DiscoverClusterID: %v", err)
	}
	if got != testClusterID {
		t.Fatalf("discovered cluster ID %x, want %x", got, testClusterID)
	}
	if !c.log.has("refused peer connection", "member ID mismatch") {
		t.Fatal("member 1 was not tried first")
	}
	if !book.has("discovered the cluster ID", "cluster=c1", "peer=2") {
		t.Fatal("the joiner did not log the discovery")
	}
	// The listener logs once its reply is written, maybe after the joiner returned.
	b.raft.waitUntil(t, "the listener logs the discovery", func() bool {
		return b.log.has("told a joining member the cluster ID", "peer=9")
	})
	checkNotConnected(t, b)
}

func TestDiscoverClusterID_RetriesUntilTheMemberAddIsApplied(t *testing.T) {
	checkNoLeaks(t)
	b := newMember(t, 2, "")
	d := discoverInBackground(t, testToken, map[uint64]string{2: b.Addr().String()})
	b.raft.waitUntil(t, "b refuses the joiner it does not know yet", func() bool {
		return b.log.has("refused peer connection", "unknown member")
	})
	b.AddPeer(joinerID, silentAddr(t))
	<-d.done
	if d.err != nil || d.id != testClusterID {
		t.Fatalf("DiscoverClusterID = %x, %v; want %x", d.id, d.err, testClusterID)
	}
	checkNotConnected(t, b)
}

func TestDiscoverClusterID_KeepsRetryingWhileTheListenerRefuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		token  string
		expect uint64        // the ID the joiner expects at b's address
		edit   func(*Config) // of b
		add    bool          // b knows the joiner
		code   quic.ApplicationErrorCode
		reason string
	}{
		{"wrong token", "another-cluster-token", 2, nil, true, codeTokenMismatch, "cluster token mismatch"},
		{"listener does not know the joiner", testToken, 2, nil, false, codeUnknownMember, "unknown member"},
		{"listener has another ID than expected", testToken, 5, nil, true, codeMemberMismatch, "member ID mismatch"},
		{"listener has no cluster ID", testToken, 2, func(c *Config) { c.ClusterID = 0 }, true, codeClusterMismatch, "cluster ID mismatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkNoLeaks(t)
			var edits []func(*Config)
			if tc.edit != nil {
				edits = append(edits, tc.edit)
			}
			b := newMember(t, 2, "", edits...)
			if tc.add {
				b.AddPeer(joinerID, silentAddr(t))
			}
			d := discoverInBackground(t, tc.token, map[uint64]string{tc.expect: b.Addr().String()})
			b.raft.waitUntil(t, "the listener refuses the joiner again and again", func() bool {
				return b.log.count("refused peer connection", tc.reason) >= 3
			})
			d.stop()
			if d.err == nil {
				t.Fatalf("discovered cluster ID %x", d.id)
			}
			if !errors.Is(d.err, context.Canceled) {
				t.Fatalf("error %v does not say the context ended", d.err)
			}
			var appErr *quic.ApplicationError
			if !errors.As(d.err, &appErr) || appErr.ErrorCode != tc.code || !appErr.Remote {
				t.Fatalf("error %v does not carry the listener's refusal %#x", d.err, tc.code)
			}
			checkNotConnected(t, b)
		})
	}
}

// rogueListener is a listener that reads a discovery hello and answers it
// with what reply makes of it, then waits for the dialer to close. It
// records the codes the dialer closed with.
type rogueListener struct {
	addr  string
	mu    sync.Mutex
	codes []quic.ApplicationErrorCode
}

func newRogueListener(tb testing.TB, reply func(ekm []byte, h *hello) *hello) *rogueListener {
	tb.Helper()
	cert, err := selfSignedCert()
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := quic.ListenAddr("127.0.0.1:0", serverTLS(cert), &quic.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	r := &rogueListener{addr: ln.Addr().String()}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			r.serve(ctx, conn, reply)
		}
	}()
	tb.Cleanup(func() {
		cancel()
		ln.Close()
		wg.Wait()
	})
	return r
}

func (r *rogueListener) serve(ctx context.Context, conn *quic.Conn, reply func(ekm []byte, h *hello) *hello) {
	defer conn.CloseWithError(0, "")
	ctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	str, err := conn.AcceptStream(ctx)
	if err != nil {
		return
	}
	payload, err := readFrame(str, nil, maxHelloBytes)
	if err != nil {
		return
	}
	h, err := decodeHello(payload)
	if err != nil {
		return
	}
	ekm, err := exportedKey(conn)
	if err != nil {
		return
	}
	frame, err := appendHelloFrame(nil, reply(ekm, h))
	if err != nil {
		return
	}
	if _, err := str.Write(frame); err != nil {
		return
	}
	select {
	case <-conn.Context().Done():
	case <-ctx.Done():
		return
	}
	var appErr *quic.ApplicationError
	if errors.As(context.Cause(conn.Context()), &appErr) && appErr.Remote {
		r.mu.Lock()
		r.codes = append(r.codes, appErr.ErrorCode)
		r.mu.Unlock()
	}
}

func (r *rogueListener) closeCodes() []quic.ApplicationErrorCode {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]quic.ApplicationErrorCode(nil), r.codes...)
}

func TestDiscoverClusterID_TheJoinerChecksTheAnswer(t *testing.T) {
	const rogueID = 2
	answer := func(token string, from, to, clusterID uint64) func([]byte, *hello) *hello {
		return func(ekm []byte, _ *hello) *hello {
			return &hello{From: from, To: to, ClusterID: clusterID,
				MAC: helloMAC(token, ekm, roleAccept, from, to, clusterID)}
		}
	}
	for _, tc := range []struct {
		name  string
		reply func(ekm []byte, h *hello) *hello
		code  quic.ApplicationErrorCode // the joiner's refusal; 0: accepted
	}{
		{"a proper answer is accepted", answer(testToken, rogueID, joinerID, testClusterID), codeNoError},
		{"answer from another member", answer(testToken, 3, joinerID, testClusterID), codeMemberMismatch},
		{"answer to another joiner", answer(testToken, rogueID, 8, testClusterID), codeMemberMismatch},
		{"answer without a cluster ID", answer(testToken, rogueID, joinerID, 0), codeProtocol},
		{"answer without the token", answer("another-cluster-token", rogueID, joinerID, testClusterID), codeTokenMismatch},
		{"answer reflecting the joiner's MAC", func(_ []byte, h *hello) *hello {
			return &hello{From: rogueID, To: joinerID, ClusterID: testClusterID, MAC: h.MAC}
		}, codeTokenMismatch},
		{"answer MAC'd as a discovery", func(ekm []byte, _ *hello) *hello {
			return &hello{From: rogueID, To: joinerID, ClusterID: testClusterID,
				MAC: helloMAC(testToken, ekm, roleDiscover, rogueID, joinerID, testClusterID)}
		}, codeTokenMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkNoLeaks(t)
			var asked atomic.Bool
			rogue := newRogueListener(t, func(ekm []byte, h *hello) *hello {
				// What the joiner sends: a discovery hello it MAC'd.
				if h.From == joinerID && h.To == rogueID && h.ClusterID == 0 &&
					string(h.MAC) == string(helloMAC(testToken, ekm, roleDiscover, joinerID, rogueID, 0)) {
					asked.Store(true)
				}
				return tc.reply(ekm, h)
			})
			d := discoverInBackground(t, testToken, map[uint64]string{rogueID: rogue.addr})
			if tc.code == codeNoError {
				<-d.done
				if d.err != nil || d.id != testClusterID {
					t.Fatalf("DiscoverClusterID = %x, %v; want %x", d.id, d.err, testClusterID)
				}
			} else {
				waitFor(t, "the joiner refuses the answer again and again", func() bool {
					return len(rogue.closeCodes()) >= 3
				})
				d.stop()
			}
			if !asked.Load() {
				t.Fatal("the joiner did not send a discovery hello MAC'd with the token")
			}
			if tc.code == codeNoError {
				return
			}
			if d.err == nil {
				t.Fatalf("the joiner trusted the answer: cluster ID %x", d.id)
			}
			var he *handshakeError
			if !errors.Is(d.err, context.Canceled) || !errors.As(d.err, &he) || he.code != tc.code {
				t.Fatalf("error %v, want the context's end and refusal %#x", d.err, tc.code)
			}
			for _, c := range rogue.closeCodes() {
				if c != tc.code {
					t.Fatalf("the joiner closed with %#x, want %#x", c, tc.code)
				}
			}
		})
	}
}

func TestDiscoverClusterID_RejectsUnusableArguments(t *testing.T) {
	for _, tc := range []struct {
		name  string
		self  uint64
		peers map[uint64]string
	}{
		{"joiner ID 0", 0, map[uint64]string{2: "127.0.0.1:1"}},
		{"no peers", joinerID, nil},
		{"only itself and ID 0", joinerID, map[uint64]string{joinerID: "127.0.0.1:1", 0: "127.0.0.1:2"}},
		{"a peer URL instead of host:port", joinerID, map[uint64]string{2: "https://127.0.0.1:2380"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := DiscoverClusterID(context.Background(), tc.self, testToken, tc.peers, nil); !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("err = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestTransport_HelloWithoutTheClusterIDIsStillRefused(t *testing.T) {
	for _, tc := range []struct {
		name      string
		role      string
		clusterID uint64
		code      quic.ApplicationErrorCode
	}{
		{"dial hello with cluster ID 0", roleDial, 0, codeClusterMismatch},
		{"discovery hello with a cluster ID", roleDiscover, testClusterID, codeTokenMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkNoLeaks(t)
			b := newMember(t, 2, "")
			b.AddPeer(joinerID, silentAddr(t))
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
			a := authParams{token: testToken, self: joinerID, clusterID: tc.clusterID}
			_, err = exchangeHello(ctx, conn, str, a, tc.role, 2)
			var appErr *quic.ApplicationError
			if !errors.As(err, &appErr) || appErr.ErrorCode != tc.code || !appErr.Remote {
				t.Fatalf("hello: %v, want remote refusal %#x", err, tc.code)
			}
			checkNotConnected(t, b)
		})
	}
}
