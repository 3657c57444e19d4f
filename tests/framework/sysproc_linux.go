package framework

import "syscall"

// sysProcAttr kills a member if the test binary dies before its cleanup runs.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
