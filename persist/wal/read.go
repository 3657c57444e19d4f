package wal

import (
	"encoding/binary"
	"errors"
	"fmt"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/edgekv/edgekv/persist/fsx"
)

// replayer folds records into the State that Open returns. It is pure: it
// sees bytes, never files.
type replayer struct {
	md      Metadata
	haveMD  bool
	hs      hardStateRec
	snap    SnapshotMarker
	snapSeq uint64 // segment where the latest marker was first read
	ents    []*raftpb.Entry
	locs    []indexLoc // where the data of ents lies, in step with ents
	spans   []entrySpan
	next    uint64 // index the next entries record may start at, at most; 0: any
	seq     uint64 // of the current segment
	segMeta bool   // the current segment began with a metadata record
	segLink bool   // the current segment has a link record
	// purged is set when the segments before the oldest one were purged,
	// until the first entries record: that one may start past the marker
	// carried so far, since a later marker covers the gap (Open checks).
	purged bool
}

// segResult says where the valid data of a segment ends.
type segResult struct {
	end  int   // offset just past the last good record
	torn bool  // the record at end is a torn write, to repair
	bad  error // why the record at end was rejected, if one was
}

// corrupt builds the error Open returns for a bad record.
func corrupt(name string, off int, reason error) error {
	return fmt.Errorf("%w in %s at offset %d: %v", ErrCorrupt, name, off, reason)
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// replaySegment replays segment seq, whose bytes (up to pin, if pin >= 0)
// are data, and decides where its data ends; the package comment gives
// the rules. pin is where the next segment's link says this one ends, -1
// if unknown; last is true for the tail.
func (r *replayer) replaySegment(name string, seq uint64, data []byte, pin int64, last bool) (segResult, error) {
	seed := crcSeed(seq)
	r.seq, r.segMeta, r.segLink = seq, false, false
	off := 0
	var bad error
	for off < len(data) {
		typ, payload, n, err := decodeRecord(data[off:], seed)
		if err != nil {
			bad = err
			break
		}
		if err := r.apply(name, off, typ, payload); err != nil {
			return segResult{}, err
		}
		off += n
	}
	if !r.segMeta {
		if bad == nil {
			bad = errors.New("empty file")
		}
		return segResult{}, corrupt(name, 0, fmt.Errorf("segment has no metadata record: %w", bad))
	}
	res := segResult{end: off, bad: bad}
	if pin >= 0 {
		// The next segment says where this one's data ends.
		switch {
		case bad != nil:
			return segResult{}, corrupt(name, off, bad)
		case int64(off) != pin:
			return segResult{}, corrupt(name, off, fmt.Errorf("data ends here, but the next segment says it ends at %d", pin))
		}
		return res, nil
	}
	if p := findRecord(data, seed, off); p >= 0 {
		return segResult{}, corrupt(name, off, fmt.Errorf("%v, yet a valid record follows at offset %d", bad, p))
	}
	if last && bad != nil && !allZero(data[off:min(off+terminatorSize, len(data))]) {
		res.torn = true
	}
	return res, nil
}

// findRecord returns the first sector boundary after off where a record
// of the segment (CRC seeded with seed) starts, or -1. Every Save starts
// on a sector boundary, so a bad record followed by later Saves is found
// here even when its length field is what was damaged.
func findRecord(data []byte, seed uint32, off int) int {
	for p := int(alignUp(int64(off) + 1)); p+minRecordSize <= len(data); p += sectorSize {
		l := binary.LittleEndian.Uint32(data[p:])
		if l == 0 || l > maxRecordLen || p+headerSize+int(l) > len(data) {
			continue
		}
		if t := data[p+headerSize]; t < recEntries || t > recPad {
			continue
		}
		if _, _, _, err := decodeRecord(data[p:], seed); err == nil {
			return p
		}
	}
	return -1
}

// peekLink reads the link record at the head of a segment: where the data
// of the segment before it ends. -1 if it has none (yet).
func peekLink(fsys fsx.FS, path string, seed uint32) int64 {
	data, err := readSegment(fsys, path, 64<<10)
	if err != nil {
		return -1
	}
	for off := 0; off < len(data); {
		typ, payload, n, err := decodeRecord(data[off:], seed)
		switch {
		case err != nil:
			return -1
		case off == 0 && typ == recMetadata, typ == recPad:
			off += n
			continue
		case typ == recLink:
			l, err := decodeLink(payload)
			if err != nil || l.PrevEnd > maxSegmentEnd {
				return -1
			}
			return int64(l.PrevEnd)
		}
		return -1
	}
	return -1
}

// maxSegmentEnd bounds the link's offset, so that a damaged one is never
// used as a read size.
const maxSegmentEnd = 1 << 40

// apply folds one CRC-valid record. A record whose CRC holds but whose
// content makes no sense was written that way: it is corruption, never a
// torn write.
func (r *replayer) apply(name string, off int, typ byte, payload []byte) error {
	if off == 0 {
		if typ != recMetadata {
			return corrupt(name, off, fmt.Errorf("segment starts with record type %d, not metadata", typ))
		}
		md, err := decodeMetadata(payload)
		if err != nil {
			return corrupt(name, off, err)
		}
		if r.haveMD && md != r.md {
			return fmt.Errorf("%w in %s: %+v, earlier segments have %+v", ErrMetadataMismatch, name, md, r.md)
		}
		r.md, r.haveMD, r.segMeta = md, true, true
		return nil
	}
	switch typ {
	case recMetadata:
		return corrupt(name, off, errors.New("metadata record inside a segment"))
	case recHardState:
		hs, err := decodeHardState(payload)
		if err != nil {
			return corrupt(name, off, err)
		}
		r.hs = hs
	case recLink:
		if _, err := decodeLink(payload); err != nil {
			return corrupt(name, off, err)
		}
		r.segLink = true
	case recPad:
	case recSnapshot:
		s, err := decodeSnapshot(payload)
		if err != nil {
			return corrupt(name, off, err)
		}
		if err := r.applySnapshot(s); err != nil {
			return corrupt(name, off, err)
		}
	case recEntries:
		ents, err := decodeEntries(payload)
		if err != nil {
			return corrupt(name, off, err)
		}
		locs, err := r.entryLocs(payload, off, ents)
		if err != nil {
			return corrupt(name, off, err)
		}
		if err := r.applyEntries(ents, locs); err != nil {
			return corrupt(name, off, err)
		}
	default:
		return corrupt(name, off, fmt.Errorf("unknown record type %d", typ))
	}
	return nil
}

// entryLocs returns where the data of each of ents (decoded from payload,
// the record at off of the current segment) lies in the segment file.
func (r *replayer) entryLocs(payload []byte, off int, ents []*raftpb.Entry) ([]indexLoc, error) {
	spans, err := entrySpans(payload, r.spans[:0])
	r.spans = spans[:0]
	if err != nil {
		return nil, err
	}
	if len(spans) != len(ents) {
		return nil, fmt.Errorf("%d entries decoded, %d located", len(ents), len(spans))
	}
	locs := make([]indexLoc, len(ents))
	for i, sp := range spans {
		if sp.index != ents[i].GetIndex() || sp.n != len(ents[i].GetData()) {
			return nil, fmt.Errorf("entry %d located as %d bytes of index %d", ents[i].GetIndex(), sp.n, sp.index)
		}
		locs[i] = indexLoc{sp.index, Loc{Seq: r.seq, Off: int64(off + minRecordSize + sp.off), Len: sp.n}}
	}
	return locs, nil
}

// applyEntries appends ents, which are consecutive. Entries covered by the
// snapshot marker are dropped; a first index at or below the last one read
// replaces the suffix from there (Raft overwrote a conflicting tail); a
// first index past the next expected one is a gap.
func (r *replayer) applyEntries(ents []*raftpb.Entry, locs []indexLoc) error {
	if s := r.snap.Index; s > 0 {
		for len(ents) > 0 && ents[0].GetIndex() <= s {
			ents, locs = ents[1:], locs[1:]
		}
		if len(ents) == 0 {
			return nil
		}
	}
	first := ents[0].GetIndex()
	purged := r.purged
	r.purged = false
	switch {
	case r.next == 0, purged && first > r.next:
		r.ents, r.locs = ents, locs
	case first > r.next:
		return fmt.Errorf("index gap: expected entry %d at most, got %d", r.next, first)
	case len(r.ents) > 0 && first >= r.ents[0].GetIndex():
		k := first - r.ents[0].GetIndex()
		r.ents = append(r.ents[:k], ents...)
		r.locs = append(r.locs[:k], locs...)
	default:
		r.ents, r.locs = ents, locs
	}
	r.next = ents[len(ents)-1].GetIndex() + 1
	return nil
}

// applySnapshot drops the entries a snapshot covers. Markers only move
// forward.
func (r *replayer) applySnapshot(s snapshotRec) error {
	if s.Index < r.snap.Index {
		return fmt.Errorf("snapshot marker at index %d after one at %d", s.Index, r.snap.Index)
	}
	if s.Index > r.snap.Index || r.snap == (SnapshotMarker{}) {
		r.snapSeq = r.seq
	}
	r.snap = SnapshotMarker{Index: s.Index, Term: s.Term}
	for len(r.ents) > 0 && r.ents[0].GetIndex() <= s.Index {
		r.ents, r.locs = r.ents[1:], r.locs[1:]
	}
	if r.next < s.Index+1 {
		r.next = s.Index + 1
	}
	return nil
}

func (r *replayer) state() *State {
	return &State{
		Metadata:  r.md,
		HardState: r.hs.proto(),
		Snapshot:  r.snap,
		Entries:   r.ents,
	}
}
