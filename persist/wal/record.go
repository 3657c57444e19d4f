package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/edgekv/edgekv/core/codec"
	"github.com/edgekv/edgekv/persist/fsx"
)

// Record types. The values are part of the on-disk format.
const (
	recMetadata  byte = 1 // metadataRec, first record of every segment
	recEntries   byte = 2 // []entryRec, consecutive indexes
	recHardState byte = 3 // hardStateRec
	recSnapshot  byte = 4 // snapshotRec
	recLink      byte = 5 // linkRec, first record of a segment's first write
	recPad       byte = 6 // zeros, pads a write to a sector boundary
)

const (
	// headerSize is the fixed part of a record: length u32 LE | crc32c u32 LE.
	headerSize = 8
	// minRecordSize is a record with an empty payload.
	minRecordSize = headerSize + 1
	// sectorSize is the unit a write can be torn at. Every write ends on a
	// sector boundary, so that every Save starts on one.
	sectorSize = fsx.SectorSize
	// terminatorSize zero bytes end every write: a zero length field marks
	// the end of data.
	terminatorSize = headerSize
	// maxRecordLen caps the length field (type byte + payload). A length
	// above it is never allocated; it marks a bad record.
	maxRecordLen = 64 << 20
	// entryOverhead bounds the CBOR bytes one entryRec adds besides its data:
	// array head 1, term 9, index 9, type 5, byte-string head 9.
	entryOverhead = 33
	// arrayOverhead bounds the head of the outer CBOR array.
	arrayOverhead = 9
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Reasons decodeRecord gives. The reader decides whether each one is a torn
// tail, the end of data or corruption; they never leave the package bare.
var (
	errShortHeader = errors.New("short record header")
	errZeroLength  = errors.New("zero record length")
	errTooLong     = errors.New("record length over limit")
	errShortRecord = errors.New("record runs past end of file")
	errCRC         = errors.New("crc mismatch")
)

// Payloads. toarray keeps them small and their layout positional; the
// encoder is deterministic, so equal values give equal bytes.
type metadataRec struct {
	_         struct{} `cbor:",toarray"`
	Name      string
	MemberID  uint64
	ClusterID uint64
	Token     string
}

type entryRec struct {
	_     struct{} `cbor:",toarray"`
	Term  uint64
	Index uint64
	Type  raftpb.EntryType
	Data  []byte
}

type hardStateRec struct {
	_      struct{} `cbor:",toarray"`
	Term   uint64
	Vote   uint64
	Commit uint64
}

type snapshotRec struct {
	_     struct{} `cbor:",toarray"`
	Index uint64
	Term  uint64
}

// linkRec says where the data of the previous segment ends, so that Open
// can tell a record lost at the end of a full segment from the end of its
// data.
type linkRec struct {
	_       struct{} `cbor:",toarray"`
	PrevEnd uint64
}

// crcSeed is the CRC-32C of the segment's sequence number, u64 LE. Every
// record's CRC continues from it, so a record is valid only in the segment
// it was written for: stale records in a recycled file never check out.
func crcSeed(seq uint64) uint32 {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], seq)
	return crc32.Update(0, crcTable, b[:])
}

func recordCRC(seed uint32, typ byte, payload []byte) uint32 {
	crc := crc32.Update(seed, crcTable, []byte{typ})
	return crc32.Update(crc, crcTable, payload)
}

// appendRecord appends one framed record to dst, for the segment whose
// crcSeed is seed.
func appendRecord(dst []byte, seed uint32, typ byte, payload []byte) []byte {
	var h [headerSize + 1]byte
	binary.LittleEndian.PutUint32(h[0:4], uint32(1+len(payload)))
	binary.LittleEndian.PutUint32(h[4:8], recordCRC(seed, typ, payload))
	h[8] = typ
	dst = append(dst, h[:]...)
	return append(dst, payload...)
}

var zeros [2*sectorSize + terminatorSize]byte

// finishWrite ends a write that starts at file offset base: a pad record
// up to the next sector boundary (none if already on one; at least
// minRecordSize bytes, so possibly one sector further), then the
// terminator. The next write starts at base+len(result)-terminatorSize.
func finishWrite(dst []byte, seed uint32, base int64) []byte {
	end := base + int64(len(dst))
	if pad := alignUp(end) - end; pad > 0 {
		if pad < minRecordSize {
			pad += sectorSize
		}
		dst = appendRecord(dst, seed, recPad, zeros[:pad-minRecordSize])
	}
	return append(dst, zeros[:terminatorSize]...)
}

// alignUp rounds off up to a sector boundary.
func alignUp(off int64) int64 {
	return (off + sectorSize - 1) / sectorSize * sectorSize
}

// decodeRecord decodes the record at the start of b, which must belong to
// the segment whose crcSeed is seed. On success n is the number of bytes it
// occupies. On errShortRecord and errCRC n is the size the header claims
// (past len(b) for errShortRecord); otherwise n is 0. The payload aliases b.
func decodeRecord(b []byte, seed uint32) (typ byte, payload []byte, n int, err error) {
	if len(b) < headerSize {
		return 0, nil, 0, errShortHeader
	}
	l := binary.LittleEndian.Uint32(b[0:4])
	switch {
	case l == 0:
		return 0, nil, 0, errZeroLength
	case l > maxRecordLen:
		return 0, nil, 0, errTooLong
	}
	n = headerSize + int(l)
	if n > len(b) {
		return 0, nil, n, errShortRecord
	}
	body := b[headerSize:n]
	if recordCRC(seed, body[0], body[1:]) != binary.LittleEndian.Uint32(b[4:8]) {
		return 0, nil, n, errCRC
	}
	return body[0], body[1:], n, nil
}

func encodeMetadata(md Metadata) ([]byte, error) {
	return codec.Marshal(metadataRec{Name: md.Name, MemberID: md.MemberID, ClusterID: md.ClusterID, Token: md.Token})
}

func decodeMetadata(p []byte) (Metadata, error) {
	var r metadataRec
	if err := codec.Unmarshal(p, &r); err != nil {
		return Metadata{}, fmt.Errorf("metadata: %w", err)
	}
	return Metadata{Name: r.Name, MemberID: r.MemberID, ClusterID: r.ClusterID, Token: r.Token}, nil
}

func encodeHardState(hs *raftpb.HardState) ([]byte, error) {
	return codec.Marshal(hardStateRec{Term: hs.GetTerm(), Vote: hs.GetVote(), Commit: hs.GetCommit()})
}

func decodeHardState(p []byte) (hardStateRec, error) {
	var r hardStateRec
	if err := codec.Unmarshal(p, &r); err != nil {
		return hardStateRec{}, fmt.Errorf("hard state: %w", err)
	}
	return r, nil
}

func (r hardStateRec) proto() *raftpb.HardState {
	return &raftpb.HardState{Term: &r.Term, Vote: &r.Vote, Commit: &r.Commit}
}

func encodeSnapshot(m SnapshotMarker) ([]byte, error) {
	return codec.Marshal(snapshotRec{Index: m.Index, Term: m.Term})
}

func encodeLink(prevEnd int64) ([]byte, error) {
	return codec.Marshal(linkRec{PrevEnd: uint64(prevEnd)})
}

func decodeLink(p []byte) (linkRec, error) {
	var r linkRec
	if err := codec.Unmarshal(p, &r); err != nil {
		return linkRec{}, fmt.Errorf("link: %w", err)
	}
	return r, nil
}

func decodeSnapshot(p []byte) (snapshotRec, error) {
	var r snapshotRec
	if err := codec.Unmarshal(p, &r); err != nil {
		return snapshotRec{}, fmt.Errorf("snapshot marker: %w", err)
	}
	return r, nil
}

// rec is a record before framing: framing needs the segment's CRC seed,
// which is known only once Save has decided whether to cut.
type rec struct {
	typ     byte
	payload []byte
	// spans are, for an entries record, where each entry's data lies in
	// payload (in entry order), for the locations Save hands out.
	spans []entrySpan
}

func recsSize(recs []rec) int {
	n := 0
	for _, r := range recs {
		n += minRecordSize + len(r.payload)
	}
	return n
}

func appendRecs(dst []byte, seed uint32, recs []rec) []byte {
	for _, r := range recs {
		dst = appendRecord(dst, seed, r.typ, r.payload)
	}
	return dst
}

// entryRecs encodes ents as entries records of at most budget payload
// bytes each (estimated from above), so no record exceeds maxRecordLen
// however large the batch. The payloads are carved out of scratch while
// it has room (else out of a new buffer); the last buffer is returned for
// the next call, which may reuse it once these records are written.
func entryRecs(dst []rec, scratch []byte, ents []*raftpb.Entry, budget int) ([]rec, []byte, error) {
	buf := scratch[:0]
	for len(ents) > 0 {
		n, size := 0, arrayOverhead
		for _, e := range ents {
			sz := entryOverhead + len(e.GetData())
			if arrayOverhead+sz > budget {
				return nil, scratch, fmt.Errorf("%w: entry %d holds %d bytes, over the record limit", ErrInvalid, e.GetIndex(), len(e.GetData()))
			}
			if size+sz > budget {
				break
			}
			n, size = n+1, size+sz
		}
		if cap(buf)-len(buf) < size {
			buf = make([]byte, 0, max(size, 2*cap(buf)))
		}
		start := len(buf)
		p, spans := encodeEntries(buf[start:start:start+size], ents[:n])
		if len(p) <= size { // else the estimate was short and p has its own array
			buf = buf[:start+len(p)]
		}
		dst = append(dst, rec{typ: recEntries, payload: p, spans: spans})
		ents = ents[n:]
	}
	return dst, buf, nil
}

// encodeEntries appends ents to p as an entries record's payload, the
// CBOR array of entryRecs codec.Marshal writes (TestEncodeEntries_AsMarshal),
// and returns it with where each entry's data lies in it, as entrySpans
// would find them.
func encodeEntries(p []byte, ents []*raftpb.Entry) ([]byte, []entrySpan) {
	spans := make([]entrySpan, 0, len(ents))
	p = codec.AppendHead(p, codec.MajorArray, uint64(len(ents)))
	for _, e := range ents {
		p = codec.AppendHead(p, codec.MajorArray, 4)
		p = codec.AppendHead(p, codec.MajorUint, e.GetTerm())
		p = codec.AppendHead(p, codec.MajorUint, e.GetIndex())
		p = codec.AppendInt(p, int64(e.GetType()))
		d := e.GetData()
		off := len(p)
		p = codec.AppendBytes(p, d)
		if d != nil {
			off = len(p) - len(d)
		}
		spans = append(spans, entrySpan{index: e.GetIndex(), off: off, n: len(d)})
	}
	return p, spans
}

// decodeEntries decodes an entries record and checks that it is not empty
// and that its indexes are consecutive and non-zero.
func decodeEntries(p []byte) ([]*raftpb.Entry, error) {
	var recs []entryRec
	if err := codec.Unmarshal(p, &recs); err != nil {
		return nil, fmt.Errorf("entries: %w", err)
	}
	if len(recs) == 0 {
		return nil, errors.New("empty entries record")
	}
	out := make([]*raftpb.Entry, len(recs))
	for i := range recs {
		r := &recs[i]
		if r.Index == 0 || (i > 0 && r.Index != recs[i-1].Index+1) {
			return nil, fmt.Errorf("entries record not consecutive at entry %d (index %d)", i, r.Index)
		}
		out[i] = &raftpb.Entry{Term: &r.Term, Index: &r.Index, Type: &r.Type, Data: r.Data}
	}
	return out, nil
}
