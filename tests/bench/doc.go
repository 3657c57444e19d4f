// Package bench holds benchmarks of edgekv against real etcd on the same
// machine, each a program under it (go run ./bench/<name> from tests/):
// numbers are printed as tables with the ratio edgekv/etcd, never asserted in
// go test. They drive clusters with the same harness as the end-to-end tests
// (framework.StartCluster, through framework.Program), so both servers get the
// same flags, fresh data dirs and loopback ports.
//
//   - diskwrites: bytes written and fsyncs per put under a write load.
package bench
