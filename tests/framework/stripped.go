package framework

import (
	"path/filepath"
	"testing"
)

// strippedFlags build a binary as a release is built: static, without
// debug information and symbol table, without file system paths.
var strippedFlags = []string{"-trimpath", "-ldflags=-s -w"}

// BuildEdgekvStripped builds ./cmd/edgekv for the host with CGO_ENABLED=0
// go build -trimpath -tags grpcnotrace -ldflags '-s -w' (as make build
// does, without the version) into the cache dir and returns its path; for
// comparing binary sizes. It builds every time it is called: the sources
// may have changed.
func BuildEdgekvStripped(t testing.TB) string {
	t.Helper()
	out := filepath.Join(CacheDir(t), "edgekv-stripped")
	if err := goBuildEdgekv(t, out, []string{"CGO_ENABLED=0"}, "", strippedFlags...); err != nil {
		t.Fatalf("build stripped edgekv: %v", err)
	}
	return out
}

// BuildEtcdStripped builds real etcd from tests/tools/etcd the same way as
// BuildEdgekvStripped into the cache dir, reused across runs as long as the
// module is unchanged (as BuildToolFor).
func BuildEtcdStripped(t testing.TB) string {
	t.Helper()
	return buildTool(t, "etcd", "stripped", []string{"CGO_ENABLED=0"}, strippedFlags)
}
