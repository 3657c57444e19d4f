package server

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// The envelope of a normal Raft entry, request{ID, Kind, Body}, is written
// and read by hand: it is a CBOR array of three items, [ID, Kind, Body],
// byte for byte what core/codec (deterministic CBOR) writes for the
// request struct, which stays the reference in the tests. Every member
// decodes every entry, so this is on the path of every write.

const (
	cborUint  = 0 << 5
	cborBytes = 2 << 5
	cborNull  = 0xf6
	// envelopeHead is the head of a three-item array.
	envelopeHead = 4<<5 | 3
)

var errEnvelope = errors.New("malformed request envelope")

// encodeRequest returns the envelope of a request. A nil body is CBOR
// null, as the reflection encoder writes a nil byte slice.
func encodeRequest(id uint64, kind uint8, body []byte) []byte {
	b := make([]byte, 0, 1+9+2+9+len(body))
	b = append(b, envelopeHead)
	b = appendCBORHead(b, cborUint, id)
	b = appendCBORHead(b, cborUint, uint64(kind))
	if body == nil {
		return append(b, cborNull)
	}
	return append(appendCBORHead(b, cborBytes, uint64(len(body))), body...)
}

// appendCBORHead appends the shortest head of major type major with
// argument n.
func appendCBORHead(b []byte, major byte, n uint64) []byte {
	switch {
	case n < 24:
		return append(b, major|byte(n))
	case n <= math.MaxUint8:
		return append(b, major|24, byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, major|25), uint16(n))
	case n <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, major|26), uint32(n))
	default:
		return binary.BigEndian.AppendUint64(append(b, major|27), n)
	}
}

// decodeRequest reads an envelope. Body aliases data (it is its tail).
// It accepts what encodeRequest writes and, of the other encodings the
// reflection decoder takes, those with integers and lengths in longer
// heads than needed; everything else (tags, indefinite lengths, floats,
// trailing bytes, a kind above 255) is an error.
func decodeRequest(data []byte) (request, error) {
	var r request
	if len(data) == 0 || data[0] != envelopeHead {
		return r, fmt.Errorf("%w: not an array of 3", errEnvelope)
	}
	off := 1
	id, off, err := cborUintAt(data, off)
	if err != nil {
		return r, fmt.Errorf("%w: ID: %v", errEnvelope, err)
	}
	kind, off, err := cborUintAt(data, off)
	if err != nil || kind > math.MaxUint8 {
		return r, fmt.Errorf("%w: kind: %v (%d)", errEnvelope, err, kind)
	}
	r.ID, r.Kind = id, uint8(kind)
	if off < len(data) && data[off] == cborNull {
		off++
	} else {
		if off >= len(data) || data[off]&0xe0 != cborBytes {
			return r, fmt.Errorf("%w: body is not a byte string", errEnvelope)
		}
		n, start, err := cborArgAt(data, off)
		if err != nil || n > uint64(len(data)-start) {
			return r, fmt.Errorf("%w: body of %d bytes in %d (%v)", errEnvelope, n, len(data)-start, err)
		}
		off = start + int(n)
		r.Body = data[start:off:off]
	}
	if off != len(data) {
		return r, fmt.Errorf("%w: %d bytes after it", errEnvelope, len(data)-off)
	}
	return r, nil
}

// cborUintAt reads an unsigned integer at data[off:] and returns it and
// the offset after it.
func cborUintAt(data []byte, off int) (uint64, int, error) {
	if off >= len(data) || data[off]&0xe0 != cborUint {
		return 0, off, errors.New("not an unsigned integer")
	}
	return cborArgAt(data, off)
}

// cborArgAt reads the argument of the head at data[off:] (no indefinite
// length) and returns it and the offset after the head.
func cborArgAt(data []byte, off int) (uint64, int, error) {
	if off >= len(data) {
		return 0, off, errors.New("unexpected end")
	}
	ai := data[off] & 0x1f
	if ai < 24 {
		return uint64(ai), off + 1, nil
	}
	if ai > 27 {
		return 0, off, fmt.Errorf("head %#x", data[off])
	}
	n := 1 << (ai - 24)
	if len(data)-off-1 < n {
		return 0, off, errors.New("unexpected end")
	}
	p := data[off+1 : off+1+n]
	var v uint64
	switch n {
	case 1:
		v = uint64(p[0])
	case 2:
		v = uint64(binary.BigEndian.Uint16(p))
	case 4:
		v = uint64(binary.BigEndian.Uint32(p))
	default:
		v = binary.BigEndian.Uint64(p)
	}
	return v, off + 1 + n, nil
}
