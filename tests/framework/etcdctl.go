package framework

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// CtlTimeout bounds one etcdctl run.
const CtlTimeout = 30 * time.Second

// CtlResult is what one etcdctl run printed and how it exited.
type CtlResult struct {
	Stdout, Stderr string
	ExitCode       int
}

// RunEtcdctl runs etcdctl against endpoints with args, feeding stdin, and
// returns its output and exit code. Only a failure to run it at all, or a
// run longer than CtlTimeout, fails the test: a non-zero exit is a result.
func RunEtcdctl(t testing.TB, etcdctl string, endpoints []string, stdin string, args ...string) CtlResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), CtlTimeout)
	defer cancel()
	argv := append([]string{"--endpoints=" + strings.Join(endpoints, ","), "--command-timeout=10s"}, args...)
	cmd := exec.CommandContext(ctx, etcdctl, argv...)
	// Start from a clean etcdctl environment so a developer's ETCDCTL_* never
	// leaks in (etcdctl 3.7 speaks only v3 and warns about ETCDCTL_API).
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ETCDCTL_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := CtlResult{Stdout: stdout.String(), Stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("etcdctl %s: no answer within %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), CtlTimeout, res.Stdout, res.Stderr)
	case errors.As(err, &exit):
		res.ExitCode = exit.ExitCode()
	case err != nil:
		t.Fatalf("etcdctl %s: %v", strings.Join(args, " "), err)
	}
	return res
}
