// Command syscalls makes N cheap system calls (getppid) from a thread the
// Go runtime started, which never syncs: the case where strace
// --seccomp-bpf, unless it traces the thread's first call, stops the thread
// at every system call (TestWrappers_StopThreadsOnlyAtTracedCalls).
package main

import (
	"os"
	"runtime"
	"strconv"
	"syscall"
)

// The main goroutine keeps the main thread, so the loop below runs on a
// thread the runtime started.
func init() { runtime.LockOSThread() }

func main() {
	n, err := strconv.Atoi(os.Args[1])
	if err != nil {
		panic(err)
	}
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		for range n {
			syscall.Getppid()
		}
		close(done)
	}()
	<-done
}
