package framework

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

const (
	rootModule  = "github.com/edgekv/edgekv"
	testsModule = "github.com/edgekv/edgekv/tests"
)

// Target is a platform to cross-build for, as GOOS, GOARCH and GOARM.
type Target struct {
	GOOS, GOARCH, GOARM string
}

// Host is the platform the tests run on: a plain go build.
var Host = Target{}

func (tg Target) String() string {
	if tg == Host {
		return "host"
	}
	s := tg.GOOS + "-" + tg.GOARCH
	if tg.GOARM != "" {
		s += "v" + tg.GOARM
	}
	return s
}

func (tg Target) env() []string {
	if tg == Host {
		return nil
	}
	env := []string{"GOOS=" + tg.GOOS, "GOARCH=" + tg.GOARCH, "CGO_ENABLED=0"}
	if tg.GOARM != "" {
		env = append(env, "GOARM="+tg.GOARM)
	}
	return env
}

// EdgekvTags are the build tags of every edgekv build, as the Makefile's
// TAGS: grpcnotrace leaves grpc's golang.org/x/net/trace out, whose HTML
// templates call methods by name, which turns off the linker's dead-code
// elimination of methods and costs a fifth of the binary.
const EdgekvTags = "grpcnotrace"

var (
	dirsOnce           sync.Once
	testsDir, repoRoot string
	dirsErr            error

	edgekvBuilds sync.Map // Target or "tag:<tag>" -> *buildResult, one build per test binary
)

type buildResult struct {
	once sync.Once
	path string
	err  error
}

// TestsDir is the directory of the tests module (github.com/edgekv/edgekv/tests).
func TestsDir(t testing.TB) string {
	t.Helper()
	findDirs(t)
	return testsDir
}

// RepoRoot is the root of the edgekv repository, the module that tests/ is nested in.
func RepoRoot(t testing.TB) string {
	t.Helper()
	findDirs(t)
	return repoRoot
}

// CacheDir is where built binaries are kept across test runs: tests/.cache/bin
// (git-ignored).
func CacheDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(TestsDir(t), ".cache", "bin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("create cache dir: %v", err)
	}
	return dir
}

func findDirs(t testing.TB) {
	t.Helper()
	dirsOnce.Do(func() {
		wd, err := os.Getwd()
		if err != nil {
			dirsErr = err
			return
		}
		for dir := wd; ; dir = filepath.Dir(dir) {
			switch modulePath(filepath.Join(dir, "go.mod")) {
			case testsModule:
				testsDir = dir
			case rootModule:
				repoRoot = dir
			}
			if repoRoot != "" || filepath.Dir(dir) == dir {
				break
			}
		}
		if testsDir == "" || repoRoot == "" {
			dirsErr = fmt.Errorf("from %s: did not find the go.mod of %s (found %q) and of %s (found %q) above it",
				wd, testsModule, testsDir, rootModule, repoRoot)
		}
	})
	if dirsErr != nil {
		t.Fatalf("locate repository: %v", dirsErr)
	}
}

// modulePath returns the module path declared in a go.mod file, or "".
func modulePath(gomod string) string {
	data, err := os.ReadFile(gomod)
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}

// BuildEdgekv returns the edgekv server binary for the host: $EDGEKV_BIN if
// set, otherwise ./cmd/edgekv built from the repository once per test binary
// (go's build cache makes repeated builds cheap; sources may have changed
// between runs, so the result is not reused across runs).
func BuildEdgekv(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("EDGEKV_BIN"); p != "" {
		return existingBinary(t, "EDGEKV_BIN", p)
	}
	return BuildEdgekvFor(t, Host)
}

// BuildEdgekvFor builds ./cmd/edgekv for target (CGO_ENABLED=0 when
// cross-compiling) once per test binary and returns its path.
func BuildEdgekvFor(t testing.TB, target Target) string {
	t.Helper()
	v, _ := edgekvBuilds.LoadOrStore(target, &buildResult{})
	b := v.(*buildResult)
	b.once.Do(func() {
		name := "edgekv"
		if target != Host {
			name += "-" + target.String()
		}
		b.path = filepath.Join(CacheDir(t), name)
		b.err = goBuildEdgekv(t, b.path, target.env(), "")
	})
	if b.err != nil {
		t.Fatalf("build edgekv (%s): %v", target, b.err)
	}
	return b.path
}

// BuildEdgekvTagged builds ./cmd/edgekv for the host with the build tag
// tag, once per test binary, and returns its path. The tags that exist
// compile deliberate bugs in (core/server/unsafe_reads_on.go), for tests
// that show a checker catches them.
func BuildEdgekvTagged(t testing.TB, tag string) string {
	t.Helper()
	v, _ := edgekvBuilds.LoadOrStore("tag:"+tag, &buildResult{})
	b := v.(*buildResult)
	b.once.Do(func() {
		b.path = filepath.Join(CacheDir(t), "edgekv-tag-"+tag)
		b.err = goBuildEdgekv(t, b.path, nil, tag)
	})
	if b.err != nil {
		t.Fatalf("build edgekv with tag %s: %v", tag, b.err)
	}
	return b.path
}

// BuildEtcd returns real etcd v3 built from tests/tools/etcd for the host.
func BuildEtcd(t testing.TB) string {
	t.Helper()
	return BuildToolFor(t, "etcd", Host)
}

// BuildEtcdctl returns stock etcdctl built from tests/tools/etcdctl.
func BuildEtcdctl(t testing.TB) string {
	t.Helper()
	return BuildToolFor(t, "etcdctl", Host)
}

// BuildToolFor builds the nested module tests/tools/<tool> for target into the
// cache dir, shared across test runs. The file name carries a hash of the
// module's go.mod, go.sum and main.go, so a version bump rebuilds it; otherwise
// it is built only if missing.
func BuildToolFor(t testing.TB, tool string, target Target) string {
	t.Helper()
	return buildTool(t, tool, target.String(), target.env(), nil)
}

// buildTool builds tests/tools/<tool> with env and go build flags into the
// cache dir as <tool>-<variant>-<hash>, the hash covering the variant, the
// flags and the module's go.mod, go.sum and main.go; an existing file is
// reused.
func buildTool(t testing.TB, tool, variant string, env, flags []string) string {
	t.Helper()
	dir := filepath.Join(TestsDir(t), "tools", tool)
	h := sha256.New()
	fmt.Fprintln(h, variant, flags)
	for _, f := range []string{"go.mod", "go.sum", "main.go"} {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatalf("build %s: %v", tool, err)
		}
		h.Write(data)
	}
	out := filepath.Join(CacheDir(t), fmt.Sprintf("%s-%s-%s", tool, variant, hex.EncodeToString(h.Sum(nil))[:12]))
	if _, err := os.Stat(out); err == nil {
		return out
	}
	t.Logf("building %s (%s) into %s (first run only; etcd takes a minute)", tool, variant, out)
	if err := goBuild(t, dir, ".", out, append(env, "GOWORK=off"), flags...); err != nil {
		t.Fatalf("build %s (%s): %v", tool, variant, err)
	}
	return out
}

func existingBinary(t testing.TB, what, p string) string {
	t.Helper()
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatalf("%s=%s: %v", what, p, err)
	}
	if _, err := os.Stat(abs); err != nil {
		t.Fatalf("%s=%s: %v", what, p, err)
	}
	return abs
}

// goBuildEdgekv builds ./cmd/edgekv into out with EdgekvTags, and tag
// (if not empty) besides.
func goBuildEdgekv(t testing.TB, out string, env []string, tag string, flags ...string) error {
	t.Helper()
	tags := EdgekvTags
	if tag != "" {
		tags += "," + tag
	}
	return goBuild(t, RepoRoot(t), "./cmd/edgekv", out, env, append([]string{"-tags=" + tags}, flags...)...)
}

// goBuild runs go build [flags] in dir and moves the result to out
// atomically, so concurrent test binaries never run a half-written file.
func goBuild(t testing.TB, dir, pkg, out string, env []string, flags ...string) error {
	t.Helper()
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
