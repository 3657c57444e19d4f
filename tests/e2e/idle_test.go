package e2e

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/edgekv/edgekv/tests/framework"
)

// idleSecondsEnv overrides how long TestIdle watches an idle cluster.
const idleSecondsEnv = "EDGEKV_IDLE_SECONDS"

// TestIdle_ThreeMemberClusterWritesNothingToDisk starts 3 members, writes a
// little, waits until every member has applied everything, and then watches
// the idle cluster for 60 s (EDGEKV_IDLE_SECONDS): edgekv must not write a
// byte to disk in that time, going by write_bytes in /proc/PID/io, which
// counts what a process sends towards storage (page-cache pages it dirties
// and direct I/O). A flash card wears out from what a store writes while
// nothing happens. etcd makes no such promise, so its numbers are only
// logged. As a control, one put after the idle period must then show up in
// write_bytes of every member, for both servers: the counter is live for
// these processes, and 0 means nothing was written.
//
// The two subtests run in parallel, so the test takes one idle period.
func TestIdle_ThreeMemberClusterWritesNothingToDisk(t *testing.T) {
	idle := 60 * time.Second
	if v := os.Getenv(idleSecondsEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("%s=%q: want a positive number of seconds", idleSecondsEnv, v)
		}
		idle = time.Duration(n) * time.Second
	}
	forEachServer(t, func(t *testing.T, s server) {
		t.Parallel()
		c := framework.StartCluster(t, s.build(t), 3)
		cli := c.ClientAll(t)
		for i := 0; i < 10; i++ {
			put(t, cli, fmt.Sprintf("%sidle/%d", prefix, i), fmt.Sprintf("v%d", i))
		}
		index := waitSettled(t, c)
		t.Logf("%s: every member has applied index %d; waiting 2 s more", s.name, index)
		time.Sleep(2 * time.Second)

		type sample struct {
			pid   int
			io    framework.ProcIO
			files map[string]string
		}
		measure := func() []sample {
			var out []sample
			for _, m := range c.Members {
				pid, err := m.ServerPID()
				if err != nil {
					t.Fatalf("%s: %v", m.Name, err)
				}
				pio, err := framework.ReadProcIO(pid)
				if err != nil {
					t.Fatalf("%s: %v", m.Name, err)
				}
				out = append(out, sample{pid: pid, io: pio, files: listFiles(t, m.DataDir)})
			}
			return out
		}
		before := measure()
		t.Logf("%s: idle for %v", s.name, idle)
		time.Sleep(idle)
		after := measure()

		var total int64
		for i, m := range c.Members {
			if after[i].pid != before[i].pid {
				t.Fatalf("%s: pid changed from %d to %d while idle: it restarted", m.Name, before[i].pid, after[i].pid)
			}
			d := after[i].io.Sub(before[i].io)
			total += d.WriteBytes
			t.Logf("%s %s (pid %d), %v idle: write_bytes %d, cancelled_write_bytes %d, syscw %d, wchar %d",
				s.name, m.Name, after[i].pid, idle, d.WriteBytes, d.CancelledWriteBytes, d.SyscW, d.WChar)
			if d.WriteBytes != 0 {
				t.Logf("%s %s: files changed while idle: %s", s.name, m.Name, changedFiles(before[i].files, after[i].files))
			}
			if s.name == edgekv.name && d.WriteBytes != 0 {
				t.Errorf("%s: wrote %d bytes to disk in %v of idle; want 0", m.Name, d.WriteBytes, idle)
			}
		}
		t.Logf("%s: 3 members wrote %d bytes in %v of idle (%.0f bytes/s per member)",
			s.name, total, idle, float64(total)/idle.Seconds()/3)
		if s.name != edgekv.name {
			t.Logf("%s: not asserted; only edgekv promises an idle cluster does not write", s.name)
		}

		// The control: a put is seen by the counter of every member.
		put(t, cli, prefix+"idle/control", "after the idle period")
		deadline := time.Now().Add(10 * time.Second)
		for i, m := range c.Members {
			for {
				pio, err := framework.ReadProcIO(after[i].pid)
				if err != nil {
					t.Fatalf("%s: %v", m.Name, err)
				}
				if d := pio.Sub(after[i].io).WriteBytes; d > 0 {
					t.Logf("%s %s: one put after the idle period: write_bytes +%d", s.name, m.Name, d)
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: write_bytes did not grow within 10 s of a put: the counter does not see this process's writes", m.Name)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	})
}

// waitSettled waits until every member reports the same Raft index and
// applied index, twice in a row 200 ms apart, and returns that index.
func waitSettled(t *testing.T, c *framework.Cluster) uint64 {
	t.Helper()
	clients := make([]*clientv3.Client, len(c.Members))
	for i := range c.Members {
		clients[i] = c.Client(t, i)
		defer clients[i].Close()
	}
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for {
		var (
			states  []string
			applied uint64
		)
		same := true
		for i, m := range c.Members {
			ctx, cancel := context.WithTimeout(context.Background(), framework.OpTimeout)
			st, err := clients[i].Status(ctx, m.ClientURL)
			cancel()
			if err != nil {
				same = false
				states = append(states, fmt.Sprintf("%s: %v", m.Name, err))
				continue
			}
			if i == 0 {
				applied = st.RaftAppliedIndex
			}
			if st.RaftAppliedIndex != applied || st.RaftIndex != applied {
				same = false
			}
			states = append(states, fmt.Sprintf("%s: index %d applied %d", m.Name, st.RaftIndex, st.RaftAppliedIndex))
		}
		now := strings.Join(states, ", ")
		if same && now == last {
			return applied
		}
		last = now
		if time.Now().After(deadline) {
			t.Fatalf("members did not settle on one applied index within 30 s: %s", now)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// listFiles maps every file under dir to its size and modification time.
func listFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	if err := walkFiles(dir, func(path string, info os.FileInfo) {
		files[strings.TrimPrefix(path, dir+"/")] = fmt.Sprintf("%d bytes, modified %s", info.Size(), info.ModTime().Format("15:04:05.000"))
	}); err != nil {
		t.Fatalf("list %s: %v", dir, err)
	}
	return files
}

// changedFiles describes the files that appeared, vanished, or changed size
// or modification time between two listings.
func changedFiles(before, after map[string]string) string {
	var out []string
	for f, a := range after {
		if b, ok := before[f]; !ok {
			out = append(out, fmt.Sprintf("%s new (%s)", f, a))
		} else if a != b {
			out = append(out, fmt.Sprintf("%s (%s, was %s)", f, a, b))
		}
	}
	for f := range before {
		if _, ok := after[f]; !ok {
			out = append(out, f+" removed")
		}
	}
	if len(out) == 0 {
		return "none by size or modification time (rewritten in place within the clock's resolution, or outside the data dir)"
	}
	sort.Strings(out)
	return strings.Join(out, "; ")
}
