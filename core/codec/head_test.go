package codec

import (
	"bytes"
	"math"
	"math/rand/v2"
	"testing"
)

// AppendHead, AppendInt and AppendBytes write what Marshal writes, and
// ReadHead reads the heads back.
func TestHead_MatchesMarshal(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	edges := []uint64{0, 23, 24, 255, 256, 65535, 65536, math.MaxUint32, math.MaxUint32 + 1, math.MaxUint64}
	for i := range 2000 {
		u := rng.Uint64() >> rng.IntN(64)
		if i < len(edges) {
			u = edges[i]
		}
		want, err := Marshal(u)
		if err != nil {
			t.Fatal(err)
		}
		if got := AppendHead(nil, MajorUint, u); !bytes.Equal(got, want) {
			t.Fatalf("AppendHead(%d) = % x, Marshal % x", u, got, want)
		}
		major, arg, n, err := ReadHead(want)
		if err != nil || major != MajorUint || arg != u || n != len(want) {
			t.Fatalf("ReadHead(% x) = %d, %d, %d, %v", want, major, arg, n, err)
		}
		v := int64(u)
		if want, _ := Marshal(v); !bytes.Equal(AppendInt(nil, v), want) {
			t.Fatalf("AppendInt(%d) = % x, Marshal % x", v, AppendInt(nil, v), want)
		}
	}
	for _, s := range [][]byte{nil, {}, []byte("x"), bytes.Repeat([]byte("y"), 300)} {
		if want, _ := Marshal(s); !bytes.Equal(AppendBytes(nil, s), want) {
			t.Fatalf("AppendBytes(%q) = % x, Marshal % x", s, AppendBytes(nil, s), want)
		}
	}
	for _, bad := range [][]byte{{}, {0x1c}, {0x5f}, {0x19, 0x01}, {0x1b, 0, 0, 0}} {
		if _, _, _, err := ReadHead(bad); err == nil {
			t.Fatalf("ReadHead(% x) accepted", bad)
		}
	}
}
