package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/edgekv/edgekv/core/codec"
)

// frameCases are batches that must survive a frame round trip unchanged.
func frameCases() []struct {
	name string
	msgs []*raftpb.Message
} {
	u := proto.Uint64
	many := make([]*raftpb.Message, 300)
	for i := range many {
		many[i] = msg(1, 2, uint64(i))
	}
	return []struct {
		name string
		msgs []*raftpb.Message
	}{
		{"no messages", []*raftpb.Message{}},
		{"heartbeat with only the set fields", []*raftpb.Message{{
			Type: raftpb.MsgHeartbeat.Enum(), From: u(1), To: u(2), Term: u(7), Commit: u(3),
		}}},
		{"present zeros stay present", []*raftpb.Message{{
			Type: raftpb.MsgHup.Enum(), From: u(0), To: u(0), Term: u(0), LogTerm: u(0), Index: u(0),
			Commit: u(0), Vote: u(0), Reject: proto.Bool(false), RejectHint: u(0), Context: []byte{},
		}}},
		{"append with entries of every type", []*raftpb.Message{{
			Type: raftpb.MsgApp.Enum(), From: u(3), To: u(1), Term: u(9), LogTerm: u(8), Index: u(100), Commit: u(99),
			Entries: []*raftpb.Entry{
				{Term: u(9), Index: u(101), Type: raftpb.EntryNormal.Enum(), Data: []byte("put k v")},
				{Term: u(9), Index: u(102), Type: raftpb.EntryConfChange.Enum(), Data: []byte{0, 1, 2}},
				{Term: u(9), Index: u(103), Type: raftpb.EntryConfChangeV2.Enum()},
				{Term: u(9), Index: u(104), Data: []byte{}},
				{},
			},
		}}},
		{"rejection with hint and context", []*raftpb.Message{{
			Type: raftpb.MsgAppResp.Enum(), From: u(2), To: u(1), Term: u(4), Index: u(50),
			Reject: proto.Bool(true), RejectHint: u(42), LogTerm: u(3),
		}, {
			Type: raftpb.MsgReadIndex.Enum(), From: u(2), To: u(1), Context: []byte("read-request-17"),
		}, {
			Type: raftpb.MsgVote.Enum(), From: u(2), To: u(3), Term: u(5), Vote: u(2), Index: u(10), LogTerm: u(4),
		}}},
		{"snapshot with full metadata", []*raftpb.Message{{
			Type: raftpb.MsgSnap.Enum(), From: u(1), To: u(4), Term: u(6),
			Snapshot: &raftpb.Snapshot{
				Data: bytes.Repeat([]byte{0xab}, 4096),
				Metadata: &raftpb.SnapshotMetadata{
					Index: u(1000), Term: u(6),
					ConfState: &raftpb.ConfState{
						Voters: []uint64{1, 2, 3}, Learners: []uint64{4},
						VotersOutgoing: []uint64{1, 2, 5}, LearnersNext: []uint64{5},
						AutoLeave: proto.Bool(true),
					},
				},
			},
		}}},
		{"snapshot with empty metadata", []*raftpb.Message{{
			Type: raftpb.MsgSnap.Enum(), From: u(1), To: u(4),
			Snapshot: &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{ConfState: &raftpb.ConfState{}}},
		}}},
		{"300 messages need a two-byte array header", many},
	}
}

func TestFrame_RoundTripPreservesEveryField(t *testing.T) {
	for _, tc := range frameCases() {
		t.Run(tc.name, func(t *testing.T) {
			frame, err := EncodeFrame(tc.msgs)
			if err != nil {
				t.Fatalf("EncodeFrame: %v", err)
			}
			if n := binary.BigEndian.Uint32(frame); int(n) != len(frame)-frameHeaderLen {
				t.Fatalf("length prefix %d, payload %d bytes", n, len(frame)-frameHeaderLen)
			}
			got, err := DecodeFrame(frame, 0)
			if err != nil {
				t.Fatalf("DecodeFrame: %v", err)
			}
			if len(got) != len(tc.msgs) {
				t.Fatalf("decoded %d messages, want %d", len(got), len(tc.msgs))
			}
			for i := range got {
				if !proto.Equal(got[i], tc.msgs[i]) {
					t.Errorf("message %d:\n got %v\nwant %v", i, got[i], tc.msgs[i])
				}
			}
		})
	}
}

func TestFrame_PayloadIsTheDeterministicEncodingOfTheArray(t *testing.T) {
	for _, tc := range frameCases() {
		t.Run(tc.name, func(t *testing.T) {
			frame, err := EncodeFrame(tc.msgs)
			if err != nil {
				t.Fatalf("EncodeFrame: %v", err)
			}
			ws := make([]*wireMessage, len(tc.msgs))
			for i, m := range tc.msgs {
				ws[i] = toWire(m)
			}
			want, err := codec.Marshal(ws)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if !bytes.Equal(frame[frameHeaderLen:], want) {
				t.Fatalf("payload differs from codec.Marshal of the array")
			}
		})
	}
}

// rawFrame prefixes payload with its length.
func rawFrame(payload []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(payload))), payload...)
}

// cborOf marshals v or panics.
func cborOf(v any) []byte {
	b, err := codec.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func TestFrame_DecodeRejectsBadInput(t *testing.T) {
	good, err := EncodeFrame([]*raftpb.Message{msg(1, 2, 3)})
	if err != nil {
		t.Fatal(err)
	}
	unknownType := toWire(msg(1, 2, 3))
	bad := int32(999)
	unknownType.Type = &bad
	noType := toWire(msg(1, 2, 3))
	noType.Type = nil
	unknownEntryType := toWire(msg(1, 2, 3))
	unknownEntryType.Entries[0].Type = &bad

	for _, tc := range []struct {
		name  string
		frame []byte
		max   int
		want  error
	}{
		{"empty input", nil, 0, ErrMalformedFrame},
		{"shorter than the length prefix", []byte{0, 0, 1}, 0, ErrMalformedFrame},
		{"length above the limit", good, len(good) - frameHeaderLen - 1, ErrFrameTooLarge},
		{"length prefix of 4 GiB", []byte{0xff, 0xff, 0xff, 0xff}, 0, ErrFrameTooLarge},
		{"body shorter than the prefix", good[:len(good)-1], 0, ErrMalformedFrame},
		{"bytes after the body", append(append([]byte{}, good...), 0), 0, ErrMalformedFrame},
		{"empty payload", rawFrame(nil), 0, ErrMalformedFrame},
		{"not CBOR", rawFrame([]byte{0xff, 0xff, 0xff}), 0, ErrMalformedFrame},
		{"trailing CBOR after the array", rawFrame(append(cborOf([]int{}), 0x00)), 0, ErrMalformedFrame},
		{"a map instead of an array", rawFrame(cborOf(map[int]int{1: 2})), 0, ErrMalformedFrame},
		{"a message with too few fields", rawFrame(cborOf([][]int{{1, 2, 3}})), 0, ErrMalformedFrame},
		{"an unknown message type", rawFrame(cborOf([]*wireMessage{unknownType})), 0, ErrMalformedFrame},
		{"a message without type", rawFrame(cborOf([]*wireMessage{noType})), 0, ErrMalformedFrame},
		{"an unknown entry type", rawFrame(cborOf([]*wireMessage{unknownEntryType})), 0, ErrMalformedFrame},
		{"an indefinite-length array", rawFrame([]byte{0x9f, 0xff}), 0, ErrMalformedFrame},
		{"a negative term", rawFrame(cborOf([][]any{{2, 2, 1, -1, nil, nil, nil, nil, nil, nil, nil, nil, nil}})), 0, ErrMalformedFrame},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msgs, err := DecodeFrame(tc.frame, tc.max)
			if !errors.Is(err, tc.want) {
				t.Fatalf("DecodeFrame = %d messages, %v; want %v", len(msgs), err, tc.want)
			}
		})
	}
}

func FuzzDecodeFrame(f *testing.F) {
	for _, tc := range frameCases() {
		frame, err := EncodeFrame(tc.msgs)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(frame)
	}
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add(rawFrame([]byte{0xff}))
	f.Add(rawFrame([]byte{0x9f, 0xff}))
	f.Add(rawFrame(cborOf([][]any{{2, 2, 1, 5, nil, nil, []any{[]any{1, 2, 0, []byte("x")}}, nil, nil, nil, true, nil, []byte{}}})))

	f.Fuzz(func(t *testing.T, data []byte) {
		msgs, err := DecodeFrame(data, 1<<20)
		if err != nil {
			if !errors.Is(err, ErrMalformedFrame) && !errors.Is(err, ErrFrameTooLarge) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		// What decodes must re-encode and decode to the same messages.
		frame, err := EncodeFrame(msgs)
		if err != nil {
			t.Fatalf("re-encoding a decoded frame: %v", err)
		}
		again, err := DecodeFrame(frame, 0)
		if err != nil {
			t.Fatalf("decoding a re-encoded frame: %v", err)
		}
		if len(again) != len(msgs) {
			t.Fatalf("%d messages became %d", len(msgs), len(again))
		}
		for i := range msgs {
			if !proto.Equal(msgs[i], again[i]) {
				t.Fatalf("message %d changed: %v -> %v", i, msgs[i], again[i])
			}
		}
	})
}
