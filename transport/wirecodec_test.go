package transport

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// sameMessages reports whether a and b hold equal messages, telling apart
// what proto.Equal does not: nil and empty byte strings and entries.
func sameMessages(a, b []*raftpb.Message) bool {
	if len(a) != len(b) || (a == nil) != (b == nil) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) || (a[i].Entries == nil) != (b[i].Entries == nil) ||
			!reflect.DeepEqual(toWire(a[i]), toWire(b[i])) {
			return false
		}
	}
	return true
}

// randMessage returns a message whose every field is randomly absent,
// zero, small, at a head-size boundary or huge, with nil and empty slices
// and out-of-range enums.
func randMessage(r *rand.Rand) *raftpb.Message {
	uints := []uint64{0, 1, 23, 24, 255, 256, 65535, 65536, math.MaxUint32, math.MaxUint32 + 1, math.MaxUint64}
	u := func() *uint64 {
		switch r.IntN(4) {
		case 0:
			return nil
		case 1:
			return proto.Uint64(r.Uint64() >> r.IntN(64))
		default:
			return proto.Uint64(uints[r.IntN(len(uints))])
		}
	}
	enum := func(n int32) int32 {
		switch r.IntN(8) {
		case 0:
			return [...]int32{-1, -24, -25, math.MinInt32, math.MaxInt32, 1000}[r.IntN(6)]
		default:
			return r.Int32N(n)
		}
	}
	b := func() []byte {
		switch r.IntN(5) {
		case 0:
			return nil
		case 1:
			return []byte{}
		case 2:
			if r.IntN(20) == 0 {
				return make([]byte, 65536+r.IntN(3))
			}
		}
		p := make([]byte, r.IntN(300))
		for i := range p {
			p[i] = byte(r.Uint32())
		}
		return p
	}
	ids := func() []uint64 {
		switch r.IntN(3) {
		case 0:
			return nil
		case 1:
			return []uint64{}
		}
		s := make([]uint64, 1+r.IntN(30))
		for i := range s {
			s[i] = uints[r.IntN(len(uints))] | r.Uint64()>>r.IntN(64)
		}
		return s
	}
	bl := func() *bool {
		if r.IntN(3) == 0 {
			return nil
		}
		return proto.Bool(r.IntN(2) == 0)
	}
	m := &raftpb.Message{To: u(), From: u(), Term: u(), LogTerm: u(), Index: u(), Commit: u(),
		Vote: u(), Reject: bl(), RejectHint: u(), Context: b()}
	if r.IntN(10) > 0 {
		m.Type = raftpb.MessageType(enum(int32(len(raftpb.MessageType_name)))).Enum()
	}
	switch r.IntN(4) {
	case 0:
	case 1:
		m.Entries = []*raftpb.Entry{}
	default:
		n := 1 + r.IntN(30)
		if r.IntN(20) == 0 {
			n = 24 + r.IntN(300)
		}
		for range n {
			if r.IntN(15) == 0 {
				m.Entries = append(m.Entries, nil)
				continue
			}
			e := &raftpb.Entry{Term: u(), Index: u(), Data: b()}
			if r.IntN(4) > 0 {
				e.Type = raftpb.EntryType(enum(3)).Enum()
			}
			m.Entries = append(m.Entries, e)
		}
	}
	if r.IntN(3) == 0 {
		m.Snapshot = &raftpb.Snapshot{Data: b()}
		if r.IntN(4) > 0 {
			m.Snapshot.Metadata = &raftpb.SnapshotMetadata{Index: u(), Term: u()}
			if r.IntN(4) > 0 {
				m.Snapshot.Metadata.ConfState = &raftpb.ConfState{Voters: ids(), Learners: ids(),
					VotersOutgoing: ids(), LearnersNext: ids(), AutoLeave: bl()}
			}
		}
	}
	return m
}

// randFrame returns up to 30 random messages; some 300.
func randFrame(r *rand.Rand) []*raftpb.Message {
	n := r.IntN(30)
	if r.IntN(50) == 0 {
		n = 300
	}
	msgs := make([]*raftpb.Message, n)
	for i := range msgs {
		msgs[i] = randMessage(r)
	}
	return msgs
}

func TestWireCodec_EncodesTheBytesOfTheReflectionCodec(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var f frameBuf
	for i := range 2000 {
		msgs := randFrame(r)
		want, err := refEncodeFrame(msgs)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := EncodeFrame(msgs)
		if !bytes.Equal(got, want) {
			t.Fatalf("frame %d: EncodeFrame differs from the reflection codec\n got %x\nwant %x", i, got, want)
		}
		f.reset()
		for _, m := range msgs {
			if _, ok := f.add(m, math.MaxInt); !ok {
				t.Fatal("frameBuf.add refused a message with no limit")
			}
			if n := len(appendMessage(nil, m)); n > maxMessageLen(m) {
				t.Fatalf("frame %d: a message of %d bytes, bound %d", i, n, maxMessageLen(m))
			}
		}
		if !bytes.Equal(f.frame(), want) {
			t.Fatalf("frame %d: frameBuf differs from the reflection codec", i)
		}
	}
}

func TestWireCodec_DecodesLikeTheReflectionCodec(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 2000 {
		frame, _ := EncodeFrame(randFrame(r))
		checkSameDecoding(t, frame[frameHeaderLen:])
		if t.Failed() {
			t.Fatalf("frame %d", i)
		}
	}
}

// checkSameDecoding fails unless decodePayload and the reflection codec
// both reject payload, or both accept it with the same messages; and
// unless those messages share no memory with payload.
func checkSameDecoding(t *testing.T, payload []byte) {
	t.Helper()
	want, wantErr := refDecodePayload(payload)
	p := bytes.Clone(payload)
	got, err := decodePayload(p)
	if err != nil && !errors.Is(err, ErrMalformedFrame) {
		t.Fatalf("error wraps no ErrMalformedFrame: %v", err)
	}
	if (err == nil) != (wantErr == nil) {
		t.Fatalf("payload %x: decodePayload: %v; reflection codec: %v", payload, err, wantErr)
	}
	if err != nil {
		return
	}
	for i := range p {
		p[i] = ^p[i] // the caller reuses its buffer
	}
	if !sameMessages(got, want) {
		t.Fatalf("payload %x:\n got %v\nwant %v", payload, got, want)
	}
}

// lenientPayloads are payloads the reflection codec accepts although
// EncodeFrame never writes them, and payloads it rejects.
func lenientPayloads() map[string][]byte {
	const null, undef = 0xf6, 0xf7
	// one is a payload of one MsgApp whose fields are null but those set,
	// by position: 0 type, 1 to, 6 entries, 9 snapshot, 12 context.
	one := func(set map[int][]byte) []byte {
		b := []byte{0x81, 0x8d}
		for i := range messageFields {
			v, ok := set[i]
			switch {
			case ok:
			case i == 0:
				v = []byte{0x03}
			default:
				v = []byte{null}
			}
			b = append(b, v...)
		}
		return b
	}
	field := func(i int, v ...byte) []byte { return one(map[int][]byte{i: v}) }
	long := append([]byte{0x50}, make([]byte, 16)...)
	manyNulls := append([]byte{0x9a, 0x00, 0x10, 0x00, 0x01}, bytes.Repeat([]byte{null}, 1<<20+1)...)
	return map[string][]byte{
		"null is no messages":        {null},
		"undefined is no messages":   {undef},
		"empty":                      {},
		"empty array":                {0x80},
		"array of 1 in long form":    append([]byte{0x98, 0x01}, one(nil)[1:]...),
		"non-shortest heads":         field(6, 0x99, 0x00, 0x01, 0x84, 0x1b, 0, 0, 0, 0, 0, 0, 0, 5, 0x18, 1, 0x1a, 0, 0, 0, 1, 0x5a, 0, 0, 0, 1, 0x41),
		"undefined fields":           append([]byte{0x81, 0x8d, 0x03}, bytes.Repeat([]byte{undef}, 12)...),
		"null and undefined entries": field(6, 0x82, null, undef),
		"empty entries":              field(6, 0x80),
		"empty context":              field(12, 0x40),
		"to as simple value 5":       field(1, 0xe5),
		"to as simple value 255":     field(1, 0xf8, 0xff),
		"to as simple value 31":      field(1, 0xf8, 0x1f),
		"to as false":                field(1, 0xf4),
		"to as float":                field(1, 0xf9, 0x3c, 0x00),
		"to as negative":             field(1, 0x20),
		"to as tag":                  field(1, 0xc1, 0x01),
		"to as byte string":          field(1, 0x41, 0x01),
		"to as array":                field(1, 0x81, 0x01),
		"to with reserved head":      field(1, 0x1c),
		"context head cut short":     one(map[int][]byte{6: append([]byte{0x81, 0x84, null, null, null}, long...), 12: {0x5b, 0x00}}),
		"type as simple value":       field(0, 0xe3),
		"type negative":              field(0, 0x20),
		"type 2^32+3":                field(0, 0x1b, 0, 0, 0, 1, 0, 0, 0, 3),
		"type null":                  field(0, null),
		"reject as 1":                field(10, 0x01),
		"reject as undefined":        field(10, undef),
		"null message":               {0x81, null},
		"null message, then one":     append([]byte{0x82, null}, one(map[int][]byte{12: long})[1:]...),
		"message of 12 fields":       append(append([]byte{0x81, 0x8c, 0x03}, bytes.Repeat([]byte{null}, 10)...), long...),
		"message of 14 fields":       append(append([]byte{0x81, 0x8e, 0x03}, bytes.Repeat([]byte{null}, 12)...), long...),
		"context as array":           field(12, 0x84, 0x01, null, 0xe5, 0x18, 0xff),
		"context as empty array":     field(12, 0x80),
		"context array of 256":       field(12, 0x81, 0x19, 0x01, 0x00),
		"context array of bool":      field(12, 0x81, 0xf5),
		"context as text":            field(12, 0x61, 'a'),
		"context indefinite":         field(12, 0x5f, 0x41, 'a', 0xff),
		"context too long":           field(12, 0x45, 'a'),
		"context of 2^64-1 bytes":    field(12, 0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
		"snapshot of nulls":          field(9, 0x82, null, 0x83, 0x85, null, null, null, null, null, null, null),
		"voters with null":           field(9, 0x82, 0x40, 0x83, 0x85, 0x82, null, 0xe1, 0x80, 0x81, 0x00, null, 0xf5, 0x01, 0x02),
		"voters of a byte string":    field(9, 0x82, 0x40, 0x83, 0x85, 0x41, 0x01, null, null, null, null, 0x01, 0x02),
		"snapshot of 3 fields":       field(9, 0x83, null, null, null),
		"tagged array":               {0xd9, 0xd9, 0xf7, 0x80},
		"indefinite array":           {0x9f, 0xff},
		"a map":                      {0xa0},
		"break":                      {0xff},
		"trailing bytes":             {0x80, 0x00},
		"count beyond the data":      {0x9a, 0x00, 0x10, 0x00, 0x00},
		"count of 2^64-1":            {0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		"entry of three fields":      field(6, 0x81, 0x83, null, null, null),
		"entry type 3":               field(6, 0x81, 0x84, null, null, 0x03, null),
		"entry data as array":        field(6, 0x81, 0x84, null, null, 0x01, 0x82, 0x01, 0x02),
		"entries of 2^20+1 nulls":    field(6, manyNulls...),
		"entries of 2^20 nulls":      field(6, append([]byte{0x9a, 0x00, 0x10, 0x00, 0x00}, manyNulls[5:5+1<<20]...)...),
	}
}

func TestWireCodec_AcceptsWhatTheReflectionCodecAccepts(t *testing.T) {
	for name, p := range lenientPayloads() {
		t.Run(name, func(t *testing.T) { checkSameDecoding(t, p) })
	}
	for _, tc := range frameCases() {
		frame, _ := EncodeFrame(tc.msgs)
		t.Run(tc.name, func(t *testing.T) { checkSameDecoding(t, frame[frameHeaderLen:]) })
	}
}

func TestWireCodec_FrameBufKeepsToTheLimit(t *testing.T) {
	m := msg(1, 2, 3)
	size := len(appendMessage(nil, m))
	var f frameBuf
	f.reset()
	limit := frameLen(2 * size)
	for i, want := range []bool{true, true, false} {
		if n, ok := f.add(m, limit); n != size || ok != want {
			t.Fatalf("add %d = %d, %v; want %d, %v", i, n, ok, size, want)
		}
	}
	got, err := DecodeFrame(f.frame(), 0)
	if err != nil || len(got) != 2 || !proto.Equal(got[1], m) {
		t.Fatalf("DecodeFrame = %v, %v", got, err)
	}
}

func FuzzDecodePayload(f *testing.F) {
	for _, tc := range frameCases() {
		frame, _ := EncodeFrame(tc.msgs)
		f.Add(frame[frameHeaderLen:])
	}
	for _, p := range lenientPayloads() {
		if len(p) < 1<<16 {
			f.Add(p)
		}
	}
	for t := range int32(len(raftpb.MessageType_name)) {
		m := &raftpb.Message{Type: raftpb.MessageType(t).Enum(), To: proto.Uint64(2), From: proto.Uint64(1)}
		frame, _ := EncodeFrame([]*raftpb.Message{m})
		f.Add(frame[frameHeaderLen:])
	}
	r := rand.New(rand.NewPCG(5, 6))
	for range 20 {
		msgs := randFrame(r)
		frame, _ := EncodeFrame(msgs[:min(len(msgs), 3)])
		if len(frame) < 1<<14 {
			f.Add(frame[frameHeaderLen:])
		}
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		checkSameDecoding(t, payload)
		// What decodes must encode to what the reflection codec writes.
		if msgs, err := decodePayload(payload); err == nil {
			want, _ := refEncodeFrame(msgs)
			if got := appendFrame(nil, msgs); !bytes.Equal(got, want) {
				t.Fatalf("re-encoding differs:\n got %x\nwant %x", got, want)
			}
		}
	})
}

// benchMessages are typical batches: an append of 1 or 64 entries of 300
// bytes, an append response, a heartbeat.
func benchMessages() []struct {
	name string
	msgs []*raftpb.Message
} {
	u := proto.Uint64
	app := func(n int) []*raftpb.Message {
		m := &raftpb.Message{Type: raftpb.MsgApp.Enum(), From: u(1), To: u(2), Term: u(7),
			LogTerm: u(7), Index: u(123456), Commit: u(123450)}
		for i := range n {
			m.Entries = append(m.Entries, &raftpb.Entry{Term: u(7), Index: u(123457 + uint64(i)),
				Type: raftpb.EntryNormal.Enum(), Data: bytes.Repeat([]byte{'x'}, 300)})
		}
		return []*raftpb.Message{m}
	}
	return []struct {
		name string
		msgs []*raftpb.Message
	}{
		{"MsgApp-1", app(1)},
		{"MsgApp-64", app(64)},
		{"MsgAppResp", []*raftpb.Message{{Type: raftpb.MsgAppResp.Enum(), From: u(2), To: u(1), Term: u(7), Index: u(123520)}}},
		{"MsgHeartbeat", []*raftpb.Message{{Type: raftpb.MsgHeartbeat.Enum(), From: u(1), To: u(2), Term: u(7), Commit: u(123450)}}},
	}
}

func BenchmarkEncodeFrame(b *testing.B) {
	for _, bm := range benchMessages() {
		b.Run(bm.name+"/reflect", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := refEncodeFrame(bm.msgs); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(bm.name+"/hand", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = EncodeFrame(bm.msgs)
			}
		})
		b.Run(bm.name+"/hand-reused", func(b *testing.B) { // as the peer writer does
			b.ReportAllocs()
			var f frameBuf
			for b.Loop() {
				f.reset()
				for _, m := range bm.msgs {
					f.add(m, DefaultMaxFrameBytes)
				}
				_ = f.frame()
			}
		})
	}
}

func BenchmarkDecodeFrame(b *testing.B) {
	for _, bm := range benchMessages() {
		frame, _ := EncodeFrame(bm.msgs)
		for _, dec := range []struct {
			name string
			f    func([]byte) ([]*raftpb.Message, error)
		}{{"reflect", refDecodePayload}, {"hand", decodePayload}} {
			b.Run(fmt.Sprintf("%s/%s", bm.name, dec.name), func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(frame)))
				for b.Loop() {
					if _, err := dec.f(frame[frameHeaderLen:]); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
