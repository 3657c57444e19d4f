package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// entrySpan is where one entry's data lies in the payload of an entries
// record: n bytes from off.
type entrySpan struct {
	index uint64
	off   int
	n     int
}

var errEntryShape = errors.New("entries record is not an array of [term, index, type, data]")

// cborHead reads the head of the CBOR data item at p[i:]: its major type,
// its argument (a length, a count or an integer) and where its content
// starts. Only definite lengths: the codec forbids indefinite ones.
func cborHead(p []byte, i int) (major byte, arg uint64, next int, err error) {
	if i >= len(p) {
		return 0, 0, 0, errEntryShape
	}
	major, info := p[i]>>5, p[i]&0x1f
	i++
	var n int
	switch {
	case info < 24:
		return major, uint64(info), i, nil
	case info == 24:
		n = 1
	case info == 25:
		n = 2
	case info == 26:
		n = 4
	case info == 27:
		n = 8
	default:
		return 0, 0, 0, errEntryShape
	}
	if len(p)-i < n {
		return 0, 0, 0, errEntryShape
	}
	var b [8]byte
	copy(b[8-n:], p[i:i+n])
	return major, binary.BigEndian.Uint64(b[:]), i + n, nil
}

// entrySpans walks an entries payload (a CBOR array of [term, index,
// type, data] arrays, as entryRecs encodes it) and appends to dst where
// each entry's data lies. It reads the bytes as they are, so the spans are
// exact for any encoding the decoder accepts; a payload of another shape
// is an error (it was not written by entryRecs).
func entrySpans(p []byte, dst []entrySpan) ([]entrySpan, error) {
	major, count, i, err := cborHead(p, 0)
	if err != nil || major != 4 || count > uint64(len(p)) {
		return dst, errEntryShape
	}
	for e := uint64(0); e < count; e++ {
		major, n, next, err := cborHead(p, i)
		if err != nil || major != 4 || n != 4 {
			return dst, errEntryShape
		}
		i = next
		var index uint64
		for f := 0; f < 3; f++ { // term, index, type
			major, v, next, err := cborHead(p, i)
			if err != nil || major > 1 || (f < 2 && major != 0) {
				return dst, errEntryShape
			}
			if f == 1 {
				index = v
			}
			i = next
		}
		if i < len(p) && p[i] == 0xf6 { // null: no data
			dst = append(dst, entrySpan{index: index, off: i, n: 0})
			i++
			continue
		}
		major, n, next, err = cborHead(p, i)
		if err != nil || major != 2 || n > uint64(len(p)-next) {
			return dst, errEntryShape
		}
		dst = append(dst, entrySpan{index: index, off: next, n: int(n)})
		i = next + int(n)
	}
	if i != len(p) {
		return dst, fmt.Errorf("%w: %d trailing bytes", errEntryShape, len(p)-i)
	}
	return dst, nil
}
