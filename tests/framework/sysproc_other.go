//go:build !linux

package framework

import (
	"errors"
	"os"
	"syscall"
)

func sysProcAttr(group bool) *syscall.SysProcAttr { return nil }

// signalProcess sends sig to p; without process groups a wrapper's children
// are not reached.
func signalProcess(p *os.Process, sig syscall.Signal, group bool) error {
	if err := p.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return nil
}
