package bench

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func millis(ms ...float64) []time.Duration {
	out := make([]time.Duration, len(ms))
	for i, m := range ms {
		out[i] = time.Duration(m * float64(time.Millisecond))
	}
	return out
}

func TestPercentile_IsNearestRank(t *testing.T) {
	oneToThousand := make([]time.Duration, 1000)
	for i := range oneToThousand {
		oneToThousand[i] = time.Duration(i+1) * time.Millisecond
	}
	cases := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"none", nil, 50, 0},
		{"one sample is every percentile", millis(7), 0.1, 7 * time.Millisecond},
		{"one sample max", millis(7), 100, 7 * time.Millisecond},
		{"p50 of 1..1000", oneToThousand, 50, 500 * time.Millisecond},
		{"p90 of 1..1000", oneToThousand, 90, 900 * time.Millisecond},
		{"p99 of 1..1000", oneToThousand, 99, 990 * time.Millisecond},
		{"p99.9 of 1..1000 is not the max", oneToThousand, 99.9, 999 * time.Millisecond},
		{"p100 of 1..1000", oneToThousand, 100, 1000 * time.Millisecond},
		{"p50 of three rounds up", millis(1, 2, 3), 50, 2 * time.Millisecond},
		{"p99.9 of ten is the max", millis(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 99.9, 10 * time.Millisecond},
		{"p10 of ten", millis(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 10, 1 * time.Millisecond},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Percentile(c.sorted, c.p); got != c.want {
				t.Errorf("Percentile(%v) = %v, want %v", c.p, got, c.want)
			}
		})
	}
}

func TestSummarise_MeanAndMaxInMilliseconds(t *testing.T) {
	l := summarise(millis(1, 2, 3, 10))
	if l.Mean != 4 || l.Max != 10 || l.P50 != 2 || l.P90 != 10 {
		t.Errorf("%+v", l)
	}
	if (summarise(nil) != Latency{}) {
		t.Error("empty input has a summary")
	}
}

func TestHistogram_LogBucketsTrimmedToTheSamples(t *testing.T) {
	sorted := millis(0.3, 0.5, 0.6, 3, 3, 4.9, 1e5+1)
	got := histogram(sorted)
	var les []float64
	var counts []int64
	for _, b := range got {
		les = append(les, b.LeMs)
		counts = append(counts, b.Count)
	}
	// 0.3 and 0.5 are in (0.2, 0.5]; the sample above 100s gets a bucket
	// bounded by itself.
	wantLes := []float64{0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 1e4, 2e4, 5e4, 1e5, 1e5 + 1}
	wantCounts := []int64{2, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}
	if !slices.Equal(les, wantLes) || !slices.Equal(counts, wantCounts) {
		t.Errorf("histogram\n les    %v\n counts %v\nwant\n les    %v\n counts %v", les, counts, wantLes, wantCounts)
	}
	if h := histogram(nil); h == nil || len(h) != 0 {
		t.Errorf("empty histogram is %v, want []", h)
	}
}

func TestHistogram_BoundsAreInclusive(t *testing.T) {
	got := histogram(millis(0.01, 0.02))
	want := []Bucket{{LeMs: 0.01, Count: 1}, {LeMs: 0.02, Count: 1}}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestNewReport_MergesClientsAndKeepsTheFirstErrors(t *testing.T) {
	a, b := newRecorder(2), newRecorder(2)
	a.ok(3 * time.Millisecond)
	b.ok(1 * time.Millisecond)
	b.ok(2 * time.Millisecond)
	a.fail(errors.New("first"))
	time.Sleep(time.Millisecond)
	b.fail(errors.New("second"))
	b.fail(errors.New("second"))
	for i := range maxErrorSamples + 2 {
		a.fail(errors.New(strings.Repeat("x", i+1)))
	}
	cfg := &Config{Clients: 2, Conns: 1, Total: 10}
	r := newReport("put", cfg, []string{"e"}, []*recorder{a, b}, 2*time.Second)
	if r.Count != 3 || r.Errors != 10 || r.Seconds != 2 || r.Throughput != 1.5 {
		t.Errorf("count %d errors %d seconds %v throughput %v", r.Count, r.Errors, r.Seconds, r.Throughput)
	}
	if !slices.Equal(r.sorted, millis(1, 2, 3)) {
		t.Errorf("sorted %v", r.sorted)
	}
	if len(r.ErrorSamples) != maxErrorSamples || r.ErrorSamples[0] != "first" || r.ErrorSamples[1] != "second" || r.ErrorSamples[2] != "x" {
		t.Errorf("samples %q", r.ErrorSamples)
	}
	var table bytes.Buffer
	if err := r.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Summary", "Requests/sec:\t1.5000", "Response time histogram", "99.9% in 3.0000 ms", "[2]\tsecond"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
}

func TestRecorder_BoundsDistinctErrors(t *testing.T) {
	r := newRecorder(0)
	for i := range 3 * maxDistinctErrors {
		r.fail(errors.New(strings.Repeat("e", i+1)))
	}
	if len(r.errs) != maxDistinctErrors+1 || r.errs[otherErrors].count != 2*maxDistinctErrors || r.errors != 3*maxDistinctErrors {
		t.Errorf("%d distinct, other %v", len(r.errs), r.errs[otherErrors])
	}
}

func TestPutKey_IsBigEndianRightAligned(t *testing.T) {
	cases := []struct {
		i    uint64
		size int
		want string
	}{
		{0, 8, "\x00\x00\x00\x00\x00\x00\x00\x00"},
		{1, 8, "\x00\x00\x00\x00\x00\x00\x00\x01"},
		{0x0102, 10, "\x00\x00\x00\x00\x00\x00\x00\x00\x01\x02"},
		{0x1234, 2, "\x12\x34"},
		{0x10203, 2, "\x02\x03"},
		{255, 1, "\xff"},
	}
	for _, c := range cases {
		if got := Key(c.i, c.size); got != c.want {
			t.Errorf("Key(%#x, %d) = %q, want %q", c.i, c.size, got, c.want)
		}
	}
	// Reusing a buffer leaves nothing of the previous key.
	b := []byte("abcdefghijkl")
	PutKey(b, 7)
	if string(b) != Key(7, 12) {
		t.Errorf("reused buffer %q", b)
	}
	// Byte order is index order.
	for i := range uint64(1000) {
		if Key(i, 8) >= Key(i+1, 8) {
			t.Fatalf("Key(%d) >= Key(%d)", i, i+1)
		}
	}
}

func TestKeys_CacheMatchesKey(t *testing.T) {
	k := newKeys(8, maxCachedKeys+10)
	if len(k.cache) != maxCachedKeys {
		t.Fatalf("cache of %d", len(k.cache))
	}
	for _, i := range []uint64{0, 1, maxCachedKeys - 1, maxCachedKeys, maxCachedKeys + 9} {
		if k.key(i) != Key(i, 8) {
			t.Errorf("key(%d) differs", i)
		}
	}
}

func TestKeysFit(t *testing.T) {
	cases := []struct {
		size int
		n    uint64
		want bool
	}{{1, 256, true}, {1, 257, false}, {2, 65536, true}, {2, 65537, false}, {8, 1 << 63, true}, {9, 1 << 63, true}}
	for _, c := range cases {
		if got := keysFit(c.size, c.n); got != c.want {
			t.Errorf("keysFit(%d, %d) = %v", c.size, c.n, got)
		}
	}
}

func TestKeyPicker_SameSeedSameKeys(t *testing.T) {
	a := keyPicker{space: 1000, r: newRand(3)}
	b := keyPicker{space: 1000, r: newRand(3)}
	c := keyPicker{space: 1000, r: newRand(4)}
	same, differ := true, false
	for i := range uint64(100) {
		x, y, z := a.pick(i), b.pick(i), c.pick(i)
		same = same && x == y
		differ = differ || x != z
		if x >= 1000 {
			t.Fatalf("key %d outside the space", x)
		}
	}
	if !same || !differ {
		t.Errorf("same seed same keys: %v; other seed other keys: %v", same, differ)
	}
	s := keyPicker{space: 3, seq: true}
	if s.pick(0) != 0 || s.pick(4) != 1 {
		t.Error("sequential keys are not i mod space")
	}
}
