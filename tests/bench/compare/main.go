// Command compare benchmarks edgekv against real etcd on the same machine
// and writes the report behind make bench: in rounds, phase by phase for
// each server in turn (the first alternating between rounds), it starts
// fresh 3-member clusters on loopback with the same flags and measures
//
//   - throughput and latency of a fixed sequence of loads (puts at several
//     client counts, linearizable and serializable ranges, compare-and-swap
//     txns, deletes, watch delivery, lease keep-alives), each run by the
//     load generator `edgekv bench ... --output json` as a separate process
//     against all three members: one generator for both servers;
//   - resident memory of every member, idle and at the peak of the heaviest
//     put load (/proc/PID/status);
//   - bytes written and syncs per put per member (/proc/PID/io, and every
//     member under strace counting its syncs, as bench/diskwrites);
//   - the stripped binary size, and the time a follower holding
//     --restart-keys keys takes to serve a linearizable get again after a
//     SIGTERM and after a SIGKILL;
//   - the put loads again with every fsync and fdatasync delayed by
//     --sd-delay under strace: a disk that flushes like an SD card.
//
// It prints a markdown report (medians over the rounds, the ratio
// edgekv/etcd, the spread between rounds) to stdout and to --results, and
// draws latency against throughput of the put loads into --chart (PNG).
// Run from the tests module:
//
//	go run ./bench/compare                  # make bench
//	go run ./bench/compare --quick          # make bench-quick
//
// EDGEKV_BIN selects the edgekv binary (default: built from the repository);
// etcd is built from tests/tools/etcd. bench/README.md at the repository
// root says how to read the report.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "compare:", err)
		}
		os.Exit(1)
	}
}

type options struct {
	rounds       int
	scale        float64
	quick        bool
	dir          string
	results      string
	chart        string
	chartClients []int
	rangeKeys    int
	idle         time.Duration
	drain        time.Duration
	restartKeys  int
	sdDelay      time.Duration
	loadTimeout  time.Duration
	servers      []string
	loads        []string // load ids to run; nil for all
}

// quickPreset is what --quick sets, unless the flag is given too.
var quickPreset = map[string]string{
	"rounds":        "1",
	"scale":         "0.5",
	"chart-clients": "1,64,256",
	"range-keys":    "10000",
	"idle":          "2s",
	"restart-keys":  "0",
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	var chartClients, servers, loads string
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.rounds, "rounds", 3, "rounds, each measuring both servers phase by phase on fresh clusters, the first alternating; tables show medians")
	fs.Float64Var(&o.scale, "scale", 1, "multiplies every load's --total (1: a few seconds per load on 2 cores)")
	fs.BoolVar(&o.quick, "quick", false, "a short run: --rounds 1 --scale 0.5 --chart-clients 1,64,256 --range-keys 10000 --idle 2s --restart-keys 0 (flags given as well win)")
	fs.StringVar(&o.dir, "dir", "", "where the data dirs go (default: the system temp dir); put it on the disk to measure")
	fs.StringVar(&o.results, "results", "", "also write the report to this file")
	fs.StringVar(&o.chart, "chart", "", "draw latency against throughput of the put loads into this PNG file")
	fs.StringVar(&chartClients, "chart-clients", "1,4,16,64,256", "client counts of the put loads (the table shows 1, 64 and 256; the chart all)")
	fs.IntVar(&o.rangeKeys, "range-keys", keySpace, "keys the range loads pre-fill (untimed) and read")
	fs.DurationVar(&o.idle, "idle", 5*time.Second, "how long a ready cluster idles before its RSS is read")
	fs.DurationVar(&o.drain, "drain", time.Second, "how long after the disk load the disk is still counted (delayed commits)")
	fs.IntVar(&o.restartKeys, "restart-keys", 100000, "keys a restarted follower holds (0 skips the restart measurement)")
	fs.DurationVar(&o.sdDelay, "sd-delay", 20*time.Millisecond, "delay injected into every fsync and fdatasync for the SD-card loads (0 skips them)")
	fs.DurationVar(&o.loadTimeout, "load-timeout", 3*time.Minute, "longest one load may run before it counts as failed")
	fs.StringVar(&servers, "servers", "edgekv,etcd", "servers to measure")
	fs.StringVar(&loads, "loads", "", "comma-separated load ids to run (default: all; see bench/README.md)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.quick {
		given := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
		for name, v := range quickPreset {
			if given[name] {
				continue
			}
			if err := fs.Set(name, v); err != nil {
				return o, fmt.Errorf("--quick: %s=%s: %w", name, v, err)
			}
			if name == "chart-clients" {
				chartClients = v
			}
		}
	}
	var err error
	if o.chartClients, err = parseCounts(chartClients); err != nil {
		return o, fmt.Errorf("--chart-clients: %w", err)
	}
	for _, s := range strings.Split(servers, ",") {
		if s = strings.TrimSpace(s); s != "" {
			if _, ok := serverByName(s); !ok {
				return o, fmt.Errorf("--servers: unknown server %q (edgekv, etcd)", s)
			}
			o.servers = append(o.servers, s)
		}
	}
	for _, l := range strings.Split(loads, ",") {
		if l = strings.TrimSpace(l); l != "" {
			o.loads = append(o.loads, l)
		}
	}
	switch {
	case o.rounds <= 0 || o.scale <= 0:
		return o, errors.New("--rounds and --scale must be positive")
	case len(o.servers) == 0:
		return o, errors.New("--servers: none given")
	case o.rangeKeys <= 0 || o.rangeKeys > keySpace:
		return o, fmt.Errorf("--range-keys must be in 1..%d", keySpace)
	case o.restartKeys < 0 || o.idle < 0 || o.drain < 0 || o.sdDelay < 0 || o.loadTimeout <= 0:
		return o, errors.New("--restart-keys, --idle, --drain and --sd-delay must not be negative, --load-timeout positive")
	}
	for _, id := range o.loads {
		if !knownLoad(o, id) {
			return o, fmt.Errorf("--loads: unknown load %q", id)
		}
	}
	return o, nil
}

func parseCounts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a positive count", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	started := time.Now()
	res, runErr := measureAll(ctx, o, stderr)
	if res == nil {
		return runErr
	}
	res.wall = time.Since(started)
	var report strings.Builder
	writeReport(&report, o, res)
	if runErr != nil {
		// Interrupted: show what was measured, but do not overwrite the
		// results of a complete run.
		fmt.Fprint(stdout, report.String())
		return runErr
	}
	if o.chart != "" {
		if err := drawChart(o.chart, chartSeries(o, res)); err != nil {
			return fmt.Errorf("chart: %w", err)
		}
		fmt.Fprintf(stderr, "compare: chart written to %s\n", o.chart)
	}
	fmt.Fprint(stdout, report.String())
	if o.results != "" {
		if err := os.MkdirAll(filepath.Dir(o.results), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(o.results, []byte(report.String()), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "compare: report written to %s\n", o.results)
	}
	return nil
}
