package transport

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/edgekv/edgekv/core/codec"
)

// The hand-written CBOR codec of raft messages (see Frames in doc.go). It
// writes the bytes the reflection codec (core/codec on the positional
// structs of wireform_test.go) writes and accepts exactly what it accepts,
// which the tests check against it.

// The CBOR simple values used here, besides codec.Null and
// codec.Undefined.
const (
	cborFalse   = codec.MajorSimple | simpleFalse
	cborTrue    = codec.MajorSimple | simpleTrue
	simpleFalse = 20
	simpleTrue  = 21
	simpleUndef = 23
)

// Field counts of the positional arrays, and the shortest encoding of a
// message (its head and 13 one-byte fields).
const (
	messageFields   = 13
	entryFields     = 4
	snapshotFields  = 2
	metadataFields  = 3
	confStateFields = 5
	minMessageLen   = 1 + messageFields
)

// appendFrame appends to dst a frame holding msgs.
func appendFrame(dst []byte, msgs []*raftpb.Message) []byte {
	start := len(dst)
	dst = codec.AppendHead(append(dst, 0, 0, 0, 0), codec.MajorArray, uint64(len(msgs)))
	for _, m := range msgs {
		dst = appendMessage(dst, m)
	}
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-frameHeaderLen))
	return dst
}

// frameBuf builds a frame of messages appended one by one, in a buffer
// reused from frame to frame.
type frameBuf struct {
	b     []byte // frameLen(0) bytes reserved for the length and array head, then the messages
	n     int    // messages in b
	snaps int    // MsgSnap messages among them
}

func (f *frameBuf) reset() {
	f.b = append(f.b[:0], make([]byte, frameLen(0))...)
	f.n, f.snaps = 0, 0
}

// add appends m unless the frame would then be longer than maxFrame, and
// returns the size of m's encoding.
func (f *frameBuf) add(m *raftpb.Message, maxFrame int) (size int, ok bool) {
	start := len(f.b)
	f.b = appendMessage(f.b, m)
	size = len(f.b) - start
	if len(f.b) > maxFrame { // len(f.b) is frameLen of all the encodings
		f.b = f.b[:start]
		return size, false
	}
	f.n++
	f.snaps += isSnap(m)
	return size, true
}

// frame returns the frame, a slice of f's buffer: the array head is moved
// up against the first message and the length put before it.
func (f *frameBuf) frame() []byte {
	var h [maxArrayHeaderLen]byte
	head := codec.AppendHead(h[:0], codec.MajorArray, uint64(f.n))
	start := frameLen(0) - len(head) - frameHeaderLen
	copy(f.b[start+frameHeaderLen:], head)
	binary.BigEndian.PutUint32(f.b[start:], uint32(len(f.b)-start-frameHeaderLen))
	return f.b[start:]
}

// appendMessage appends the encoding of m, an element of a frame's array.
func appendMessage(b []byte, m *raftpb.Message) []byte {
	b = append(b, codec.MajorArray|messageFields)
	b = appendEnum(b, m.Type)
	b = appendOptUint(b, m.To)
	b = appendOptUint(b, m.From)
	b = appendOptUint(b, m.Term)
	b = appendOptUint(b, m.LogTerm)
	b = appendOptUint(b, m.Index)
	if len(m.Entries) == 0 {
		b = append(b, codec.Null)
	} else {
		b = codec.AppendHead(b, codec.MajorArray, uint64(len(m.Entries)))
		for _, e := range m.Entries {
			if e == nil {
				e = &raftpb.Entry{} // a nil entry goes as an empty one
			}
			b = append(b, codec.MajorArray|entryFields)
			b = appendOptUint(b, e.Term)
			b = appendOptUint(b, e.Index)
			b = appendEnum(b, e.Type)
			b = codec.AppendBytes(b, e.Data)
		}
	}
	b = appendOptUint(b, m.Commit)
	b = appendOptUint(b, m.Vote)
	if s := m.Snapshot; s == nil {
		b = append(b, codec.Null)
	} else {
		b = codec.AppendBytes(append(b, codec.MajorArray|snapshotFields), s.Data)
		if md := s.Metadata; md == nil {
			b = append(b, codec.Null)
		} else {
			b = append(b, codec.MajorArray|metadataFields)
			if cs := md.ConfState; cs == nil {
				b = append(b, codec.Null)
			} else {
				b = append(b, codec.MajorArray|confStateFields)
				b = appendUints(b, cs.Voters)
				b = appendUints(b, cs.Learners)
				b = appendUints(b, cs.VotersOutgoing)
				b = appendUints(b, cs.LearnersNext)
				b = appendOptBool(b, cs.AutoLeave)
			}
			b = appendOptUint(b, md.Index)
			b = appendOptUint(b, md.Term)
		}
	}
	b = appendOptBool(b, m.Reject)
	b = appendOptUint(b, m.RejectHint)
	return codec.AppendBytes(b, m.Context)
}

func appendOptUint(b []byte, p *uint64) []byte {
	if p == nil {
		return append(b, codec.Null)
	}
	return codec.AppendHead(b, codec.MajorUint, *p)
}

// appendEnum appends *p, possibly negative, or null.
func appendEnum[T ~int32](b []byte, p *T) []byte {
	switch {
	case p == nil:
		return append(b, codec.Null)
	case *p < 0:
		return codec.AppendHead(b, codec.MajorNeg, uint64(^int64(*p)))
	default:
		return codec.AppendHead(b, codec.MajorUint, uint64(*p))
	}
}

func appendOptBool(b []byte, p *bool) []byte {
	switch {
	case p == nil:
		return append(b, codec.Null)
	case *p:
		return append(b, cborTrue)
	default:
		return append(b, cborFalse)
	}
}

// appendUints appends s as an array, or null if it is empty.
func appendUints(b []byte, s []uint64) []byte {
	if len(s) == 0 {
		return append(b, codec.Null)
	}
	b = codec.AppendHead(b, codec.MajorArray, uint64(len(s)))
	for _, v := range s {
		b = codec.AppendHead(b, codec.MajorUint, v)
	}
	return b
}

// maxMessageLen bounds the length of m's encoding, so that a buffer of that
// capacity holds it without growing.
func maxMessageLen(m *raftpb.Message) int {
	// fixed: head, type, 8 integers, heads of entries, snapshot and
	// context, reject; entry: head, term, index, type, head of data.
	const head, fixed, entry = 9, 1 + 5 + 8*9 + 3*9 + 1, 1 + 9 + 9 + 5 + 9
	n := fixed + len(m.Context) + len(m.Entries)*entry
	for _, e := range m.Entries {
		n += len(e.GetData())
	}
	if s := m.Snapshot; s != nil {
		cs := s.GetMetadata().GetConfState()
		n += 1 + head + len(s.Data) + 1 + 1 + 4*head + 1 + 2*9 +
			9*(len(cs.GetVoters())+len(cs.GetLearners())+len(cs.GetVotersOutgoing())+len(cs.GetLearnersNext()))
	}
	return n
}

// decodePayload decodes the CBOR array of messages of one frame and checks
// that every enum holds a known value. Decoded byte strings are copies, so
// payload may be reused afterwards. Every error wraps ErrMalformedFrame.
func decodePayload(payload []byte) ([]*raftpb.Message, error) {
	d := decoder{b: payload}
	n := d.arrayHead(minMessageLen) // null is no messages, as for the reflection codec
	if d.err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedFrame, d.err)
	}
	msgs := make([]*raftpb.Message, n)
	boxes := make([]messageBox, n)
	for i := range msgs {
		if msgs[i] = d.message(&boxes[i]); d.err != nil {
			return nil, fmt.Errorf("%w: message %d: %v", ErrMalformedFrame, i, d.err)
		}
	}
	if d.off != len(d.b) {
		return nil, fmt.Errorf("%w: %d bytes after the array", ErrMalformedFrame, len(d.b)-d.off)
	}
	return msgs, nil
}

// A message, entry or snapshot is allocated together with the values its
// optional fields point to.
type messageBox struct {
	m                                                        raftpb.Message
	typ                                                      raftpb.MessageType
	to, from, term, logTerm, index, commit, vote, rejectHint uint64
	reject                                                   bool
}

type entryBox struct {
	e           raftpb.Entry
	term, index uint64
	typ         raftpb.EntryType
}

type snapshotBox struct {
	s           raftpb.Snapshot
	md          raftpb.SnapshotMetadata
	cs          raftpb.ConfState
	index, term uint64
	autoLeave   bool
}

// decoder reads the CBOR of a frame's payload by its schema, with the
// leniency of the reflection codec with core/codec's options: integer and
// length heads need not be the shortest, undefined is null, a simple
// value other than false, true, null and undefined is an unsigned integer,
// a null array element decodes to the element's zero value, and an array
// of unsigned integers up to 255 is a byte string. Tags, floats and
// indefinite lengths are errors. The first error sticks: every later read
// returns zero values.
type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("byte %d: %s", d.off, fmt.Sprintf(format, args...))
	}
}

// head reads the head of a data item: its major type (shifted) and
// argument. A simple value's argument is its number; a float or any
// indefinite length or break is an error.
func (d *decoder) head() (major byte, arg uint64) {
	if d.err != nil {
		return 0, 0
	}
	if d.off >= len(d.b) {
		d.fail("unexpected end of data")
		return 0, 0
	}
	ib := d.b[d.off]
	major, arg, n, err := codec.ReadHead(d.b[d.off:])
	switch {
	case err != nil:
		d.fail("%v", err)
		return 0, 0
	case major == codec.MajorSimple && n > 2:
		d.fail("initial byte %#x (a float)", ib)
		return 0, 0
	case major == codec.MajorSimple && n == 2 && arg < 32:
		d.fail("simple value %d in two bytes", arg)
		return 0, 0
	}
	d.off += n
	return major, arg
}

// null consumes a null or undefined and reports whether it did.
func (d *decoder) null() bool {
	if d.err == nil && d.off < len(d.b) && (d.b[d.off] == codec.Null || d.b[d.off] == codec.Undefined) {
		d.off++
		return true
	}
	return false
}

// unsigned reads an unsigned integer; null reads as 0.
func (d *decoder) unsigned() uint64 {
	major, v := d.head()
	switch {
	case major == codec.MajorUint:
		return v
	case major == codec.MajorSimple && (v < simpleFalse || v > simpleUndef):
		return v
	case major == codec.MajorSimple && v > simpleTrue:
		return 0
	}
	d.fail("want an unsigned integer")
	return 0
}

// optUint reads null as nil, else an unsigned integer into *slot.
func (d *decoder) optUint(slot *uint64) *uint64 {
	if d.null() {
		return nil
	}
	*slot = d.unsigned()
	return slot
}

// enum reads an unsigned integer that must be a key of names (a negative
// integer never is).
func (d *decoder) enum(names map[int32]string) int32 {
	v := d.unsigned()
	if _, ok := names[int32(v)]; (!ok || v > math.MaxInt32) && d.err == nil {
		d.fail("unknown value %d", v)
	}
	return int32(v)
}

func (d *decoder) optBool(slot *bool) *bool {
	if d.null() {
		return nil
	}
	if major, v := d.head(); major == codec.MajorSimple && (v == simpleFalse || v == simpleTrue) {
		*slot = v == simpleTrue
		return slot
	}
	d.fail("want a bool")
	return nil
}

// arrayHead reads the head of an array, null reading as an empty one. The
// count is bounded so that elements of at least minLen bytes fit in what
// is left, before anything is allocated for them.
func (d *decoder) arrayHead(minLen int) int {
	if d.null() {
		return 0
	}
	major, n := d.head()
	if major != codec.MajorArray && d.err == nil {
		d.fail("want an array")
	}
	if n > codec.MaxArrayElements || n > uint64((len(d.b)-d.off)/minLen) {
		d.fail("array of %d elements in %d bytes", n, len(d.b)-d.off)
	}
	if d.err != nil {
		return 0
	}
	return int(n)
}

// record reads the head of a positional array of fields items, or a null,
// and reports whether it was the array.
func (d *decoder) record(fields uint64) bool {
	if d.null() {
		return false
	}
	if major, n := d.head(); (major != codec.MajorArray || n != fields) && d.err == nil {
		d.fail("want an array of %d", fields)
	}
	return d.err == nil
}

// byteString reads a byte string, aliasing d.b, or null as nil.
func (d *decoder) byteString() []byte {
	if d.err != nil || d.null() {
		return nil
	}
	if d.off < len(d.b) && d.b[d.off]&0xe0 == codec.MajorArray {
		b := make([]byte, d.arrayHead(1))
		for i := range b {
			if v := d.unsigned(); v <= math.MaxUint8 {
				b[i] = byte(v)
			} else {
				d.fail("byte %d", v)
			}
		}
		return b
	}
	major, n := d.head()
	if major != codec.MajorBytes || n > uint64(len(d.b)-d.off) {
		d.fail("want a byte string")
		return nil
	}
	b := d.b[d.off : d.off+int(n) : d.off+int(n)]
	d.off += int(n)
	return b
}

// uints reads an array of unsigned integers, an empty one or null as nil.
func (d *decoder) uints() []uint64 {
	n := d.arrayHead(1)
	if n == 0 {
		return nil
	}
	s := make([]uint64, n)
	for i := range s {
		s[i] = d.unsigned()
	}
	return s
}

func (d *decoder) message(box *messageBox) *raftpb.Message {
	m := &box.m
	if !d.record(messageFields) || d.null() {
		d.fail("message has no type")
		return nil
	}
	box.typ = raftpb.MessageType(d.enum(raftpb.MessageType_name))
	m.Type = &box.typ
	m.To = d.optUint(&box.to)
	m.From = d.optUint(&box.from)
	m.Term = d.optUint(&box.term)
	m.LogTerm = d.optUint(&box.logTerm)
	m.Index = d.optUint(&box.index)
	m.Entries = d.entries()
	m.Commit = d.optUint(&box.commit)
	m.Vote = d.optUint(&box.vote)
	m.Snapshot = d.snapshot()
	m.Reject = d.optBool(&box.reject)
	m.RejectHint = d.optUint(&box.rejectHint)
	m.Context = bytes.Clone(d.byteString())
	return m
}

// entries reads the entries of a message, none as nil. Their data is
// copied into one buffer.
func (d *decoder) entries() []*raftpb.Entry {
	n := d.arrayHead(1)
	if n == 0 {
		return nil
	}
	ents := make([]*raftpb.Entry, n)
	boxes := make([]entryBox, n)
	size := 0
	for i := range boxes {
		box := &boxes[i]
		e := &box.e
		ents[i] = e
		if !d.record(entryFields) {
			continue // a null entry is an empty one
		}
		e.Term = d.optUint(&box.term)
		e.Index = d.optUint(&box.index)
		if !d.null() {
			box.typ = raftpb.EntryType(d.enum(raftpb.EntryType_name))
			e.Type = &box.typ
		}
		e.Data = d.byteString()
		size += len(e.Data)
	}
	if d.err != nil {
		return nil
	}
	buf := make([]byte, size)
	for _, e := range ents {
		if e.Data != nil {
			n := copy(buf, e.Data)
			e.Data, buf = buf[:n:n], buf[n:]
		}
	}
	return ents
}

func (d *decoder) snapshot() *raftpb.Snapshot {
	if !d.record(snapshotFields) {
		return nil
	}
	box := new(snapshotBox)
	s := &box.s
	s.Data = bytes.Clone(d.byteString())
	if d.record(metadataFields) {
		md := &box.md
		s.Metadata = md
		if d.record(confStateFields) {
			cs := &box.cs
			md.ConfState = cs
			cs.Voters = d.uints()
			cs.Learners = d.uints()
			cs.VotersOutgoing = d.uints()
			cs.LearnersNext = d.uints()
			cs.AutoLeave = d.optBool(&box.autoLeave)
		}
		md.Index = d.optUint(&box.index)
		md.Term = d.optUint(&box.term)
	}
	return s
}
