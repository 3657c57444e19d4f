package transport

import (
	"encoding/binary"
	"fmt"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/edgekv/edgekv/core/codec"
)

// The reflection codec of raft messages that wirecodec.go replaced, kept as
// the reference the hand-written one must match byte for byte and input
// for input: codec (fxamacker/cbor) on the positional structs below.

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

// refEncodeFrame is EncodeFrame on the reference codec: each message
// marshalled on its own, then the array head and the encodings.
func refEncodeFrame(msgs []*raftpb.Message) ([]byte, error) {
	encs := make([][]byte, 0, len(msgs))
	size := 0
	for _, m := range msgs {
		enc, err := codec.Marshal(toWire(m))
		if err != nil {
			return nil, fmt.Errorf("transport: encoding %v message: %w", m.GetType(), err)
		}
		encs = append(encs, enc)
		size += len(enc)
	}
	dst := make([]byte, frameHeaderLen, frameLen(size))
	dst = codec.AppendHead(dst, codec.MajorArray, uint64(len(encs)))
	for _, e := range encs {
		dst = append(dst, e...)
	}
	binary.BigEndian.PutUint32(dst, uint32(len(dst)-frameHeaderLen))
	return dst, nil
}

// refDecodePayload is decodePayload on the reference codec.
func refDecodePayload(payload []byte) ([]*raftpb.Message, error) {
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
