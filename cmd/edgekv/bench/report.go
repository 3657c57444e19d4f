package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"
)

// Report is the result of one run. Its JSON form is the contract with the
// harnesses that parse `edgekv bench --output json`: keep the field names.
type Report struct {
	Load         string   `json:"load"`
	Endpoints    []string `json:"endpoints"`
	Clients      int      `json:"clients"`
	Conns        int      `json:"conns"`
	Total        int      `json:"total"`
	Count        int64    `json:"count"`
	Errors       int64    `json:"errors"`
	ErrorSamples []string `json:"error_samples"`
	Seconds      float64  `json:"seconds"`
	// Throughput is successful operations per second.
	Throughput float64          `json:"throughput"`
	LatencyMs  Latency          `json:"latency_ms"`
	Histogram  []Bucket         `json:"histogram"`
	Extra      map[string]int64 `json:"extra"`

	sorted []time.Duration // the latencies, ascending
	errs   []errorStat     // every distinct error, most frequent first
}

// Latency summarises the latencies of the successful operations, in
// milliseconds.
type Latency struct {
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

// Bucket counts the latencies above the previous bucket's LeMs and at most
// its own.
type Bucket struct {
	LeMs  float64 `json:"le_ms"`
	Count int64   `json:"count"`
}

// maxErrorSamples is how many distinct error messages the report lists.
const maxErrorSamples = 5

// maxDistinctErrors bounds the messages a recorder keeps apart; the rest
// are counted under otherErrors.
const (
	maxDistinctErrors = 32
	otherErrors       = "(other errors)"
)

type errorStat struct {
	msg   string
	count int64
	first time.Time
}

// recorder collects what one client goroutine measured. Only that goroutine
// touches it until the run is over.
type recorder struct {
	succeeded atomic.Int64 // len(lats), for the monitor
	lats      []time.Duration
	errors    int64
	errs      map[string]*errorStat
}

func newRecorder(capacity int) *recorder {
	return &recorder{lats: make([]time.Duration, 0, capacity)}
}

func (r *recorder) ok(d time.Duration) {
	r.lats = append(r.lats, d)
	r.succeeded.Add(1)
}

func (r *recorder) fail(err error) {
	r.errors++
	if r.errs == nil {
		r.errs = make(map[string]*errorStat)
	}
	msg := err.Error()
	s := r.errs[msg]
	if s == nil {
		if len(r.errs) >= maxDistinctErrors {
			msg = otherErrors
			s = r.errs[msg]
		}
		if s == nil {
			s = &errorStat{msg: msg, first: time.Now()}
			r.errs[msg] = s
		}
	}
	s.count++
}

// messages returns the distinct messages recorded so far.
func (r *recorder) messages() []string {
	var msgs []string
	for m := range r.errs {
		msgs = append(msgs, m)
	}
	slices.Sort(msgs)
	return msgs
}

// newReport merges the recorders into a Report.
func newReport(load string, cfg *Config, endpoints []string, recs []*recorder, elapsed time.Duration) *Report {
	r := &Report{
		Load:         load,
		Endpoints:    slices.Clone(endpoints),
		Clients:      cfg.Clients,
		Conns:        cfg.Conns,
		Total:        cfg.Total,
		ErrorSamples: []string{},
		Histogram:    []Bucket{},
		Extra:        map[string]int64{},
		Seconds:      elapsed.Seconds(),
	}
	n := 0
	for _, rec := range recs {
		n += len(rec.lats)
	}
	r.sorted = make([]time.Duration, 0, n)
	errs := map[string]*errorStat{}
	for _, rec := range recs {
		r.sorted = append(r.sorted, rec.lats...)
		r.Errors += rec.errors
		for msg, s := range rec.errs {
			if t := errs[msg]; t != nil {
				t.count += s.count
				if s.first.Before(t.first) {
					t.first = s.first
				}
			} else {
				c := *s
				errs[msg] = &c
			}
		}
	}
	slices.Sort(r.sorted)
	r.Count = int64(len(r.sorted))
	if r.Seconds > 0 {
		r.Throughput = float64(r.Count) / r.Seconds
	}
	r.LatencyMs = summarise(r.sorted)
	r.Histogram = histogram(r.sorted)

	for _, s := range errs {
		r.errs = append(r.errs, *s)
	}
	// The samples are the first distinct messages seen.
	sort.Slice(r.errs, func(i, j int) bool { return r.errs[i].first.Before(r.errs[j].first) })
	for _, s := range r.errs {
		if len(r.ErrorSamples) == maxErrorSamples {
			break
		}
		r.ErrorSamples = append(r.ErrorSamples, s.msg)
	}
	sort.SliceStable(r.errs, func(i, j int) bool { return r.errs[i].count > r.errs[j].count })
	return r
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Percentile returns the nearest-rank p-th percentile (0 < p <= 100) of the
// ascending latencies: the smallest one with at least p% of them at or
// below it; 0 for none.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	// The epsilon keeps float error from pushing 99.9% of 1000
	// (999.0000000000001) to rank 1000.
	rank := int(math.Ceil(p/100*float64(n) - 1e-9))
	rank = max(1, min(rank, n))
	return sorted[rank-1]
}

func summarise(sorted []time.Duration) Latency {
	if len(sorted) == 0 {
		return Latency{}
	}
	var sum float64
	for _, d := range sorted {
		sum += float64(d)
	}
	return Latency{
		Mean: sum / float64(len(sorted)) / float64(time.Millisecond),
		P50:  ms(Percentile(sorted, 50)),
		P90:  ms(Percentile(sorted, 90)),
		P99:  ms(Percentile(sorted, 99)),
		P999: ms(Percentile(sorted, 99.9)),
		Max:  ms(sorted[len(sorted)-1]),
	}
}

// bucketBounds are the histogram's upper bounds: 1-2-5 steps from 10µs to
// 100s. Latencies above the last go to a final bucket bounded by the
// largest latency.
var bucketBounds = func() []time.Duration {
	var b []time.Duration
	for d := 10 * time.Microsecond; d <= 100*time.Second; d *= 10 {
		b = append(b, d, 2*d, 5*d)
	}
	return b[:len(b)-2] // ends at 100s
}()

// histogram counts the ascending latencies into bucketBounds and returns
// the buckets from the first to the last non-empty one.
func histogram(sorted []time.Duration) []Bucket {
	if len(sorted) == 0 {
		return []Bucket{}
	}
	counts := make([]int64, len(bucketBounds)+1)
	b := 0
	for _, d := range sorted {
		for b < len(bucketBounds) && d > bucketBounds[b] {
			b++
		}
		counts[b]++
	}
	first := slices.IndexFunc(counts, func(c int64) bool { return c > 0 })
	last := len(counts) - 1
	for counts[last] == 0 {
		last--
	}
	out := make([]Bucket, 0, last-first+1)
	for i := first; i <= last; i++ {
		le := sorted[len(sorted)-1]
		if i < len(bucketBounds) {
			le = bucketBounds[i]
		}
		out = append(out, Bucket{LeMs: ms(le), Count: counts[i]})
	}
	return out
}

// WriteJSON writes the report as one JSON object and a newline.
func (r *Report) WriteJSON(w io.Writer) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// tablePercentiles are those etcd's report prints.
var tablePercentiles = []float64{10, 25, 50, 75, 90, 95, 99, 99.9}

// WriteTable writes the report for people, laid out like etcd's benchmark
// report: summary, histogram, percentiles, errors.
func (r *Report) WriteTable(w io.Writer) error {
	var b strings.Builder
	who := "clients"
	if _, ok := r.Extra["watchers"]; ok {
		who = "watchers"
	}
	fmt.Fprintf(&b, "\nSummary (%s against %s, %d %s over %d conns):\n", r.Load, strings.Join(r.Endpoints, ","), r.Clients, who, r.Conns)
	fmt.Fprintf(&b, "  Total:\t%.4f secs.\n", r.Seconds)
	fmt.Fprintf(&b, "  Count:\t%d ok, %d errors.\n", r.Count, r.Errors)
	if len(r.sorted) > 0 {
		var sum, sq float64
		for _, d := range r.sorted {
			sum += ms(d)
		}
		mean := sum / float64(len(r.sorted))
		for _, d := range r.sorted {
			sq += (ms(d) - mean) * (ms(d) - mean)
		}
		fmt.Fprintf(&b, "  Slowest:\t%.4f ms.\n", r.LatencyMs.Max)
		fmt.Fprintf(&b, "  Fastest:\t%.4f ms.\n", ms(r.sorted[0]))
		fmt.Fprintf(&b, "  Average:\t%.4f ms.\n", r.LatencyMs.Mean)
		fmt.Fprintf(&b, "  Stddev:\t%.4f ms.\n", math.Sqrt(sq/float64(len(r.sorted))))
	}
	fmt.Fprintf(&b, "  Requests/sec:\t%.4f\n", r.Throughput)
	if len(r.Extra) > 0 {
		names := make([]string, 0, len(r.Extra))
		for k := range r.Extra {
			names = append(names, k)
		}
		slices.Sort(names)
		for _, k := range names {
			fmt.Fprintf(&b, "  %s:\t%d\n", k, r.Extra[k])
		}
	}
	if len(r.Histogram) > 0 {
		var most int64
		for _, h := range r.Histogram {
			most = max(most, h.Count)
		}
		b.WriteString("\nResponse time histogram (ms):\n")
		for _, h := range r.Histogram {
			bar := strings.Repeat("∎", int(h.Count*40/most))
			fmt.Fprintf(&b, "  <= %10.3f [%d]\t|%s\n", h.LeMs, h.Count, bar)
		}
		b.WriteString("\nLatency distribution:\n")
		for _, p := range tablePercentiles {
			fmt.Fprintf(&b, "  %v%% in %.4f ms.\n", p, ms(Percentile(r.sorted, p)))
		}
	}
	if len(r.errs) > 0 {
		b.WriteString("\nError distribution:\n")
		for _, e := range r.errs {
			fmt.Fprintf(&b, "  [%d]\t%s\n", e.count, e.msg)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
