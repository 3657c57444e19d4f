package transport

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/quic-go/quic-go"
)

const (
	// ALPN is the TLS application protocol of the peer wire. It names the
	// frame format: a change to the wire structs needs a new version.
	ALPN = "edgekv-raft/1"

	// exporterLabel is the TLS exporter label of the hello MAC.
	exporterLabel = "EXPORTER-edgekv-peer-auth"
	ekmLen        = 32
	macLen        = sha256.Size

	// The role strings that make the dialer's and the listener's MACs differ,
	// so neither side can reflect the other's proof. roleDiscover marks the
	// hello of a joining member that asks for the cluster ID
	// (DiscoverClusterID): a hello MAC'd for one purpose never passes for
	// the other.
	roleDial     = "dial"
	roleAccept   = "accept"
	roleDiscover = "discover"

	// serverName is the SNI and certificate name. Certificates are not
	// verified; it only has to be the same on both ends.
	serverName = "edgekv-peer"

	// maxHelloBytes bounds a hello frame's payload.
	maxHelloBytes = 128
)

// QUIC application error codes sent when closing a connection.
const (
	codeNoError         quic.ApplicationErrorCode = 0x0
	codeTokenMismatch   quic.ApplicationErrorCode = 0x1
	codeClusterMismatch quic.ApplicationErrorCode = 0x2
	codeMemberMismatch  quic.ApplicationErrorCode = 0x3
	codeUnknownMember   quic.ApplicationErrorCode = 0x4
	codeProtocol        quic.ApplicationErrorCode = 0x5
	codeSuperseded      quic.ApplicationErrorCode = 0x6
	codeShutdown        quic.ApplicationErrorCode = 0x7
)

// handshakeError is a failed hello exchange: the code and reason the
// connection is closed with, and the cause for the log.
type handshakeError struct {
	code   quic.ApplicationErrorCode
	reason string
	err    error
}

func (e *handshakeError) Error() string {
	if e.err == nil {
		return e.reason
	}
	return e.reason + ": " + e.err.Error()
}

func (e *handshakeError) Unwrap() error { return e.err }

func refuse(code quic.ApplicationErrorCode, reason string, err error) *handshakeError {
	return &handshakeError{code: code, reason: reason, err: err}
}

// closeOnError closes conn with the code of err (codeProtocol if err is not
// a handshakeError) unless the peer already closed it.
func closeOnError(conn *quic.Conn, err error) {
	code, reason := codeProtocol, "handshake failed"
	var he *handshakeError
	if errors.As(err, &he) {
		code, reason = he.code, he.reason
	}
	_ = conn.CloseWithError(code, reason)
}

// selfSignedCert returns a fresh ECDSA P-256 certificate. Peers do not
// verify it; the hello MAC authenticates the session instead.
func selfSignedCert() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("transport: generating key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("transport: generating serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: serverName},
		DNSNames:              []string{serverName},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("transport: creating certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func serverTLS(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{ALPN},
		MinVersion:   tls.VersionTLS13,
	}
}

func clientTLS() *tls.Config {
	return &tls.Config{
		ServerName: serverName,
		NextProtos: []string{ALPN},
		MinVersion: tls.VersionTLS13,
		// The certificate is self-signed and deliberately not verified:
		// the hello MAC over the TLS exporter proves the listener knows
		// the cluster token and binds that proof to this session.
		InsecureSkipVerify: true, //nolint:gosec // see above
	}
}

// helloMAC is HMAC-SHA256(key = token, msg = ekm || role || from || to ||
// clusterID), the integers as 8-byte big-endian.
func helloMAC(token string, ekm []byte, role string, from, to, clusterID uint64) []byte {
	h := hmac.New(sha256.New, []byte(token))
	h.Write(ekm)
	h.Write([]byte(role))
	var b [24]byte
	binary.BigEndian.PutUint64(b[0:], from)
	binary.BigEndian.PutUint64(b[8:], to)
	binary.BigEndian.PutUint64(b[16:], clusterID)
	h.Write(b[:])
	return h.Sum(nil)
}

// exportedKey returns the TLS exporter keying material of conn.
func exportedKey(conn *quic.Conn) ([]byte, error) {
	cs := conn.ConnectionState().TLS
	ekm, err := cs.ExportKeyingMaterial(exporterLabel, nil, ekmLen)
	if err != nil {
		return nil, fmt.Errorf("transport: exporting keying material: %w", err)
	}
	return ekm, nil
}

// authParams are the identities both ends of a hello exchange check.
type authParams struct {
	token     string
	self      uint64
	clusterID uint64
}

// dialHello runs the dialer's side of the hello exchange on str, a stream
// it just opened on conn to the member it knows as peer. On failure the
// caller closes conn with closeOnError.
func dialHello(ctx context.Context, conn *quic.Conn, str *quic.Stream, a authParams, peer uint64) error {
	h, err := exchangeHello(ctx, conn, str, a, roleDial, peer)
	if err != nil {
		return err
	}
	if h.ClusterID != a.clusterID {
		return refuse(codeClusterMismatch, "cluster ID mismatch",
			fmt.Errorf("peer is in cluster %x, this member in %x", h.ClusterID, a.clusterID))
	}
	return checkReplyFrom(h, a, peer)
}

// discoverHello runs a joining member's side of the discovery hello on
// str, a stream it just opened on conn to the member it knows as peer, and
// returns the cluster ID the peer proved. a.clusterID is ignored: the
// discovery hello carries 0. On failure the caller closes conn with
// closeOnError.
func discoverHello(ctx context.Context, conn *quic.Conn, str *quic.Stream, a authParams, peer uint64) (uint64, error) {
	a.clusterID = 0
	h, err := exchangeHello(ctx, conn, str, a, roleDiscover, peer)
	if err != nil {
		return 0, err
	}
	if err := checkReplyFrom(h, a, peer); err != nil {
		return 0, err
	}
	if h.ClusterID == 0 {
		return 0, refuse(codeProtocol, "no cluster ID in the reply", nil)
	}
	return h.ClusterID, nil
}

// checkReplyFrom checks that the listener's reply h comes from the member
// the dialer meant to reach and is addressed to the dialer.
func checkReplyFrom(h *hello, a authParams, peer uint64) error {
	if h.From != peer || h.To != a.self {
		return refuse(codeMemberMismatch, "member ID mismatch",
			fmt.Errorf("expected member %x, the address answers as %x (for %x)", peer, h.From, h.To))
	}
	return nil
}

// exchangeHello sends the dialer's hello, MAC'd for role, and returns the
// listener's reply once its MAC proved the token. The caller checks the
// reply's IDs.
func exchangeHello(ctx context.Context, conn *quic.Conn, str *quic.Stream, a authParams, role string, peer uint64) (*hello, error) {
	ekm, err := exportedKey(conn)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(handshakeTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = str.SetDeadline(deadline)
	defer func() { _ = str.SetDeadline(time.Time{}) }()

	frame, err := appendHelloFrame(nil, &hello{
		From: a.self, To: peer, ClusterID: a.clusterID,
		MAC: helloMAC(a.token, ekm, role, a.self, peer, a.clusterID),
	})
	if err != nil {
		return nil, err
	}
	if _, err := str.Write(frame); err != nil {
		return nil, fmt.Errorf("sending hello: %w", err)
	}
	payload, err := readFrame(str, nil, maxHelloBytes)
	if err != nil {
		return nil, fmt.Errorf("reading hello reply: %w", err)
	}
	h, err := decodeHello(payload)
	if err != nil {
		return nil, refuse(codeProtocol, "malformed hello", err)
	}
	want := helloMAC(a.token, ekm, roleAccept, h.From, h.To, h.ClusterID)
	if subtle.ConstantTimeCompare(h.MAC, want) != 1 {
		return nil, refuse(codeTokenMismatch, "cluster token mismatch", nil)
	}
	return h, nil
}

// accepted is a hello the listener accepted.
type accepted struct {
	from uint64       // the authenticated peer
	str  *quic.Stream // its message stream
	// discovery: the hello asked for the cluster ID only. The reply has
	// been sent; the connection carries nothing else.
	discovery bool
}

// acceptHello runs the listener's side of the hello exchange on conn: it
// authenticates the dialer, replies, and returns the peer and its message
// stream, or a discovery request already answered. known reports whether
// an ID is a member this transport accepts. On failure the caller closes
// conn with closeOnError.
func acceptHello(ctx context.Context, conn *quic.Conn, a authParams, known func(uint64) bool) (accepted, error) {
	ctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	str, err := conn.AcceptStream(ctx)
	if err != nil {
		return accepted{}, fmt.Errorf("waiting for the message stream: %w", err)
	}
	deadline, _ := ctx.Deadline()
	_ = str.SetDeadline(deadline)
	defer func() { _ = str.SetDeadline(time.Time{}) }()

	payload, err := readFrame(str, nil, maxHelloBytes)
	if err != nil {
		if errors.Is(err, ErrFrameTooLarge) {
			return accepted{}, refuse(codeProtocol, "hello too large", err)
		}
		return accepted{}, fmt.Errorf("reading hello: %w", err)
	}
	h, err := decodeHello(payload)
	if err != nil {
		return accepted{}, refuse(codeProtocol, "malformed hello", err)
	}
	ekm, err := exportedKey(conn)
	if err != nil {
		return accepted{}, err
	}
	// A dial hello is checked exactly as it always was, whatever its
	// cluster ID; only a hello MAC'd as a discovery, with cluster ID 0,
	// asks for the cluster ID.
	dial := subtle.ConstantTimeCompare(h.MAC, helloMAC(a.token, ekm, roleDial, h.From, h.To, h.ClusterID)) == 1
	discovery := !dial && h.ClusterID == 0 &&
		subtle.ConstantTimeCompare(h.MAC, helloMAC(a.token, ekm, roleDiscover, h.From, h.To, 0)) == 1
	switch {
	case !dial && !discovery:
		return accepted{}, refuse(codeTokenMismatch, "cluster token mismatch", nil)
	case dial && h.ClusterID != a.clusterID:
		return accepted{}, refuse(codeClusterMismatch, "cluster ID mismatch",
			fmt.Errorf("peer is in cluster %x, this member in %x", h.ClusterID, a.clusterID))
	case discovery && a.clusterID == 0:
		return accepted{}, refuse(codeClusterMismatch, "cluster ID mismatch",
			errors.New("a joining member asked for the cluster ID, this member has none"))
	}
	if h.To != a.self {
		return accepted{}, refuse(codeMemberMismatch, "member ID mismatch",
			fmt.Errorf("peer dialed member %x, this is %x", h.To, a.self))
	}
	if h.From == a.self || !known(h.From) {
		return accepted{}, refuse(codeUnknownMember, "unknown member",
			fmt.Errorf("member %x is not a peer of %x", h.From, a.self))
	}
	frame, err := appendHelloFrame(nil, &hello{
		From: a.self, To: h.From, ClusterID: a.clusterID,
		MAC: helloMAC(a.token, ekm, roleAccept, a.self, h.From, a.clusterID),
	})
	if err != nil {
		return accepted{}, err
	}
	if _, err := str.Write(frame); err != nil {
		return accepted{}, fmt.Errorf("sending hello reply: %w", err)
	}
	// The stream's send direction carries nothing after the reply.
	_ = str.Close()
	return accepted{from: h.From, str: str, discovery: discovery}, nil
}
