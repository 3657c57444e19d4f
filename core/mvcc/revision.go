package mvcc

import (
	"encoding/binary"
	"fmt"
)

// A revision names one write: main is the revision of the request (one per
// write request), sub the position of the write inside that request.
type revision struct {
	main int64
	sub  int64
}

func (a revision) greaterThan(b revision) bool {
	if a.main != b.main {
		return a.main > b.main
	}
	return a.sub > b.sub
}

const (
	revBytesLen       = 8 + 1 + 8
	markedRevBytesLen = revBytesLen + 1
	markTombstone     = 't'
)

// revToBytes encodes rev as a "key" bucket key: main (8 bytes, big endian),
// '_', sub (8 bytes, big endian), and the tombstone mark 't' for deletions.
func revToBytes(rev revision, tombstone bool) []byte {
	n := revBytesLen
	if tombstone {
		n = markedRevBytesLen
	}
	b := make([]byte, n)
	binary.BigEndian.PutUint64(b, uint64(rev.main))
	b[8] = '_'
	binary.BigEndian.PutUint64(b[9:], uint64(rev.sub))
	if tombstone {
		b[revBytesLen] = markTombstone
	}
	return b
}

// bytesToRev decodes a "key" bucket key.
func bytesToRev(b []byte) (rev revision, tombstone bool, err error) {
	if len(b) != revBytesLen && len(b) != markedRevBytesLen {
		return revision{}, false, fmt.Errorf("mvcc: revision key of length %d", len(b))
	}
	if b[8] != '_' {
		return revision{}, false, fmt.Errorf("mvcc: revision key %x: bad separator", b)
	}
	if len(b) == markedRevBytesLen && b[revBytesLen] != markTombstone {
		return revision{}, false, fmt.Errorf("mvcc: revision key %x: bad mark", b)
	}
	main, sub := int64(binary.BigEndian.Uint64(b)), int64(binary.BigEndian.Uint64(b[9:]))
	if main < 0 || sub < 0 {
		return revision{}, false, fmt.Errorf("mvcc: revision key %x: negative revision", b)
	}
	return revision{main: main, sub: sub}, len(b) == markedRevBytesLen, nil
}

// mainRevPrefix is the smallest bucket key with main revision rev.
func mainRevPrefix(rev int64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, uint64(rev))
	return b
}
