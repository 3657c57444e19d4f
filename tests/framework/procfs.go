package framework

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ProcIO is a process's I/O accounting from /proc/PID/io (Linux), summed over
// its threads. WriteBytes is what it caused to be sent to the storage layer
// (pages it dirtied, counted when dirtied); WChar and SyscW count every write
// system call, sockets and pipes included.
type ProcIO struct {
	RChar, WChar, SyscR, SyscW                 int64
	ReadBytes, WriteBytes, CancelledWriteBytes int64
}

// ReadProcIO reads /proc/PID/io. Reading another process's needs the same
// user (or root) and a kernel with task I/O accounting.
func ReadProcIO(pid int) (ProcIO, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return ProcIO{}, err
	}
	var pio ProcIO
	fields := map[string]*int64{
		"rchar": &pio.RChar, "wchar": &pio.WChar, "syscr": &pio.SyscR, "syscw": &pio.SyscW,
		"read_bytes": &pio.ReadBytes, "write_bytes": &pio.WriteBytes,
		"cancelled_write_bytes": &pio.CancelledWriteBytes,
	}
	seen := 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), ":")
		p := fields[strings.TrimSpace(name)]
		if !ok || p == nil {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(val), 10, 64)
		if err != nil {
			return ProcIO{}, fmt.Errorf("/proc/%d/io: %s: %w", pid, name, err)
		}
		*p = n
		seen++
	}
	if seen != len(fields) {
		return ProcIO{}, fmt.Errorf("/proc/%d/io: found %d of %d fields in %q", pid, seen, len(fields), data)
	}
	return pio, nil
}

// Sub returns the counters of after minus those of before.
func (after ProcIO) Sub(before ProcIO) ProcIO {
	return ProcIO{
		RChar: after.RChar - before.RChar, WChar: after.WChar - before.WChar,
		SyscR: after.SyscR - before.SyscR, SyscW: after.SyscW - before.SyscW,
		ReadBytes: after.ReadBytes - before.ReadBytes, WriteBytes: after.WriteBytes - before.WriteBytes,
		CancelledWriteBytes: after.CancelledWriteBytes - before.CancelledWriteBytes,
	}
}

// deepestDescendant follows pid's children (from the parent pids in
// /proc/*/stat) down to one without children, and fails if some process on
// the way has more than one child: the server under a wrapper is the
// wrapper's only descendant.
func deepestDescendant(pid int) (int, error) {
	children, err := childrenByParent()
	if err != nil {
		return 0, err
	}
	for {
		switch kids := children[pid]; len(kids) {
		case 0:
			return pid, nil
		case 1:
			pid = kids[0]
		default:
			return 0, fmt.Errorf("process %d has %d children %v; cannot tell which is the server", pid, len(kids), kids)
		}
	}
}

// childrenByParent maps each parent pid to its child processes.
func childrenByParent() (map[int][]int, error) {
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return nil, err
	}
	children := map[int][]int{}
	for _, path := range stats {
		data, err := os.ReadFile(path)
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(data, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(data[i+1:]))
		if len(f) < 2 {
			continue
		}
		pid, err1 := strconv.Atoi(filepath.Base(filepath.Dir(path)))
		ppid, err2 := strconv.Atoi(f[1])
		if err1 != nil || err2 != nil {
			continue
		}
		children[ppid] = append(children[ppid], pid)
	}
	if len(children) == 0 {
		return nil, fmt.Errorf("no processes found under /proc")
	}
	return children, nil
}
