// Package strace runs cluster members under Debian's strace for the
// benchmarks under tests/bench: to count their sync calls from a log
// (diskwrites, compare), or to delay every sync as a slow SD card would
// (compare). It only builds command lines and reads logs; the harness
// (framework.WithMemberWrapper) runs them.
package strace

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgekv/edgekv/tests/framework"
)

// SyncCalls are the system calls counted as syncs.
var SyncCalls = []string{"fsync", "fdatasync", "sync_file_range"}

// Path returns the strace binary on $PATH, with a hint to install it when
// there is none.
func Path() (string, error) {
	p, err := exec.LookPath("strace")
	if err != nil {
		return "", fmt.Errorf("%w (apt-get install strace, or scripts/install-tools.sh strace as root)", err)
	}
	return p, nil
}

// threadStart is traced, unchanged, beside the syncs. strace --seccomp-bpf
// cannot tell whether a new thread has its filter, so it stops the thread
// at every system call, entry and exit, until the thread makes a traced one
// (strace.c, dispatch_event, TE_SECCOMP): a thread that never syncs would
// be slowed at every read, write and futex for as long as it lives, which
// neither an SD card nor a counter should do. The Go runtime calls
// sigaltstack first thing on every thread it starts (minit), in edgekv and
// in etcd alike, so each thread is stepped through a few calls only.
const threadStart = "sigaltstack"

// CountArgs is the wrapper that logs every sync call of a member and of all
// its threads, with a timestamp, to logPath, for CountSyncs. --seccomp-bpf
// stops the server only at the traced calls (see threadStart), so it slows
// syncs, not the rest.
func CountArgs(straceBin, logPath string) []string {
	return []string{straceBin, "-f", "-ttt", "--seccomp-bpf",
		"-e", "trace=" + strings.Join(SyncCalls, ",") + "," + threadStart, "-o", logPath}
}

// DelayArgs is the wrapper that makes every fsync and fdatasync of a member
// take at least delay longer (strace's fault injection, delay_enter), and
// logs nothing: a disk whose flushes are slow, like an SD card's.
// Like CountArgs, it stops a thread only at the traced calls.
func DelayArgs(straceBin string, delay time.Duration) []string {
	us := strconv.FormatInt(delay.Microseconds(), 10)
	return []string{straceBin, "--seccomp-bpf", "-f", "-qq", "-o", "/dev/null",
		"-e", "trace=fdatasync,fsync," + threadStart,
		"-e", "inject=fdatasync:delay_enter=" + us,
		"-e", "inject=fsync:delay_enter=" + us}
}

// CountSyncs counts the sync calls in an strace -f -ttt log (CountArgs) that
// were entered between start and end, by name (every name in SyncCalls is
// present). A call interrupted by another thread's is logged as
// "<unfinished ...>" when entered and "<... resumed>" when done; only the
// first is counted.
func CountSyncs(path string, start, end time.Time) (map[string]int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	from := float64(start.UnixMicro()) / 1e6
	to := float64(end.UnixMicro()) / 1e6
	counts := map[string]int{}
	for _, call := range SyncCalls {
		counts[call] = 0
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// [PID] SECONDS.MICROS call(args...) = result; the PID is padded
		// with spaces, and missing while strace traces one thread only.
		first, rest := cutField(sc.Text())
		if !strings.Contains(first, ".") {
			first, rest = cutField(rest)
		}
		ts, err := strconv.ParseFloat(first, 64)
		if err != nil || ts < from || ts > to {
			continue
		}
		name, _, ok := strings.Cut(rest, "(")
		if _, counted := counts[name]; ok && counted {
			counts[name]++
		}
	}
	return counts, sc.Err()
}

// cutField returns the first space-separated field of s and the rest after
// the spaces that follow it.
func cutField(s string) (field, rest string) {
	field, rest, _ = strings.Cut(strings.TrimLeft(s, " "), " ")
	return field, strings.TrimLeft(rest, " ")
}

// KillAndCount SIGKILLs the servers pids of c's members, which run under
// strace writing <data dir>.strace (CountArgs), so that no shutdown sync is
// counted; waits for each strace to write out its log and exit; and returns
// the fsync and fdatasync calls, and the sync_file_range calls, that the
// members entered between start and end, summed.
func KillAndCount(t testing.TB, c *framework.Cluster, pids []int, start, end time.Time) (syncs, syncFileRange float64) {
	t.Helper()
	for i, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill %s (pid %d): %v", c.Members[i].Name, pid, err)
		}
	}
	deadline := time.Now().Add(framework.DefaultStopTimeout)
	for i, m := range c.Members {
		for c.Running(i) {
			if time.Now().After(deadline) {
				t.Fatalf("strace of %s did not exit within %v of its server", m.Name, framework.DefaultStopTimeout)
			}
			time.Sleep(20 * time.Millisecond)
		}
		counts, err := CountSyncs(m.DataDir+".strace", start, end)
		if err != nil {
			t.Fatalf("%s: %v", m.Name, err)
		}
		t.Logf("%s: %v in the window", m.Name, counts)
		syncs += float64(counts["fsync"] + counts["fdatasync"])
		syncFileRange += float64(counts["sync_file_range"])
	}
	return syncs, syncFileRange
}
