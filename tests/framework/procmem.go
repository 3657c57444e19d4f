package framework

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ProcMem is a process's memory from /proc/PID/status (Linux), in bytes:
// RSS is its resident set now (VmRSS), HWM the largest it has been since the
// process started (VmHWM).
type ProcMem struct {
	RSS, HWM int64
}

// ReadProcMem reads VmRSS and VmHWM from /proc/PID/status.
func ReadProcMem(pid int) (ProcMem, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ProcMem{}, err
	}
	return parseProcMem(data)
}

func parseProcMem(status []byte) (ProcMem, error) {
	var pm ProcMem
	fields := map[string]*int64{"VmRSS:": &pm.RSS, "VmHWM:": &pm.HWM}
	seen := 0
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		// "VmRSS:	   12345 kB"
		f := strings.Fields(sc.Text())
		p := fields[firstOr(f)]
		if p == nil {
			continue
		}
		if len(f) != 3 || f[2] != "kB" {
			return ProcMem{}, fmt.Errorf("status line %q: want NAME: N kB", sc.Text())
		}
		kb, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return ProcMem{}, fmt.Errorf("status line %q: %w", sc.Text(), err)
		}
		*p = kb << 10
		seen++
	}
	if seen != len(fields) {
		return ProcMem{}, fmt.Errorf("status: found %d of VmRSS and VmHWM (a kernel thread, or an exited process?)", seen)
	}
	return pm, nil
}

func firstOr(f []string) string {
	if len(f) == 0 {
		return ""
	}
	return f[0]
}
