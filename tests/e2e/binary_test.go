package e2e

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/edgekv/edgekv/tests/framework"
)

// TestBinary_MethodDeadCodeEliminationStaysOn links ./cmd/edgekv as make
// build does and fails if a function the linker marks <ReflectMethod> is
// reachable: one such function (reflect.Value.MethodByName with a name known
// only at run time, as text/template calls it) makes the linker keep every
// exported method of every type in the binary. golang.org/x/net/trace, which
// grpc links unless built with grpcnotrace, did that: 21.2 MB instead of
// 17.6 MB, and idle RSS follows the binary's size.
func TestBinary_MethodDeadCodeEliminationStaysOn(t *testing.T) {
	root := framework.RepoRoot(t)
	cmd := exec.Command("go", "build", "-trimpath", "-tags="+framework.EdgekvTags,
		"-ldflags=-s -w -dumpdep", "-o", filepath.Join(t.TempDir(), "edgekv"), "./cmd/edgekv")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var stdout, deps bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &deps
	if err := cmd.Run(); err != nil {
		t.Fatalf("go build -ldflags=-dumpdep: %v\n%s%s", err, stdout.Bytes(), tail(deps.Bytes(), 4096))
	}
	if path := reflectMethodPath(deps.Bytes()); path != nil {
		t.Fatalf("the linker keeps every exported method: %s is reachable, by\n  %s",
			path[len(path)-1], strings.Join(path, "\n  "))
	}
}

// reflectMethodPath reads the linker's -dumpdep graph ("from -> to" lines)
// and returns a path from the entry point to a symbol marked <ReflectMethod>,
// or nil if none is reachable. The graph names only what the linker reached,
// but its method edges are conservative: the path says where to look, the
// mark is what counts.
func reflectMethodPath(dump []byte) []string {
	edges := map[string][]string{}
	var marked []string
	sc := bufio.NewScanner(bytes.NewReader(dump))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		from, to, ok := strings.Cut(sc.Text(), " -> ")
		if !ok {
			continue
		}
		for _, s := range []*string{&from, &to} {
			if name, ok := strings.CutSuffix(*s, " <ReflectMethod>"); ok {
				*s = name
				marked = append(marked, name)
			}
		}
		edges[from] = append(edges[from], to)
	}
	if len(marked) == 0 {
		return nil
	}
	prev := map[string]string{"_": ""}
	queue := []string{"_"}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		for _, next := range edges[s] {
			if _, seen := prev[next]; !seen {
				prev[next] = s
				queue = append(queue, next)
			}
		}
	}
	for _, m := range marked {
		if _, ok := prev[m]; !ok {
			continue
		}
		var path []string
		for s := m; s != ""; s = prev[s] {
			path = append([]string{s}, path...)
		}
		return path
	}
	return []string{"(not reachable from the entry point in the graph)", marked[0]}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// TestBinary_MakefileTagsAreTheFrameworks checks that make build and the
// tests' builds use the same build tags.
func TestBinary_MakefileTagsAreTheFrameworks(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(framework.RepoRoot(t), "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^TAGS\s*:=\s*(.*?)\s*$`).FindSubmatch(data)
	if m == nil {
		t.Fatal("Makefile: no TAGS := line")
	}
	if got := string(m[1]); got != framework.EdgekvTags {
		t.Fatalf("Makefile TAGS = %q, framework.EdgekvTags = %q", got, framework.EdgekvTags)
	}
}
