package wal

import (
	"errors"
	"fmt"

	"go.etcd.io/raft/v3/raftpb"
)

// replayer folds records into the State that Open returns. It is pure: it
// sees bytes, never files.
type replayer struct {
	md      Metadata
	haveMD  bool
	hs      hardStateRec
	snap    SnapshotMarker
	ents    []*raftpb.Entry
	next    uint64 // index the next entries record may start at, at most; 0: any
	segMeta bool   // the current segment began with a metadata record
}

// scanResult says where the valid data of a segment ends.
type scanResult struct {
	end  int   // offset just past the last good record
	torn bool  // the bytes from end on are a torn write to truncate
	bad  error // why the record at end was rejected, when torn
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

// scan replays one segment. In the last segment a bad record followed only
// by zeros or the end of the file is a torn write; anything else is
// corruption.
func (r *replayer) scan(name string, data []byte, last bool) (scanResult, error) {
	r.segMeta = false
	off := 0
	for off < len(data) {
		typ, payload, n, err := decodeRecord(data[off:])
		if err == nil {
			if err := r.apply(name, off, typ, payload); err != nil {
				return scanResult{}, err
			}
			off += n
			continue
		}
		if allZero(data[off:]) {
			// Zero fill: the end of data, in any segment.
			break
		}
		var rest []byte // what follows the bad record
		switch {
		case errors.Is(err, errZeroLength):
			// A zero length ends the data only if zeros follow.
			return scanResult{}, corrupt(name, off, errors.New("data after zero length"))
		case errors.Is(err, errShortHeader), errors.Is(err, errShortRecord):
			rest = nil
		case errors.Is(err, errTooLong):
			rest = data[off+headerSize:]
		default: // errCRC: the length fits, so the record's extent is known
			rest = data[off+n:]
		}
		if !last || !allZero(rest) {
			return scanResult{}, corrupt(name, off, err)
		}
		if !r.segMeta {
			return scanResult{}, corrupt(name, off, fmt.Errorf("segment has no metadata record: %w", err))
		}
		return scanResult{end: off, torn: true, bad: err}, nil
	}
	if !r.segMeta {
		return scanResult{}, corrupt(name, off, errors.New("segment has no metadata record"))
	}
	return scanResult{end: off}, nil
}

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
		if err := r.applyEntries(ents); err != nil {
			return corrupt(name, off, err)
		}
	default:
		return corrupt(name, off, fmt.Errorf("unknown record type %d", typ))
	}
	return nil
}

// applyEntries appends ents, which are consecutive. Entries covered by the
// snapshot marker are dropped; a first index at or below the last one read
// replaces the suffix from there (Raft overwrote a conflicting tail); a
// first index past the next expected one is a gap.
func (r *replayer) applyEntries(ents []*raftpb.Entry) error {
	if s := r.snap.Index; s > 0 {
		for len(ents) > 0 && ents[0].GetIndex() <= s {
			ents = ents[1:]
		}
		if len(ents) == 0 {
			return nil
		}
	}
	first := ents[0].GetIndex()
	switch {
	case r.next == 0:
		r.ents = ents
	case first > r.next:
		return fmt.Errorf("index gap: expected entry %d at most, got %d", r.next, first)
	case len(r.ents) > 0 && first >= r.ents[0].GetIndex():
		r.ents = append(r.ents[:first-r.ents[0].GetIndex()], ents...)
	default:
		r.ents = ents
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
	r.snap = SnapshotMarker{Index: s.Index, Term: s.Term}
	for len(r.ents) > 0 && r.ents[0].GetIndex() <= s.Index {
		r.ents = r.ents[1:]
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
