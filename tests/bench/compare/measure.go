package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
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

// members per cluster.
const members = 3

// server is one implementation to measure.
type server struct {
	name     string
	build    func(t testing.TB) string // the binary the clusters run
	stripped func(t testing.TB) string // the same, built stripped, for its size
	version  []string                  // arguments that print its version
}

var servers = []server{
	{"edgekv", framework.BuildEdgekv, framework.BuildEdgekvStripped, []string{"version"}},
	{"etcd", framework.BuildEtcd, framework.BuildEtcdStripped, []string{"--version"}},
}

func serverByName(name string) (server, bool) {
	for _, s := range servers {
		if s.name == name {
			return s, true
		}
	}
	return server{}, false
}

// results is everything a run measured, by server.
type results struct {
	servers  []string
	rounds   map[string][]*round
	binaries map[string]string
	versions map[string]string
	stripped map[string]int64 // bytes of the stripped binary
	meta     meta
	notes    []string // what was not measured, and why
	wall     time.Duration
}

// round is what one round measured of one server.
type round struct {
	loads     map[string]loadResult // by load id
	idleRSS   []int64               // bytes, per member; nil if not measured
	idleAnon  []int64               // of idleRSS, RssAnon
	loadedRSS []int64               // peak bytes during rssLoad, per member
	disk      *diskResult
	// time from restarting a follower to its first linearizable get; 0 if
	// not measured
	restartTerm, restartKill time.Duration
	problems                 []string // phases that failed, and why
}

func newRound() *round { return &round{loads: map[string]loadResult{}} }

// diskResult is the disk phase: committed puts, and what the members wrote
// and synced meanwhile, summed over them.
type diskResult struct {
	puts                 int64
	writeBytes           int64
	syncs, syncFileRange float64
}

// meta describes the machine and the code measured.
type meta struct {
	date                      time.Time
	cpus                      int
	cpuModel, kernel, memory  string
	goVersion, commit, dataFS string
	dataDir                   string
}

// env is what a phase needs to know.
type env struct {
	o         options
	server    string
	binary    string // the server
	benchBin  string // the load generator (edgekv)
	straceBin string // "" if strace is missing
}

// phase is one cluster's life within a round: it starts the cluster,
// measures, and its Program's cleanups stop it.
type phase struct {
	name    string
	loads   func(o options) []string // load ids it runs; the phase is skipped if none is selected
	enabled func(o options) bool     // false if a flag turned it off
	strace  bool                     // it needs strace
	run     func(ctx context.Context, t testing.TB, e env, rd *round)
}

var phases = []phase{
	{"main", func(o options) []string { return loadIDs(mainLoads(o)) }, always, false, phaseMain},
	{"disk", func(options) []string { return []string{diskLoad().id} }, always, true, phaseDisk},
	{"sd-card", func(options) []string { return loadIDs(sdLoads()) }, func(o options) bool { return o.sdDelay > 0 }, true, phaseSD},
	{"restart", func(options) []string { return []string{"restart"} }, func(o options) bool { return o.restartKeys > 0 }, false, phaseRestart},
}

func always(options) bool { return true }

func loadIDs(ls []load) []string {
	ids := make([]string, len(ls))
	for i, l := range ls {
		ids[i] = l.id
	}
	return ids
}

// measureAll builds the binaries and runs every round. On an interrupt it
// returns what it measured so far with ctx's error; on a failed build nil.
func measureAll(ctx context.Context, o options, stderr io.Writer) (*results, error) {
	res := &results{
		servers:  o.servers,
		rounds:   map[string][]*round{},
		binaries: map[string]string{},
		versions: map[string]string{},
		stripped: map[string]int64{},
	}
	straceBin, _ := strace.Path()
	var benchBin string
	err := framework.NewProgram("compare", stderr, o.dir).Run(func(t testing.TB) {
		for _, name := range o.servers {
			s, _ := serverByName(name)
			res.binaries[name] = s.build(t)
			res.versions[name] = versionOf(res.binaries[name], s.version)
			p := s.stripped(t)
			st, err := os.Stat(p)
			if err != nil {
				t.Fatalf("%v", err)
			}
			res.stripped[name] = st.Size()
		}
		benchBin = framework.BuildEdgekv(t)
		checkBench(t, benchBin)
		res.meta = collectMeta(t, o.dir)
	})
	if err != nil {
		return nil, err
	}
	for r := 1; r <= o.rounds; r++ {
		order := roundOrder(o.servers, r)
		rds := map[string]*round{}
		for _, name := range order {
			rds[name] = newRound()
			res.rounds[name] = append(res.rounds[name], rds[name])
		}
		for _, ph := range phases {
			ids := selectedIDs(o, ph.loads(o))
			if len(ids) == 0 || !ph.enabled(o) {
				continue
			}
			if ph.strace && straceBin == "" {
				if r == 1 {
					res.notes = append(res.notes, fmt.Sprintf("%s not measured: strace is not installed (scripts/install-tools.sh strace)", strings.Join(ids, ", ")))
				}
				continue
			}
			for _, name := range order {
				if ctx.Err() != nil {
					return res, ctx.Err()
				}
				e := env{o: o, server: name, binary: res.binaries[name], benchBin: benchBin, straceBin: straceBin}
				runPhase(ctx, stderr, e, ph, ids, r, rds[name])
			}
		}
	}
	return res, ctx.Err()
}

// roundOrder is the order the servers measure each phase in round r (from
// 1): every phase runs for one server and then for the other, so that a
// change in the machine's load during a round falls on both, and the
// server that goes first alternates between rounds, so that neither
// always runs first, or right after the other's cluster stopped.
func roundOrder(servers []string, r int) []string {
	k := (r - 1) % len(servers)
	return append(slices.Clone(servers[k:]), servers[:k]...)
}

func selectedIDs(o options, ids []string) []string {
	var out []string
	for _, id := range ids {
		if o.selected(id) {
			out = append(out, id)
		}
	}
	return out
}

// runPhase runs one phase in a Program of its own, so that its cluster is
// gone when it returns, whether it finished or failed. A failure is
// recorded in the round, and the loads it did not get to are marked failed.
func runPhase(ctx context.Context, stderr io.Writer, e env, ph phase, ids []string, r int, rd *round) {
	name := fmt.Sprintf("%s-round%d-%s", e.server, r, ph.name)
	var why string
	err := framework.NewProgram(name, stderr, e.o.dir).Run(func(t testing.TB) {
		ph.run(ctx, recorder{TB: t, why: &why}, e, rd)
	})
	if err == nil {
		return
	}
	if why == "" {
		why = err.Error()
	}
	rd.problems = append(rd.problems, fmt.Sprintf("%s: %s", ph.name, why))
	for _, id := range ids {
		if _, ok := rd.loads[id]; !ok && id != "restart" {
			rd.loads[id] = loadResult{failed: "not run: " + why}
		}
	}
}

// recorder keeps the message of the Fatal that ends a phase, for the report.
type recorder struct {
	testing.TB
	why *string
}

func (r recorder) Fatalf(format string, args ...any) {
	*r.why = fmt.Sprintf(format, args...)
	r.TB.Fatalf(format, args...)
}

func (r recorder) Fatal(args ...any) {
	*r.why = fmt.Sprint(args...)
	r.TB.Fatal(args...)
}

// phaseMain: idle RSS, then every main load in order, sampling RSS during
// rssLoad.
func phaseMain(ctx context.Context, t testing.TB, e env, rd *round) {
	c := framework.StartCluster(t, e.binary, members)
	pids := serverPIDs(t, c)
	sleep(ctx, t, e.o.idle)
	rd.idleRSS, rd.idleAnon = make([]int64, len(pids)), make([]int64, len(pids))
	for i, pid := range pids {
		pm, err := framework.ReadProcMem(pid)
		if err != nil {
			t.Fatalf("%s: %v", c.Members[i].Name, err)
		}
		rd.idleRSS[i], rd.idleAnon[i] = pm.RSS, pm.Anon
	}
	for _, l := range mainLoads(e.o) {
		if !e.o.selected(l.id) {
			continue
		}
		if ctx.Err() != nil {
			t.Fatalf("interrupted")
		}
		var s *rssSampler
		if l.id == rssLoad {
			s = sampleRSS(pids, 100*time.Millisecond)
		}
		rd.loads[l.id] = runLoad(ctx, t, e.benchBin, c.Endpoints(), l, e.o)
		if s != nil {
			rd.loadedRSS = s.stop()
		}
		checkRunning(t, c, l.id)
	}
}

// phaseDisk: the disk load with every member under strace counting its
// syncs, and write_bytes of /proc/PID/io, from the start of the load to
// --drain after its end (the approach of bench/diskwrites).
func phaseDisk(ctx context.Context, t testing.TB, e env, rd *round) {
	c := framework.StartCluster(t, e.binary, members, framework.WithMemberWrapper(func(m *framework.Member) []string {
		return strace.CountArgs(e.straceBin, m.DataDir+".strace")
	}))
	pids := serverPIDs(t, c)
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
	l := diskLoad()
	before := readIO()
	start := time.Now()
	lr := runLoad(ctx, t, e.benchBin, c.Endpoints(), l, e.o)
	rd.loads[l.id] = lr
	if lr.out == nil {
		t.Fatalf("disk load failed: %s", lr.failed)
	}
	sleep(ctx, t, e.o.drain)
	end := time.Now()
	after := readIO()
	d := &diskResult{puts: lr.out.Count}
	for i := range pids {
		d.writeBytes += after[i].Sub(before[i]).WriteBytes
	}
	d.syncs, d.syncFileRange = strace.KillAndCount(t, c, pids, start, end)
	t.Logf("disk: %d puts, %d bytes written, %.0f syncs, summed over the members", d.puts, d.writeBytes, d.syncs)
	rd.disk = d
}

// phaseSD: the SD-card put loads, every member under strace delaying each
// fsync and fdatasync by --sd-delay.
func phaseSD(ctx context.Context, t testing.TB, e env, rd *round) {
	c := framework.StartCluster(t, e.binary, members, framework.WithMemberWrapper(func(*framework.Member) []string {
		return strace.DelayArgs(e.straceBin, e.o.sdDelay)
	}))
	for _, l := range sdLoads() {
		if !e.o.selected(l.id) {
			continue
		}
		if ctx.Err() != nil {
			t.Fatalf("interrupted")
		}
		rd.loads[l.id] = runLoad(ctx, t, e.benchBin, c.Endpoints(), l, e.o)
		checkRunning(t, c, l.id)
	}
}

// phaseRestart fills a cluster with --restart-keys keys, then restarts a
// follower after a SIGTERM and after a SIGKILL and times each restart from
// starting the process to its first linearizable get.
func phaseRestart(ctx context.Context, t testing.TB, e env, rd *round) {
	c := framework.StartCluster(t, e.binary, members)
	start := time.Now()
	rev := fillKeys(ctx, t, c, e.o.restartKeys)
	t.Logf("restart: %d keys put in %v, revision %d", e.o.restartKeys, time.Since(start).Round(time.Millisecond), rev)
	leader := c.Leader(t)
	f := (leader + 1) % members
	waitRevision(ctx, t, c, f, rev)
	rd.restartTerm = timeRestart(ctx, t, c, f, c.Stop)
	waitRevision(ctx, t, c, f, rev)
	rd.restartKill = timeRestart(ctx, t, c, f, c.Kill)
	t.Logf("restart of %s: %v after SIGTERM, %v after SIGKILL", c.Members[f].Name, rd.restartTerm, rd.restartKill)
}

// fillKeys puts n distinct keys of keySize bytes with valSize-byte values
// through every member from 64 clients and returns the last revision.
func fillKeys(ctx context.Context, t testing.TB, c *framework.Cluster, n int) int64 {
	const workers, conns = 64, maxConns
	clis := make([]*clientv3.Client, conns)
	for i := range clis {
		clis[i] = framework.NewClient(t, c.Members[i%members].ClientURL)
	}
	val := make([]byte, valSize)
	rand.Read(val)
	var (
		next, rev atomic.Int64
		errs      atomic.Int64
		firstErr  atomic.Value
		wg        sync.WaitGroup
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cli := clis[w%conns]
			for {
				i := next.Add(1) - 1
				if i >= int64(n) || ctx.Err() != nil || errs.Load() > 100 {
					return
				}
				key := fmt.Sprintf("r%0*d", keySize-1, i)
				for try := 0; ; try++ {
					pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
					resp, err := cli.Put(pctx, key, string(val))
					cancel()
					if err == nil {
						for r := rev.Load(); resp.Header.Revision > r && !rev.CompareAndSwap(r, resp.Header.Revision); r = rev.Load() {
						}
						break
					}
					firstErr.CompareAndSwap(nil, err)
					if errs.Add(1) > 100 || ctx.Err() != nil {
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatalf("interrupted")
	}
	if errs.Load() > 100 {
		t.Fatalf("filling %d keys: more than 100 puts failed, the first: %v", n, firstErr.Load())
	}
	return rev.Load()
}

// waitRevision waits until member i has applied revision rev (a
// serializable get answers at rev or later), so that a restart does not
// time a catch-up that began before it.
func waitRevision(ctx context.Context, t testing.TB, c *framework.Cluster, i int, rev int64) {
	cli := framework.NewClient(t, c.Members[i].ClientURL)
	defer cli.Close()
	deadline := time.Now().Add(time.Minute)
	for {
		gctx, cancel := context.WithTimeout(ctx, framework.OpTimeout)
		resp, err := cli.Get(gctx, "restart-probe", clientv3.WithSerializable())
		cancel()
		if err == nil && resp.Header.Revision >= rev {
			return
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			t.Fatalf("%s did not reach revision %d within a minute: %v", c.Members[i].Name, rev, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// timeRestart stops member i with stop (c.Stop: SIGTERM, c.Kill: SIGKILL),
// starts it again and returns the time from the start to the end of its
// first successful linearizable get. It waits for the client port to accept
// before it makes a client, whose reconnect backoff would otherwise count.
func timeRestart(ctx context.Context, t testing.TB, c *framework.Cluster, i int, stop func(int)) time.Duration {
	m := c.Members[i]
	stop(i)
	start := time.Now()
	c.Restart(i)
	deadline := start.Add(2 * time.Minute)
	fail := func(format string, args ...any) {
		if !c.Running(i) {
			t.Fatalf("%s exited while restarting (log %s)", m.Name, m.LogPath)
		}
		if ctx.Err() != nil {
			t.Fatalf("interrupted")
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not serving %v after its restart: %s", m.Name, time.Since(start).Round(time.Millisecond), fmt.Sprintf(format, args...))
		}
	}
	addr := fmt.Sprintf("127.0.0.1:%d", m.ClientPort)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			break
		}
		fail("client port: %v", err)
		time.Sleep(5 * time.Millisecond)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.ClientURL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("client of %s: %v", m.Name, err)
	}
	defer cli.Close()
	for {
		gctx, cancel := context.WithTimeout(ctx, framework.OpTimeout)
		_, err := cli.Get(gctx, "restart-probe")
		cancel()
		if err == nil {
			return time.Since(start)
		}
		fail("linearizable get: %v", err)
		time.Sleep(5 * time.Millisecond)
	}
}

// serverPIDs are the members' server processes (under any wrapper).
func serverPIDs(t testing.TB, c *framework.Cluster) []int {
	pids := make([]int, len(c.Members))
	for i, m := range c.Members {
		pid, err := m.ServerPID()
		if err != nil {
			t.Fatalf("%s: %v", m.Name, err)
		}
		pids[i] = pid
	}
	return pids
}

// checkRunning fails if a member has exited: the loads after would measure
// a broken cluster.
func checkRunning(t testing.TB, c *framework.Cluster, after string) {
	for i, m := range c.Members {
		if !c.Running(i) {
			t.Fatalf("%s exited during %s (its log is shown below)", m.Name, after)
		}
	}
}

// sleep waits d, or fails if ctx is done first.
func sleep(ctx context.Context, t testing.TB, d time.Duration) {
	select {
	case <-time.After(d):
	case <-ctx.Done():
		t.Fatalf("interrupted")
	}
}

// rssSampler keeps the largest VmRSS of each process seen while it runs.
type rssSampler struct {
	pids []int
	peak []int64
	quit chan struct{}
	done chan struct{}
}

func sampleRSS(pids []int, every time.Duration) *rssSampler {
	s := &rssSampler{pids: pids, peak: make([]int64, len(pids)), quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			s.sample()
			select {
			case <-tick.C:
			case <-s.quit:
				return
			}
		}
	}()
	return s
}

func (s *rssSampler) sample() {
	for i, pid := range s.pids {
		if pm, err := framework.ReadProcMem(pid); err == nil {
			s.peak[i] = max(s.peak[i], pm.RSS)
		}
	}
}

// stop ends sampling after one last sample and returns the peaks.
func (s *rssSampler) stop() []int64 {
	close(s.quit)
	<-s.done
	s.sample()
	return s.peak
}

// versionOf is the first line binary prints when run with args.
func versionOf(binary string, args []string) string {
	out, err := exec.Command(binary, args...).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("unknown (%v)", err)
	}
	first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(first)
}

// collectMeta describes the machine and the checkout.
func collectMeta(t testing.TB, dataDir string) meta {
	m := meta{date: time.Now().UTC(), cpus: runtime.NumCPU(), goVersion: runtime.Version(), dataDir: dataDir}
	if m.dataDir == "" {
		m.dataDir = os.TempDir()
	}
	m.cpuModel = firstField("/proc/cpuinfo", "model name")
	if mem := firstField("/proc/meminfo", "MemTotal"); mem != "" {
		var kb int64
		if _, err := fmt.Sscanf(mem, "%d kB", &kb); err == nil {
			m.memory = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	ostype, _ := os.ReadFile("/proc/sys/kernel/ostype")
	release, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	m.kernel = strings.TrimSpace(string(ostype)) + " " + strings.TrimSpace(string(release))
	out, err := exec.Command("git", "-C", framework.RepoRoot(t), "describe", "--always", "--dirty", "--abbrev=12").Output()
	if err == nil {
		m.commit = strings.TrimSpace(string(out))
	} else {
		m.commit = "unknown"
	}
	if out, err := exec.Command("stat", "-f", "-c", "%T", m.dataDir).Output(); err == nil {
		m.dataFS = strings.TrimSpace(string(out))
	}
	return m
}

// firstField is the value of the first "name : value" line of a /proc file.
func firstField(path, name string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
