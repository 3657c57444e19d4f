// Package e2e runs edgekv as real processes and checks it with real clients
// (the official Go client and stock etcdctl), side by side with real etcd: the
// same test body runs against both servers, so a passing etcd subtest shows
// that the test checks something real. It has no code of its own outside its
// tests.
package e2e
