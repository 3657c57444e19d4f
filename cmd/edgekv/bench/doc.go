// Package bench is the load generator behind `edgekv bench`. It drives any
// etcd v3 endpoint (edgekv or etcd itself) through the official client,
// go.etcd.io/etcd/client/v3, so that both servers are measured by the same
// code, and it is modelled on etcd's own tools/benchmark.
//
// # What it owns
//
// Run takes a Config (the flags common to every load) and a Load (put,
// range, txn-cas, delete, watch-latency, lease-keepalive), dials the
// endpoints, runs the load and returns a Report. The caller, the cobra
// command in cmd/edgekv/bench.go, decides how to print the Report (WriteTable
// or WriteJSON). Run writes progress lines to Config.Log only; it never
// writes to stdout.
//
// # How a run goes
//
//  1. Preflight: every endpoint is asked for its Status within DialTimeout.
//     An unreachable endpoint is a warning; no reachable endpoint is
//     ErrNoEndpoint; endpoints of two clusters are an error. The cluster ID
//     is kept to check every response against. With TargetLeader the
//     endpoint list is replaced by the leader's endpoint (the member whose
//     Status says it is the leader).
//  2. Connections: Conns clientv3.Clients, each with its own gRPC
//     connection; client goroutine i uses connection i mod Conns.
//  3. Preparation, not timed: range pre-fills the key space, delete
//     pre-fills the keys it will delete, lease-keepalive grants its leases,
//     watch-latency creates its watchers and waits until all are created.
//  4. Measurement: one goroutine per client takes operation numbers from a
//     shared counter until Total operations were issued or Duration passed,
//     waits for the shared Rate limiter if there is one, and records the
//     latency of each operation in its own preallocated slice (no lock per
//     operation). Each operation has RequestTimeout, so a dead server
//     produces timeouts, not a hang.
//  5. The slices are merged and sorted into the Report.
//
// An operation that fails is counted in Report.Errors and the run goes on,
// with three exceptions that stop it and return the Report with an error:
// the first max(10, Clients) operations all failed (ErrAllFailed, also
// returned for any run without a single success); no operation succeeded
// for StallTimeout, 30 s by default (ErrStalled), so that a dead cluster
// cannot keep the run going for Total times RequestTimeout; or a response
// carried another cluster ID than preflight saw (ErrWrongCluster: the
// endpoint's port now belongs to another cluster, which must not be written
// to any further). Cancelling ctx (Ctrl-C) stops the run, which returns the
// partial Report and the context's error. Operations cut short by the end
// of the run are not counted.
//
// # Keys and values
//
// The key of index i is KeySize bytes: i in big-endian, right-aligned and
// zero-padded on the left (the low KeySize bytes if KeySize < 8), so that
// byte order is index order and two servers benchmarked with the same flags
// see the same keys. Random key choices come from a generator per client
// seeded with the client's number, so two runs with the same flags also
// send the same key sequence. Values are ValSize random bytes, generated
// once per client and reused.
//
// # Report
//
// Latencies are in milliseconds. Percentiles are nearest-rank on the sorted
// latencies (the smallest latency with at least p% of the samples at or
// below it). The histogram has fixed 1-2-5 log-scale buckets, so that two
// runs can be compared bucket by bucket; each bucket counts the samples
// above the previous bound and at most its own le_ms, and only the range
// from the first to the last non-empty bucket is reported.
//
// For watch-latency a sample is one event at one watcher: Total and Count
// are in events (puts times watchers), the put errors are Errors, and the
// events that did not arrive within 5 s of the last put are
// extra.missing_events; any missing event makes Run return
// ErrMissingEvents.
package bench
