package main

import (
	"bytes"
	"fmt"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// benchJSON is what edgekv bench put --output json prints, with the numbers
// filled in.
func benchJSON(load string, count, errors int64, throughput, p50, p99 float64, samples ...string) string {
	quoted := make([]string, len(samples))
	for i, s := range samples {
		quoted[i] = fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf(`{"load":%q,"endpoints":["http://127.0.0.1:2379"],"clients":64,"conns":16,"total":%d,`+
		`"count":%d,"errors":%d,"error_samples":[%s],"seconds":2.1,"throughput":%g,`+
		`"latency_ms":{"mean":1.5,"p50":%g,"p90":2,"p99":%g,"p999":9,"max":12},`+
		`"histogram":[{"le_ms":0.5,"count":12},{"le_ms":1,"count":30}],"extra":{"prefilled":1000}}`+"\n",
		load, count+errors, count, errors, strings.Join(quoted, ","), throughput, p50, p99)
}

func mustParse(t *testing.T, s string) *benchOutput {
	t.Helper()
	out, err := parseBenchOutput([]byte(s))
	require.NoError(t, err)
	return out
}

func TestParseBenchOutput_ReadsEveryFieldTheReportUses(t *testing.T) {
	out := mustParse(t, benchJSON("put", 9998, 2, 4761.9, 1.25, 8.5, "context deadline exceeded"))
	require.Equal(t, "put", out.Load)
	require.Equal(t, int64(9998), out.Count)
	require.Equal(t, int64(2), out.Errors)
	require.Equal(t, []string{"context deadline exceeded"}, out.ErrorSamples)
	require.Equal(t, 4761.9, out.Throughput)
	require.Equal(t, latencyMS{Mean: 1.5, P50: 1.25, P90: 2, P99: 8.5, P999: 9, Max: 12}, out.LatencyMS)
	require.Equal(t, []histBucket{{0.5, 12}, {1, 30}}, out.Histogram)
	require.Equal(t, int64(1000), out.Extra["prefilled"])
}

func TestParseBenchOutput_RejectsWhatIsNotOneResult(t *testing.T) {
	for name, stdout := range map[string]string{
		"empty":                 "",
		"a table":               "load put\nthroughput 100/s\n",
		"two objects":           benchJSON("put", 1, 0, 1, 1, 1) + benchJSON("put", 1, 0, 1, 1, 1),
		"nothing succeeded":     benchJSON("put", 0, 64, 0, 0, 0, "etcdserver: no leader"),
		"cut off in the middle": benchJSON("put", 1, 0, 1, 1, 1)[:40],
	} {
		t.Run(name, func(t *testing.T) {
			_, err := parseBenchOutput([]byte(stdout))
			require.Error(t, err)
		})
	}
	_, err := parseBenchOutput([]byte(benchJSON("put", 0, 64, 0, 0, 0, "etcdserver: no leader")))
	require.ErrorContains(t, err, "no leader", "the reason a run failed is kept for the report")
}

func TestMedian_IgnoresNaNAndAveragesTheMiddlePair(t *testing.T) {
	nan := math.NaN()
	require.Equal(t, 2.0, median([]float64{3, 1, 2}))
	require.Equal(t, 2.5, median([]float64{4, 1, nan, 2, 3}))
	require.True(t, math.IsNaN(median([]float64{nan})))
	require.True(t, math.IsNaN(median(nil)))
}

func TestRatio_IsADashWhereItMeansNothing(t *testing.T) {
	require.Equal(t, "0.50", ratio(1, 2))
	require.Equal(t, "-", ratio(1, 0))
	require.Equal(t, "-", ratio(math.NaN(), 2))
}

func TestCell_ShowsTheSpreadOfSeveralRounds(t *testing.T) {
	require.Equal(t, "200 (100–300)", cell([]float64{300, 100, 200}, fixed(0), true))
	require.Equal(t, "200", cell([]float64{300, 100, 200}, fixed(0), false))
	require.Equal(t, "7.5", cell([]float64{7.5, math.NaN()}, fixed(1), true), "a round without the value is no spread")
	require.Equal(t, "n/a", cell(nil, fixed(0), true))
}

// cannedResults are three rounds of both servers: edgekv's put-64 has
// errors in one round, etcd's range-l failed in one round and edgekv's in
// all three.
func cannedResults(t *testing.T) *results {
	res := &results{
		servers:  []string{"edgekv", "etcd"},
		rounds:   map[string][]*round{},
		binaries: map[string]string{"edgekv": "/bin/edgekv", "etcd": "/bin/etcd"},
		versions: map[string]string{"edgekv": "edgekv Version: 0.1.0", "etcd": "etcd Version: 3.7.3"},
		stripped: map[string]int64{"edgekv": 20 * mib, "etcd": 25 * mib},
		meta:     meta{date: time.Date(2026, 12, 1, 9, 30, 0, 0, time.UTC), cpus: 2, cpuModel: "Xeon", kernel: "Linux 6.1", memory: "4.0 GiB", goVersion: "go1.26.8", commit: "abc123", dataDir: "/tmp", dataFS: "ext2/ext3"},
		wall:     150 * time.Second,
	}
	for r := 0; r < 3; r++ {
		f := float64(r)
		e, d := newRound(), newRound()
		var errs int64
		var samples []string
		if r == 1 {
			errs, samples = 10, []string{"context deadline exceeded"}
		}
		e.loads["put-64"] = loadResult{out: mustParse(t, benchJSON("put", 1000-errs, errs, 4000+100*f, 10+f, 30+f, samples...))}
		d.loads["put-64"] = loadResult{out: mustParse(t, benchJSON("put", 1000, 0, 2000+100*f, 20+f, 60+f))}
		e.loads["put-1"] = loadResult{out: mustParse(t, benchJSON("put", 100, 0, 500, 1.5, 3))}
		d.loads["put-1"] = loadResult{out: mustParse(t, benchJSON("put", 100, 0, 400, 2, 4))}
		e.loads["range-l"] = loadResult{failed: "exit status 1; no request succeeded"}
		if r == 2 {
			d.loads["range-l"] = loadResult{failed: "killed after 3m0s"}
		} else {
			d.loads["range-l"] = loadResult{out: mustParse(t, benchJSON("range", 1000, 0, 9000, 3, 9))}
		}
		e.loads["sd-put-1"] = loadResult{out: mustParse(t, benchJSON("put", 40, 0, 40, 22, 30))}
		d.loads["sd-put-1"] = loadResult{out: mustParse(t, benchJSON("put", 40, 0, 35, 24+f, 40))}
		e.idleRSS, d.idleRSS = []int64{20 * mib, 22 * mib, 24 * mib}, []int64{30 * mib, 30 * mib, 30 * mib}
		e.idleAnon, d.idleAnon = []int64{4 * mib, 5 * mib, 6 * mib}, []int64{8 * mib, 8 * mib, 8 * mib}
		e.loadedRSS, d.loadedRSS = []int64{50 * mib, 52 * mib, 60 * mib}, []int64{55 * mib, 56 * mib, 57 * mib}
		e.disk = &diskResult{puts: 1000, writeBytes: 3 * 1000 * 500, syncs: 3 * 80}
		d.disk = &diskResult{puts: 1000, writeBytes: 3 * 1000 * 1200, syncs: 3 * 100}
		e.restartTerm, e.restartKill = time.Duration(1+r)*time.Second, 2*time.Second
		d.restartTerm, d.restartKill = 3*time.Second, 4*time.Second
		res.rounds["edgekv"] = append(res.rounds["edgekv"], e)
		res.rounds["etcd"] = append(res.rounds["etcd"], d)
	}
	res.rounds["etcd"][1].problems = []string{"sd-card: m1 exited during sd-put-64"}
	return res
}

func testOptions(t *testing.T, args ...string) options {
	o, err := parseFlags(args, &bytes.Buffer{})
	require.NoError(t, err)
	return o
}

func TestLoadTable_MediansRatiosSpreadErrorsAndFailures(t *testing.T) {
	res := cannedResults(t)
	var w strings.Builder
	loadTable(&w, res, []load{
		putLoad("put-1", 1, 1), putLoad("put-64", 64, 1),
		{id: "range-l", title: "range, linearizable, 64 clients"},
		{id: "txn-cas", title: "never run"},
	})
	lines := strings.Split(strings.TrimSpace(w.String()), "\n")
	require.Len(t, lines, 5, "header, separator, three loads; a load no round ran has no row:\n%s", w.String())
	require.Equal(t, "| put, 1 client | 500 (500–500) | 400 (400–400) | 1.25 | 1.50 | 2.00 | 0.75 | 3.00 | 4.00 | 0.75 | 0 | 0 |", lines[2])
	require.Equal(t, "| put, 64 clients | 4100 (4000–4200) | 2100 (2000–2200) | 1.95 | 11.0 | 21.0 | 0.52 | 31.0 | 61.0 | 0.51 | 10 (0.33%) | 0 |", lines[3])
	require.Equal(t, "| range, linearizable, 64 clients | failed | 9000 (9000–9000) | - | failed | 3.00 | - | failed | 9.00 | - | failed | 0, 1 of 3 runs failed |", lines[4])
}

func TestResourceTable_PerMemberAndPerPut(t *testing.T) {
	res := cannedResults(t)
	var w strings.Builder
	resourceTable(&w, testOptions(t), res)
	out := w.String()
	for _, want := range []string{
		"| idle RSS per member, MiB (mean of the 3) | 22.0 (22.0–22.0) | 30.0 (30.0–30.0) | 0.73 |",
		"| of idle RSS, the process's own memory (RssAnon) per member, MiB | 5.0 (5.0–5.0) | 8.0 (8.0–8.0) | 0.62 |",
		"| loaded RSS, largest member, MiB | 60.0 (60.0–60.0) | 57.0 (57.0–57.0) | 1.05 |",
		"| bytes written per put per member | 500 (500–500) | 1200 (1200–1200) | 0.42 |",
		"| fsync+fdatasync per put per member | 0.080 (0.080–0.080) | 0.100 (0.100–0.100) | 0.80 |",
		"| restart of a follower holding 100000 keys after SIGTERM, s | 2.00 (1.00–3.00) | 3.00 (3.00–3.00) | 0.67 |",
		"| stripped binary (`CGO_ENABLED=0 go build -trimpath -ldflags '-s -w'`, edgekv `-tags grpcnotrace` as make build), MiB | 20.0 | 25.0 | 0.80 |",
	} {
		require.Contains(t, out, want+"\n")
	}
	w.Reset()
	resourceTable(&w, testOptions(t, "--restart-keys", "0"), res)
	require.NotContains(t, w.String(), "restart", "no restart rows when the restart is not measured")
}

func TestWriteReport_HasEverySectionAndListsEveryProblem(t *testing.T) {
	res := cannedResults(t)
	o := testOptions(t, "--results", "/repo/bench/RESULTS.md", "--chart", "/repo/bench/latency-throughput.png")
	var w strings.Builder
	writeReport(&w, o, res)
	out := w.String()
	for _, want := range []string{
		"# edgekv and etcd on one machine\n",
		"- date: 2026-12-01 09:30 UTC; the run took 2m30s\n",
		"- machine: 2 CPUs (Xeon), 4.0 GiB RAM, Linux 6.1; data dirs in /tmp (ext2/ext3)\n",
		"commit `abc123`",
		"`etcd Version: 3.7.3`",
		"- rounds: 3; in each, every phase (cluster) runs for edgekv and etcd in turn, the first server alternating between rounds",
		"## Loads\n", "## Resources\n", "## Emulated SD card\n", "## Latency against throughput\n", "## Every round\n", "## Problems\n",
		"Injection check: etcd's single-client put p50 is 25.0 ms, at least the injected 20ms",
		"![p50 and p99 put latency against throughput](latency-throughput.png)\n",
		"| 64 | 4100 | 11.0 | 31.0 | 2100 | 21.0 | 61.0 |\n",
		"| put-64 | edgekv | 4000 · 10.0 · 30.0 | 4100 · 11.0 · 31.0 (10 errors) | 4200 · 12.0 · 32.0 |\n",
		"| range-l | etcd | 9000 · 3.00 · 9.00 | 9000 · 3.00 · 9.00 | failed |\n",
		"- etcd, round 2: sd-card: m1 exited during sd-put-64\n",
		"- edgekv, round 2, put-64: 10 of 1000 requests failed, e.g. `context deadline exceeded`\n",
		"- etcd, round 3, range-l: failed: killed after 3m0s\n",
	} {
		require.Contains(t, out, want)
	}
	require.NotContains(t, out, "quick run")
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "|") {
			require.True(t, strings.HasSuffix(line, "|"), "a table row ends its cells: %q", line)
		}
	}
}

func TestInjectionCheck_FlagsADelayThatDidNotShow(t *testing.T) {
	res := cannedResults(t)
	for _, rd := range res.rounds["etcd"] {
		rd.loads["sd-put-1"] = loadResult{out: mustParse(t, benchJSON("put", 100, 0, 500, 2, 4))}
	}
	require.Contains(t, injectionCheck(testOptions(t), res), "**Injection check failed**")
}

func TestDrawChart_WritesAPNGOfTheCannedPoints(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bench", "latency-throughput.png")
	series := map[string][]chartPoint{
		"edgekv": {{1, 700, 1.3, 3.2}, {4, 1900, 1.9, 6}, {16, 3100, 4.8, 14}, {64, 3950, 14, 37}, {256, 4100, 60, 150}},
		"etcd":   {{1, 780, 1.2, 3.3}, {4, 2100, 1.8, 5}, {16, 4000, 3.9, 12}, {64, 5900, 9.8, 25}, {256, 6100, 40, 110}},
	}
	require.NoError(t, drawChart(path, series))
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	img, err := png.Decode(f)
	require.NoError(t, err)
	require.Greater(t, img.Bounds().Dx(), 500)

	require.Error(t, drawChart(filepath.Join(t.TempDir(), "empty.png"), map[string][]chartPoint{}), "no points, no chart")
}

func TestChartSeries_MediansPerClientCountWhereARunSucceeded(t *testing.T) {
	res := cannedResults(t)
	series := chartSeries(testOptions(t), res)
	require.Equal(t, []chartPoint{{1, 500, 1.5, 3}, {64, 4100, 11, 31}}, series["edgekv"], "4, 16 and 256 clients never ran")
}

func TestTicks_AreRoundNumbers(t *testing.T) {
	var labels []string
	for _, tk := range linearTicks(0, 6100) {
		if tk.Label != "" {
			labels = append(labels, tk.Label)
		}
	}
	require.Equal(t, []string{"0", "1000", "2000", "3000", "4000", "5000", "6000"}, labels)
	labels = nil
	for _, tk := range logTicks(1.2, 150) {
		labels = append(labels, tk.Label)
	}
	require.Equal(t, []string{"2", "5", "10", "20", "50", "100"}, labels)
}

func TestParseFlags_QuickPresetYieldsToFlagsGivenWithIt(t *testing.T) {
	o := testOptions(t, "--quick", "--rounds", "2")
	require.Equal(t, 2, o.rounds)
	require.Equal(t, 0.5, o.scale)
	require.Equal(t, []int{1, 64, 256}, o.chartClients)
	require.Equal(t, 0, o.restartKeys)

	full := testOptions(t)
	require.Equal(t, 3, full.rounds)
	require.Equal(t, []int{1, 4, 16, 64, 256}, full.chartClients)

	_, err := parseFlags([]string{"--loads", "put-3"}, &bytes.Buffer{})
	require.ErrorContains(t, err, "unknown load")
}

func TestLoadArgv_ScalesTheTotalAndCapsTheConnections(t *testing.T) {
	o := testOptions(t, "--scale", "0.5")
	var l load
	for _, m := range mainLoads(o) {
		if m.id == "put-256" {
			l = m
		}
	}
	got := strings.Join(l.argv(o, []string{"http://a", "http://b"}), " ")
	require.Equal(t, "bench put --endpoints http://a,http://b --clients 256 --conns 16 --total 7500 "+
		"--key-size 8 --val-size 256 --key-space 100000 --output json", got)
}

func TestMainLoads_RunInAFixedOrderWithTheChartsClientCounts(t *testing.T) {
	var ids []string
	for _, l := range mainLoads(testOptions(t, "--chart-clients", "16,1,64")) {
		ids = append(ids, l.id)
	}
	require.Equal(t, []string{"put-1", "put-16", "put-64", "put-256", "range-l", "range-s", "txn-cas", "delete",
		"watch-latency", "lease-keepalive"}, ids)
}

func TestRangeLoads_TheSerializableOnesReadWhatTheLinearizableOnesFilled(t *testing.T) {
	argsOf := func(o options, id string) string {
		for _, l := range mainLoads(o) {
			if l.id == id {
				return strings.Join(l.argv(o, []string{"e"}), " ")
			}
		}
		return ""
	}
	o := testOptions(t, "--range-keys", "5000")
	require.Contains(t, argsOf(o, "range-l"), "--consistency l --key-space 5000 --output json")
	require.Contains(t, argsOf(o, "range-s"), "--consistency s --key-space 5000 --no-prefill --output json")
	o = testOptions(t, "--loads", "range-s")
	require.NotContains(t, argsOf(o, "range-s"), "--no-prefill", "alone, range-s fills its keys itself")
}

func TestRoundOrder_AlternatesTheServerThatGoesFirst(t *testing.T) {
	servers := []string{"edgekv", "etcd"}
	for r, want := range map[int]string{1: "edgekv etcd", 2: "etcd edgekv", 3: "edgekv etcd", 4: "etcd edgekv"} {
		if got := strings.Join(roundOrder(servers, r), " "); got != want {
			t.Errorf("round %d: %s, want %s", r, got, want)
		}
	}
	if got := roundOrder([]string{"etcd"}, 2); len(got) != 1 || got[0] != "etcd" {
		t.Errorf("one server: %v", got)
	}
	if servers[0] != "edgekv" {
		t.Error("roundOrder changed its argument")
	}
}
