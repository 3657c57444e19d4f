// Package tests is the root of edgekv's end-to-end test module,
// github.com/edgekv/edgekv/tests. It is a nested Go module so that what only
// tests need (the official etcd client, and real etcd and etcdctl to compare
// against) never enters edgekv's own go.mod.
//
// The module holds:
//
//   - framework: builds the binaries and runs clusters of real processes
//     (edgekv or etcd, the same flags for both) for tests to drive.
//   - e2e: the tests. Each runs the same body against edgekv and against real
//     etcd (subtests "edgekv" and "etcd"); a passing etcd subtest shows the
//     test checks something real.
//   - torture: linearizability and watch guarantees of a 3-member cluster
//     under one kind of fault per scenario (kills, pauses, partitions,
//     packet loss, delayed Raft messages, failing disks).
//   - internal/watchcheck: watchers that record a watch stream under
//     faults, and the checks of those streams against the committed
//     history, shared by e2e and torture.
//   - bench: programs that measure edgekv against real etcd on the same
//     machine and print the ratios (go run ./bench/diskwrites).
//   - tools/etcd, tools/etcdctl: real etcd and stock etcdctl v3.7.3, each in its
//     own module, built by the framework into .cache/bin.
//
// See README.md for how to run them and what each shows.
package tests
