package framework

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// CtlProcess is an etcdctl command running in the background, such as
// watch, which runs until it is interrupted or the server ends it. Its
// output is collected as it comes.
type CtlProcess struct {
	t    testing.TB
	args []string
	cmd  *exec.Cmd
	done chan struct{}

	mu             sync.Mutex
	stdout, stderr bytes.Buffer
	exitCode       int
}

// lockedWriter appends to a buffer under the process's lock.
type lockedWriter struct {
	p   *CtlProcess
	buf *bytes.Buffer
}

func (w lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.buf.Write(b)
}

// StartEtcdctl starts etcdctl against endpoints with args in the
// background. It is killed at the end of the test if it still runs.
func StartEtcdctl(t testing.TB, etcdctl string, endpoints []string, args ...string) *CtlProcess {
	t.Helper()
	argv := append([]string{"--endpoints=" + strings.Join(endpoints, ","), "--command-timeout=10s"}, args...)
	p := &CtlProcess{t: t, args: args, cmd: exec.Command(etcdctl, argv...), done: make(chan struct{})}
	// A clean etcdctl environment, as RunEtcdctl.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ETCDCTL_") {
			p.cmd.Env = append(p.cmd.Env, kv)
		}
	}
	p.cmd.Stdout = lockedWriter{p, &p.stdout}
	p.cmd.Stderr = lockedWriter{p, &p.stderr}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("etcdctl %s: %v", strings.Join(args, " "), err)
	}
	go func() {
		err := p.cmd.Wait()
		p.mu.Lock()
		var exit *exec.ExitError
		switch {
		case errors.As(err, &exit):
			p.exitCode = exit.ExitCode() // -1 when killed by a signal
		case err != nil:
			p.exitCode = -2
		}
		p.mu.Unlock()
		close(p.done)
	}()
	t.Cleanup(func() { p.Stop() })
	return p
}

// Stdout returns what the command printed on stdout so far.
func (p *CtlProcess) Stdout() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stdout.String()
}

// WaitFor waits until cond holds for the command's stdout, or the command
// exits, or timeout passes, and reports whether cond holds. It looks every
// 10 ms: it waits for an outcome, not for a time.
func (p *CtlProcess) WaitFor(timeout time.Duration, cond func(stdout string) bool) bool {
	deadline := time.After(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if cond(p.Stdout()) {
			return true
		}
		select {
		case <-p.done:
			return cond(p.Stdout())
		case <-deadline:
			return false
		case <-tick.C:
		}
	}
}

// Wait waits up to timeout for the command to exit on its own and returns
// what it printed and how it exited; ok is false if it is still running.
func (p *CtlProcess) Wait(timeout time.Duration) (res CtlResult, ok bool) {
	select {
	case <-p.done:
		return p.result(), true
	case <-time.After(timeout):
		return p.result(), false
	}
}

// Stop interrupts the command (os.Interrupt, then SIGKILL after 5 s) unless it
// has exited, and returns what it printed and how it exited (-1: ended by
// the signal).
func (p *CtlProcess) Stop() CtlResult {
	select {
	case <-p.done:
		return p.result()
	default:
	}
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
	return p.result()
}

func (p *CtlProcess) result() CtlResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	return CtlResult{Stdout: p.stdout.String(), Stderr: p.stderr.String(), ExitCode: p.exitCode}
}
