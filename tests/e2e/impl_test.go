package e2e

import (
	"os"
	"testing"

	"github.com/edgekv/edgekv/tests/framework"
)

// server is an implementation of etcd's server that a test body runs against.
type server struct {
	name string
	// build returns the binary for the host.
	build func(t testing.TB) string
	// buildFor returns the binary for another platform.
	buildFor func(t testing.TB, target framework.Target) string
	// versionArgs make the binary print its version and exit.
	versionArgs []string
}

var (
	edgekv = server{
		name:        "edgekv",
		build:       framework.BuildEdgekv,
		buildFor:    framework.BuildEdgekvFor,
		versionArgs: []string{"version"},
	}
	etcd = server{
		name:  "etcd",
		build: framework.BuildEtcd,
		buildFor: func(t testing.TB, target framework.Target) string {
			return framework.BuildToolFor(t, "etcd", target)
		},
		versionArgs: []string{"--version"},
	}
)

// skipEdgekvIfAsked skips a test of edgekv when EDGEKV_SKIP_E2E is set.
func skipEdgekvIfAsked(t testing.TB) {
	t.Helper()
	if os.Getenv("EDGEKV_SKIP_E2E") != "" {
		t.Skip("EDGEKV_SKIP_E2E is set")
	}
}

// forEachServer runs body as subtest "edgekv" and as subtest "etcd", the same
// body against both, so a passing etcd subtest shows the test checks
// something real.
func forEachServer(t *testing.T, body func(t *testing.T, s server)) {
	for _, s := range []server{edgekv, etcd} {
		t.Run(s.name, func(t *testing.T) {
			if s.name == edgekv.name {
				skipEdgekvIfAsked(t)
			}
			body(t, s)
		})
	}
}
