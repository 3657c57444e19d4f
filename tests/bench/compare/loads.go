package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The shape of every load's requests: 8-byte keys drawn from 100,000,
// 256-byte values.
const (
	keySize  = 8
	valSize  = 256
	keySpace = 100000
	// maxConns caps the gRPC connections a load's clients share; they are
	// spread over the members by the generator.
	maxConns = 16
	// rssLoad is the load during which the members' RSS is sampled.
	rssLoad = "put-256"
)

// tableClients are the put client counts the load table shows; the chart
// adds --chart-clients.
var tableClients = []int{1, 64, 256}

// load is one run of the load generator: edgekv bench <cmd> with the
// common flags and args, total requests at --scale 1 (about 3-5 s on the
// 2-core machine the defaults were tuned on).
type load struct {
	id      string // what --loads and the per-round table call it
	title   string // the row label
	cmd     string // edgekv bench subcommand
	clients int
	total   int
	args    []string
}

func putLoad(id string, clients, total int) load {
	s := "s"
	if clients == 1 {
		s = ""
	}
	return load{id: id, title: fmt.Sprintf("put, %d client%s", clients, s), cmd: "put", clients: clients, total: total}
}

// putTotal is the --scale 1 total of a put load by clients: enough for a
// few seconds at the throughput edgekv and etcd reach on 2 cores.
func putTotal(clients int) int {
	switch {
	case clients <= 1:
		return 1200
	case clients <= 4:
		return 3000
	case clients <= 16:
		return 6000
	case clients <= 64:
		return 12000
	default:
		return 15000
	}
}

// mainLoads are the loads on the main cluster of a round, in the order they
// run: the put loads by client count (the table's and the chart's), then
// the others.
func mainLoads(o options) []load {
	counts := slices.Clone(tableClients)
	for _, n := range o.chartClients {
		if !slices.Contains(counts, n) {
			counts = append(counts, n)
		}
	}
	slices.Sort(counts)
	var ls []load
	for _, n := range counts {
		ls = append(ls, putLoad(fmt.Sprintf("put-%d", n), n, putTotal(n)))
	}
	rangeArgs := []string{"--key-space", strconv.Itoa(o.rangeKeys)}
	// The serializable ranges read the keys the linearizable ones pre-filled
	// just before, unless those do not run.
	rangeS := append([]string{"--consistency", "s"}, rangeArgs...)
	if o.selected("range-l") {
		rangeS = append(rangeS, "--no-prefill")
	}
	ls = append(ls,
		load{id: "range-l", title: "range, linearizable, 64 clients", cmd: "range", clients: 64, total: 20000,
			args: append([]string{"--consistency", "l"}, rangeArgs...)},
		load{id: "range-s", title: "range, serializable, 64 clients", cmd: "range", clients: 64, total: 40000, args: rangeS},
		load{id: "txn-cas", title: "txn compare-and-swap, 64 clients", cmd: "txn-cas", clients: 64, total: 10000},
		// delete pre-fills --total keys (untimed), then deletes each once.
		load{id: "delete", title: "delete, 64 clients", cmd: "delete", clients: 64, total: 10000},
		// Total is puts; a sample is one event at one watcher (events/s).
		load{id: "watch-latency", title: "watch put-to-event, 100 watchers, 100 puts/s", cmd: "watch-latency", clients: 1, total: 500,
			args: []string{"--watchers", "100", "--streams", "10", "--put-rate", "100"}},
		// One lease per client, a KeepAliveOnce per operation.
		load{id: "lease-keepalive", title: "lease keep-alive, 64 clients", cmd: "lease-keepalive", clients: 64, total: 15000},
	)
	return ls
}

// diskLoad is the put load on the cluster whose syncs are counted.
func diskLoad() load {
	return load{id: "disk-put-64", title: "put, 64 clients, under strace", cmd: "put", clients: 64, total: 8000}
}

// sdLoads are the put loads with every sync delayed by o.sdDelay; a sync
// then costs about 20 ms however many puts it carries, so totals are
// smaller.
func sdLoads() []load {
	return []load{
		putLoad("sd-put-1", 1, 120),
		putLoad("sd-put-64", 64, 3000),
		putLoad("sd-put-256", 256, 8000),
	}
}

// knownLoad reports whether id names a load of some phase.
func knownLoad(o options, id string) bool {
	all := append(mainLoads(o), diskLoad())
	all = append(all, sdLoads()...)
	for _, l := range all {
		if l.id == id {
			return true
		}
	}
	return id == "restart"
}

// selected reports whether --loads asks for load id.
func (o options) selected(id string) bool {
	return len(o.loads) == 0 || slices.Contains(o.loads, id)
}

// args are the generator's command line for l against endpoints.
func (l load) argv(o options, endpoints []string) []string {
	total := max(1, int(math.Round(float64(l.total)*o.scale)))
	argv := []string{"bench", l.cmd,
		"--endpoints", strings.Join(endpoints, ","),
		"--clients", strconv.Itoa(l.clients),
		"--conns", strconv.Itoa(min(l.clients, maxConns)),
		"--total", strconv.Itoa(total),
		"--key-size", strconv.Itoa(keySize),
		"--val-size", strconv.Itoa(valSize),
		"--key-space", strconv.Itoa(keySpace),
	}
	// A later flag wins (pflag), so a load's own --key-space overrides.
	argv = append(argv, l.args...)
	return append(argv, "--output", "json")
}

// benchOutput is what edgekv bench --output json prints: one JSON object.
type benchOutput struct {
	Load         string           `json:"load"`
	Endpoints    []string         `json:"endpoints"`
	Clients      int              `json:"clients"`
	Conns        int              `json:"conns"`
	Total        int64            `json:"total"`
	Count        int64            `json:"count"`
	Errors       int64            `json:"errors"`
	ErrorSamples []string         `json:"error_samples"`
	Seconds      float64          `json:"seconds"`
	Throughput   float64          `json:"throughput"`
	LatencyMS    latencyMS        `json:"latency_ms"`
	Histogram    []histBucket     `json:"histogram"`
	Extra        map[string]int64 `json:"extra"`
}

type latencyMS struct {
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

type histBucket struct {
	LeMS  float64 `json:"le_ms"`
	Count int64   `json:"count"`
}

// loadResult is one run of one load: the generator's output, or why there
// is none.
type loadResult struct {
	out    *benchOutput
	failed string // non-empty if the run gave no usable output
}

// parseBenchOutput decodes the generator's stdout: one JSON object, nothing
// after it. A run in which not one request succeeded is an error too.
func parseBenchOutput(stdout []byte) (*benchOutput, error) {
	dec := json.NewDecoder(bytes.NewReader(stdout))
	var out benchOutput
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("output is not the JSON of --output json: %w (stdout %q)", err, clip(string(stdout), 300))
	}
	if rest, _ := io.ReadAll(dec.Buffered()); len(bytes.TrimSpace(rest)) > 0 {
		return nil, fmt.Errorf("output has more after its JSON object: %q", clip(string(rest), 200))
	}
	if out.Count <= 0 {
		why := "no request succeeded"
		if len(out.ErrorSamples) > 0 {
			why += ": " + strings.Join(out.ErrorSamples, "; ")
		}
		return nil, errors.New(why)
	}
	return &out, nil
}

// runLoad runs the generator once as its own process and waits for it, at
// most o.loadTimeout. Its stderr goes to the log when it fails.
func runLoad(ctx context.Context, t testing.TB, benchBin string, endpoints []string, l load, o options) loadResult {
	ctx, cancel := context.WithTimeout(ctx, o.loadTimeout)
	defer cancel()
	argv := l.argv(o, endpoints)
	cmd := exec.CommandContext(ctx, benchBin, argv...)
	cmd.SysProcAttr = sysProcAttr()
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	runErr := cmd.Run()
	out, err := parseBenchOutput(stdout.Bytes())
	if err != nil {
		why := err.Error()
		if runErr != nil {
			why = fmt.Sprintf("%v; %s", runErr, why)
			if ctx.Err() != nil {
				why = fmt.Sprintf("killed after %v; %s", time.Since(start).Round(time.Millisecond), why)
			}
		}
		t.Logf("%s FAILED: %s\n  command: %s %s\n  stderr: %s", l.id, why, benchBin, strings.Join(argv, " "), clip(stderr.String(), 2000))
		return loadResult{failed: why}
	}
	if runErr != nil {
		// The JSON came out, so the numbers stand; say why it exited.
		t.Logf("%s: generator exited with %v after printing its result; stderr: %s", l.id, runErr, clip(stderr.String(), 1000))
	}
	t.Logf("%s: %d ok, %d errors in %.2f s: %.0f/s, p50 %.2f ms, p99 %.2f ms",
		l.id, out.Count, out.Errors, out.Seconds, out.Throughput, out.LatencyMS.P50, out.LatencyMS.P99)
	if out.Errors > 0 {
		t.Logf("%s: error samples: %q", l.id, out.ErrorSamples)
	}
	return loadResult{out: out}
}

// checkBench fails unless benchBin has the bench subcommand.
func checkBench(t testing.TB, benchBin string) {
	out, err := exec.Command(benchBin, "bench", "--help").CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("put")) {
		t.Fatalf("%s has no working bench subcommand (the load generator): %v\n%s", benchBin, err, clip(string(out), 500))
	}
}

// clip shortens s to at most n bytes, keeping its end (where errors are).
func clip(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
