package main

import (
	"fmt"
	"io"
	"math"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/edgekv/edgekv/tests/bench/internal/strace"
	"github.com/edgekv/edgekv/tests/framework"
)

const mib = 1 << 20

// loadStats are the runs of one load by one server over the rounds.
type loadStats struct {
	ok     []*benchOutput // the runs with a result, in round order
	failed []string       // why the other runs failed
}

func statsOf(rounds []*round, id string) loadStats {
	var s loadStats
	for _, rd := range rounds {
		lr, ran := rd.loads[id]
		switch {
		case !ran:
		case lr.out != nil:
			s.ok = append(s.ok, lr.out)
		default:
			s.failed = append(s.failed, lr.failed)
		}
	}
	return s
}

func (s loadStats) values(f func(*benchOutput) float64) []float64 {
	xs := make([]float64, len(s.ok))
	for i, o := range s.ok {
		xs[i] = f(o)
	}
	return xs
}

func throughput(o *benchOutput) float64 { return o.Throughput }
func p50(o *benchOutput) float64        { return o.LatencyMS.P50 }
func p99(o *benchOutput) float64        { return o.LatencyMS.P99 }

// median of the values that are not NaN; NaN if there are none.
func median(xs []float64) float64 {
	var v []float64
	for _, x := range xs {
		if !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return math.NaN()
	}
	sort.Float64s(v)
	if n := len(v); n%2 == 0 {
		return (v[n/2-1] + v[n/2]) / 2
	}
	return v[len(v)/2]
}

// spread is the smallest and largest of the values that are not NaN.
func spread(xs []float64) (lo, hi float64, n int) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, x := range xs {
		if !math.IsNaN(x) {
			lo, hi, n = min(lo, x), max(hi, x), n+1
		}
	}
	return lo, hi, n
}

// ratio is a/b with two decimals, "-" where it means nothing.
func ratio(a, b float64) string {
	if math.IsNaN(a) || math.IsNaN(b) || b == 0 {
		return "-"
	}
	return strconv.FormatFloat(a/b, 'f', 2, 64)
}

// format writes a number with a fixed count of decimals.
type format func(float64) string

func fixed(digits int) format {
	return func(x float64) string { return strconv.FormatFloat(x, 'f', digits, 64) }
}

// ms writes a latency in milliseconds with three significant digits or so.
func ms(x float64) string {
	switch {
	case x < 10:
		return strconv.FormatFloat(x, 'f', 2, 64)
	case x < 100:
		return strconv.FormatFloat(x, 'f', 1, 64)
	default:
		return strconv.FormatFloat(x, 'f', 0, 64)
	}
}

// cell is the median of xs, followed by (min–max) over the rounds if there
// are several and withSpread; empty is "n/a".
func cell(xs []float64, f format, withSpread bool) string {
	m := median(xs)
	if math.IsNaN(m) {
		return "n/a"
	}
	s := f(m)
	if lo, hi, n := spread(xs); withSpread && n > 1 {
		s += " (" + f(lo) + "–" + f(hi) + ")"
	}
	return s
}

// loadCell is cell for a load's metric, "failed" if every run failed.
func loadCell(s loadStats, metric func(*benchOutput) float64, f format, withSpread bool) string {
	if len(s.ok) == 0 && len(s.failed) > 0 {
		return "failed"
	}
	return cell(s.values(metric), f, withSpread)
}

// errorsCell is the requests that failed over all rounds (and their share),
// and the runs that failed entirely.
func errorsCell(s loadStats) string {
	if len(s.ok) == 0 {
		if len(s.failed) > 0 {
			return "failed"
		}
		return "n/a"
	}
	var errs, all int64
	for _, o := range s.ok {
		errs += o.Errors
		all += o.Errors + o.Count
	}
	c := strconv.FormatInt(errs, 10)
	if errs > 0 {
		c += fmt.Sprintf(" (%.2g%%)", 100*float64(errs)/float64(all))
	}
	if n := len(s.failed); n > 0 {
		c += fmt.Sprintf(", %d of %d runs failed", n, n+len(s.ok))
	}
	return c
}

// loadTable writes one row per load: throughput, p50 and p99 of both
// servers, medians over the rounds, with the ratios.
func loadTable(w io.Writer, res *results, ls []load) {
	fmt.Fprintln(w, "| load | edgekv ops/s | etcd ops/s | ratio | edgekv p50 ms | etcd p50 ms | ratio | edgekv p99 ms | etcd p99 ms | ratio | errors edgekv | errors etcd |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, l := range ls {
		e, d := statsOf(res.rounds["edgekv"], l.id), statsOf(res.rounds["etcd"], l.id)
		if len(e.ok)+len(e.failed)+len(d.ok)+len(d.failed) == 0 {
			continue
		}
		row := []string{l.title}
		for _, m := range []struct {
			f      func(*benchOutput) float64
			format format
			spread bool
		}{{throughput, fixed(0), true}, {p50, ms, false}, {p99, ms, false}} {
			row = append(row,
				loadCell(e, m.f, m.format, m.spread), loadCell(d, m.f, m.format, m.spread),
				ratio(median(e.values(m.f)), median(d.values(m.f))))
		}
		row = append(row, errorsCell(e), errorsCell(d))
		fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
	}
}

// roundMetric is a value of one round, NaN if it was not measured.
type roundMetric struct {
	name   string
	format format
	value  func(rd *round) float64
}

func meanOf(xs []int64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	var sum float64
	for _, x := range xs {
		sum += float64(x)
	}
	return sum / float64(len(xs))
}

func maxOf(xs []int64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	return float64(slices.Max(xs))
}

func perPutPerMember(rd *round, sum func(d *diskResult) float64) float64 {
	if rd.disk == nil || rd.disk.puts == 0 {
		return math.NaN()
	}
	return sum(rd.disk) / float64(rd.disk.puts) / members
}

func seconds(d time.Duration) float64 {
	if d == 0 {
		return math.NaN()
	}
	return d.Seconds()
}

func resourceMetrics(o options) []roundMetric {
	rows := []roundMetric{
		{"idle RSS per member, MiB (mean of the 3)", fixed(1), func(rd *round) float64 { return meanOf(rd.idleRSS) / mib }},
		{"idle RSS, largest member, MiB", fixed(1), func(rd *round) float64 { return maxOf(rd.idleRSS) / mib }},
		{"of idle RSS, the process's own memory (RssAnon) per member, MiB", fixed(1), func(rd *round) float64 { return meanOf(rd.idleAnon) / mib }},
		{"loaded RSS per member, MiB (peak during put, 256 clients; mean of the 3)", fixed(1), func(rd *round) float64 { return meanOf(rd.loadedRSS) / mib }},
		{"loaded RSS, largest member, MiB", fixed(1), func(rd *round) float64 { return maxOf(rd.loadedRSS) / mib }},
		{"bytes written per put per member", fixed(0), func(rd *round) float64 {
			return perPutPerMember(rd, func(d *diskResult) float64 { return float64(d.writeBytes) })
		}},
		{"fsync+fdatasync per put per member", fixed(3), func(rd *round) float64 {
			return perPutPerMember(rd, func(d *diskResult) float64 { return d.syncs })
		}},
		{"sync_file_range per put per member", fixed(3), func(rd *round) float64 {
			return perPutPerMember(rd, func(d *diskResult) float64 { return d.syncFileRange })
		}},
	}
	if o.restartKeys == 0 {
		return rows
	}
	return append(rows,
		roundMetric{fmt.Sprintf("restart of a follower holding %d keys after SIGTERM, s", o.restartKeys), fixed(2), func(rd *round) float64 { return seconds(rd.restartTerm) }},
		roundMetric{fmt.Sprintf("restart of a follower holding %d keys after SIGKILL, s", o.restartKeys), fixed(2), func(rd *round) float64 { return seconds(rd.restartKill) }},
	)
}

func metricValues(rounds []*round, m roundMetric) []float64 {
	xs := make([]float64, len(rounds))
	for i, rd := range rounds {
		xs[i] = m.value(rd)
	}
	return xs
}

func resourceTable(w io.Writer, o options, res *results) {
	fmt.Fprintln(w, "| metric | edgekv | etcd | ratio |")
	fmt.Fprintln(w, "|---|---:|---:|---:|")
	for _, m := range resourceMetrics(o) {
		e, d := metricValues(res.rounds["edgekv"], m), metricValues(res.rounds["etcd"], m)
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", m.name, cell(e, m.format, true), cell(d, m.format, true), ratio(median(e), median(d)))
	}
	size := func(s string) float64 {
		if b, ok := res.stripped[s]; ok {
			return float64(b) / mib
		}
		return math.NaN()
	}
	e, d := size("edgekv"), size("etcd")
	fmt.Fprintf(w, "| stripped binary (`CGO_ENABLED=0 go build -trimpath -ldflags '-s -w'`, edgekv `-tags %s` as make build), MiB | %s | %s | %s |\n",
		framework.EdgekvTags, cell([]float64{e}, fixed(1), false), cell([]float64{d}, fixed(1), false), ratio(e, d))
}

// chartPoint is the median of a put load at one client count.
type chartPoint struct {
	clients              int
	throughput, p50, p99 float64
}

// chartSeries are the put loads at --chart-clients, per server: medians
// over the rounds, only where a run succeeded.
func chartSeries(o options, res *results) map[string][]chartPoint {
	series := map[string][]chartPoint{}
	counts := slices.Clone(o.chartClients)
	slices.Sort(counts)
	for _, s := range res.servers {
		for _, n := range slices.Compact(counts) {
			st := statsOf(res.rounds[s], fmt.Sprintf("put-%d", n))
			if len(st.ok) == 0 {
				continue
			}
			series[s] = append(series[s], chartPoint{n, median(st.values(throughput)), median(st.values(p50)), median(st.values(p99))})
		}
	}
	return series
}

func writeReport(w io.Writer, o options, res *results) {
	m := res.meta
	fmt.Fprintf(w, "# edgekv and etcd on one machine\n\n")
	fmt.Fprintf(w, "Written by `go run ./bench/compare` in `tests/` (`make bench`, `make bench-quick`); "+
		"bench/README.md says what each load is and how to read the tables.\n\n")
	fmt.Fprintf(w, "- date: %s; the run took %v\n", m.date.Format("2006-01-02 15:04 MST"), res.wall.Round(time.Second))
	fmt.Fprintf(w, "- machine: %d CPUs (%s), %s RAM, %s; data dirs in %s (%s)\n", m.cpus, m.cpuModel, m.memory, m.kernel, m.dataDir, m.dataFS)
	fmt.Fprintf(w, "- Go: %s; edgekv: commit `%s`, `%s`; etcd: `%s`\n", m.goVersion, m.commit, res.versions["edgekv"], res.versions["etcd"])
	fmt.Fprintf(w, "- rounds: %d; in each, every phase (cluster) runs for %s in turn, the first server alternating between rounds, "+
		"on fresh clusters; load totals × %g; cells are medians over the rounds, "+
		"(min–max) where there are several rounds; ratio = edgekv / etcd\n",
		o.rounds, strings.Join(res.servers, " and "), o.scale)
	fmt.Fprintf(w, "- clusters: %d members on 127.0.0.1, the same flags for both (heartbeat 100 ms, election 1000 ms, the rest default)\n", members)
	fmt.Fprintf(w, "- loads: `edgekv bench <load> --output json`, the same generator for both servers, one process per load, "+
		"against all %d members' endpoints; %d-byte keys from %d, %d-byte values, min(clients, %d) gRPC connections\n",
		members, keySize, keySpace, valSize, maxConns)
	if o.quick {
		fmt.Fprintf(w, "- **quick run** (`--quick`): %s\n", quickOmits(o))
	}
	fmt.Fprintln(w)

	fmt.Fprintf(w, "## Loads\n\n")
	fmt.Fprintf(w, "Throughput is in each load's own operations per second (puts, ranges, txns, deletes, watch events, keep-alives); "+
		"ratio above 1 is edgekv faster, for latency below 1 is edgekv faster.\n\n")
	var table []load
	for _, l := range mainLoads(o) {
		if !strings.HasPrefix(l.id, "put-") || slices.Contains(tableClients, l.clients) {
			table = append(table, l)
		}
	}
	loadTable(w, res, table)
	fmt.Fprintln(w)

	fmt.Fprintf(w, "## Resources\n\n")
	fmt.Fprintf(w, "RSS is VmRSS of each member's server process (/proc/PID/status): idle after %v of a ready cluster, loaded at its "+
		"peak sampled every 100 ms during the put load with 256 clients; RssAnon is the part of it that is the process's own memory "+
		"(heap, stacks), the rest is mostly pages of the mapped binary (RssFile), which the kernel can drop and share. Bytes written (growth of write_bytes in /proc/PID/io) "+
		"and syncs (counted by strace around every member) come from a separate cluster running the put load with 64 clients, "+
		"from its start to %v after its end, divided by committed puts and by %d members.",
		o.idle, o.drain, members)
	if o.restartKeys > 0 {
		fmt.Fprintf(w, " Restart: SIGTERM (then SIGKILL) a follower of a cluster holding %d keys of %d-byte values, start it again, "+
			"and time from its start until it answers a linearizable get.", o.restartKeys, valSize)
	}
	fmt.Fprint(w, "\n\n")
	resourceTable(w, o, res)
	fmt.Fprintln(w)

	if ranAny(res, loadIDs(sdLoads())) {
		fmt.Fprintf(w, "## Emulated SD card\n\n")
		fmt.Fprintf(w, "The put loads again, on clusters whose members run under `%s`: every fsync and fdatasync takes %v longer, "+
			"as on an SD card. Writes themselves are not slowed.\n\n", strings.Join(sdArgs(o), " "), o.sdDelay)
		loadTable(w, res, sdLoads())
		fmt.Fprintln(w)
		fmt.Fprintf(w, "%s\n\n", injectionCheck(o, res))
	}

	fmt.Fprintf(w, "## Latency against throughput\n\n")
	if o.chart != "" {
		rel := o.chart
		if o.results != "" {
			if r, err := filepath.Rel(filepath.Dir(o.results), o.chart); err == nil {
				rel = r
			}
		}
		fmt.Fprintf(w, "![p50 and p99 put latency against throughput](%s)\n\n", filepath.ToSlash(rel))
	}
	fmt.Fprintf(w, "The put load at each client count (medians over the rounds):\n\n")
	chartTable(w, o, res)
	fmt.Fprintln(w)

	fmt.Fprintf(w, "## Every round\n\n")
	fmt.Fprintf(w, "ops/s · p50 ms · p99 ms (errors) of each run; the disk and SD-card loads included.\n\n")
	roundsTable(w, o, res)
	fmt.Fprintln(w)

	problems := problemList(o, res)
	fmt.Fprintf(w, "## Problems\n\n")
	if len(problems) == 0 {
		fmt.Fprintln(w, "None: every load ran in every round without an error.")
	}
	for _, p := range problems {
		fmt.Fprintf(w, "- %s\n", p)
	}
}

// ranAny reports whether some round of some server ran one of the loads.
func ranAny(res *results, ids []string) bool {
	for _, rounds := range res.rounds {
		for _, rd := range rounds {
			for _, id := range ids {
				if _, ok := rd.loads[id]; ok {
					return true
				}
			}
		}
	}
	return false
}

func sdArgs(o options) []string { return strace.DelayArgs("strace", o.sdDelay) }

// quickOmits says what --quick leaves out compared with make bench.
func quickOmits(o options) string {
	var s []string
	s = append(s, fmt.Sprintf("%d round%s", o.rounds, map[bool]string{true: "s"}[o.rounds != 1]))
	if o.scale != 1 {
		s = append(s, fmt.Sprintf("loads at %g of their full totals (under a second to a few seconds each, so noisier)", o.scale))
	}
	s = append(s, "chart points at "+joinInts(o.chartClients)+" clients")
	s = append(s, fmt.Sprintf("range loads over %d keys", o.rangeKeys))
	if o.restartKeys == 0 {
		s = append(s, "no restart measurement")
	}
	return strings.Join(s, ", ")
}

func joinInts(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ", ")
}

// injectionCheck says whether the injected delay shows: one client's puts
// on etcd cannot be faster than one sync.
func injectionCheck(o options, res *results) string {
	st := statsOf(res.rounds["etcd"], "sd-put-1")
	got := median(st.values(p50))
	switch {
	case math.IsNaN(got):
		return "Injection check: no etcd single-client result to check the injected delay against."
	case got >= float64(o.sdDelay)/float64(time.Millisecond):
		return fmt.Sprintf("Injection check: etcd's single-client put p50 is %s ms, at least the injected %v: the delay is in effect.", ms(got), o.sdDelay)
	default:
		return fmt.Sprintf("**Injection check failed**: etcd's single-client put p50 is %s ms, below the injected %v; the SD-card numbers are not to be trusted.", ms(got), o.sdDelay)
	}
}

func chartTable(w io.Writer, o options, res *results) {
	series := chartSeries(o, res)
	byClients := func(s string, n int) (chartPoint, bool) {
		for _, p := range series[s] {
			if p.clients == n {
				return p, true
			}
		}
		return chartPoint{}, false
	}
	fmt.Fprintln(w, "| clients | edgekv puts/s | edgekv p50 ms | edgekv p99 ms | etcd puts/s | etcd p50 ms | etcd p99 ms |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|")
	counts := slices.Clone(o.chartClients)
	slices.Sort(counts)
	for _, n := range slices.Compact(counts) {
		row := []string{strconv.Itoa(n)}
		for _, s := range []string{"edgekv", "etcd"} {
			if p, ok := byClients(s, n); ok {
				row = append(row, fixed(0)(p.throughput), ms(p.p50), ms(p.p99))
			} else {
				row = append(row, "n/a", "n/a", "n/a")
			}
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
	}
}

func roundsTable(w io.Writer, o options, res *results) {
	fmt.Fprint(w, "| load | server |")
	for r := 1; r <= o.rounds; r++ {
		fmt.Fprintf(w, " round %d |", r)
	}
	fmt.Fprint(w, "\n|---|---|")
	for r := 1; r <= o.rounds; r++ {
		fmt.Fprint(w, "---:|")
	}
	fmt.Fprintln(w)
	all := append(mainLoads(o), diskLoad())
	all = append(all, sdLoads()...)
	for _, l := range all {
		for _, s := range res.servers {
			var cells []string
			shown := false
			for _, rd := range res.rounds[s] {
				lr, ran := rd.loads[l.id]
				switch {
				case !ran:
					cells = append(cells, "")
				case lr.out == nil:
					cells = append(cells, "failed")
					shown = true
				default:
					c := fmt.Sprintf("%.0f · %s · %s", lr.out.Throughput, ms(lr.out.LatencyMS.P50), ms(lr.out.LatencyMS.P99))
					if lr.out.Errors > 0 {
						c += fmt.Sprintf(" (%d errors)", lr.out.Errors)
					}
					cells = append(cells, c)
					shown = true
				}
			}
			if !shown {
				continue
			}
			for len(cells) < o.rounds {
				cells = append(cells, "")
			}
			fmt.Fprintf(w, "| %s | %s | %s |\n", l.id, s, strings.Join(cells, " | "))
		}
	}
	for _, m := range resourceMetrics(o) {
		for _, s := range res.servers {
			xs := metricValues(res.rounds[s], m)
			if _, _, n := spread(xs); n == 0 {
				continue
			}
			cells := make([]string, o.rounds)
			for i, x := range xs {
				if !math.IsNaN(x) {
					cells[i] = m.format(x)
				}
			}
			fmt.Fprintf(w, "| %s | %s | %s |\n", m.name, s, strings.Join(cells, " | "))
		}
	}
}

// problemList: phases that failed, runs that failed, and requests that
// failed (with the generator's samples), per server and round.
func problemList(o options, res *results) []string {
	out := slices.Clone(res.notes)
	all := append(mainLoads(o), diskLoad())
	all = append(all, sdLoads()...)
	for _, s := range res.servers {
		for r, rd := range res.rounds[s] {
			for _, p := range rd.problems {
				out = append(out, fmt.Sprintf("%s, round %d: %s", s, r+1, oneLine(p)))
			}
			for _, l := range all {
				lr, ran := rd.loads[l.id]
				if !ran {
					continue
				}
				if lr.out == nil {
					out = append(out, fmt.Sprintf("%s, round %d, %s: failed: %s", s, r+1, l.id, oneLine(lr.failed)))
					continue
				}
				// What the generator reports beyond errors that means a
				// load did not do what it says.
				for _, k := range []string{"missing_events", "not_found"} {
					if n := lr.out.Extra[k]; n > 0 {
						out = append(out, fmt.Sprintf("%s, round %d, %s: %s %d", s, r+1, l.id, strings.ReplaceAll(k, "_", " "), n))
					}
				}
				if lr.out.Errors > 0 {
					samples := lr.out.ErrorSamples
					if len(samples) > 3 {
						samples = samples[:3]
					}
					out = append(out, fmt.Sprintf("%s, round %d, %s: %d of %d requests failed, e.g. %s", s, r+1, l.id,
						lr.out.Errors, lr.out.Errors+lr.out.Count, oneLine(strings.Join(quoteAll(samples), "; "))))
				}
			}
		}
	}
	return out
}

func quoteAll(xs []string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = "`" + strings.ReplaceAll(x, "`", "'") + "`"
	}
	return out
}

// oneLine keeps a message on one markdown line, and short.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	s = strings.ReplaceAll(s, "|", "\\|")
	if len(s) > 400 {
		s = s[:400] + "..."
	}
	return s
}
