package server

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/edgekv/edgekv/core/codec"
)

// The reflection codec of the envelope, the reference.
func marshalRequestRef(r request) ([]byte, error) { return codec.Marshal(r) }

func unmarshalRequestRef(data []byte) (request, error) {
	var r request
	err := codec.Unmarshal(data, &r)
	return r, err
}

func sameRequest(a, b request) bool {
	return a.ID == b.ID && a.Kind == b.Kind && bytes.Equal(a.Body, b.Body) && (a.Body == nil) == (b.Body == nil)
}

func randomRequest(rng *rand.Rand) request {
	r := request{ID: rng.Uint64() >> rng.IntN(64), Kind: uint8(rng.IntN(256))}
	switch rng.IntN(6) {
	case 0: // nil body
	case 1:
		r.Body = []byte{}
	default:
		sizes := []int{1, 23, 24, 255, 256, 65535, 65536, 70000}
		r.Body = make([]byte, sizes[rng.IntN(len(sizes))])
		for i := range r.Body {
			r.Body[i] = byte(rng.Uint32())
		}
	}
	return r
}

// encodeRequest writes the reference codec's bytes, and decodeRequest reads
// them back as the reference does, nil and empty bodies apart.
func TestEnvelope_MatchesTheReflectionCodec(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 5000 {
		r := randomRequest(rng)
		want, err := marshalRequestRef(r)
		if err != nil {
			t.Fatal(err)
		}
		got := encodeRequest(r.ID, r.Kind, r.Body)
		if !bytes.Equal(got, want) {
			t.Fatalf("%+v: encoded % x..., want % x...", r, got[:min(16, len(got))], want[:min(16, len(want))])
		}
		dec, err := decodeRequest(got)
		if err != nil {
			t.Fatalf("%+v: %v", r, err)
		}
		ref, err := unmarshalRequestRef(got)
		if err != nil || !sameRequest(dec, ref) {
			t.Fatalf("%+v: decoded %+v, the reference %+v (%v)", r, dec, ref, err)
		}
	}
}

// FuzzDecodeRequest: whatever decodeRequest accepts, the reflection codec
// accepts with the same result; and every canonical encoding the
// reflection codec accepts, decodeRequest accepts too.
func FuzzDecodeRequest(f *testing.F) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 20 {
		r := randomRequest(rng)
		if len(r.Body) > 300 {
			r.Body = r.Body[:300]
		}
		f.Add(encodeRequest(r.ID, r.Kind, r.Body))
	}
	f.Add([]byte{0x83, 0x1b, 0, 0, 0, 0, 0, 0, 0, 1, 0x18, 0xff, 0x40}) // long ID head
	f.Add([]byte{0x83, 0x01, 0x19, 0x01, 0x00, 0xf6})                   // kind 256
	f.Add([]byte{0x83, 0x01, 0x01, 0x5f, 0x41, 0x00, 0xff})             // indefinite body
	f.Add([]byte{0x83, 0x01, 0x01, 0xf7})                               // undefined body
	f.Add([]byte{0x83, 0xc1, 0x01, 0x01, 0xf6})                         // tag
	f.Add([]byte{0x83, 0x01, 0x01, 0x42, 0x00})                         // short body
	f.Fuzz(func(t *testing.T, data []byte) {
		in := bytes.Clone(data)
		got, err := decodeRequest(data)
		ref, refErr := unmarshalRequestRef(in)
		if err == nil {
			if refErr != nil {
				t.Fatalf("% x: decoded %+v; the reference refuses it: %v", in, got, refErr)
			}
			if !sameRequest(got, ref) {
				t.Fatalf("% x: decoded %+v, the reference %+v", in, got, ref)
			}
			return
		}
		if refErr == nil {
			if canon, _ := marshalRequestRef(ref); bytes.Equal(canon, in) {
				t.Fatalf("% x: refused (%v), a canonical encoding of %+v", in, err, ref)
			}
		}
	})
}
