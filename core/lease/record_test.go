package lease

import (
	"bytes"
	"errors"
	"testing"

	"github.com/edgekv/edgekv/core/codec"
)

func TestRecord_RoundTripsThroughTheBucketLayout(t *testing.T) {
	for _, r := range []Record{
		{ID: 1, TTL: 1},
		{ID: 0x694d77aa9e38260f, TTL: 100, RemainingTTL: 42},
		{ID: -5, TTL: MaxLeaseTTL, RemainingTTL: MaxLeaseTTL},
	} {
		v, err := EncodeRecord(r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeEntry(Key(r.ID), v)
		if err != nil || got != r {
			t.Fatalf("round trip of %+v: %+v %v", r, got, err)
		}
	}
	// The documented layout: key big endian, value a 3-element array.
	if k := Key(0x0102030405060708); !bytes.Equal(k, []byte{1, 2, 3, 4, 5, 6, 7, 8}) {
		t.Fatalf("key %x", k)
	}
	v, _ := EncodeRecord(Record{ID: 1, TTL: 10, RemainingTTL: 3})
	if want := []byte{0x83, 0x01, 0x0a, 0x03}; !bytes.Equal(v, want) {
		t.Fatalf("value %x, want %x", v, want)
	}
}

func TestRecord_DecodeRefusesWhatNoMemberWrites(t *testing.T) {
	enc := func(v any) []byte {
		b, err := codec.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good := enc([]int64{7, 10, 0})
	cases := []struct {
		name string
		k, v []byte
	}{
		{"short key", []byte{7}, good},
		{"key names another lease", Key(8), good},
		{"not CBOR", Key(7), []byte{0xff}},
		{"trailing bytes", Key(7), append(bytes.Clone(good), 0)},
		{"too few fields", Key(7), enc([]int64{7, 10})},
		{"too many fields", Key(7), enc([]int64{7, 10, 0, 1})},
		{"a map", Key(7), enc(map[int]int{0: 7})},
		{"id 0", Key(0), enc([]int64{0, 10, 0})},
		{"ttl 0", Key(7), enc([]int64{7, 0, 0})},
		{"ttl too large", Key(7), enc([]int64{7, MaxLeaseTTL + 1, 0})},
		{"negative remaining", Key(7), enc([]int64{7, 10, -1})},
		{"remaining above ttl", Key(7), enc([]int64{7, 10, 11})},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if r, err := DecodeEntry(c.k, c.v); !errors.Is(err, errBadRecord) {
				t.Fatalf("decoded %+v, %v", r, err)
			}
		})
	}
	if _, err := EncodeRecord(Record{ID: 7, TTL: 0}); !errors.Is(err, errBadRecord) {
		t.Fatalf("encoded an invalid record: %v", err)
	}
}

// FuzzDecodeEntry feeds the lease bucket decoder bytes from outside (a
// snapshot from another member, a damaged disk): it must never panic, and
// whatever it accepts is a valid record that encodes back to a value it
// accepts as the same record.
func FuzzDecodeEntry(f *testing.F) {
	for _, r := range []Record{{ID: 1, TTL: 1}, {ID: -2, TTL: MaxLeaseTTL, RemainingTTL: 17}} {
		v, _ := EncodeRecord(r)
		f.Add(Key(r.ID), v)
	}
	f.Add(Key(3), []byte{0x83, 0x03, 0x00, 0x00})
	f.Add([]byte{1, 2}, []byte{0x80})
	f.Add(Key(4), []byte{0x9f, 0x04, 0x05, 0x00, 0xff}) // indefinite length
	f.Fuzz(func(t *testing.T, k, v []byte) {
		r, err := DecodeEntry(k, v)
		if err != nil {
			return
		}
		if err := r.validate(); err != nil {
			t.Fatalf("accepted an invalid record %+v: %v", r, err)
		}
		again, err := EncodeRecord(r)
		if err != nil {
			t.Fatal(err)
		}
		if r2, err := DecodeEntry(Key(r.ID), again); err != nil || r2 != r {
			t.Fatalf("re-encoded %+v decodes as %+v, %v", r, r2, err)
		}
		if !bytes.Equal(k, Key(r.ID)) {
			t.Fatalf("key %x accepted for lease %x", k, r.ID)
		}
	})
}
