// Package bench holds benchmarks of edgekv against real etcd on the same
// machine, each a program under it (go run ./bench/<name> from tests/):
// numbers are printed as tables with the ratio edgekv/etcd, never asserted in
// go test. They drive clusters with the same harness as the end-to-end tests
// (framework.StartCluster, through framework.Program), so both servers get the
// same flags, fresh data dirs and loopback ports.
//
//   - compare: everything make bench reports (bench/README.md at the root):
//     throughput and latency of every load of the load generator `edgekv
//     bench`, RSS, bytes written and syncs per put, binary size, restart
//     time, an emulated SD card, and a latency-throughput chart.
//   - diskwrites: bytes written and fsyncs per put under a write load.
//   - watchers: watch delivery latency, memory per watcher, slow watchers.
//
// internal/strace holds what more than one of them runs members under.
package bench
