package torture

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgekv/edgekv/tests/framework"
)

// nemesis injects one kind of fault, for real, again and again until ctx
// ends, and counts the faults that fired. Every fault is healed before
// the next one and when ctx ends: the cluster is whole again afterwards.
type nemesis struct {
	name string
	// netns: the members run in network namespaces of their own
	// (framework.WithNetns), whose links the nemesis cuts or makes
	// lossy; the scenario is skipped where namespaces are not available
	// (not root, no ip or iptables), except under CI.
	netns bool
	// faultEnv, if set: the members are edgekv built with the tag
	// edgekv_faults (cmd/edgekv/faults_on.go) and run with these
	// environment variables ("NAME=value"): EDGEKV_FAULT_DELAY makes
	// transport.Faults delay, reorder and drop every outgoing Raft
	// message, EDGEKV_FAULT_DISK puts the WAL on an fsx.FaultFS whose
	// syncs fail after SIGUSR2, EDGEKV_FAULT_POWER on an fsx.PowerFS that
	// loses its unsynced changes on SIGPWR. Servers without such a build
	// skip the scenario.
	faultEnv []string
	// run injects faults until ctx ends; it returns how many fired.
	run func(ctx context.Context, t testing.TB, c *framework.Cluster, rng *rand.Rand) int
}

// sleep waits d or until ctx ends; it reports whether the whole d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

var nemeses = []nemesis{
	{name: "none", run: func(ctx context.Context, _ testing.TB, _ *framework.Cluster, _ *rand.Rand) int {
		<-ctx.Done()
		return 0
	}},
	{name: "kill-one", run: killOneEvery(func(_ testing.TB, c *framework.Cluster, rng *rand.Rand) int {
		return rng.IntN(len(c.Members))
	})},
	{name: "kill-leader", run: killOneEvery(func(t testing.TB, c *framework.Cluster, _ *rand.Rand) int {
		return c.Leader(t)
	})},
	{name: "kill-all", run: func(ctx context.Context, t testing.TB, c *framework.Cluster, _ *rand.Rand) int {
		n := 0
		for sleep(ctx, 1500*time.Millisecond) {
			c.KillAll()
			n++
			time.Sleep(300 * time.Millisecond)
			for i := range c.Members {
				c.Restart(i)
			}
			c.WaitReady(t)
		}
		return n
	}},
	{name: "pause-leader", run: func(ctx context.Context, t testing.TB, c *framework.Cluster, _ *rand.Rand) int {
		n := 0
		for sleep(ctx, 800*time.Millisecond) {
			pause(ctx, t, c, c.Leader(t), 2*time.Second)
			n++
			c.WaitReady(t)
		}
		return n
	}},
	{name: "pause-follower", run: func(ctx context.Context, t testing.TB, c *framework.Cluster, rng *rand.Rand) int {
		n := 0
		for sleep(ctx, 800*time.Millisecond) {
			l := c.Leader(t)
			i := (l + 1 + rng.IntN(len(c.Members)-1)) % len(c.Members)
			pause(ctx, t, c, i, 2*time.Second)
			n++
			c.WaitReady(t)
		}
		return n
	}},
	// The network faults below run the members in network namespaces and
	// drop peer packets with iptables inside them; the test's clients
	// still reach every member (one bound to a cut-off member sees its
	// operations time out: unknown outcomes).
	{name: "partition-leader", netns: true, run: cutEvery(func(t testing.TB, c *framework.Cluster, _ *rand.Rand) {
		c.Isolate(c.Leader(t))
	})},
	{name: "partition-half", netns: true, run: cutEvery(func(_ testing.TB, c *framework.Cluster, rng *rand.Rand) {
		// With 3 members a 1 | 2 split; with more, a random minority.
		side := rng.Perm(len(c.Members))[:1+rng.IntN((len(c.Members)-1)/2)]
		c.Partition(side...)
	})},
	{name: "partition-bridge", netns: true, run: cutEvery(func(t testing.TB, c *framework.Cluster, rng *rand.Rand) {
		// The leader loses one follower, which still hears the other:
		// that one is the bridge. (A cut between two followers changes
		// nothing while the leader lives.)
		l := c.Leader(t)
		c.Cut(l, (l+1+rng.IntN(len(c.Members)-1))%len(c.Members))
	})},
	{name: "flapping", netns: true, run: func(ctx context.Context, t testing.TB, c *framework.Cluster, rng *rand.Rand) int {
		// Every 100-500 ms a random link flips: cut if it was up, healed
		// if it was cut. Several links may be down at once, so members
		// are isolated and bridged now and then.
		n, m := 0, len(c.Members)
		for sleep(ctx, between(rng, 100*time.Millisecond, 500*time.Millisecond)) {
			i := rng.IntN(m)
			j := (i + 1 + rng.IntN(m-1)) % m
			if slices.Contains(c.CutLinks(), [2]int{min(i, j), max(i, j)}) {
				c.Heal(i, j)
			} else {
				c.Cut(i, j)
				n++
			}
		}
		c.HealAll()
		c.WaitReady(t)
		return n
	}},
	{name: "packet-loss", netns: true, run: func(ctx context.Context, t testing.TB, c *framework.Cluster, rng *rand.Rand) int {
		// Every member drops 20-40% of the packets from the other
		// members for 1-2 s, a new level each time, with 0.5 s without
		// loss in between (etcd, on TCP, hardly serves anything while
		// the loss lasts).
		n := 0
		for sleep(ctx, 500*time.Millisecond) {
			c.SetPeerLoss(0.2 + 0.2*rng.Float64())
			n++
			sleep(ctx, between(rng, time.Second, 2*time.Second))
			c.SetPeerLoss(0)
		}
		c.HealAll()
		c.WaitReady(t)
		return n
	}},
	// edgekv's own fault injection (transport.Faults): every outgoing
	// Raft message delayed by 1-30 ms, so that they overtake each other,
	// and 3% dropped; on for 1-3 s, off for 0.5-1 s (SIGUSR1 toggles it),
	// off at the end. Its faults are the messages delayed or dropped.
	{name: "delay-reorder", faultEnv: []string{"EDGEKV_FAULT_DELAY=1ms-30ms,drop=0.03"}, run: func(ctx context.Context, t testing.TB, c *framework.Cluster, rng *rand.Rand) int {
		on := true
		for {
			hold := between(rng, time.Second, 3*time.Second)
			if !on {
				hold = between(rng, 500*time.Millisecond, time.Second)
			}
			if !sleep(ctx, hold) {
				break
			}
			toggleFaults(t, c)
			on = !on
		}
		if on {
			toggleFaults(t, c)
		}
		time.Sleep(1100 * time.Millisecond) // the members log their counts every second
		// Delayed, dropped, passed on untouched.
		var sum [3]uint64
		for _, m := range c.Members {
			n, ok := faultCounts(m.LogPath)
			if !ok {
				t.Fatalf("%s logged no fault injection counts: not a build with the tag edgekv_faults, or EDGEKV_FAULT_DELAY not set?", m.Name)
			}
			for k := range sum {
				sum[k] += n[k]
			}
		}
		t.Logf("delay-reorder: the members delayed %d Raft messages, dropped %d, passed %d on untouched while off", sum[0], sum[1], sum[2])
		return int(sum[0] + sum[1])
	}},
	// A failing disk: every 1.5-2.5 s, the leader and a follower in
	// turn get SIGUSR2, after which every sync of their WAL fails with
	// EIO (fsx.FaultFS, EDGEKV_FAULT_DISK=1 in a build with the tag
	// edgekv_faults). The member must stop on its own (fail-stop) with
	// the fatal line in its log; it is restarted, healthy (the variable
	// alone fails nothing), and the cluster waited for. Its faults are
	// the members stopped that way.
	{name: "disk-fault", faultEnv: []string{"EDGEKV_FAULT_DISK=1"}, run: func(ctx context.Context, t testing.TB, c *framework.Cluster, rng *rand.Rand) int {
		n := 0
		for sleep(ctx, between(rng, 1500*time.Millisecond, 2500*time.Millisecond)) {
			// The member fails at its next sync, which needs writes:
			// leave the workload time to send some.
			if dl, ok := ctx.Deadline(); ok && time.Until(dl) < time.Second {
				break
			}
			i, role := c.Leader(t), "leader"
			if n%2 == 1 {
				i, role = (i+1+rng.IntN(len(c.Members)-1))%len(c.Members), "follower"
			}
			failDisk(t, c, i, role)
			n++
			c.Restart(i)
			c.WaitReady(t)
		}
		return n
	}},
	// Power loss: every 1.5-2.5 s the leader, a follower, or every
	// member at once gets SIGPWR (fsx.PowerFS, EDGEKV_FAULT_POWER=1 in a
	// build with the tag edgekv_faults): at its next WAL sync with
	// something to make durable, the WAL's unsynced writes, creates,
	// renames and removes are undone on disk, a random part of them and
	// at least one that sync covered, a write maybe torn at a sector,
	// and the member kills itself, as a machine losing power stops. It
	// restarts from what is left. Its faults are the power losses that
	// dropped something.
	{name: "power-loss", faultEnv: []string{"EDGEKV_FAULT_POWER=1"}, run: func(ctx context.Context, t testing.TB, c *framework.Cluster, rng *rand.Rand) int {
		n, round := 0, 0
		for sleep(ctx, between(rng, 1500*time.Millisecond, 2500*time.Millisecond)) {
			var victims []int
			switch l := c.Leader(t); round % 3 {
			case 0:
				victims = []int{l}
			case 1:
				victims = []int{(l + 1 + rng.IntN(len(c.Members)-1)) % len(c.Members)}
			default:
				for i := range c.Members {
					victims = append(victims, i)
				}
			}
			round++
			n += powerLoss(t, c, victims)
			for _, i := range victims {
				c.Restart(i)
			}
			c.WaitReady(t)
		}
		return n
	}},
}

// powerLossExit bounds how long a member may take to lose its power after
// SIGPWR: at its next sync, or 2 s later if it is idle.
const powerLossExit = 10 * time.Second

// powerLoss cuts the power of the members victims (SIGPWR to a build with
// the tag edgekv_faults run with EDGEKV_FAULT_POWER=1), waits until each
// has stopped, and requires the power-loss line in its log. It returns how
// many lost unsynced changes.
func powerLoss(t testing.TB, c *framework.Cluster, victims []int) int {
	t.Helper()
	logStart := make([]int64, len(victims))
	for k, i := range victims {
		m := c.Members[i]
		logStart[k] = logSize(m)
		pid, err := m.ServerPID()
		if err == nil {
			err = syscall.Kill(pid, syscall.SIGPWR)
		}
		if err != nil {
			t.Fatalf("cutting the power of %s: %v", m.Name, err)
		}
	}
	sent := time.Now()
	n := 0
	var report []string
	for k, i := range victims {
		m := c.Members[i]
		for c.Running(i) {
			if time.Since(sent) > powerLossExit {
				t.Fatalf("%s still running %v after SIGPWR (log: %s)", m.Name, powerLossExit, m.LogPath)
			}
			time.Sleep(10 * time.Millisecond)
		}
		logged := logSince(t, m, logStart[k])
		line := powerLossLine.FindStringSubmatch(logged)
		if line == nil {
			t.Fatalf("%s stopped after SIGPWR but its log lacks the power-loss line: not a build with the tag edgekv_faults, or EDGEKV_FAULT_POWER not set? (log: %s)", m.Name, m.LogPath)
		}
		if line[1] != "0" {
			n++
		}
		report = append(report, fmt.Sprintf("%s lost %s changes (%s bytes) and kept %s", m.Name, line[1], line[4], line[2]))
	}
	t.Logf("power-loss: %s", strings.Join(report, "; "))
	return n
}

// powerLossLine is what a member logs as its power fails
// (cmd/edgekv/faults_on.go): the unsynced changes lost and kept, the torn
// writes, the bytes lost.
var powerLossLine = regexp.MustCompile(`msg="POWER LOSS: [^"]*" lost=(\d+) kept=(\d+) torn=(\d+) bytes_lost=(\d+)`)

// logSize is how long member m's log is now.
func logSize(m *framework.Member) int64 {
	if fi, err := os.Stat(m.LogPath); err == nil {
		return fi.Size()
	}
	return 0
}

// logSince returns what member m logged after its log was start bytes
// long.
func logSince(t testing.TB, m *framework.Member, start int64) string {
	t.Helper()
	data, err := os.ReadFile(m.LogPath)
	if err != nil {
		t.Fatalf("log of %s: %v", m.Name, err)
	}
	return string(data[min(start, int64(len(data))):])
}

// diskFaultExit bounds how long a member may go on after its WAL's syncs
// start failing; with the workload running it syncs within milliseconds.
const diskFaultExit = 10 * time.Second

// failDisk makes every WAL sync of member i fail (SIGUSR2 to a build with
// the tag edgekv_faults run with EDGEKV_FAULT_DISK=1) and requires that it
// exits on its own within diskFaultExit, with status 1 and core/server's
// fatal line, naming the EIO, in its log.
func failDisk(t testing.TB, c *framework.Cluster, i int, role string) {
	t.Helper()
	m := c.Members[i]
	logStart := logSize(m)
	pid, err := m.ServerPID()
	if err == nil {
		err = syscall.Kill(pid, syscall.SIGUSR2)
	}
	if err != nil {
		t.Fatalf("failing the disk of %s: %v", m.Name, err)
	}
	sent := time.Now()
	for c.Running(i) {
		if time.Since(sent) > diskFaultExit {
			t.Fatalf("member went on after a failed fsync: %s (%s) still running %v after its WAL's syncs started failing (log: %s)", m.Name, role, diskFaultExit, m.LogPath)
		}
		time.Sleep(10 * time.Millisecond)
	}
	took := time.Since(sent)
	logged := logSince(t, m, logStart)
	for _, want := range []string{diskFaultOn, diskFaultFatal, diskFaultEIO, diskFaultExitLine} {
		if !strings.Contains(logged, want) {
			t.Fatalf("%s (%s) stopped %v after SIGUSR2 but its log lacks %q: not a build with the tag edgekv_faults, EDGEKV_FAULT_DISK not set, or not a fail-stop (log: %s)", m.Name, role, took.Round(time.Millisecond), want, m.LogPath)
		}
	}
	t.Logf("disk-fault: %s (%s) stopped on its own %v after its WAL's syncs started failing", m.Name, role, took.Round(time.Millisecond))
}

// What a member logs when its disk fails (cmd/edgekv/faults_on.go,
// core/server.Config.Fatal) and what the framework logs when it exits.
const (
	diskFaultOn       = "every sync of the write-ahead log fails with EIO from now on"
	diskFaultFatal    = `msg="fatal error; stopping the member so that no write is lost silently"`
	diskFaultEIO      = "input/output error" // EIO, in the fatal line's err
	diskFaultExitLine = "exit: exit status 1"
)

// toggleFaults turns the fault injection of every member off if it was on,
// on if it was off (SIGUSR1 to a build with the tag edgekv_faults; it
// would kill any other).
func toggleFaults(t testing.TB, c *framework.Cluster) {
	t.Helper()
	for _, m := range c.Members {
		pid, err := m.ServerPID()
		if err == nil {
			err = syscall.Kill(pid, syscall.SIGUSR1)
		}
		if err != nil {
			t.Fatalf("toggling the faults of %s: %v", m.Name, err)
		}
	}
}

// between returns a random duration in [lo, hi).
func between(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rng.Int64N(int64(hi-lo)))
}

// cutEvery cuts links as cut decides, holds the cut 2-3 s, heals every
// link and waits for the cluster, over and over; it counts the cuts.
func cutEvery(cut func(t testing.TB, c *framework.Cluster, rng *rand.Rand)) func(context.Context, testing.TB, *framework.Cluster, *rand.Rand) int {
	return func(ctx context.Context, t testing.TB, c *framework.Cluster, rng *rand.Rand) int {
		n := 0
		for sleep(ctx, 800*time.Millisecond) {
			cut(t, c, rng)
			n++
			sleep(ctx, between(rng, 2*time.Second, 3*time.Second))
			c.HealAll()
			healed := time.Now()
			c.WaitReady(t)
			t.Logf("every member served a linearizable read %v after the heal", time.Since(healed).Round(time.Millisecond))
		}
		return n
	}
}

// faultCounts returns the last counts of delayed, dropped and passed
// messages that a member built with edgekv_faults logged
// (cmd/edgekv/faults_on.go).
func faultCounts(logPath string) (counts [3]uint64, ok bool) {
	data, err := os.ReadFile(logPath)
	if err != nil {
		return counts, false
	}
	for _, m := range faultCountsLine.FindAllStringSubmatch(string(data), -1) {
		for k := range counts {
			counts[k], _ = strconv.ParseUint(m[k+1], 10, 64) // \d+ parses
		}
		ok = true
	}
	return counts, ok
}

var faultCountsLine = regexp.MustCompile(`msg="fault injection" delayed=(\d+) dropped=(\d+) passed=(\d+)`)

// killOneEvery SIGKILLs the member victim picks, restarts it a second
// later, and waits for the cluster, over and over.
func killOneEvery(victim func(t testing.TB, c *framework.Cluster, rng *rand.Rand) int) func(context.Context, testing.TB, *framework.Cluster, *rand.Rand) int {
	return func(ctx context.Context, t testing.TB, c *framework.Cluster, rng *rand.Rand) int {
		n := 0
		for sleep(ctx, 800*time.Millisecond) {
			i := victim(t, c, rng)
			c.Kill(i)
			n++
			sleep(ctx, time.Second)
			c.Restart(i)
			c.WaitReady(t)
		}
		return n
	}
}

// pause stops member i (SIGSTOP) for d (less if ctx ends), then lets it
// go on (SIGCONT).
func pause(ctx context.Context, t testing.TB, c *framework.Cluster, i int, d time.Duration) {
	t.Helper()
	pid, err := c.Members[i].ServerPID()
	if err != nil {
		t.Fatalf("pause %s: %v", c.Members[i].Name, err)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP %s: %v", c.Members[i].Name, err)
	}
	sleep(ctx, d)
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatalf("SIGCONT %s: %v", c.Members[i].Name, err)
	}
}

func nemesisByName(name string) (nemesis, error) {
	for _, n := range nemeses {
		if n.name == name {
			return n, nil
		}
	}
	return nemesis{}, fmt.Errorf("no nemesis %q", name)
}
