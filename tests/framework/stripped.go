package framework

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// strippedFlags build a binary as a release is built: static, without
// debug information and symbol table, without file system paths.
var strippedFlags = []string{"-trimpath", "-ldflags=-s -w"}

// BuildEdgekvStripped builds ./cmd/edgekv for the host with CGO_ENABLED=0
// go build -trimpath -ldflags '-s -w' (as make build does, without the
// version) into the cache dir and returns its path; for comparing binary
// sizes. It builds every time it is called: the sources may have changed.
func BuildEdgekvStripped(t testing.TB) string {
	t.Helper()
	out := filepath.Join(CacheDir(t), "edgekv-stripped")
	if err := goBuildFlags(RepoRoot(t), "./cmd/edgekv", out, strippedFlags, []string{"CGO_ENABLED=0"}); err != nil {
		t.Fatalf("build stripped edgekv: %v", err)
	}
	return out
}

// BuildEtcdStripped builds real etcd from tests/tools/etcd the same way as
// BuildEdgekvStripped into the cache dir, reused across runs as long as the
// module's go.mod, go.sum and main.go are unchanged (as BuildToolFor).
func BuildEtcdStripped(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(TestsDir(t), "tools", "etcd")
	h := sha256.New()
	fmt.Fprintln(h, "stripped", strippedFlags)
	for _, f := range []string{"go.mod", "go.sum", "main.go"} {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatalf("build stripped etcd: %v", err)
		}
		h.Write(data)
	}
	out := filepath.Join(CacheDir(t), "etcd-stripped-"+hex.EncodeToString(h.Sum(nil))[:12])
	if _, err := os.Stat(out); err == nil {
		return out
	}
	t.Logf("building stripped etcd into %s (first run only)", out)
	if err := goBuildFlags(dir, ".", out, strippedFlags, []string{"CGO_ENABLED=0", "GOWORK=off"}); err != nil {
		t.Fatalf("build stripped etcd: %v", err)
	}
	return out
}

// goBuildFlags is goBuild with build flags: go build flags... -o out pkg in
// dir, moved into place atomically.
func goBuildFlags(dir, pkg, out string, flags, env []string) error {
	tmp := fmt.Sprintf("%s.tmp%d", out, os.Getpid())
	args := append(append([]string{"build"}, flags...), "-o", tmp, pkg)
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Run(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("go %v in %s %v: %w\n%s", args, dir, env, err, output.String())
	}
	return os.Rename(tmp, out)
}
