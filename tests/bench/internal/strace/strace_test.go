package strace

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestCountSyncs_CountsCallsEnteredInTheWindowOnce(t *testing.T) {
	log := `6256  1795335453.100000 fsync(3) = 0
6299  1795335453.626632 fdatasync(3)    = 0
6256  1795335453.627644 fsync(3 <unfinished ...>
6299  1795335453.627716 +++ exited with 0 +++
6256  1795335453.628001 <... fsync resumed>) = 0
12 1795335453.700000 sync_file_range(4, 0, 4096, SYNC_FILE_RANGE_WRITE) = 0
1795335453.800000 fdatasync(5) = 0
6256  1795335453.900000 --- SIGURG {si_signo=SIGURG, si_code=SI_TKILL} ---
6256  1795335454.500000 fdatasync(3) = 0
`
	path := filepath.Join(t.TempDir(), "strace")
	require.NoError(t, os.WriteFile(path, []byte(log), 0o644))
	start := time.UnixMicro(1795335453_200000)
	end := time.UnixMicro(1795335454_000000)
	counts, err := CountSyncs(path, start, end)
	require.NoError(t, err)
	require.Equal(t, map[string]int{"fsync": 1, "fdatasync": 2, "sync_file_range": 1}, counts)
}

func TestDelayArgs_InjectADelayBeforeEveryFsyncAndFdatasync(t *testing.T) {
	got := strings.Join(DelayArgs("strace", 20*time.Millisecond), " ")
	want := "strace --seccomp-bpf -f -qq -o /dev/null -e trace=fdatasync,fsync,sigaltstack " +
		"-e inject=fdatasync:delay_enter=20000 -e inject=fsync:delay_enter=20000"
	require.Equal(t, want, got)
}

// Both wrappers stop a thread only at the calls they trace (threadStart):
// a thread that makes 20,000 system calls it does not trace costs strace a
// handful of stops (its wait4 calls, counted by an outer strace), not two
// per call.
func TestWrappers_StopThreadsOnlyAtTracedCalls(t *testing.T) {
	straceBin, err := Path()
	if err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	prog := filepath.Join(dir, "syscalls")
	build := exec.Command("go", "build", "-o", prog, "./testdata/syscalls")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	const calls = 20000
	for name, wrapper := range map[string][]string{
		"DelayArgs": DelayArgs(straceBin, time.Millisecond),
		"CountArgs": CountArgs(straceBin, filepath.Join(dir, "log")),
	} {
		t.Run(name, func(t *testing.T) {
			summary := filepath.Join(dir, name+".summary")
			// The outer strace does not follow forks: it counts the
			// inner one's calls.
			args := append([]string{"-c", "-o", summary}, wrapper...)
			run := exec.Command(straceBin, append(args, prog, strconv.Itoa(calls))...)
			if out, err := run.CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", run, err, out)
			}
			waits := straceCalls(t, summary, "wait4")
			t.Logf("strace waited %d times for %d system calls", waits, calls)
			require.Less(t, waits, calls/10, "strace stopped the thread at its untraced system calls")
		})
	}
}

// straceCalls returns the calls of name in an strace -c summary.
func straceCalls(t *testing.T, path, name string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	for line := range strings.Lines(string(b)) {
		// % time, seconds, usecs/call, calls, [errors,] syscall
		f := strings.Fields(line)
		if len(f) >= 5 && f[len(f)-1] == name {
			n, err := strconv.Atoi(f[3])
			require.NoError(t, err, line)
			return n
		}
	}
	t.Fatalf("no %s in the summary:\n%s", name, b)
	return 0
}
