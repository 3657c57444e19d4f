package codec

import (
	"bytes"
	"testing"
)

type sample struct {
	_    struct{} `cbor:",toarray"`
	A    uint64
	B    []byte
	Name string
}

func TestCodec_RoundTripIsDeterministic(t *testing.T) {
	in := sample{A: 7, B: []byte("xyz"), Name: "n"}
	b1, err := Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := Marshal(in)
	if !bytes.Equal(b1, b2) {
		t.Fatalf("encoding not deterministic: %x vs %x", b1, b2)
	}
	var out sample
	if err := Unmarshal(b1, &out); err != nil {
		t.Fatal(err)
	}
	if out.A != 7 || string(out.B) != "xyz" || out.Name != "n" {
		t.Fatalf("round trip: %+v", out)
	}
}

func TestCodec_DecoderRejectsBadInput(t *testing.T) {
	deep := bytes.Repeat([]byte{0x81}, MaxNestedLevels+2) // nested one-element arrays
	deep = append(deep, 0x00)
	cases := map[string][]byte{
		"too deep":       deep,
		"duplicate keys": {0xa2, 0x01, 0x01, 0x01, 0x02},
		"huge array":     {0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		"trailing bytes": {0x01, 0x02},
		"indefinite":     {0x9f, 0x01, 0xff},
		"truncated":      {0x58, 0x10, 0x01},
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			var v any
			if err := Unmarshal(in, &v); err == nil {
				t.Fatalf("decoded %x without error", in)
			}
		})
	}
}

func FuzzUnmarshal(f *testing.F) {
	b, _ := Marshal(sample{A: 1, B: []byte("a")})
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		var v sample
		if Unmarshal(data, &v) == nil {
			// A value that decodes must re-encode and decode to the same.
			out, err := Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			var w sample
			if err := Unmarshal(out, &w); err != nil {
				t.Fatal(err)
			}
		}
	})
}
