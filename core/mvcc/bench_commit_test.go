package mvcc

import (
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// BenchmarkApplyLatencyAcrossCommits applies puts (8-byte keys, 256-byte
// values, one Raft entry per Apply) with commits every BatchInterval
// (5 ms, so a run spans many) or every Apply (BatchLimit 1), and reports
// how long the slowest Applies took: an Apply that waits for a commit
// (page writes and two fdatasyncs) shows up there.
func BenchmarkApplyLatencyAcrossCommits(b *testing.B) {
	for _, bc := range []struct {
		name string
		opts Options
	}{
		{"interval-5ms", Options{BatchInterval: 5 * time.Millisecond}},
		{"commit-every-apply", Options{BatchLimit: 1}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s, err := Open(filepath.Join(b.TempDir(), "db"), bc.opts)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			const keys = 1 << 16
			reqs := putRequests(keys)
			lat := make([]time.Duration, 0, b.N)
			index := uint64(0)
			commits0 := s.Commits()
			start := time.Now()
			b.ResetTimer()
			for i := range b.N {
				index++
				t0 := time.Now()
				if _, err := s.Apply(1, []Op{{Index: index, Req: reqs[i%keys]}}); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			if err := s.ForceCommit(); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			elapsed := time.Since(start)
			slices.Sort(lat)
			q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) }
			b.ReportMetric(q(0.5), "p50-µs")
			b.ReportMetric(q(0.999), "p99.9-µs")
			b.ReportMetric(q(1), "max-µs")
			over := len(lat) - slices.IndexFunc(lat, func(d time.Duration) bool { return d > time.Millisecond })
			if over > len(lat) {
				over = 0
			}
			b.ReportMetric(float64(over), "applies>1ms")
			b.ReportMetric(float64(s.Commits()-commits0), "commits")
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "puts/s")
		})
	}
}
