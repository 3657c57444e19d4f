package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// snapMsg returns a MsgSnap from -> to of a snapshot at index.
func snapMsg(from, to, index uint64) *raftpb.Message {
	u := proto.Uint64
	return &raftpb.Message{
		Type: raftpb.MsgSnap.Enum(), From: u(from), To: u(to), Term: u(3),
		Snapshot: &raftpb.Snapshot{
			Data: []byte("snapshot-meta"),
			Metadata: &raftpb.SnapshotMetadata{
				Index: u(index), Term: u(3),
				ConfState: &raftpb.ConfState{Voters: []uint64{1, 2, 3}},
			},
		},
	}
}

// dbOf returns n pseudo-random bytes, the same for the same n and seed.
func dbOf(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	_, _ = r.Read(b)
	return b
}

// encodeSnapshotStream returns the stream (without the kind byte) that
// carries m and db in chunks of chunk bytes.
func encodeSnapshotStream(tb testing.TB, m *raftpb.Message, db []byte, chunk int) []byte {
	tb.Helper()
	head, err := appendSnapshotHeader(nil, m, int64(len(db)))
	if err != nil {
		tb.Fatal(err)
	}
	var buf bytes.Buffer
	buf.Write(head)
	if err := writeSnapshotBody(&buf, bytes.NewReader(db), int64(len(db)), chunk, nil); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// decodeSnapshotStream decodes a whole stream, reading exactly size bytes
// of the db the way a receiver that copies size bytes does.
func decodeSnapshotStream(stream []byte, maxFrame int, maxSize int64) (*raftpb.Message, []byte, error) {
	r := bytes.NewReader(stream)
	m, size, err := readSnapshotHeader(r, maxFrame, maxSize)
	if err != nil {
		return nil, nil, err
	}
	body := newSnapshotBody(r, size)
	var db bytes.Buffer
	if _, err := io.CopyN(&db, body, size); err != nil {
		return m, nil, err
	}
	if err := body.finish(); err != nil {
		return m, nil, err
	}
	return m, db.Bytes(), nil
}

func TestSnapshotStream_RoundTripsAnySize(t *testing.T) {
	const chunk = 64
	for _, n := range []int{0, 1, chunk - 1, chunk, chunk + 1, 5*chunk + 7} {
		db := dbOf(n, uint64(n))
		m := snapMsg(1, 2, uint64(n))
		stream := encodeSnapshotStream(t, m, db, chunk)
		head, _ := appendSnapshotHeader(nil, m, int64(n))
		chunks := (n + chunk - 1) / chunk
		if want := len(head) + chunks*chunkHeaderLen + n + chunkHeaderLen; len(stream) != want {
			t.Fatalf("size %d: stream is %d bytes, want %d (header, %d chunks, end)", n, len(stream), want, chunks)
		}
		gotM, gotDB, err := decodeSnapshotStream(stream, 0, 1<<20)
		if err != nil {
			t.Fatalf("size %d: %v", n, err)
		}
		if !proto.Equal(gotM, m) || !bytes.Equal(gotDB, db) {
			t.Fatalf("size %d: round trip changed the message or the db", n)
		}
		// Reading on past size gives io.EOF, not more bytes.
		r := bytes.NewReader(stream)
		_, size, _ := readSnapshotHeader(r, 0, 1<<20)
		all, err := io.ReadAll(newSnapshotBody(r, size))
		if err != nil || !bytes.Equal(all, db) {
			t.Fatalf("size %d: ReadAll = %d bytes, %v", n, len(all), err)
		}
	}
}

func TestSnapshotStream_EveryFlippedOrMissingBodyByteIsCorrupt(t *testing.T) {
	const chunk = 16
	db := dbOf(3*chunk+5, 1)
	m := snapMsg(1, 2, 9)
	stream := encodeSnapshotStream(t, m, db, chunk)
	head, _ := appendSnapshotHeader(nil, m, int64(len(db)))
	for i := len(head); i < len(stream); i++ {
		for _, bit := range []byte{0x01, 0x80} {
			bad := bytes.Clone(stream)
			bad[i] ^= bit
			if _, got, err := decodeSnapshotStream(bad, 0, 1<<20); !errors.Is(err, ErrSnapshotCorrupt) {
				t.Fatalf("bit %#x of byte %d flipped: got %d bytes, err %v; want ErrSnapshotCorrupt", bit, i, len(got), err)
			}
		}
	}
	for n := len(head); n < len(stream); n++ {
		if _, _, err := decodeSnapshotStream(stream[:n], 0, 1<<20); !errors.Is(err, ErrSnapshotCorrupt) {
			t.Fatalf("stream cut at %d of %d bytes: err %v; want ErrSnapshotCorrupt", n, len(stream), err)
		}
	}
}

func TestSnapshotStream_CorruptChunkHandsOutNoneOfItsBytes(t *testing.T) {
	const chunk = 16
	db := dbOf(2*chunk, 2)
	m := snapMsg(1, 2, 9)
	stream := encodeSnapshotStream(t, m, db, chunk)
	stream[len(stream)-chunkHeaderLen-1] ^= 0xff // the last byte of the second chunk
	r := bytes.NewReader(stream)
	_, size, err := readSnapshotHeader(r, 0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(newSnapshotBody(r, size))
	if !errors.Is(err, ErrSnapshotCorrupt) || !bytes.Equal(got, db[:chunk]) {
		t.Fatalf("read %d bytes, err %v; want the first chunk only and ErrSnapshotCorrupt", len(got), err)
	}
}

func TestSnapshotStream_HeaderRejectsBadInput(t *testing.T) {
	m := snapMsg(1, 2, 9)
	sized := func(frame []byte, size uint64) []byte {
		return binary.BigEndian.AppendUint64(bytes.Clone(frame), size)
	}
	frameOf := func(msgs ...*raftpb.Message) []byte {
		f, err := EncodeFrame(msgs)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	noSnapshot := snapMsg(1, 2, 9)
	noSnapshot.Snapshot = nil
	for _, tc := range []struct {
		name     string
		stream   []byte
		maxFrame int
		want     error
	}{
		{"size above the limit", sized(frameOf(m), 1<<20+1), 0, ErrSnapshotTooLarge},
		{"size above MaxInt64", sized(frameOf(m), 1<<63), 0, ErrSnapshotTooLarge},
		{"header frame above the frame limit", sized(frameOf(m), 1), 16, ErrFrameTooLarge},
		{"two messages", sized(frameOf(m, m), 1), 0, ErrMalformedFrame},
		{"no message", sized(frameOf(), 1), 0, ErrMalformedFrame},
		{"not a MsgSnap", sized(frameOf(msg(1, 2, 3)), 1), 0, ErrMalformedFrame},
		{"a MsgSnap without snapshot", sized(frameOf(noSnapshot), 1), 0, ErrMalformedFrame},
		{"not CBOR", sized(rawFrame([]byte{0xff}), 1), 0, ErrMalformedFrame},
		{"size cut short", append(frameOf(m), 0, 0, 0), 0, io.ErrUnexpectedEOF},
		{"frame cut short", frameOf(m)[:10], 0, io.ErrUnexpectedEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			maxFrame := tc.maxFrame
			if maxFrame == 0 {
				maxFrame = DefaultMaxFrameBytes
			}
			_, _, err := readSnapshotHeader(bytes.NewReader(tc.stream), maxFrame, 1<<20)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}
}

func TestSnapshotStream_AckRoundTripsAndTruncatesLongReasons(t *testing.T) {
	long := string(bytes.Repeat([]byte("x"), 2*maxAckReason))
	for _, tc := range []struct {
		status uint8
		reason string
		want   string
	}{
		{ackStored, "", ""},
		{ackRefused, "snapshot too large", "snapshot too large"},
		{ackRefused, long, long[:maxAckReason]},
	} {
		f, err := appendAckFrame(nil, tc.status, tc.reason)
		if err != nil {
			t.Fatal(err)
		}
		a, err := readAck(bytes.NewReader(f))
		if err != nil || a.Status != tc.status || a.Reason != tc.want {
			t.Fatalf("ack %d %q: got %+v, %v", tc.status, tc.reason, a, err)
		}
	}
	bad, _ := appendAckFrame(nil, 7, "")
	if _, err := readAck(bytes.NewReader(bad)); !errors.Is(err, ErrMalformedFrame) {
		t.Fatalf("ack status 7: %v, want ErrMalformedFrame", err)
	}
}

func FuzzDecodeSnapshotChunk(f *testing.F) {
	m := snapMsg(1, 2, 9)
	for _, n := range []int{0, 1, 40, 100} {
		f.Add(encodeSnapshotStream(f, m, dbOf(n, uint64(n)), 32))
	}
	good := encodeSnapshotStream(f, m, dbOf(70, 3), 32)
	f.Add(good[:len(good)-3])
	huge := bytes.Clone(good)
	head, _ := appendSnapshotHeader(nil, m, 70)
	binary.BigEndian.PutUint32(huge[len(head):], 1<<31)
	f.Add(huge)
	f.Add([]byte{})

	const maxSize = 1 << 20
	f.Fuzz(func(t *testing.T, stream []byte) {
		r := bytes.NewReader(stream)
		gotM, size, err := readSnapshotHeader(r, 1<<16, maxSize)
		if err != nil {
			if !errors.Is(err, ErrMalformedFrame) && !errors.Is(err, ErrFrameTooLarge) &&
				!errors.Is(err, ErrSnapshotTooLarge) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("header error wraps no sentinel: %v", err)
			}
			return
		}
		if gotM.GetType() != raftpb.MsgSnap || size < 0 || size > maxSize {
			t.Fatalf("accepted a %v header of size %d", gotM.GetType(), size)
		}
		body := newSnapshotBody(r, size)
		n, err := io.Copy(io.Discard, body)
		if err != nil {
			if !errors.Is(err, ErrSnapshotCorrupt) {
				t.Fatalf("body error does not wrap ErrSnapshotCorrupt: %v", err)
			}
			if n >= size && size > 0 {
				t.Fatalf("handed out all %d bytes of a corrupt body", n)
			}
			return
		}
		if err := body.finish(); n != size || err != nil {
			t.Fatalf("a good body yielded %d of %d bytes, then %v", n, size, err)
		}
	})
}
