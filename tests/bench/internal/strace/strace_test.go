package strace

import (
	"os"
	"path/filepath"
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
	want := "strace --seccomp-bpf -f -qq -o /dev/null -e trace=fdatasync,fsync " +
		"-e inject=fdatasync:delay_enter=20000 -e inject=fsync:delay_enter=20000"
	require.Equal(t, want, got)
}
