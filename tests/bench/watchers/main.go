// Command watchers measures watch delivery for edgekv and for real etcd on
// the same machine, in alternating rounds: for each server it starts a
// 3-member cluster on loopback and, on one member,
//
//   - opens N watchers (1, 1,000, 10,000 by default) on one key, spread
//     over min(N, 100) gRPC watch streams, and reports the member's
//     resident memory per watcher (VmRSS growth / N);
//   - puts to that key at a steady rate through another member and
//     reports put-to-event latency (from just before the put is sent to
//     the event's arrival at each watcher: every watcher, every put) as
//     p50, p99 and max;
//   - measures put latency (one client, sequential puts, p50 and p99) with
//     no watcher and then with watchers that never read their streams,
//     on the keys being put: a slow watcher must not slow writes.
//
// It prints markdown tables with medians over the rounds and the ratio
// edgekv/etcd. Run from the tests module:
//
//	go run ./bench/watchers --rounds 3
//
// EDGEKV_BIN selects the edgekv binary (default: built from the repository).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/metadata"

	"github.com/edgekv/edgekv/tests/framework"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "watchers:", err)
		}
		os.Exit(1)
	}
}

type options struct {
	rounds       int
	counts       []int
	streams      int
	puts         int
	rate         int
	slowWatchers int
	slowPuts     int
	valSize      int
	dir          string
}

type server struct {
	name  string
	build func(t testing.TB) string
}

var servers = []server{
	{"edgekv", framework.BuildEdgekv},
	{"etcd", framework.BuildEtcd},
}

// latencies of one measurement.
type latencies struct{ p50, p99, max time.Duration }

type result struct {
	// by watcher count
	delivery    map[int]latencies
	bytesPerW   map[int]float64
	missed      map[int]int64 // events not delivered within the wait
	putsAlone   latencies
	putsWithBad latencies
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o options
	var counts string
	fs := flag.NewFlagSet("watchers", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.rounds, "rounds", 3, "rounds, each running edgekv then etcd; tables show medians")
	fs.StringVar(&counts, "watchers", "1,1000,10000", "watcher counts")
	fs.IntVar(&o.streams, "streams", 100, "most gRPC watch streams the watchers are spread over")
	fs.IntVar(&o.puts, "puts", 100, "puts per watcher count, each delivered to every watcher")
	fs.IntVar(&o.rate, "rate", 20, "puts per second while measuring delivery")
	fs.IntVar(&o.slowWatchers, "slow-watchers", 10, "watchers that never read, for the slow-watcher measurement")
	fs.IntVar(&o.slowPuts, "slow-puts", 2000, "sequential puts timed with and without the slow watchers")
	fs.IntVar(&o.valSize, "val-size", 1024, "value size of the slow-watcher puts")
	fs.StringVar(&o.dir, "dir", "", "where the data dirs go (default: the system temp dir)")
	only := fs.String("servers", "edgekv,etcd", "servers to measure")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, f := range strings.Split(counts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return fmt.Errorf("--watchers: %q is not a positive count", f)
		}
		o.counts = append(o.counts, n)
	}
	if o.rounds <= 0 || o.streams <= 0 || o.puts <= 0 || o.rate <= 0 {
		return errors.New("--rounds, --streams, --puts and --rate must be positive")
	}

	var chosen []server
	for _, s := range servers {
		if strings.Contains(","+*only+",", ","+s.name+",") {
			chosen = append(chosen, s)
		}
	}
	results := map[string][]result{}
	binaries := map[string]string{}
	err := framework.NewProgram("watchers", stderr, o.dir).Run(func(t testing.TB) {
		for _, s := range chosen {
			binaries[s.name] = s.build(t)
		}
		for r := 0; r < o.rounds; r++ {
			for _, s := range chosen {
				if ctx.Err() != nil {
					t.Fatalf("%v", ctx.Err())
				}
				var res result
				name := fmt.Sprintf("%s-round%d", s.name, r+1)
				if err := framework.NewProgram(name, stderr, o.dir).Run(func(t testing.TB) {
					res = measure(ctx, t, binaries[s.name], o)
				}); err != nil {
					t.Fatalf("%v", err)
				}
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

func newClient(t testing.TB, endpoint string) *clientv3.Client {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:          []string{endpoint},
		DialTimeout:        5 * time.Second,
		Logger:             zap.NewNop(),
		MaxCallRecvMsgSize: math.MaxInt32,
	})
	if err != nil {
		t.Fatalf("client of %s: %v", endpoint, err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func measure(ctx context.Context, t testing.TB, binary string, o options) result {
	res := result{delivery: map[int]latencies{}, bytesPerW: map[int]float64{}, missed: map[int]int64{}}
	// A fresh cluster per watcher count: memory a member freed after an
	// earlier count would hide a later count's growth.
	var c *framework.Cluster
	var watched *framework.Member
	var pid int
	var writer *clientv3.Client
	start := func() {
		if c != nil {
			c.Close()
		}
		c = framework.StartCluster(t, binary, 3)
		watched = c.Members[0]
		var err error
		if pid, err = watched.ServerPID(); err != nil {
			t.Fatalf("%v", err)
		}
		writer = newClient(t, c.Members[1].ClientURL)
	}
	for _, n := range o.counts {
		start()
		key := fmt.Sprintf("/bench/watch/%d", n)
		wctx, cancel := context.WithCancel(ctx)
		streams := min(n, o.streams)
		// Watchers share a stream when their contexts carry the same
		// metadata; one client (connection) per 10 streams.
		var clis []*clientv3.Client
		for range (streams + 9) / 10 {
			clis = append(clis, newClient(t, watched.ClientURL))
		}
		runtimeSettle()
		before := rss(t, pid)
		var (
			mu        sync.Mutex
			lat       []time.Duration
			delivered atomic.Int64
			wg        sync.WaitGroup
			created   sync.WaitGroup
		)
		for w := 0; w < n; w++ {
			s := w % streams
			sctx := metadata.AppendToOutgoingContext(wctx, "bench-stream", strconv.Itoa(s))
			wch := clis[s%len(clis)].Watch(sctx, key, clientv3.WithCreatedNotify())
			created.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				first := true
				local := make([]time.Duration, 0, o.puts)
				for resp := range wch {
					if first && resp.Created {
						first = false
						created.Done()
						continue
					}
					now := time.Now()
					for _, ev := range resp.Events {
						if sent, err := strconv.ParseInt(string(ev.Kv.Value), 10, 64); err == nil {
							local = append(local, now.Sub(time.Unix(0, sent)))
							delivered.Add(1)
						}
					}
				}
				if first {
					created.Done()
				}
				mu.Lock()
				lat = append(lat, local...)
				mu.Unlock()
			}()
		}
		created.Wait()
		runtimeSettle()
		after := rss(t, pid)
		res.bytesPerW[n] = float64(after-before) / float64(n)

		tick := time.NewTicker(time.Second / time.Duration(o.rate))
		for i := 0; i < o.puts; i++ {
			<-tick.C
			pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := writer.Put(pctx, key, strconv.FormatInt(time.Now().UnixNano(), 10))
			pcancel()
			if err != nil {
				t.Fatalf("put: %v", err)
			}
		}
		tick.Stop()
		want := int64(n * o.puts)
		for deadline := time.Now().Add(30 * time.Second); delivered.Load() < want && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		wg.Wait()
		res.missed[n] = want - delivered.Load()
		for _, cli := range clis {
			cli.Close()
		}
		res.delivery[n] = percentiles(lat)
		t.Logf("%d watchers over %d streams: %+v, %.0f bytes/watcher, %d events missing", n, streams, res.delivery[n], res.bytesPerW[n], res.missed[n])
	}

	// A slow watcher must not slow writes.
	start()
	value := strings.Repeat("x", o.valSize)
	timePuts := func(prefix string) latencies {
		lat := make([]time.Duration, 0, o.slowPuts)
		for i := 0; i < o.slowPuts; i++ {
			start := time.Now()
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := writer.Put(pctx, fmt.Sprintf("%s%d", prefix, i%100), value)
			cancel()
			if err != nil {
				t.Fatalf("put: %v", err)
			}
			lat = append(lat, time.Since(start))
		}
		return percentiles(lat)
	}
	res.putsAlone = timePuts("/bench/slow-alone/")
	slowCtx, slowCancel := context.WithCancel(ctx)
	defer slowCancel()
	for i := 0; i < o.slowWatchers; i++ {
		// A raw gRPC watch stream per watcher, on its own connection,
		// that is never read (the Go client would read into an unbounded
		// buffer): once flow control fills, the member cannot send to it.
		cli := newClient(t, watched.ClientURL)
		stream, err := pb.NewWatchClient(cli.ActiveConnection()).Watch(slowCtx)
		if err != nil {
			t.Fatalf("slow watcher: %v", err)
		}
		create := &pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{
			Key: []byte("/bench/slow-watched/"), RangeEnd: []byte("/bench/slow-watched0"), PrevKv: true}}}
		if err := stream.Send(create); err != nil {
			t.Fatalf("slow watcher: %v", err)
		}
	}
	time.Sleep(500 * time.Millisecond)
	res.putsWithBad = timePuts("/bench/slow-watched/")
	t.Logf("puts alone %+v, with %d watchers that never read %+v", res.putsAlone, o.slowWatchers, res.putsWithBad)
	return res
}

// runtimeSettle gives the member a moment to finish allocating (and its
// runtime to return freed memory) before RSS is read.
func runtimeSettle() { time.Sleep(time.Second) }

// rss is the resident set size of pid, in bytes.
func rss(t testing.TB, pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("%v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatalf("VmRSS %q: %v", line, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

func percentiles(d []time.Duration) latencies {
	if len(d) == 0 {
		return latencies{}
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	at := func(q float64) time.Duration { return d[min(len(d)-1, int(q*float64(len(d))))] }
	return latencies{p50: at(0.5), p99: at(0.99), max: d[len(d)-1]}
}

func medianOf(rs []result, f func(result) float64) float64 {
	var v []float64
	for _, r := range rs {
		v = append(v, f(r))
	}
	if len(v) == 0 {
		return math.NaN()
	}
	sort.Float64s(v)
	return v[len(v)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func report(w io.Writer, o options, binaries map[string]string, results map[string][]result) {
	fmt.Fprintf(w, "## Watch delivery and slow watchers: edgekv and etcd\n\n")
	fmt.Fprintf(w, "3 members on 127.0.0.1; watchers on one member (one key, over at most %d gRPC streams), "+
		"%d puts at %d/s through another member; %d rounds alternating edgekv and etcd, medians over the rounds.\n\n",
		o.streams, o.puts, o.rate, o.rounds)
	fmt.Fprintf(w, "- latency: from just before a put is sent to the event's arrival at a watcher, over every watcher and put\n")
	fmt.Fprintf(w, "- memory: growth of the watched member's VmRSS from before the watchers were created to after, divided by their number\n")
	fmt.Fprintf(w, "- edgekv: `%s`; etcd: `%s`\n\n", binaries["edgekv"], binaries["etcd"])
	fmt.Fprintln(w, "| watchers | metric | edgekv | etcd | ratio |")
	fmt.Fprintln(w, "|---:|---|---:|---:|---:|")
	row := func(n int, name string, f func(result) float64, digits int) {
		e, d := medianOf(results["edgekv"], f), medianOf(results["etcd"], f)
		fmt.Fprintf(w, "| %d | %s | %.*f | %.*f | %s |\n", n, name, digits, e, digits, d, ratio(e, d))
	}
	for _, n := range o.counts {
		row(n, "put-to-event p50 (ms)", func(r result) float64 { return ms(r.delivery[n].p50) }, 2)
		row(n, "put-to-event p99 (ms)", func(r result) float64 { return ms(r.delivery[n].p99) }, 2)
		row(n, "put-to-event max (ms)", func(r result) float64 { return ms(r.delivery[n].max) }, 2)
		row(n, "memory per watcher (bytes)", func(r result) float64 { return r.bytesPerW[n] }, 0)
		row(n, "events not delivered", func(r result) float64 { return float64(r.missed[n]) }, 0)
	}
	fmt.Fprintf(w, "\n%d sequential puts of %d-byte values from one client, without and then with %d watchers (one connection each) that never read, on the keys being put:\n\n",
		o.slowPuts, o.valSize, o.slowWatchers)
	fmt.Fprintln(w, "| metric | edgekv | etcd | ratio |")
	fmt.Fprintln(w, "|---|---:|---:|---:|")
	for _, m := range []struct {
		name string
		f    func(result) float64
	}{
		{"put p50 alone (ms)", func(r result) float64 { return ms(r.putsAlone.p50) }},
		{"put p50 with slow watchers (ms)", func(r result) float64 { return ms(r.putsWithBad.p50) }},
		{"put p99 alone (ms)", func(r result) float64 { return ms(r.putsAlone.p99) }},
		{"put p99 with slow watchers (ms)", func(r result) float64 { return ms(r.putsWithBad.p99) }},
		{"slowdown of p50 (with / alone)", func(r result) float64 { return float64(r.putsWithBad.p50) / float64(r.putsAlone.p50) }},
	} {
		e, d := medianOf(results["edgekv"], m.f), medianOf(results["etcd"], m.f)
		fmt.Fprintf(w, "| %s | %.2f | %.2f | %s |\n", m.name, e, d, ratio(e, d))
	}
}

func ratio(a, b float64) string {
	if b == 0 || math.IsNaN(a) || math.IsNaN(b) {
		return "-"
	}
	return fmt.Sprintf("%.2f", a/b)
}
