package framework

import (
	"errors"
	"os"
	"syscall"
)

// sysProcAttr kills a member if the test binary dies before its cleanup runs.
// A wrapped member gets its own process group, so that signalProcess reaches
// the server under the wrapper too.
func sysProcAttr(group bool) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: group}
}

// signalProcess sends sig to p, or to p's process group if group is set. A
// process that has already exited is not an error.
func signalProcess(p *os.Process, sig syscall.Signal, group bool) error {
	var err error
	if group {
		err = syscall.Kill(-p.Pid, sig)
	} else {
		err = p.Signal(sig)
	}
	if err != nil && !errors.Is(err, os.ErrProcessDone) && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}
