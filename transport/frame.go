package transport

import (
	"encoding/binary"
	"fmt"
	"io"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/edgekv/edgekv/core/codec"
)

// frameHeaderLen is the size of the big-endian length prefix of a frame.
const frameHeaderLen = 4

// maxArrayHeaderLen is the longest CBOR array header EncodeFrame writes
// (major type 4 with a 32-bit count).
const maxArrayHeaderLen = 5

// The wire form of raftpb.Message. Every optional protobuf field is a
// pointer, so presence survives the round trip: an absent field is CBOR
// null, a present zero is 0. Fields are positional (toarray); appending a
// field changes the wire format and therefore the ALPN version.
type wireMessage struct {
	_          struct{} `cbor:",toarray"`
	Type       *int32
	To         *uint64
	From       *uint64
	Term       *uint64
	LogTerm    *uint64
	Index      *uint64
	Entries    []wireEntry
	Commit     *uint64
	Vote       *uint64
	Snapshot   *wireSnapshot
	Reject     *bool
	RejectHint *uint64
	Context    []byte
}

type wireEntry struct {
	_     struct{} `cbor:",toarray"`
	Term  *uint64
	Index *uint64
	Type  *int32
	Data  []byte
}

type wireSnapshot struct {
	_        struct{} `cbor:",toarray"`
	Data     []byte
	Metadata *wireSnapshotMetadata
}

type wireSnapshotMetadata struct {
	_         struct{} `cbor:",toarray"`
	ConfState *wireConfState
	Index     *uint64
	Term      *uint64
}

type wireConfState struct {
	_              struct{} `cbor:",toarray"`
	Voters         []uint64
	Learners       []uint64
	VotersOutgoing []uint64
	LearnersNext   []uint64
	AutoLeave      *bool
}

// hello is the first frame on a message stream in each direction; see doc.go.
type hello struct {
	_         struct{} `cbor:",toarray"`
	From      uint64
	To        uint64
	ClusterID uint64
	MAC       []byte
}

// EncodeFrame returns msgs as one frame: a 4-byte big-endian payload length
// followed by the CBOR array of messages. The payload is byte-for-byte what
// codec.Marshal produces for the array.
func EncodeFrame(msgs []*raftpb.Message) ([]byte, error) {
	encs := make([][]byte, 0, len(msgs))
	for _, m := range msgs {
		enc, err := encodeMessage(m)
		if err != nil {
			return nil, err
		}
		encs = append(encs, enc)
	}
	return appendFrame(nil, encs), nil
}

// DecodeFrame decodes one complete frame (length prefix included). The
// length must not exceed maxFrameBytes (0 means DefaultMaxFrameBytes) and
// must match the bytes that follow it exactly. It never panics; every
// failure wraps ErrFrameTooLarge or ErrMalformedFrame.
func DecodeFrame(frame []byte, maxFrameBytes int) ([]*raftpb.Message, error) {
	if maxFrameBytes <= 0 {
		maxFrameBytes = DefaultMaxFrameBytes
	}
	if len(frame) < frameHeaderLen {
		return nil, fmt.Errorf("%w: %d bytes is shorter than the length prefix", ErrMalformedFrame, len(frame))
	}
	n := binary.BigEndian.Uint32(frame)
	if uint64(n) > uint64(maxFrameBytes) {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, maxFrameBytes)
	}
	if uint64(len(frame)-frameHeaderLen) != uint64(n) {
		return nil, fmt.Errorf("%w: length prefix says %d bytes, %d follow", ErrMalformedFrame, n, len(frame)-frameHeaderLen)
	}
	return decodePayload(frame[frameHeaderLen:])
}

// encodeMessage returns the CBOR encoding of one message, an element of a
// frame's array.
func encodeMessage(m *raftpb.Message) ([]byte, error) {
	enc, err := codec.Marshal(toWire(m))
	if err != nil {
		return nil, fmt.Errorf("transport: encoding %v message: %w", m.GetType(), err)
	}
	return enc, nil
}

// frameLen is the size of a frame holding n messages whose encodings add up
// to size bytes, or an upper bound of it.
func frameLen(size int) int { return frameHeaderLen + maxArrayHeaderLen + size }

// appendFrame appends to dst a frame whose payload is the CBOR array of the
// already encoded elements encs.
func appendFrame(dst []byte, encs [][]byte) []byte {
	size := 0
	for _, e := range encs {
		size += len(e)
	}
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst = appendArrayHeader(dst, uint64(len(encs)))
	for _, e := range encs {
		dst = append(dst, e...)
	}
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-frameHeaderLen))
	return dst
}

// appendArrayHeader appends the shortest CBOR header of an array of n
// elements (RFC 8949 core deterministic encoding).
func appendArrayHeader(dst []byte, n uint64) []byte {
	const major = 4 << 5
	switch {
	case n < 24:
		return append(dst, major|byte(n))
	case n <= 0xff:
		return append(dst, major|24, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(dst, major|25), uint16(n))
	case n <= 0xffffffff:
		return binary.BigEndian.AppendUint32(append(dst, major|26), uint32(n))
	default:
		return binary.BigEndian.AppendUint64(append(dst, major|27), n)
	}
}

// appendHelloFrame appends h as a frame.
func appendHelloFrame(dst []byte, h *hello) ([]byte, error) {
	enc, err := codec.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("transport: encoding hello: %w", err)
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(enc)))
	return append(dst, enc...), nil
}

// decodeHello decodes a hello payload.
func decodeHello(payload []byte) (*hello, error) {
	var h hello
	if err := codec.Unmarshal(payload, &h); err != nil {
		return nil, fmt.Errorf("%w: hello: %v", ErrMalformedFrame, err)
	}
	if len(h.MAC) != macLen {
		return nil, fmt.Errorf("%w: hello MAC is %d bytes, want %d", ErrMalformedFrame, len(h.MAC), macLen)
	}
	return &h, nil
}

// readFrame reads one frame from r and returns its payload, reusing *buf
// when it is large enough. A length above maxBytes fails with
// ErrFrameTooLarge before any of the body is read.
func readFrame(r io.Reader, buf *[]byte, maxBytes int) ([]byte, error) {
	var hdr [frameHeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if uint64(n) > uint64(maxBytes) {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, maxBytes)
	}
	var b []byte
	if buf != nil && uint64(cap(*buf)) >= uint64(n) {
		b = (*buf)[:n]
	} else {
		b = make([]byte, n)
		if buf != nil {
			*buf = b
		}
	}
	if _, err := io.ReadFull(r, b); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return b, nil
}

// decodePayload decodes the CBOR array of messages of one frame and checks
// that every enum holds a known value. Decoded byte strings are copies, so
// payload may be reused afterwards.
func decodePayload(payload []byte) ([]*raftpb.Message, error) {
	var wms []wireMessage
	if err := codec.Unmarshal(payload, &wms); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedFrame, err)
	}
	msgs := make([]*raftpb.Message, len(wms))
	for i := range wms {
		m, err := fromWire(&wms[i])
		if err != nil {
			return nil, fmt.Errorf("%w: message %d: %v", ErrMalformedFrame, i, err)
		}
		msgs[i] = m
	}
	return msgs, nil
}

func toWire(m *raftpb.Message) *wireMessage {
	w := &wireMessage{
		To:         m.To,
		From:       m.From,
		Term:       m.Term,
		LogTerm:    m.LogTerm,
		Index:      m.Index,
		Commit:     m.Commit,
		Vote:       m.Vote,
		Reject:     m.Reject,
		RejectHint: m.RejectHint,
		Context:    m.Context,
	}
	if m.Type != nil {
		t := int32(*m.Type)
		w.Type = &t
	}
	if len(m.Entries) > 0 {
		w.Entries = make([]wireEntry, len(m.Entries))
		for i, e := range m.Entries {
			if e == nil {
				continue
			}
			we := &w.Entries[i]
			we.Term, we.Index, we.Data = e.Term, e.Index, e.Data
			if e.Type != nil {
				t := int32(*e.Type)
				we.Type = &t
			}
		}
	}
	if s := m.Snapshot; s != nil {
		w.Snapshot = &wireSnapshot{Data: s.Data}
		if md := s.Metadata; md != nil {
			w.Snapshot.Metadata = &wireSnapshotMetadata{Index: md.Index, Term: md.Term}
			if cs := md.ConfState; cs != nil {
				w.Snapshot.Metadata.ConfState = &wireConfState{
					Voters:         nilIfEmpty(cs.Voters),
					Learners:       nilIfEmpty(cs.Learners),
					VotersOutgoing: nilIfEmpty(cs.VotersOutgoing),
					LearnersNext:   nilIfEmpty(cs.LearnersNext),
					AutoLeave:      cs.AutoLeave,
				}
			}
		}
	}
	return w
}

func fromWire(w *wireMessage) (*raftpb.Message, error) {
	if w.Type == nil {
		return nil, fmt.Errorf("message has no type")
	}
	if _, ok := raftpb.MessageType_name[*w.Type]; !ok {
		return nil, fmt.Errorf("unknown message type %d", *w.Type)
	}
	m := &raftpb.Message{
		Type:       raftpb.MessageType(*w.Type).Enum(),
		To:         w.To,
		From:       w.From,
		Term:       w.Term,
		LogTerm:    w.LogTerm,
		Index:      w.Index,
		Commit:     w.Commit,
		Vote:       w.Vote,
		Reject:     w.Reject,
		RejectHint: w.RejectHint,
		Context:    w.Context,
	}
	if len(w.Entries) > 0 {
		m.Entries = make([]*raftpb.Entry, len(w.Entries))
		for i := range w.Entries {
			we := &w.Entries[i]
			e := &raftpb.Entry{Term: we.Term, Index: we.Index, Data: we.Data}
			if we.Type != nil {
				if _, ok := raftpb.EntryType_name[*we.Type]; !ok {
					return nil, fmt.Errorf("entry %d: unknown entry type %d", i, *we.Type)
				}
				e.Type = raftpb.EntryType(*we.Type).Enum()
			}
			m.Entries[i] = e
		}
	}
	if ws := w.Snapshot; ws != nil {
		m.Snapshot = &raftpb.Snapshot{Data: ws.Data}
		if wmd := ws.Metadata; wmd != nil {
			m.Snapshot.Metadata = &raftpb.SnapshotMetadata{Index: wmd.Index, Term: wmd.Term}
			if wcs := wmd.ConfState; wcs != nil {
				m.Snapshot.Metadata.ConfState = &raftpb.ConfState{
					Voters:         nilIfEmpty(wcs.Voters),
					Learners:       nilIfEmpty(wcs.Learners),
					VotersOutgoing: nilIfEmpty(wcs.VotersOutgoing),
					LearnersNext:   nilIfEmpty(wcs.LearnersNext),
					AutoLeave:      wcs.AutoLeave,
				}
			}
		}
	}
	return m, nil
}

func nilIfEmpty(s []uint64) []uint64 {
	if len(s) == 0 {
		return nil
	}
	return s
}
