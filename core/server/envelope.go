package server

import (
	"errors"
	"fmt"
	"math"

	"github.com/edgekv/edgekv/core/codec"
)

// The envelope of a normal Raft entry, request{ID, Kind, Body}, is written
// and read by hand: it is a CBOR array of three items, [ID, Kind, Body],
// byte for byte what core/codec (deterministic CBOR) writes for the
// request struct, which stays the reference in the tests. Every member
// decodes every entry, so this is on the path of every write.

// envelopeHead is the head of a three-item array.
const envelopeHead = codec.MajorArray | 3

var errEnvelope = errors.New("malformed request envelope")

// encodeRequest returns the envelope of a request. A nil body is CBOR
// null, as the reflection encoder writes a nil byte slice.
func encodeRequest(id uint64, kind uint8, body []byte) []byte {
	b := make([]byte, 0, 1+9+2+9+len(body))
	b = append(b, envelopeHead)
	b = codec.AppendHead(b, codec.MajorUint, id)
	b = codec.AppendHead(b, codec.MajorUint, uint64(kind))
	return codec.AppendBytes(b, body)
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
	id, off, err := uintAt(data, off)
	if err != nil {
		return r, fmt.Errorf("%w: ID: %v", errEnvelope, err)
	}
	kind, off, err := uintAt(data, off)
	if err != nil || kind > math.MaxUint8 {
		return r, fmt.Errorf("%w: kind: %v (%d)", errEnvelope, err, kind)
	}
	r.ID, r.Kind = id, uint8(kind)
	if off < len(data) && data[off] == codec.Null {
		off++
	} else {
		major, n, hl, err := codec.ReadHead(data[off:])
		if err == nil && major != codec.MajorBytes {
			err = errors.New("not a byte string")
		}
		if err != nil || n > uint64(len(data)-off-hl) {
			return r, fmt.Errorf("%w: body: %v (%d bytes in %d)", errEnvelope, err, n, len(data)-off-hl)
		}
		start := off + hl
		off = start + int(n)
		r.Body = data[start:off:off]
	}
	if off != len(data) {
		return r, fmt.Errorf("%w: %d bytes after it", errEnvelope, len(data)-off)
	}
	return r, nil
}

// uintAt reads an unsigned integer at data[off:] and returns it and the
// offset after it.
func uintAt(data []byte, off int) (uint64, int, error) {
	major, arg, n, err := codec.ReadHead(data[off:])
	if err == nil && major != codec.MajorUint {
		err = errors.New("not an unsigned integer")
	}
	if err != nil {
		return 0, off, err
	}
	return arg, off + n, nil
}
