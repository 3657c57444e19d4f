package bench

import (
	"encoding/binary"
	"math/rand/v2"
)

// PutKey writes the key of index i into dst, whose length is the key size:
// i in big-endian, right-aligned and zero-padded on the left; with fewer
// than 8 bytes only the low len(dst) bytes of i are kept.
func PutKey(dst []byte, i uint64) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], i)
	if len(dst) >= 8 {
		clear(dst[:len(dst)-8])
		copy(dst[len(dst)-8:], b[:])
		return
	}
	copy(dst, b[8-len(dst):])
}

// Key returns the key of index i with the given size.
func Key(i uint64, size int) string {
	b := make([]byte, size)
	PutKey(b, i)
	return string(b)
}

// maxCachedKeys bounds the key strings built ahead: 64Ki keys of 8 bytes
// take about 2 MB.
const maxCachedKeys = 1 << 16

// keys hands out key strings, built once for the first maxCachedKeys
// indexes and on demand above. It is read-only after newKeys, so the client
// goroutines share it.
type keys struct {
	size  int
	cache []string
}

func newKeys(size int, n uint64) *keys {
	k := &keys{size: size}
	n = min(n, maxCachedKeys)
	k.cache = make([]string, n)
	for i := range k.cache {
		k.cache[i] = Key(uint64(i), size)
	}
	return k
}

func (k *keys) key(i uint64) string {
	if i < uint64(len(k.cache)) {
		return k.cache[i]
	}
	return Key(i, k.size)
}

// newRand returns the generator of client c: seeded with c, so that two
// runs with the same flags send the same keys.
func newRand(c int) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(c)+1, 0x65646765_6b762121))
}

// randomValue returns n bytes from r.
func randomValue(r *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return string(b)
}

// keyPicker chooses the key index of operation i for one client.
type keyPicker struct {
	space uint64
	seq   bool
	r     *rand.Rand
}

func (p *keyPicker) pick(i uint64) uint64 {
	if p.seq {
		return i % p.space
	}
	return p.r.Uint64N(p.space)
}
