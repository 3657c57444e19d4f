package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/edgekv/edgekv/core/codec"
)

// The snapshot stream codec; doc.go has the byte layout.
const (
	// streamKindSnapshot is the first byte of a snapshot stream.
	streamKindSnapshot byte = 'S'
	// snapshotSizeLen is the size of the db length after the header frame.
	snapshotSizeLen = 8
	// chunkHeaderLen is the size of a chunk's length and CRC.
	chunkHeaderLen = 8
	// snapshotChunkBytes is the chunk size the sender writes.
	snapshotChunkBytes = 256 << 10
	// maxSnapshotChunkBytes is the largest chunk the receiver accepts; it
	// bounds the receiver's buffer.
	maxSnapshotChunkBytes = 1 << 20
	// maxAckBytes bounds an ack frame's payload, maxAckReason its reason.
	maxAckBytes  = 1024
	maxAckReason = 512
)

// Ack statuses.
const (
	ackStored  = 0 // stored and handed to Raft
	ackRefused = 1 // refused; the reason says why
)

// crc32c is the CRC-32 table of the Castagnoli polynomial.
var crc32c = crc32.MakeTable(crc32.Castagnoli)

// snapshotAck is the listener's answer on a snapshot stream.
type snapshotAck struct {
	_      struct{} `cbor:",toarray"`
	Status uint8
	Reason string
}

// appendSnapshotHeader appends the header of a snapshot stream, without
// the kind byte: a message frame holding m alone, then size.
func appendSnapshotHeader(dst []byte, m *raftpb.Message, size int64) ([]byte, error) {
	if size < 0 {
		return nil, fmt.Errorf("transport: negative snapshot size %d", size)
	}
	dst = appendFrame(dst, []*raftpb.Message{m})
	return binary.BigEndian.AppendUint64(dst, uint64(size)), nil
}

// readSnapshotHeader reads the header of a snapshot stream (after the kind
// byte) and returns the MsgSnap and the size of the db. A header frame
// longer than maxFrame (0 means DefaultMaxFrameBytes) fails with ErrFrameTooLarge, a frame that is not
// one MsgSnap with a snapshot with ErrMalformedFrame, a size above maxSize
// with ErrSnapshotTooLarge; any other error is the reader's.
func readSnapshotHeader(r io.Reader, maxFrame int, maxSize int64) (*raftpb.Message, int64, error) {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrameBytes
	}
	payload, err := readFrame(r, nil, maxFrame)
	if err != nil {
		return nil, 0, noEOF(err)
	}
	msgs, err := decodePayload(payload)
	if err != nil {
		return nil, 0, err
	}
	if len(msgs) != 1 {
		return nil, 0, fmt.Errorf("%w: snapshot header holds %d messages, want 1", ErrMalformedFrame, len(msgs))
	}
	m := msgs[0]
	if m.GetType() != raftpb.MsgSnap || m.Snapshot == nil {
		return nil, 0, fmt.Errorf("%w: snapshot header holds a %v message, want MsgSnap with a snapshot", ErrMalformedFrame, m.GetType())
	}
	var b [snapshotSizeLen]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return nil, 0, noEOF(err)
	}
	size := binary.BigEndian.Uint64(b[:])
	if size > math.MaxInt64 || int64(size) > maxSize {
		return nil, 0, fmt.Errorf("%w: %d bytes, limit %d", ErrSnapshotTooLarge, size, maxSize)
	}
	return m, int64(size), nil
}

// writeSnapshotBody writes exactly size bytes of db to w as chunks of at
// most chunk bytes, each with one Write, then the end marker. mangle, if
// not nil, may change a chunk's wire bytes after its CRC is computed (a
// test hook). An error reading db is returned as is, one writing w
// wrapped with errWrite.
func writeSnapshotBody(w io.Writer, db io.Reader, size int64, chunk int, mangle func(i int, wire []byte)) error {
	buf := make([]byte, chunkHeaderLen+int(min(int64(chunk), size)))
	total := crc32.Checksum(nil, crc32c)
	var sent int64
	for i := 0; sent < size; i++ {
		n := int(min(int64(chunk), size-sent))
		data := buf[chunkHeaderLen : chunkHeaderLen+n]
		if _, err := io.ReadFull(db, data); err != nil {
			return fmt.Errorf("reading the db after %d of %d bytes: %w", sent, size, noEOF(err))
		}
		crc := crc32.Checksum(data, crc32c)
		total = crc32.Update(total, crc32c, data)
		binary.BigEndian.PutUint32(buf[0:], uint32(n))
		binary.BigEndian.PutUint32(buf[4:], crc)
		wire := buf[:chunkHeaderLen+n]
		if mangle != nil {
			mangle(i, wire)
		}
		if _, err := w.Write(wire); err != nil {
			return &writeError{err}
		}
		sent += int64(n)
	}
	var end [chunkHeaderLen]byte
	binary.BigEndian.PutUint32(end[4:], total)
	if _, err := w.Write(end[:]); err != nil {
		return &writeError{err}
	}
	return nil
}

// writeError marks an error of the stream, as opposed to one of the db.
type writeError struct{ err error }

func (e *writeError) Error() string { return "writing the snapshot stream: " + e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

// snapshotBody reads the chunks of a snapshot stream and yields the db
// they carry: exactly size bytes, then io.EOF. It hands out a chunk's bytes
// only after checking its CRC, and the last chunk's only after checking
// the end marker and the CRC of the whole body, so a reader that stops
// after size bytes has still read a verified db. Every failure wraps
// ErrSnapshotCorrupt and is returned again by later calls.
type snapshotBody struct {
	r        io.Reader
	size     int64
	read     int64  // bytes of verified chunks so far
	total    uint32 // running CRC of them
	chunks   int
	storage  []byte
	buf      []byte // verified bytes not yet handed out
	err      error
	verified bool // the end marker has been checked
}

func newSnapshotBody(r io.Reader, size int64) *snapshotBody {
	return &snapshotBody{r: r, size: size, total: crc32.Checksum(nil, crc32c)}
}

func (b *snapshotBody) Read(p []byte) (int, error) {
	for len(b.buf) == 0 {
		switch {
		case b.err != nil:
			return 0, b.err
		case b.verified:
			return 0, io.EOF
		}
		if b.err = b.next(); b.err != nil {
			b.buf = nil
		}
	}
	if len(p) == 0 {
		return 0, nil
	}
	n := copy(p, b.buf)
	b.buf = b.buf[n:]
	return n, nil
}

// finish checks, once the consumer is done, that it read the whole db
// without error; for an empty db, which needs no Read, it reads and checks
// the end marker.
func (b *snapshotBody) finish() error {
	if b.err != nil {
		return b.err
	}
	if handed := b.read - int64(len(b.buf)); handed < b.size {
		return fmt.Errorf("only %d of the %d bytes of the db were read", handed, b.size)
	}
	if !b.verified {
		if b.err = b.end(); b.err != nil {
			return b.err
		}
	}
	return nil
}

// next reads and checks one chunk into b.buf and, after the last one, the
// end marker.
func (b *snapshotBody) next() error {
	if b.read == b.size {
		return b.end()
	}
	var hdr [chunkHeaderLen]byte
	if _, err := io.ReadFull(b.r, hdr[:]); err != nil {
		return b.broken(err)
	}
	n := binary.BigEndian.Uint32(hdr[0:])
	crc := binary.BigEndian.Uint32(hdr[4:])
	switch {
	case n == 0:
		return fmt.Errorf("%w: end marker after %d of %d bytes", ErrSnapshotCorrupt, b.read, b.size)
	case n > maxSnapshotChunkBytes:
		return fmt.Errorf("%w: chunk %d is %d bytes, limit %d", ErrSnapshotCorrupt, b.chunks, n, maxSnapshotChunkBytes)
	case int64(n) > b.size-b.read:
		return fmt.Errorf("%w: chunk %d of %d bytes overruns the size (%d of %d bytes read)", ErrSnapshotCorrupt, b.chunks, n, b.read, b.size)
	}
	if uint32(cap(b.storage)) < n {
		b.storage = make([]byte, n)
	}
	data := b.storage[:n]
	if _, err := io.ReadFull(b.r, data); err != nil {
		return b.broken(err)
	}
	if got := crc32.Checksum(data, crc32c); got != crc {
		return fmt.Errorf("%w: chunk %d at offset %d: CRC %08x, header says %08x", ErrSnapshotCorrupt, b.chunks, b.read, got, crc)
	}
	b.total = crc32.Update(b.total, crc32c, data)
	b.read += int64(n)
	b.chunks++
	if b.read == b.size {
		if err := b.end(); err != nil {
			return err
		}
	}
	b.buf = data
	return nil
}

// end reads and checks the end marker.
func (b *snapshotBody) end() error {
	var hdr [chunkHeaderLen]byte
	if _, err := io.ReadFull(b.r, hdr[:]); err != nil {
		return b.broken(err)
	}
	if n := binary.BigEndian.Uint32(hdr[0:]); n != 0 {
		return fmt.Errorf("%w: a chunk of %d bytes after all %d bytes", ErrSnapshotCorrupt, n, b.size)
	}
	if crc := binary.BigEndian.Uint32(hdr[4:]); crc != b.total {
		return fmt.Errorf("%w: body CRC %08x, end marker says %08x", ErrSnapshotCorrupt, b.total, crc)
	}
	b.verified = true
	return nil
}

// broken is the error of a stream that ended or failed early.
func (b *snapshotBody) broken(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: stream ended after %d of %d bytes", ErrSnapshotCorrupt, b.read, b.size)
	}
	return fmt.Errorf("%w: stream broke after %d of %d bytes: %w", ErrSnapshotCorrupt, b.read, b.size, err)
}

// appendAckFrame appends the ack frame of status and reason (truncated to
// maxAckReason bytes).
func appendAckFrame(dst []byte, status uint8, reason string) ([]byte, error) {
	if len(reason) > maxAckReason {
		reason = reason[:maxAckReason]
	}
	enc, err := codec.Marshal(&snapshotAck{Status: status, Reason: reason})
	if err != nil {
		return nil, fmt.Errorf("transport: encoding snapshot ack: %w", err)
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(enc)))
	return append(dst, enc...), nil
}

// readAck reads an ack frame.
func readAck(r io.Reader) (*snapshotAck, error) {
	payload, err := readFrame(r, nil, maxAckBytes)
	if err != nil {
		return nil, noEOF(err)
	}
	var a snapshotAck
	if err := codec.Unmarshal(payload, &a); err != nil {
		return nil, fmt.Errorf("%w: snapshot ack: %v", ErrMalformedFrame, err)
	}
	if a.Status != ackStored && a.Status != ackRefused {
		return nil, fmt.Errorf("%w: snapshot ack status %d", ErrMalformedFrame, a.Status)
	}
	return &a, nil
}

// noEOF turns io.EOF, which means nothing was read, into
// io.ErrUnexpectedEOF where more was expected.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
