package codec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// CBOR major types (shifted into the initial byte) and the simple values
// the hand-written codecs of edgekv's hot paths use: transport's Raft
// frames, core/mvcc's key records and core/server's entry envelope. They
// write what Marshal writes (core deterministic encoding) with AppendHead
// and read heads with ReadHead, and each checks its output against Marshal
// and Unmarshal in its tests.
const (
	MajorUint   = 0 << 5
	MajorNeg    = 1 << 5
	MajorBytes  = 2 << 5
	MajorArray  = 4 << 5
	MajorSimple = 7 << 5
	MajorMask   = 7 << 5
	Null        = MajorSimple | 22
	Undefined   = MajorSimple | 23
)

// AppendHead appends the shortest head of major type major with argument
// n (RFC 8949 core deterministic encoding).
func AppendHead(b []byte, major byte, n uint64) []byte {
	switch {
	case n < 24:
		return append(b, major|byte(n))
	case n <= math.MaxUint8:
		return append(b, major|24, byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, major|25), uint16(n))
	case n <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, major|26), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(b, major|27), n)
}

// AppendInt appends v as an unsigned or, if negative, a negative integer.
func AppendInt(b []byte, v int64) []byte {
	if v < 0 {
		return AppendHead(b, MajorNeg, uint64(^v)) // -1-v
	}
	return AppendHead(b, MajorUint, uint64(v))
}

// AppendBytes appends s as a byte string, or null if s is nil (an empty
// non-nil s is an empty byte string), as Marshal writes a []byte.
func AppendBytes(b, s []byte) []byte {
	if s == nil {
		return append(b, Null)
	}
	return append(AppendHead(b, MajorBytes, uint64(len(s))), s...)
}

// ErrHead is wrapped by ReadHead's errors.
var ErrHead = errors.New("cbor: bad head")

// ReadHead reads the head at the start of b: its major type (shifted),
// its argument, and the head's length. The argument may be in a longer
// head than needed; an indefinite length, a reserved initial byte or a
// truncated head is an error. For major type 7 the argument of a one-byte
// head is the simple value and of a longer one the raw bits (floats);
// callers that take no floats check for them.
func ReadHead(b []byte) (major byte, arg uint64, n int, err error) {
	if len(b) == 0 {
		return 0, 0, 0, fmt.Errorf("%w: unexpected end", ErrHead)
	}
	major, ai := b[0]&MajorMask, b[0]&^MajorMask
	if ai < 24 {
		return major, uint64(ai), 1, nil
	}
	if ai > 27 {
		return 0, 0, 0, fmt.Errorf("%w: initial byte %#02x (indefinite length or reserved)", ErrHead, b[0])
	}
	size := 1 << (ai - 24)
	if len(b)-1 < size {
		return 0, 0, 0, fmt.Errorf("%w: unexpected end", ErrHead)
	}
	for _, x := range b[1 : 1+size] {
		arg = arg<<8 | uint64(x)
	}
	return major, arg, 1 + size, nil
}
