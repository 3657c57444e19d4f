package main

import "syscall"

// sysProcAttr kills a load generator if this program dies before it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
