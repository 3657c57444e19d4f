// Package torture checks that edgekv never lies under faults: clients run
// concurrent operations through every member (gets, puts, puts with a
// lease, deletes, compare-and-swap txns, multi-key txns, lease grants and
// revokes) and record every call and return, while a nemesis injects one
// kind of fault for real (SIGKILL of one member, of the leader, of every
// member; SIGSTOP of the leader or of a follower; network partitions,
// flapping links and packet loss between members; Raft messages delayed,
// reordered and dropped inside edgekv; a member's WAL syncs failing with
// EIO). Meanwhile watchers (watch.go, tests/internal/watchcheck) watch
// the workload's key prefix through clients bound to each member: one per
// member from the first revision for the whole run, one per member
// started halfway through from an earlier revision; each asks for
// progress every 300 ms (the members' --watch-progress-notify-interval
// too) and, when its stream ends with an error (a member without a
// leader ends watches that require one), opens it again from the revision
// after its last event.
//
// Afterwards, once the nemesis has healed everything: every member must
// reach the last revision with the same HashKV; the history is read
// through a fresh watch from revision 2 (with prev_kv), and must have an
// event at every revision (the workload's writes are all there is) and
// replay consistently (create revision, version, prev_kv); the operations
// are checked with porcupine against a model of etcd's semantics that
// includes revisions (model.go); every watcher must reach the last
// revision (an event or a progress notification at or after it) within
// 30 s, and its stream must equal the history from its start revision:
// in order, no duplicate, no gap, the events of one revision in one
// response, and no event at or below a progress notification already
// received. A watch violation fails the scenario ("WATCH GUARANTEES
// BROKEN") and leaves the failing watcher's record and the history next
// to the member logs.
//
// An operation whose outcome is unknown (a timeout, a member that died
// under it) may take effect at any point after its call, or never, as in
// Jepsen. Failed reads tell nothing and are dropped.
//
// Three tests: TestTorture_Edgekv runs every scenario against edgekv;
// TestTorture_ModelHoldsForEtcd runs real etcd under a fault, showing the
// model is etcd's (a correct server passes); TestTorture_CatchesUnsafeLocalReads
// runs a deliberately broken build (build tag edgekv_unsafe_local_reads:
// linearizable reads served locally) with a follower paused now and then,
// and must see the checker report a violation.
//
// The network scenarios (partition-leader, partition-half,
// partition-bridge, flapping, packet-loss) start the members in network
// namespaces of their own behind a bridge (framework.WithNetns) and cut
// or thin out the links between them with iptables rules inside the
// namespaces; the clients, in the test's namespace, still reach every
// member. They need root, ip and iptables, and skip without them (fail
// under CI). delay-reorder runs edgekv built with the tag edgekv_faults,
// whose transport delays each outgoing Raft message by 1-30 ms and drops
// 3% (transport.Faults, EDGEKV_FAULT_DELAY), toggled by SIGUSR1; etcd
// skips it. disk-fault runs the same build with EDGEKV_FAULT_DISK=1, which
// puts each member's WAL on an fsx.FaultFS; SIGUSR2 to the leader or to a
// follower, in turn, makes every later sync of its WAL fail with EIO, and
// the member must exit on its own (fail-stop, status 1, core/server's
// fatal line in its log) within 10 s, or the scenario fails ("member went
// on after a failed fsync"); it is then restarted. power-loss runs the same
// build with EDGEKV_FAULT_POWER=1, which puts each member's WAL on an
// fsx.PowerFS; SIGPWR to the leader, a follower or every member makes the
// next WAL sync with something to make durable fail as the power does: the
// unsynced changes of the WAL are undone on disk (a random part, at least
// one that sync covered) and the member kills itself, to be restarted from
// what is left. etcd skips both.
//
// `go test ./torture` (part of make test) runs each scenario for 6 s;
// `make torture DURATION=60s SEED=7` runs longer and prints the results
// table (see the environment variables in torture_test.go).
package torture
