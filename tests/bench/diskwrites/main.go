// Command diskwrites measures what a write load costs the disk, for edgekv and
// for real etcd on the same machine: it starts a 3-member cluster of each in
// turn (same flags, fresh data dirs, loopback), puts the same keys through the
// official Go client from many clients spread over the members, and prints a
// markdown table per server of committed puts, puts/s, bytes written per put
// per member and fsyncs per put per member, with the ratio edgekv/etcd.
//
// Bytes written are the growth of write_bytes in /proc/PID/io of each member
// (what it sent towards storage) from the start of the load to --drain after
// its end. fsync and fdatasync calls are counted in the same window by running
// every member of both servers under strace (Debian's strace with
// --seccomp-bpf; it slows both servers, so puts/s here is for comparing the
// two, not a throughput figure). Without strace they come from the
// Prometheus metrics on the client port instead: WAL fsyncs plus two per
// backend commit (bbolt syncs its pages and then its meta page), which only
// a server with etcd's metrics reports.
//
// Run from the tests module, e.g.:
//
//	go run ./bench/diskwrites --total 20000 --rounds 3
//
// EDGEKV_BIN selects the edgekv binary (default: built from the repository);
// etcd is built from tests/tools/etcd.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/edgekv/edgekv/tests/bench/internal/strace"
	"github.com/edgekv/edgekv/tests/framework"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "diskwrites:", err)
		}
		os.Exit(1)
	}
}

// How syncs are counted.
const (
	methodStrace  = "strace"
	methodMetrics = "metrics"
	methodAuto    = "auto"
)

type options struct {
	total, rounds, clients, conns     int
	keySize, valSize, keySpace, nodes int
	seed                              uint64
	putTimeout, drain                 time.Duration
	syncs, dir                        string
}

// server is one implementation to measure.
type server struct {
	name  string
	build func(t testing.TB) string
}

var servers = []server{
	{"edgekv", framework.BuildEdgekv},
	{"etcd", framework.BuildEtcd},
}

// result is one round of one server.
type result struct {
	committed, failed int64
	elapsed           time.Duration
	writeBytes        int64   // write_bytes growth, summed over the members
	syncs             float64 // fsync + fdatasync, summed over the members; NaN if unknown
	syncFileRange     float64 // sync_file_range, summed over the members; NaN if unknown
	walBytes          float64 // etcd_disk_wal_write_bytes_total growth, summed; NaN if unknown
}

func (r result) putsPerSec() float64 { return float64(r.committed) / r.elapsed.Seconds() }

// perPutPerMember divides a sum over the members by puts and by members.
func (r result) perPutPerMember(sum float64, members int) float64 {
	if r.committed == 0 {
		return math.NaN()
	}
	return sum / float64(r.committed) / float64(members)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o options
	fs := flag.NewFlagSet("diskwrites", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.total, "total", 20000, "puts per round and server")
	fs.IntVar(&o.rounds, "rounds", 3, "rounds, each running edgekv then etcd; the table shows medians")
	fs.IntVar(&o.clients, "clients", 64, "concurrent clients, each putting one request at a time")
	fs.IntVar(&o.conns, "conns", 0, "gRPC connections the clients share, spread over the members (0: one per client)")
	fs.IntVar(&o.keySize, "key-size", 8, "key size in bytes (decimal digits, zero-padded)")
	fs.IntVar(&o.valSize, "val-size", 256, "value size in bytes")
	fs.IntVar(&o.keySpace, "key-space", 100000, "keys are drawn uniformly from this many")
	fs.IntVar(&o.nodes, "members", 3, "members per cluster")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the key sequence (the same for both servers in a round)")
	fs.DurationVar(&o.putTimeout, "put-timeout", 10*time.Second, "timeout of one put; a put that times out counts as failed")
	fs.DurationVar(&o.drain, "drain", time.Second, "how long after the last put the disk is still counted (delayed commits)")
	fs.StringVar(&o.syncs, "syncs", methodAuto, "how to count syncs: strace, metrics, or auto (strace if installed)")
	fs.StringVar(&o.dir, "dir", "", "where the data dirs go (default: the system temp dir); put it on the disk to measure")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	switch {
	case o.total <= 0 || o.rounds <= 0 || o.clients <= 0 || o.conns < 0 || o.nodes <= 0:
		return errors.New("--total, --rounds, --clients and --members must be positive, --conns not negative")
	case o.keySpace <= 0 || len(strconv.Itoa(o.keySpace-1)) > o.keySize:
		return fmt.Errorf("--key-space %d does not fit in --key-size %d decimal digits", o.keySpace, o.keySize)
	case o.valSize < 0:
		return errors.New("--val-size must not be negative")
	}
	if o.conns == 0 {
		o.conns = o.clients
	}
	straceBin, err := exec.LookPath("strace")
	switch {
	case o.syncs == methodAuto && err == nil:
		o.syncs = methodStrace
	case o.syncs == methodAuto:
		fmt.Fprintln(stderr, "diskwrites: strace not found; counting syncs from the servers' metrics")
		o.syncs = methodMetrics
	case o.syncs == methodStrace && err != nil:
		return fmt.Errorf("--syncs strace: %w (apt-get install strace)", err)
	case o.syncs != methodStrace && o.syncs != methodMetrics:
		return fmt.Errorf("--syncs %q: want strace, metrics or auto", o.syncs)
	}

	results := map[string][]result{}
	binaries := map[string]string{}
	prog := framework.NewProgram("diskwrites", stderr, o.dir)
	err = prog.Run(func(t testing.TB) {
		for _, s := range servers {
			binaries[s.name] = s.build(t)
		}
		for r := 0; r < o.rounds; r++ {
			for _, s := range servers {
				if ctx.Err() != nil {
					t.Fatalf("%v", ctx.Err())
				}
				name := fmt.Sprintf("%s-round%d", s.name, r+1)
				var res result
				// A Program per round, so each cluster is gone before the next starts.
				if err := framework.NewProgram(name, stderr, o.dir).Run(func(t testing.TB) {
					res = measure(ctx, t, binaries[s.name], o, straceBin, uint64(r))
				}); err != nil {
					t.Fatalf("%v", err)
				}
				t.Logf("%s: %d puts committed, %d failed, %.0f puts/s, %.0f bytes and %.3f syncs per put per member",
					name, res.committed, res.failed, res.putsPerSec(),
					res.perPutPerMember(float64(res.writeBytes), o.nodes), res.perPutPerMember(res.syncs, o.nodes))
				results[s.name] = append(results[s.name], res)
			}
		}
	})
	if err != nil {
		return err
	}
	report(stdout, o, binaries, results)
	return nil
}

// measure starts a cluster of binary, runs the load, and returns what the
// members wrote and synced meanwhile. The cluster is gone when t's Run ends.
func measure(ctx context.Context, t testing.TB, binary string, o options, straceBin string, round uint64) result {
	var opts []framework.Option
	tracing := o.syncs == methodStrace
	if tracing {
		opts = append(opts, framework.WithMemberWrapper(func(m *framework.Member) []string {
			return strace.CountArgs(straceBin, m.DataDir+".strace")
		}))
	}
	c := framework.StartCluster(t, binary, o.nodes, opts...)
	pids := make([]int, len(c.Members))
	for i, m := range c.Members {
		pid, err := m.ServerPID()
		if err != nil {
			t.Fatalf("%s: %v", m.Name, err)
		}
		pids[i] = pid
	}
	readIO := func() []framework.ProcIO {
		out := make([]framework.ProcIO, len(pids))
		for i, pid := range pids {
			pio, err := framework.ReadProcIO(pid)
			if err != nil {
				t.Fatalf("%s: %v", c.Members[i].Name, err)
			}
			out[i] = pio
		}
		return out
	}
	metricsBefore := scrapeMetrics(t, c)

	ioBefore := readIO()
	start := time.Now()
	committed, failed, elapsed := putLoad(ctx, t, c.Endpoints(), o, round)
	time.Sleep(o.drain)
	end := time.Now()
	ioAfter := readIO()

	metricsAfter := scrapeMetrics(t, c)

	res := result{committed: committed, failed: failed, elapsed: elapsed}
	for i := range pids {
		res.writeBytes += ioAfter[i].Sub(ioBefore[i]).WriteBytes
		res.walBytes += metricsAfter[i].walBytes - metricsBefore[i].walBytes
	}
	if !tracing {
		for i := range metricsAfter {
			res.syncs += metricsAfter[i].syncs() - metricsBefore[i].syncs()
		}
		res.syncFileRange = math.NaN()
		return res
	}

	// Shutdown syncs are not counted either way.
	res.syncs, res.syncFileRange = strace.KillAndCount(t, c, pids, start, end)
	return res
}

// putLoad puts o.total keys from o.clients goroutines over o.conns clients
// (connection i to member i mod n) and returns how many were acknowledged,
// how many failed, and how long it took.
func putLoad(ctx context.Context, t testing.TB, endpoints []string, o options, round uint64) (committed, failed int64, elapsed time.Duration) {
	rng := rand.New(rand.NewPCG(o.seed, round))
	keys := make([]string, o.total)
	for i := range keys {
		keys[i] = fmt.Sprintf("%0*d", o.keySize, rng.IntN(o.keySpace))
	}
	// One random value, as etcd's own benchmark tool uses: no compression
	// could make it smaller.
	val := make([]byte, o.valSize)
	for i := range val {
		val[i] = byte(rng.IntN(256))
	}
	value := string(val)

	conns := make([]*clientv3.Client, o.conns)
	for i := range conns {
		cli, err := clientv3.New(clientv3.Config{
			Endpoints:   []string{endpoints[i%len(endpoints)]},
			DialTimeout: 5 * time.Second,
			Logger:      zap.NewNop(),
		})
		if err != nil {
			t.Fatalf("client of %s: %v", endpoints[i%len(endpoints)], err)
		}
		defer cli.Close()
		conns[i] = cli
	}

	var (
		next         atomic.Int64
		ok, bad      atomic.Int64
		wg           sync.WaitGroup
		firstErrOnce sync.Once
	)
	start := time.Now()
	for w := 0; w < o.clients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cli := conns[w%len(conns)]
			for {
				i := next.Add(1) - 1
				if i >= int64(len(keys)) || ctx.Err() != nil {
					return
				}
				pctx, cancel := context.WithTimeout(ctx, o.putTimeout)
				_, err := cli.Put(pctx, keys[i], value)
				cancel()
				if err != nil {
					bad.Add(1)
					firstErrOnce.Do(func() { t.Logf("put %q: %v (counted as failed; further errors not shown)", keys[i], err) })
					continue
				}
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed = time.Since(start)
	if ok.Load() == 0 {
		t.Fatalf("no put of %d was acknowledged", o.total)
	}
	return ok.Load(), bad.Load(), elapsed
}

// memberMetrics are the Prometheus metrics of one member the report uses;
// NaN where the server does not export them.
type memberMetrics struct {
	walFsyncs, backendCommits, walBytes float64
}

// syncs is WAL fsyncs plus two per backend commit (bbolt syncs its pages
// and then its meta page).
func (m memberMetrics) syncs() float64 { return m.walFsyncs + 2*m.backendCommits }

// scrapeMetrics reads each member's /metrics.
func scrapeMetrics(t testing.TB, c *framework.Cluster) []memberMetrics {
	out := make([]memberMetrics, len(c.Members))
	for i, m := range c.Members {
		resp, err := http.Get(m.ClientURL + "/metrics")
		if err != nil {
			t.Fatalf("%s: metrics: %v", m.Name, err)
		}
		mm := memberMetrics{math.NaN(), math.NaN(), math.NaN()}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			name, val, ok := strings.Cut(sc.Text(), " ")
			if !ok {
				continue
			}
			n, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
			if err != nil {
				continue
			}
			switch name {
			case "etcd_disk_wal_fsync_duration_seconds_count":
				mm.walFsyncs = n
			case "etcd_disk_backend_commit_duration_seconds_count":
				mm.backendCommits = n
			case "etcd_disk_wal_write_bytes_total":
				mm.walBytes = n
			}
		}
		resp.Body.Close()
		out[i] = mm
	}
	return out
}

// report prints the medians as a markdown table, then every round.
func report(w io.Writer, o options, binaries map[string]string, results map[string][]result) {
	syncHow := "fsync and fdatasync calls counted by strace (`-f --seccomp-bpf`) around every member, entered in the same window; strace slows both servers, so puts/s compares the two and is not a throughput figure"
	if o.syncs == methodMetrics {
		syncHow = "from the Prometheus metrics on the client port: `etcd_disk_wal_fsync_duration_seconds_count` + 2 × `etcd_disk_backend_commit_duration_seconds_count` (n/a: the server does not export them)"
	}
	fmt.Fprintf(w, "## Disk writes per put: edgekv and etcd\n\n")
	fmt.Fprintf(w, "%d members per cluster on 127.0.0.1, %d clients over %d connections spread over the members, "+
		"%d puts of %d-byte keys (uniform over %d) and %d-byte values per round, %d rounds alternating edgekv and etcd, "+
		"fresh data dirs; medians over the rounds.\n\n",
		o.nodes, o.clients, o.conns, o.total, o.keySize, o.keySpace, o.valSize, o.rounds)
	fmt.Fprintf(w, "- bytes written: growth of `write_bytes` in /proc/PID/io of each member, from the start of the load to %v after its end\n", o.drain)
	fmt.Fprintf(w, "- syncs: %s\n", syncHow)
	fmt.Fprintf(w, "- edgekv: `%s`; etcd: `%s`\n\n", binaries["edgekv"], binaries["etcd"])

	type metric struct {
		name   string
		digits int
		value  func(r result) float64
	}
	metrics := []metric{
		{"committed puts", 0, func(r result) float64 { return float64(r.committed) }},
		{"failed puts", 0, func(r result) float64 { return float64(r.failed) }},
		{"puts/s", 0, result.putsPerSec},
		{"bytes written per put per member", 0, func(r result) float64 { return r.perPutPerMember(float64(r.writeBytes), o.nodes) }},
		{"of which WAL writes (etcd_disk_wal_write_bytes_total)", 0, func(r result) float64 { return r.perPutPerMember(r.walBytes, o.nodes) }},
		{"fsync+fdatasync per put per member", 3, func(r result) float64 { return r.perPutPerMember(r.syncs, o.nodes) }},
		{"sync_file_range per put per member", 3, func(r result) float64 { return r.perPutPerMember(r.syncFileRange, o.nodes) }},
	}
	fmt.Fprintln(w, "| metric | edgekv | etcd | ratio |")
	fmt.Fprintln(w, "|---|---:|---:|---:|")
	for _, m := range metrics {
		e := median(results["edgekv"], m.value)
		d := median(results["etcd"], m.value)
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", m.name, num(e, m.digits), num(d, m.digits), ratio(e, d))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Every round:")
	fmt.Fprintln(w)
	fmt.Fprint(w, "| round | server |")
	for _, m := range metrics {
		fmt.Fprintf(w, " %s |", m.name)
	}
	fmt.Fprint(w, "\n|---:|---|")
	for range metrics {
		fmt.Fprint(w, "---:|")
	}
	fmt.Fprintln(w)
	for r := 0; r < o.rounds; r++ {
		for _, s := range servers {
			if r >= len(results[s.name]) {
				continue
			}
			fmt.Fprintf(w, "| %d | %s |", r+1, s.name)
			for _, m := range metrics {
				fmt.Fprintf(w, " %s |", num(m.value(results[s.name][r]), m.digits))
			}
			fmt.Fprintln(w)
		}
	}
}

// median of value over rs, NaN if any is NaN or rs is empty.
func median(rs []result, value func(result) float64) float64 {
	var xs []float64
	for _, r := range rs {
		x := value(r)
		if math.IsNaN(x) {
			return math.NaN()
		}
		xs = append(xs, x)
	}
	if len(xs) == 0 {
		return math.NaN()
	}
	sort.Float64s(xs)
	if n := len(xs); n%2 == 0 {
		return (xs[n/2-1] + xs[n/2]) / 2
	}
	return xs[len(xs)/2]
}

func num(x float64, digits int) string {
	if math.IsNaN(x) {
		return "n/a"
	}
	return strconv.FormatFloat(x, 'f', digits, 64)
}

func ratio(a, b float64) string {
	if math.IsNaN(a) || math.IsNaN(b) || b == 0 {
		return "-"
	}
	return strconv.FormatFloat(a/b, 'f', 2, 64)
}
