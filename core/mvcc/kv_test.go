package mvcc

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/edgekv/edgekv/core/codec"
)

// The reflection-based codec kv.go replaced (core/codec, that is
// fxamacker/cbor), kept as the reference the hand-written one must match.

type refStoredKV struct {
	_         struct{} `cbor:",toarray"`
	Key       []byte
	CreateRev int64
	ModRev    int64
	Version   int64
	Value     []byte
	Lease     int64
}

type refStoredKVPtr struct {
	_         struct{} `cbor:",toarray"`
	Key       []byte
	CreateRev int64
	ModRev    int64
	Version   int64
	Value     []byte
	Lease     int64
	Ptr       refValuePtr
}

type refValuePtr struct {
	_   struct{} `cbor:",toarray"`
	Seq uint64
	Off int64
	Len int64
	CRC uint32
}

func refEncodeKV(kv *mvccpb.KeyValue) ([]byte, error) {
	s := refStoredKV{Key: kv.Key, CreateRev: kv.CreateRevision, ModRev: kv.ModRevision, Version: kv.Version, Value: kv.Value, Lease: kv.Lease}
	if len(s.Value) == 0 {
		s.Value = nil
	}
	b, err := codec.Marshal(&s)
	if err != nil {
		return nil, fmt.Errorf("mvcc: encoding key value: %w", err)
	}
	return b, nil
}

func refEncodePointerKV(kv *mvccpb.KeyValue, p valuePtr) ([]byte, error) {
	s := refStoredKVPtr{Key: kv.Key, CreateRev: kv.CreateRevision, ModRev: kv.ModRevision, Version: kv.Version, Lease: kv.Lease,
		Ptr: refValuePtr{Seq: p.Seq, Off: p.Off, Len: p.Len, CRC: p.CRC}}
	b, err := codec.Marshal(&s)
	if err != nil {
		return nil, fmt.Errorf("mvcc: encoding key value: %w", err)
	}
	return b, nil
}

func refDecodeKV(b []byte) (*mvccpb.KeyValue, *valuePtr, error) {
	if isPointerRecord(b) {
		var s refStoredKVPtr
		if err := codec.Unmarshal(b, &s); err != nil {
			return nil, nil, fmt.Errorf("mvcc: decoding key value: %w", err)
		}
		if s.Value != nil || s.Ptr.Len <= 0 || s.Ptr.Off < 0 {
			return nil, nil, fmt.Errorf("mvcc: decoding key value: %w: %+v with value %q", errBadPointer, s.Ptr, s.Value)
		}
		return &mvccpb.KeyValue{Key: s.Key, CreateRevision: s.CreateRev, ModRevision: s.ModRev, Version: s.Version, Lease: s.Lease},
			&valuePtr{Seq: s.Ptr.Seq, Off: s.Ptr.Off, Len: s.Ptr.Len, CRC: s.Ptr.CRC}, nil
	}
	var s refStoredKV
	if err := codec.Unmarshal(b, &s); err != nil {
		return nil, nil, fmt.Errorf("mvcc: decoding key value: %w", err)
	}
	return &mvccpb.KeyValue{Key: s.Key, CreateRevision: s.CreateRev, ModRevision: s.ModRev, Version: s.Version, Value: s.Value, Lease: s.Lease}, nil, nil
}

// sameKV reports whether a and b hold the same fields, telling nil from
// empty byte strings apart (proto.Equal does not).
func sameKV(a, b *mvccpb.KeyValue) bool {
	sameBytes := func(x, y []byte) bool { return bytes.Equal(x, y) && (x == nil) == (y == nil) }
	return sameBytes(a.Key, b.Key) && sameBytes(a.Value, b.Value) && a.CreateRevision == b.CreateRevision &&
		a.ModRevision == b.ModRevision && a.Version == b.Version && a.Lease == b.Lease
}

func samePtr(a, b *valuePtr) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }

// oddForm reports whether b uses one of the forms the reference decoder
// accepts and decodeKV does not, none of which an encoder of this package
// ever wrote:
//   - null or undefined as the whole record (the reference: a zero record);
//   - null, undefined or a simple value (0..19, 32..255) as an integer
//     (the reference: 0, or the simple value's number);
//   - an array of small integers as a byte string (the reference: those
//     bytes).
//
// It looks for them in b decoded generically, so it is a necessary
// condition for the decoders to differ, not a proof that the form was what
// made decodeKV refuse b.
func oddForm(b []byte) bool {
	var v any
	if codec.Unmarshal(b, &v) != nil {
		return false
	}
	items, ok := v.([]any)
	if !ok {
		return v == nil
	}
	notInt := func(x any) bool {
		_, simple := x.(cbor.SimpleValue)
		return x == nil || simple
	}
	for i, x := range items {
		switch _, array := x.([]any); {
		case (i == 0 || i == 4) && array:
			return true
		case (i == 1 || i == 2 || i == 3 || i == 5) && notInt(x):
			return true
		case i == 6 && array:
			for _, y := range x.([]any) {
				if notInt(y) {
					return true
				}
			}
		}
	}
	return false
}

// kvCorpus is records of every shape, and odd encodings of them.
func kvCorpus() [][]byte {
	var out [][]byte
	for _, kv := range []*mvccpb.KeyValue{
		{Key: []byte("k"), CreateRevision: 2, ModRevision: 3, Version: 1, Value: []byte("v"), Lease: 7},
		{Key: []byte("k"), ModRevision: 4},
		{Key: []byte{}, CreateRevision: -1, ModRevision: math.MinInt64, Version: math.MaxInt64, Value: bytes.Repeat([]byte("x"), 300), Lease: -1 << 40},
		{},
	} {
		b, _ := encodeKV(kv)
		p, _ := encodePointerKV(kv, valuePtr{Seq: math.MaxUint64, Off: 4096, Len: 300, CRC: 0xdeadbeef})
		out = append(out, b, p)
	}
	for _, h := range []string{
		"86f6000000f600", "86f7000000f700", // nil key, tombstone
		"9806416b1802190003" + "1a00000001" + "f6" + "1b0000000000000007", // long heads
		"87416b020301f700" + "980401011864" + "1a00000005",                // long heads, undefined value
		"f6", "f7", "86f6f60000f600", "86416be0e100f600", "8683010203020301f600", "87416b020301f60084" + "01f8201864e5", // odd forms
		"87416b02030141760784010219010000",               // a pointer record with a value
		"9807416b020301f6008401011864e5",                 // a pointer record with a long head
		"86416b020301417600ff",                           // trailing bytes
		"9f416b02030141760000ff", "865f416bff020301f600", // indefinite lengths
		"86416bc10203014176", "86416b0203014176", "86416b1b", // tags, truncated
	} {
		b, _ := hex.DecodeString(h)
		out = append(out, b)
	}
	return out
}

// FuzzDecodeKVMatchesReference checks decodeKV against the reference decoder on arbitrary
// bytes: when decodeKV accepts, the reference accepts and decodes the
// same; when only the reference accepts, b uses an odd form (oddForm).
// decodeKV never panics, and its errors say what failed.
func FuzzDecodeKVMatchesReference(f *testing.F) {
	for _, b := range kvCorpus() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		in := bytes.Clone(b) // changed below
		kv, p, err := decodeKV(in)
		rkv, rp, rerr := refDecodeKV(b)
		switch {
		case err == nil && rerr != nil:
			t.Fatalf("%x: decodeKV accepts, the reference refuses: %v", b, rerr)
		case err != nil && rerr == nil && !oddForm(b):
			t.Fatalf("%x: decodeKV refuses %v, the reference accepts %v %+v", b, err, rkv, rp)
		case err == nil && (!sameKV(kv, rkv) || !samePtr(p, rp)):
			t.Fatalf("%x: decodeKV %v %+v, the reference %v %+v", b, kv, p, rkv, rp)
		case err != nil && !strings.HasPrefix(err.Error(), "mvcc: decoding key value: "):
			t.Fatalf("%x: error %q", b, err)
		case err != nil && !errors.Is(err, errMalformed) && !errors.Is(err, errBadPointer):
			t.Fatalf("%x: error %q is neither errMalformed nor errBadPointer", b, err)
		}
		if dp, derr := decodePointer(b); (derr == nil) != (err == nil || !isPointerRecord(b)) || (derr == nil && !samePtr(dp, p)) {
			t.Fatalf("%x: decodePointer %+v, %v; decodeKV %+v, %v", b, dp, derr, p, err)
		}
		if err == nil {
			// The result is a copy: the record's bytes may change.
			for i := range in {
				in[i]++
			}
			if !sameKV(kv, rkv) {
				t.Fatalf("%x: the decoded record aliases its bytes", b)
			}
		}
	})
}

func TestDecodeKVCorpus(t *testing.T) {
	accepted := 0
	for _, b := range kvCorpus() {
		kv, p, err := decodeKV(b)
		rkv, rp, rerr := refDecodeKV(b)
		t.Logf("%x: %v %+v %v | reference %v %+v %v", b, kv, p, err, rkv, rp, rerr)
		switch {
		case (err == nil) != (rerr == nil) && !(rerr == nil && oddForm(b)):
			t.Errorf("%x: decodeKV %v, reference %v", b, err, rerr)
		case err == nil && (!sameKV(kv, rkv) || !samePtr(p, rp)):
			t.Errorf("%x: decodeKV %v %+v, reference %v %+v", b, kv, p, rkv, rp)
		case err == nil:
			accepted++
		}
	}
	if accepted < 11 {
		t.Errorf("only %d records of the corpus accepted", accepted)
	}
}

// TestKVCodecMatchesReference encodes random records, edge values
// included, with both codecs: the bytes are identical and decode back to
// the record.
func TestKVCodecMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	edges := []int64{0, 1, 23, 24, 255, 256, 65535, 65536, math.MaxUint32, math.MaxUint32 + 1, math.MaxInt64,
		-1, -24, -25, -256, -257, -65536, -65537, -math.MaxUint32 - 1, -math.MaxUint32 - 2, math.MinInt64}
	randInt := func() int64 {
		switch rng.IntN(3) {
		case 0:
			return edges[rng.IntN(len(edges))]
		case 1:
			return rng.Int64N(1 << 20)
		}
		return int64(rng.Uint64())
	}
	randBytes := func() []byte {
		switch rng.IntN(6) {
		case 0:
			return nil
		case 1:
			return []byte{}
		case 2:
			return make([]byte, []int{23, 24, 255, 256, 65535, 65536, 70000}[rng.IntN(7)])
		}
		b := make([]byte, rng.IntN(300))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	n := 20000
	if testing.Short() {
		n = 2000
	}
	for i := range n {
		kv := &mvccpb.KeyValue{Key: randBytes(), CreateRevision: randInt(), ModRevision: randInt(), Version: randInt(), Value: randBytes(), Lease: randInt()}
		p := valuePtr{Seq: uint64(randInt()), Off: randInt(), Len: randInt(), CRC: uint32(randInt())}
		if rng.IntN(4) == 0 {
			p.Seq = math.MaxUint64
		}
		got, err := encodeKV(kv)
		want, rerr := refEncodeKV(kv)
		if err != nil || rerr != nil || !bytes.Equal(got, want) {
			t.Fatalf("#%d encodeKV(%v) = %x, %v; reference %x, %v", i, kv, got, err, want, rerr)
		}
		if prefix := []byte("prefix"); !bytes.Equal(appendKV(prefix, kv), append(prefix, want...)) {
			t.Fatalf("#%d appendKV differs", i)
		}
		dec, dp, err := decodeKV(got)
		wantKV := &mvccpb.KeyValue{Key: kv.Key, CreateRevision: kv.CreateRevision, ModRevision: kv.ModRevision, Version: kv.Version, Value: kv.Value, Lease: kv.Lease}
		if len(wantKV.Value) == 0 {
			wantKV.Value = nil
		}
		if err != nil || dp != nil || !sameKV(dec, wantKV) {
			t.Fatalf("#%d decodeKV(%x) = %v, %+v, %v; want %v", i, got, dec, dp, err, wantKV)
		}

		got, err = encodePointerKV(kv, p)
		want, rerr = refEncodePointerKV(kv, p)
		if err != nil || rerr != nil || !bytes.Equal(got, want) {
			t.Fatalf("#%d encodePointerKV(%v, %+v) = %x, %v; reference %x, %v", i, kv, p, got, err, want, rerr)
		}
		dec, dp, err = decodeKV(got)
		rdec, rdp, rerr := refDecodeKV(got)
		wantKV.Value = nil
		switch {
		case (err == nil) != (rerr == nil):
			t.Fatalf("#%d decodeKV(%x): %v; reference %v", i, got, err, rerr)
		case p.Len <= 0 || p.Off < 0:
			if !errors.Is(err, errBadPointer) {
				t.Fatalf("#%d decodeKV(%x) with pointer %+v: %v, want errBadPointer", i, got, p, err)
			}
		case err != nil || !sameKV(dec, wantKV) || *dp != p || !sameKV(dec, rdec) || *dp != *rdp:
			t.Fatalf("#%d decodeKV(%x) = %v, %+v, %v; want %v, %+v", i, got, dec, dp, err, wantKV, p)
		}
	}
}

// FuzzEncodeKVMatchesReference checks that both codecs encode arbitrary
// records to the same bytes, which decode back. nils&1 makes the key nil,
// nils&2 the value.
func FuzzEncodeKVMatchesReference(f *testing.F) {
	f.Add([]byte("k"), []byte("v"), int64(2), int64(3), int64(1), int64(7), uint64(1), int64(4096), int64(300), uint32(0xdeadbeef), uint8(0))
	f.Add([]byte{}, []byte{}, int64(-1), int64(math.MinInt64), int64(math.MaxInt64), int64(-25), uint64(math.MaxUint64), int64(-1), int64(0), uint32(0), uint8(3))
	f.Fuzz(func(t *testing.T, key, value []byte, create, mod, ver, lease int64, seq uint64, off, n int64, crc uint32, nils uint8) {
		if nils&1 != 0 {
			key = nil
		}
		if nils&2 != 0 {
			value = nil
		}
		kv := &mvccpb.KeyValue{Key: key, CreateRevision: create, ModRevision: mod, Version: ver, Value: value, Lease: lease}
		p := valuePtr{Seq: seq, Off: off, Len: n, CRC: crc}
		got, _ := encodeKV(kv)
		want, err := refEncodeKV(kv)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("encodeKV(%v) = %x; reference %x, %v", kv, got, want, err)
		}
		if dec, _, err := decodeKV(got); err != nil || !bytes.Equal(dec.Value, value) || !bytes.Equal(dec.Key, key) || (dec.Key == nil) != (key == nil) {
			t.Fatalf("decodeKV(%x) = %v, %v", got, dec, err)
		}
		got, _ = encodePointerKV(kv, p)
		want, err = refEncodePointerKV(kv, p)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("encodePointerKV(%v, %+v) = %x; reference %x, %v", kv, p, got, want, err)
		}
		if _, dp, err := decodeKV(got); (err == nil) != (n > 0 && off >= 0) || (err == nil && *dp != p) {
			t.Fatalf("decodeKV(%x) = %+v, %v", got, dp, err)
		}
	})
}

var (
	benchKV = &mvccpb.KeyValue{Key: []byte("/registry/pods/default/pod-00012345"), CreateRevision: 1234567, ModRevision: 2345678,
		Version: 3, Value: bytes.Repeat([]byte("v"), 256), Lease: 0x1234567890}
	benchPtr = valuePtr{Seq: 12, Off: 1 << 20, Len: 256, CRC: 0xdeadbeef}
)

// BenchmarkKVCodec compares the codecs on a record with a 256-byte value,
// inline and as a pointer.
func BenchmarkKVCodec(b *testing.B) {
	inline, _ := encodeKV(benchKV)
	pointer, _ := encodePointerKV(benchKV, benchPtr)
	impls := []struct {
		name      string
		encode    func(*mvccpb.KeyValue) ([]byte, error)
		encodePtr func(*mvccpb.KeyValue, valuePtr) ([]byte, error)
		decode    func([]byte) (*mvccpb.KeyValue, *valuePtr, error)
	}{
		{"old", refEncodeKV, refEncodePointerKV, refDecodeKV},
		{"new", encodeKV, encodePointerKV, decodeKV},
	}
	for _, impl := range impls {
		b.Run("encode/"+impl.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := impl.encode(benchKV); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	for _, impl := range impls {
		b.Run("encode-pointer/"+impl.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := impl.encodePtr(benchKV, benchPtr); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("encode/append", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf = appendKV(buf[:0], benchKV)
		}
	})
	for _, rec := range []struct {
		name string
		b    []byte
	}{{"decode", inline}, {"decode-pointer", pointer}} {
		for _, impl := range impls {
			b.Run(rec.name+"/"+impl.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, _, err := impl.decode(rec.b); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		b.Run(rec.name+"/parse", func(b *testing.B) {
			b.ReportAllocs()
			var r record
			for b.Loop() {
				if err := r.parse(rec.b); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
