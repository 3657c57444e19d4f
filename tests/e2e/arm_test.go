package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/edgekv/edgekv/tests/framework"
)

// armTarget is an ARM board the edge binary ships for, run under Debian's
// qemu-user emulator.
type armTarget struct {
	name   string // as in bin/edgekv-linux-<name>
	target framework.Target
	qemu   string
	// env the server needs on this target (etcd refuses 32-bit ARM unless told).
	etcdEnv []string
}

var armTargets = []armTarget{
	{name: "arm64", target: framework.Target{GOOS: "linux", GOARCH: "arm64"}, qemu: "qemu-aarch64"},
	{name: "armv7", target: framework.Target{GOOS: "linux", GOARCH: "arm", GOARM: "7"}, qemu: "qemu-arm",
		etcdEnv: []string{"ETCD_UNSUPPORTED_ARCH=arm"}},
}

// Emulation is slow: generous bounds, still bounded.
const (
	qemuReadyTimeout = 120 * time.Second
	qemuOpTimeout    = 20 * time.Second
)

var semver = regexp.MustCompile(`\bv?\d+\.\d+\.\d+`)

// TestARM_BinaryServesUnderQemu runs the static ARM builds under qemu-user:
// `version` prints a version, and a 1-member cluster started under emulation
// takes a put and serves a get from the official Go client. Without qemu the
// test skips, except in CI (CI set), which installs qemu-user and must run it.
//
// The edgekv binaries are $EDGEKV_BIN_DIR/edgekv-linux-{arm64,armv7}
// (e.g. bin/ after `make cross`) if that is set, otherwise built by the test.
func TestARM_BinaryServesUnderQemu(t *testing.T) {
	for _, arm := range armTargets {
		t.Run(arm.name, func(t *testing.T) {
			qemu, err := exec.LookPath(arm.qemu)
			if err != nil {
				if os.Getenv("CI") != "" {
					t.Fatalf("%s not found and CI is set: CI must install Debian's qemu-user (%v)", arm.qemu, err)
				}
				t.Skipf("%s not found (apt-get install qemu-user): %v", arm.qemu, err)
			}
			forEachServer(t, func(t *testing.T, s server) {
				var binary string
				var env []string
				switch {
				case s.name == edgekv.name && os.Getenv("EDGEKV_BIN_DIR") != "":
					binary = filepath.Join(os.Getenv("EDGEKV_BIN_DIR"), "edgekv-linux-"+arm.name)
					require.FileExists(t, binary, "EDGEKV_BIN_DIR is set: run `make cross` first")
				case s.name == edgekv.name:
					binary = s.buildFor(t, arm.target)
				default:
					binary = s.buildFor(t, arm.target)
					env = arm.etcdEnv
				}

				t.Run("version", func(t *testing.T) {
					ctx, cancel := context.WithTimeout(context.Background(), qemuOpTimeout)
					defer cancel()
					cmd := exec.CommandContext(ctx, qemu, append([]string{binary}, s.versionArgs...)...)
					cmd.Env = append(os.Environ(), env...)
					out, err := cmd.CombinedOutput()
					require.NoError(t, err, "%s %s %v:\n%s", qemu, binary, s.versionArgs, out)
					require.Regexp(t, semver, string(out), "%s %v prints no version", binary, s.versionArgs)
					t.Logf("%s %v under %s: %s", filepath.Base(binary), s.versionArgs, arm.qemu, out)
				})

				t.Run("serves", func(t *testing.T) {
					c := framework.StartCluster(t, binary, 1,
						framework.WithWrapper(qemu),
						framework.WithEnv(env...),
						framework.WithReadyTimeout(qemuReadyTimeout))
					cli := c.Client(t, 0)
					ctx, cancel := context.WithTimeout(context.Background(), qemuOpTimeout)
					defer cancel()
					put, err := cli.Put(ctx, "/e2e/arm/"+arm.name, "hello from "+arm.name)
					require.NoError(t, err, "put")
					got, err := cli.Get(ctx, "/e2e/arm/"+arm.name)
					require.NoError(t, err, "get")
					require.Len(t, got.Kvs, 1)
					require.Equal(t, "hello from "+arm.name, string(got.Kvs[0].Value))
					require.Equal(t, put.Header.Revision, got.Kvs[0].ModRevision)
				})
			})
		})
	}
}
