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
// process started (VmHWM). Of RSS, Anon is the process's own memory (heap,
// stacks: RssAnon) and File the pages of mapped files, its binary above all
// (RssFile), which the kernel may map whole at start and can drop and
// share.
type ProcMem struct {
	RSS, HWM, Anon, File int64
}

// ReadProcMem reads VmRSS, VmHWM, RssAnon and RssFile from /proc/PID/status.
func ReadProcMem(pid int) (ProcMem, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ProcMem{}, err
	}
	return parseProcMem(data)
}

func parseProcMem(status []byte) (ProcMem, error) {
	var pm ProcMem
	fields := map[string]*int64{"VmRSS:": &pm.RSS, "VmHWM:": &pm.HWM, "RssAnon:": &pm.Anon, "RssFile:": &pm.File}
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
		return ProcMem{}, fmt.Errorf("status: found %d of VmRSS, VmHWM, RssAnon and RssFile (a kernel thread, or an exited process?)", seen)
	}
	return pm, nil
}

func firstOr(f []string) string {
	if len(f) == 0 {
		return ""
	}
	return f[0]
}
