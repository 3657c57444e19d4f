package server

import (
	"bytes"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/edgekv/edgekv/core/mvcc"
)

// Values written once. A put's value reaches the disk in its Raft entry,
// in the WAL; the backend then stores a pointer to those bytes instead of
// a second copy (core/mvcc "Value pointers", persist/wal "Values"). The
// apply loop finds where the value lies (valueAt), the WAL keeps the
// segments that values still live in (wal.Options.Pinned = the store's
// Pinned), and before purging, the values of mostly dead segments move
// back into the backend (migrateValues) so that those can be recycled.

// putValueField is the field number of value in etcd's PutRequest.
const putValueField = 2

// valueAt returns where the value of put request r, decoded from the body
// of committed entry e, lies in the WAL, or nil if the WAL does not know
// the entry or the bytes cannot be found. The entry's data is the CBOR
// envelope request{ID, Kind, Body}, whose last item is Body, the
// protobuf PutRequest: so the body ends the data, and the value is the
// content of its field 2 (the last one, as protobuf decoding takes).
// The bytes found are compared with r.Value, so a pointer always names
// exactly the value.
func (s *Server) valueAt(e *raftpb.Entry, body []byte, r *pb.PutRequest) *mvcc.ValueLoc {
	data := e.GetData()
	if len(r.Value) < s.pointerMin() || len(body) > len(data) {
		return nil
	}
	loc, ok := s.wal.Locate(e.GetIndex())
	if !ok || loc.Len != len(data) {
		return nil
	}
	bodyOff := len(data) - len(body)
	off, n, ok := protoBytesField(data[bodyOff:], putValueField)
	if !ok || n != len(r.Value) || !bytes.Equal(data[bodyOff+off:bodyOff+off+n], r.Value) {
		return nil
	}
	return &mvcc.ValueLoc{Seq: loc.Seq, Off: loc.Off + int64(bodyOff+off), Len: n}
}

func (s *Server) pointerMin() int {
	if n := s.cfg.Backend.PointerMin; n > 0 {
		return n
	}
	return mvcc.DefaultPointerMin
}

// protoBytesField returns where the content of the last occurrence of
// length-delimited field num lies in the protobuf message b.
func protoBytesField(b []byte, num protowire.Number) (off, n int, ok bool) {
	pos := 0
	for pos < len(b) {
		f, typ, tl := protowire.ConsumeTag(b[pos:])
		if tl < 0 {
			return 0, 0, false
		}
		vl := protowire.ConsumeFieldValue(f, typ, b[pos+tl:])
		if vl < 0 {
			return 0, 0, false
		}
		if f == num && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b[pos+tl:])
			if m < 0 {
				return 0, 0, false
			}
			off, n, ok = pos+tl+m-len(v), len(v), true
		}
		pos += tl + vl
	}
	return off, n, ok
}

// pinned is the WAL's Options.Pinned: a segment is kept while the store
// may read values from it (and while there is no store yet).
func (s *Server) pinned(seq uint64) bool {
	return s.kv == nil || s.kv.Pinned(seq)
}

// migrateValues moves into the backend the values still living in the
// segments Raft no longer needs below index, for those segments that are
// mostly dead (see mvcc Migrate): they can then be recycled. A segment
// whose values mostly live stays as a value segment. On the apply
// goroutine, before PurgeBefore.
//
// Why not "live values under half the segment size", the first design: a
// Save of one small put fills a whole 512-byte sector (padding, hard
// state), so at the low write concurrency of most edge deployments a
// segment of 256-byte values that are all alive holds values for under
// half its size, and every segment would move, writing every value twice.
// The limit is relative to what the segment held instead, with a floor of
// a quarter of the segment, which bounds the disk space a kept segment
// costs to 4 times its live values.
func (s *Server) migrateValues(index uint64) error {
	segs := s.wal.Reclaimable(index)
	if len(segs) == 0 {
		return nil
	}
	if _, err := s.kv.Migrate(segs, s.wal.SegmentSize()/4); err != nil {
		return fmt.Errorf("moving values out of WAL segments: %w", err)
	}
	return nil
}
