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
// codec.Marshal produces for the array of the positional structs of the
// wire format (see doc.go). The error is always nil.
func EncodeFrame(msgs []*raftpb.Message) ([]byte, error) {
	n := frameLen(0)
	for _, m := range msgs {
		n += maxMessageLen(m)
	}
	return appendFrame(make([]byte, 0, n), msgs), nil
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

// frameLen is the size of a frame holding n messages whose encodings add up
// to size bytes, or an upper bound of it.
func frameLen(size int) int { return frameHeaderLen + maxArrayHeaderLen + size }

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
