// Package framework runs etcd-compatible servers as real processes for the
// end-to-end tests: it builds the binaries (edgekv from this repository, real
// etcd and etcdctl from the nested modules under tests/tools), starts clusters
// of them on loopback ports with etcd's server flags, and kills, stops and
// restarts their members. With WithNetns each member runs in a network
// namespace of its own, and the links between members can be cut, healed
// and made lossy with iptables inside the namespaces (netns.go).
//
// The harness does not care which binary it runs: every helper takes the path
// of an executable that accepts etcd's flags, so a test body written once runs
// against edgekv and against etcd and the two can be compared.
//
// Every helper takes a testing.TB. Processes are stopped and their log files
// are dumped with t.Log from t.Cleanup, so a passing test stays quiet and a
// failing one shows what each member said. Every wait has a deadline.
package framework
