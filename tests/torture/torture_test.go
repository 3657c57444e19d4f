package torture

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/edgekv/edgekv/tests/framework"
)

// Parameters, from the environment (make torture sets them):
//
//	TORTURE_DURATION   load per scenario (default 6s)
//	TORTURE_SEED       seed of the workload and the nemesis (default 1)
//	TORTURE_SCENARIOS  comma-separated nemesis names (default: all)
//	TORTURE_RESULTS    file the results table is appended to
//	TORTURE_OUT        directory for the visualisation of a failed check,
//	                   and the member logs (and the watch records, if a
//	                   watch check failed) of a failed scenario (default
//	                   tests/.cache/torture)
func params(t *testing.T) (dur time.Duration, seed uint64, names []string) {
	t.Helper()
	dur = 6 * time.Second
	if v := os.Getenv("TORTURE_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("TORTURE_DURATION: %v", err)
		}
		dur = d
	}
	seed = 1
	if v := os.Getenv("TORTURE_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("TORTURE_SEED: %v", err)
		}
		seed = s
	}
	if v := os.Getenv("TORTURE_SCENARIOS"); v != "" {
		names = strings.Split(v, ",")
	} else {
		for _, n := range nemeses {
			names = append(names, n.name)
		}
	}
	return dur, seed, names
}

// netnsPrefix names the network namespaces of the network scenarios.
const netnsPrefix = "ekvt"

// clientsPerMember issue operations through each member.
const clientsPerMember = 2

// checkTimeout bounds porcupine; a check that does not finish is reported
// as such, never as a pass.
const checkTimeout = 90 * time.Second

type result struct {
	server, scenario      string
	ops, unknown, faults  int
	watch                 watchVerdict
	verdict               string
	revision              int64
	hashes                string
	checkTook, scenarioOf time.Duration
}

// TestTorture_Edgekv runs every scenario against edgekv: the workload
// through all members, and watchers on every member, while the nemesis
// injects its fault; then it checks that the history is linearizable,
// that every member ends with the same HashKV at the same revision, and
// that every watch stream equals the committed history from its start.
func TestTorture_Edgekv(t *testing.T) {
	dur, seed, names := params(t)
	runScenarios(t, "edgekv", framework.BuildEdgekv(t), names, dur, seed)
}

// TestTorture_ModelHoldsForEtcd runs the checker on real etcd, under a
// fault, to show that the model is etcd's: a correct server passes.
// TORTURE_ETCD_SCENARIOS picks the scenarios (default kill-one).
func TestTorture_ModelHoldsForEtcd(t *testing.T) {
	dur, seed, _ := params(t)
	names := []string{"kill-one"}
	if v := os.Getenv("TORTURE_ETCD_SCENARIOS"); v != "" {
		names = strings.Split(v, ",")
	}
	runScenarios(t, "etcd", framework.BuildEtcd(t), names, dur, seed)
}

// runScenarios runs the named scenarios against bin, one subtest each,
// and fails those whose verdict is not OK.
func runScenarios(t *testing.T, server, bin string, names []string, dur time.Duration, seed uint64) {
	var results []result
	for _, name := range names {
		nem, err := nemesisByName(name)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(name, func(t *testing.T) {
			r := runScenario(t, server, bin, nem, dur, seed)
			results = append(results, r)
			if r.verdict != verdictOK {
				t.Errorf("%s %s: %s", server, name, r.verdict)
			}
		})
	}
	report(t, results)
}

// TestTorture_CatchesUnsafeLocalReads runs a deliberately broken edgekv,
// which serves linearizable reads from local state, with a follower
// paused now and then: the checker must report a violation.
func TestTorture_CatchesUnsafeLocalReads(t *testing.T) {
	dur, seed, _ := params(t)
	bin := framework.BuildEdgekvTagged(t, "edgekv_unsafe_local_reads")
	nem, _ := nemesisByName("pause-follower")
	var results []result
	for attempt := range 3 {
		r := runScenario(t, "edgekv-unsafe-local-reads", bin, nem, dur, seed+uint64(attempt))
		results = append(results, r)
		if strings.HasPrefix(r.verdict, verdictViolation) {
			report(t, results)
			return
		}
	}
	report(t, results)
	t.Fatalf("the broken build passed the check %d times", len(results))
}

const (
	verdictOK        = "linearizable, hashes equal, watches hold"
	verdictViolation = "NOT LINEARIZABLE"
	verdictWatch     = "WATCH GUARANTEES BROKEN"
)

func runScenario(t *testing.T, server, bin string, nem nemesis, dur time.Duration, seed uint64) result {
	t.Helper()
	began := time.Now()
	var opts []framework.Option
	if nem.netns {
		opts = append(opts, framework.WithNetns(netnsPrefix))
	}
	if len(nem.faultEnv) > 0 {
		if server != "edgekv" {
			t.Skipf("%s: %s has no build with edgekv's fault injection", nem.name, server)
		}
		bin = framework.BuildEdgekvTagged(t, "edgekv_faults")
		opts = append(opts, framework.WithEnv(nem.faultEnv...))
	}
	opts = append(opts, framework.WithFlags("--watch-progress-notify-interval="+watchProgressEvery.String()))
	if server == "edgekv" {
		// Snapshots every second or so, so that faults meet them: taken
		// while applying goes on, installed on members that fell behind,
		// and replayed from after a crash.
		opts = append(opts, framework.WithFlags("--snapshot-count=500", "--snapshot-catchup-entries=100"))
	}
	c := framework.StartCluster(t, bin, 3, opts...)
	out := outStem(t, server, nem.name, seed)
	t.Cleanup(func() { // before the members' data dirs and logs go
		if t.Failed() {
			saveLogs(t, c, out)
		}
	})
	rec := newRecorder()
	ws := startWatchers(t, c, rec, dur)
	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	var wg sync.WaitGroup
	for i := range len(c.Members) * clientsPerMember {
		cli := framework.NewClient(t, c.Members[i%len(c.Members)].ClientURL)
		wg.Add(1)
		go func() {
			defer wg.Done()
			runClient(ctx, i, cli, rec, seed)
		}()
	}
	faults := nem.run(ctx, t, c, rand.New(rand.NewPCG(seed, 99)))
	wg.Wait()
	c.WaitReady(t)

	res := result{server: server, scenario: nem.name, faults: faults}
	res.revision, res.hashes = converge(t, c)
	ops, unknown := rec.history()
	res.ops, res.unknown = len(ops), unknown
	if len(ops) < 100 {
		t.Fatalf("%s/%s: only %d operations; the run shows nothing", server, nem.name, len(ops))
	}
	history := readHistory(t, c.ClientAll(t), res.revision)
	ops, resolved, dropped := resolveUnknown(ops, committedAt(history))
	t.Logf("%s/%s: %d unknown outcomes, %d settled from the history, %d had no effect", server, nem.name, unknown, resolved, dropped)
	res.watch = ws.check(t, history, res.revision, out)
	for _, p := range res.watch.problems {
		t.Errorf("%s/%s seed %d: watch: %s", server, nem.name, seed, p)
	}
	t.Logf("%s/%s: %d watchers, %d events checked, %d progress notifications, %d stream restarts", server, nem.name,
		res.watch.watchers, res.watch.checked, res.watch.progress, res.watch.restarts)

	start := time.Now()
	verdict, info := porcupine.CheckOperationsVerbose(kvModel, ops, checkTimeout)
	res.checkTook = time.Since(start)
	var failed []string
	switch verdict {
	case porcupine.Ok:
	case porcupine.Illegal:
		failed = append(failed, verdictViolation)
		path := out + ".html"
		if err := porcupine.VisualizePath(kvModel, info, path); err == nil {
			t.Logf("%s/%s: the history is not linearizable; see %s", server, nem.name, path)
		}
		logLongestPrefix(t, info)
	default:
		failed = append(failed, fmt.Sprintf("checker gave up after %v", checkTimeout))
	}
	if res.hashes == "" {
		failed = append(failed, "members' HashKV differ")
	}
	if len(res.watch.problems) > 0 {
		failed = append(failed, verdictWatch)
	}
	res.verdict = verdictOK
	if len(failed) > 0 {
		res.verdict = strings.Join(failed, "; ")
	}
	res.scenarioOf = time.Since(began)
	return res
}

// outStem is where a failed scenario's files go: TORTURE_OUT (default
// tests/.cache/torture) and a name saying what failed, which files extend.
func outStem(t *testing.T, server, scenario string, seed uint64) string {
	t.Helper()
	dir := os.Getenv("TORTURE_OUT")
	if dir == "" {
		dir = filepath.Join(framework.TestsDir(t), ".cache", "torture")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("TORTURE_OUT: %v", err)
	}
	return filepath.Join(dir, fmt.Sprintf("%s-%s-%d-%d", server, scenario, seed, time.Now().Unix()))
}

// saveLogs copies every member's log to out-<member>.log.
func saveLogs(t *testing.T, c *framework.Cluster, out string) {
	for _, m := range c.Members {
		data, err := os.ReadFile(m.LogPath)
		if err == nil {
			err = os.WriteFile(out+"-"+m.Name+".log", data, 0o644)
		}
		if err != nil {
			t.Logf("saving the log of %s: %v", m.Name, err)
		}
	}
	t.Logf("member logs saved as %s-m*.log", out)
}

// converge waits until every member has applied the last revision and
// returns it with the members' common HashKV, or "" if they differ.
func converge(t *testing.T, c *framework.Cluster) (int64, string) {
	t.Helper()
	all := c.ClientAll(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := all.Get(ctx, "/torture/converge")
	if err != nil {
		t.Fatalf("final revision: %v", err)
	}
	rev := r.Header.Revision
	var hashes []uint32
	for _, m := range c.Members {
		cli := framework.NewClient(t, m.ClientURL)
		for {
			g, err := cli.Get(ctx, "/torture/converge", clientv3.WithSerializable())
			if err == nil && g.Header.Revision >= rev {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("%s did not reach revision %d: %v", m.Name, rev, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		h, err := cli.HashKV(ctx, m.ClientURL, rev)
		if err != nil {
			t.Fatalf("HashKV of %s at %d: %v", m.Name, rev, err)
		}
		hashes = append(hashes, h.Hash)
	}
	for _, h := range hashes[1:] {
		if h != hashes[0] {
			t.Errorf("HashKV at revision %d differs between members: %v", rev, hashes)
			return rev, ""
		}
	}
	return rev, fmt.Sprintf("%08x", hashes[0])
}

// report logs the results table and appends it to TORTURE_RESULTS.
func report(t *testing.T, results []result) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintln(&b, "| server | scenario | operations | unknown outcomes | faults injected | final revision | HashKV | watch events checked | watch restarts | check took | verdict |")
	fmt.Fprintln(&b, "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---|")
	for _, r := range results {
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %d | %s | %d | %d | %v | %s |\n", r.server, r.scenario, r.ops, r.unknown, r.faults,
			r.revision, r.hashes, r.watch.checked, r.watch.restarts, r.checkTook.Round(time.Millisecond), r.verdict)
	}
	t.Log("\n" + b.String())
	if p := os.Getenv("TORTURE_RESULTS"); p != "" {
		f, err := os.OpenFile(p, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatalf("TORTURE_RESULTS: %v", err)
		}
		defer f.Close()
		fmt.Fprint(f, b.String())
	}
}

// logLongestPrefix logs the end of the longest linearizable prefix the
// checker found: the operation after it is where the history goes wrong.
func logLongestPrefix(t *testing.T, info porcupine.LinearizationInfo) {
	t.Helper()
	var longest []porcupine.Operation
	for _, partition := range info.PartialLinearizationsOperations() {
		for _, lin := range partition {
			if len(lin) > len(longest) {
				longest = lin
			}
		}
	}
	var b strings.Builder
	for _, op := range longest[max(0, len(longest)-15):] {
		fmt.Fprintf(&b, "  client %d [%d, %d]: %s\n", op.ClientId, op.Call, op.Return, describe(op.Input.(input), op.Output.(output)))
	}
	t.Logf("the longest linearizable prefix (%d operations) ends with:\n%s", len(longest), b.String())
}
