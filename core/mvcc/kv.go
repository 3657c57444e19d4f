package mvcc

import (
	"errors"
	"fmt"
	"math"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/edgekv/edgekv/core/codec"
)

// A "key" bucket record is a CBOR array (RFC 8949) of one of two shapes:
//
//	inline:  [key, create_rev, mod_rev, version, value, lease]
//	pointer: [key, create_rev, mod_rev, version, null, lease, [seq, off, len, crc]]
//
// in the deterministic encoding of core/codec: shortest heads, an int64 as
// major type 0 (>= 0) or 1 (< 0), seq and crc as major type 0, a byte
// string as major type 2, a nil one as null (an empty one is 0x40). A
// tombstone is an inline record [key, 0, mod_rev, 0, null, 0]. The codec
// is written by hand, as records are encoded at every put and decoded at
// every read and, all of them, at Open; kv_test.go keeps the
// reflection-based codec it replaced and checks that the two agree.

// valuePtr locates a value: Len bytes at offset Off of WAL segment Seq,
// whose CRC-32C (Castagnoli) is CRC.
type valuePtr struct {
	Seq uint64
	Off int64
	Len int64
	CRC uint32
}

// CBOR initial bytes: the heads of the two record shapes (arrays of 6 and
// of 7 items) and of the pointer (4 items).
const (
	headInline   = 0x86
	headPointer  = 0x87
	headValuePtr = 0x84
)

// The most bytes a record adds to its key and value: the array heads and at
// most 9 bytes per item head.
const (
	maxInlineOverhead  = 1 + 6*9
	maxPointerOverhead = maxInlineOverhead + 1 + 4*9
)

// isPointerRecord tells a pointer record from an inline one by its first
// byte, without decoding.
func isPointerRecord(b []byte) bool { return len(b) > 0 && b[0] == headPointer }

// encodeKV encodes kv as an inline record (appendKV). The error is always
// nil; so is encodePointerKV's.
func encodeKV(kv *mvccpb.KeyValue) ([]byte, error) {
	return appendKV(make([]byte, 0, len(kv.Key)+len(kv.Value)+maxInlineOverhead), kv), nil
}

// encodePointerKV encodes kv with its value replaced by p.
func encodePointerKV(kv *mvccpb.KeyValue, p valuePtr) ([]byte, error) {
	return appendPointerKV(make([]byte, 0, len(kv.Key)+maxPointerOverhead), kv, p), nil
}

// appendKV appends the inline record of kv to b. An empty value is stored
// as null, like a nil one (CBOR tells them apart), so that every member
// stores identical bytes whatever its decoder produced.
func appendKV(b []byte, kv *mvccpb.KeyValue) []byte {
	value := kv.Value
	if len(value) == 0 {
		value = nil
	}
	return appendFields(append(b, headInline), kv, value)
}

// appendPointerKV appends the record of kv with its value replaced by p.
func appendPointerKV(b []byte, kv *mvccpb.KeyValue, p valuePtr) []byte {
	b = append(appendFields(append(b, headPointer), kv, nil), headValuePtr)
	b = codec.AppendHead(b, codec.MajorUint, p.Seq)
	b = codec.AppendInt(b, p.Off)
	b = codec.AppendInt(b, p.Len)
	return codec.AppendHead(b, codec.MajorUint, uint64(p.CRC))
}

func appendFields(b []byte, kv *mvccpb.KeyValue, value []byte) []byte {
	b = codec.AppendBytes(b, kv.Key)
	b = codec.AppendInt(b, kv.CreateRevision)
	b = codec.AppendInt(b, kv.ModRevision)
	b = codec.AppendInt(b, kv.Version)
	b = codec.AppendBytes(b, value)
	return codec.AppendInt(b, kv.Lease)
}

var (
	errBadPointer = errors.New("bad value pointer")
	errMalformed  = errors.New("malformed record")
)

// record is a decoded record. Its byte strings alias the bytes it was
// parsed from: they are valid only as long as those (inside the backend
// transaction that returned them).
type record struct {
	key, value                        []byte
	createRev, modRev, version, lease int64
	pointer                           bool
	ptr                               valuePtr // if pointer
}

// parse decodes b, either shape, into r without copying. It accepts any
// head length (not only the shortest) and undefined for null, and rejects
// what is not a record of this package; the few odd forms the reflection
// decoder accepted besides are listed in kv_test.go.
func (r *record) parse(b []byte) error {
	d := decoder{b: b, n: len(b)}
	r.pointer = isPointerRecord(b)
	items := uint64(6)
	if r.pointer {
		items = 7
	}
	if n := d.head(codec.MajorArray); d.err == nil && n != items {
		d.fail(fmt.Sprintf("an array of %d items", n))
	}
	r.key = d.bytes()
	r.createRev = d.int()
	r.modRev = d.int()
	r.version = d.int()
	r.value = d.bytes()
	r.lease = d.int()
	if r.pointer {
		if n := d.head(codec.MajorArray); d.err == nil && n != 4 {
			d.fail(fmt.Sprintf("a value pointer of %d items", n))
		}
		r.ptr = valuePtr{Seq: d.uint(math.MaxUint64), Off: d.int(), Len: d.int(), CRC: uint32(d.uint(math.MaxUint32))}
	}
	if d.err == nil && len(d.b) > 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return fmt.Errorf("mvcc: decoding key value: %w", d.err)
	}
	if r.pointer && (r.value != nil || r.ptr.Len <= 0 || r.ptr.Off < 0) {
		return fmt.Errorf("mvcc: decoding key value: %w: %+v with value %q", errBadPointer, r.ptr, r.value)
	}
	return nil
}

// decodeKV decodes a stored record into a KeyValue of its own (the bytes
// are copied). For a pointer record the value is nil and ptr says where it
// is; the caller resolves it (view.resolve).
func decodeKV(b []byte) (kv *mvccpb.KeyValue, ptr *valuePtr, err error) {
	var r record
	if err := r.parse(b); err != nil {
		return nil, nil, err
	}
	if r.pointer {
		// One allocation for both.
		x := &struct {
			kv  mvccpb.KeyValue
			ptr valuePtr
		}{ptr: r.ptr}
		kv, ptr = &x.kv, &x.ptr
	} else {
		kv = new(mvccpb.KeyValue)
	}
	kv.Key, kv.Value = clone2(r.key, r.value)
	kv.CreateRevision, kv.ModRevision, kv.Version, kv.Lease = r.createRev, r.modRev, r.version, r.lease
	return kv, ptr, nil
}

// clone2 copies a and b into one new array; nil stays nil, empty stays
// empty.
func clone2(a, b []byte) ([]byte, []byte) {
	buf := make([]byte, len(a)+len(b))
	n := copy(buf, a)
	copy(buf[n:], b)
	if a != nil {
		a = buf[:n:n]
	}
	if b != nil {
		b = buf[n:]
	}
	return a, b
}

// decodePointer returns the pointer of a pointer record, nil for an inline
// one.
func decodePointer(b []byte) (*valuePtr, error) {
	if !isPointerRecord(b) {
		return nil, nil
	}
	var r record
	if err := r.parse(b); err != nil {
		return nil, err
	}
	p := r.ptr
	return &p, nil
}

// decoder reads the items of a record; the first error sticks, and every
// read after it returns a zero value.
type decoder struct {
	b   []byte // what is left
	n   int    // the record's length, for error offsets
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s at offset %d", errMalformed, what, d.n-len(d.b))
	}
}

// head reads the head of an item of major type major and returns its
// argument. Indefinite lengths are refused.
func (d *decoder) head(major byte) uint64 {
	switch {
	case d.err != nil:
		return 0
	case len(d.b) == 0:
		d.fail("unexpected end")
		return 0
	case d.b[0]&codec.MajorMask != major:
		d.fail(fmt.Sprintf("unexpected initial byte 0x%02x (want major type %d)", d.b[0], major>>5))
		return 0
	}
	_, n, size, err := codec.ReadHead(d.b)
	if err != nil {
		d.fail(err.Error())
		return 0
	}
	d.b = d.b[size:]
	return n
}

// uint reads an unsigned integer no larger than limit.
func (d *decoder) uint(limit uint64) uint64 {
	n := d.head(codec.MajorUint)
	if n > limit {
		d.fail(fmt.Sprintf("%d is too large", n))
		return 0
	}
	return n
}

// int reads an int64: major type 0, or 1 for a negative one.
func (d *decoder) int() int64 {
	major := byte(codec.MajorUint)
	if len(d.b) > 0 && d.b[0]&codec.MajorMask == codec.MajorNeg {
		major = codec.MajorNeg
	}
	n := d.head(major)
	if n > math.MaxInt64 {
		d.fail(fmt.Sprintf("%d overflows an int64", n))
		return 0
	}
	if major == codec.MajorNeg {
		return ^int64(n) // -1-n
	}
	return int64(n)
}

// bytes reads a byte string, or null (or undefined) as nil. The result
// aliases the record.
func (d *decoder) bytes() []byte {
	if d.err == nil && len(d.b) > 0 && (d.b[0] == codec.Null || d.b[0] == codec.Undefined) {
		d.b = d.b[1:]
		return nil
	}
	n := d.head(codec.MajorBytes)
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail(fmt.Sprintf("a byte string of %d bytes", n))
		return nil
	}
	s := d.b[:n:n]
	d.b = d.b[n:]
	return s
}
