package e2e

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/edgekv/edgekv/tests/framework"
)

// watchWrites are the writes every watch of TestEtcdctl_WatchSameAsEtcd
// sees (revisions 2..9 on a fresh cluster). Every watch there covers the
// key foo, so the last one, foo=end, tells that a watch has printed
// everything.
var watchWrites = []ctlStep{
	step("put", "foo", "bar"),                   // 2
	step("put", "foo1", "a"),                    // 3
	step("put", "zoo", "z"),                     // 4
	step("put", "foo", "bar2"),                  // 5
	step("del", "foo1"),                         // 6
	txn("\nput foo2 x\nput foo3 y\n\n\n", "-i"), // 7: two events at one revision
	step("del", "foo", "--prefix"),              // 8: three deletes at one revision
	step("put", "foo", "end"),                   // 9
}

// watchStep is one etcdctl watch of TestEtcdctl_WatchSameAsEtcd.
type watchStep struct {
	args []string
	// exits: the server ends the watch (its revision is compacted) and
	// etcdctl exits by itself; otherwise it runs until foo=end is printed
	// and is then interrupted.
	exits bool
}

func watchOf(args ...string) watchStep { return watchStep{args: append([]string{"watch"}, args...)} }
func watchExits(args ...string) watchStep {
	return watchStep{args: append([]string{"watch"}, args...), exits: true}
}

var (
	// liveWatches start before the writes.
	liveWatches = []watchStep{
		watchOf("foo", "--prefix", "--prev-kv", "--progress-notify"),
		watchOf("foo", "--progress-notify"),
		watchOf("", "--prefix", "--progress-notify"),
	}
	// historyWatches start after them and replay the history.
	historyWatches = []watchStep{
		watchOf("foo", "--prefix", "--rev", "2", "--prev-kv"),
		watchOf("foo", "--rev", "2"),
		watchOf("foo", "--prefix", "--rev", "2", "--prev-kv", "-w", "json"),
		watchOf("foo", "foo2", "--rev", "1"),
		watchOf("", "--prefix", "--rev", "4"),
		watchOf("foo", "--rev", "9", "-w", "json"),
	}
	// compactedWatches start after "compaction 6".
	compactedWatches = []watchStep{
		watchExits("foo", "--rev", "5"),
		watchExits("foo", "--prefix", "--rev", "1", "--prev-kv"),
		// At the compaction revision the history is whole, as in etcd;
		// the value before it is gone, so its event has no prev_kv.
		watchOf("foo", "--prefix", "--rev", "6", "--prev-kv"),
	}
)

// TestEtcdctl_WatchSameAsEtcd runs stock etcdctl watch against a fresh
// 1-member cluster of each server and compares what it prints (stdout with
// progress lines removed, error lines, exit code) with real etcd's: watches
// that start before the writes (a prefix with --prev-kv, a key, everything),
// watches that replay the history from a revision (--prefix --rev N
// --prev-kv, plain and as JSON with the response headers, a range, from a
// revision that is the last one), and watches from a compacted revision,
// which the server cancels (and one from the compaction revision itself,
// which it does not). Subtest etcd runs against a second etcd, which shows
// the comparison leaves nothing that varies.
func TestEtcdctl_WatchSameAsEtcd(t *testing.T) {
	ctl := framework.BuildEtcdctl(t)
	want := watchTranscript(t, ctl, framework.BuildEtcd(t))
	for _, s := range []server{edgekv, etcd} {
		t.Run(s.name, func(t *testing.T) {
			if s.name == edgekv.name {
				skipEdgekvIfAsked(t)
			}
			got := watchTranscript(t, ctl, s.build(t))
			require.Equal(t, len(want), len(got))
			for i := range want {
				if got[i].answer != want[i].answer {
					t.Errorf("etcdctl %s: answers differ (masked)\n----- etcd -----\n%s----- %s -----\n%s",
						got[i].what, want[i].answer, s.name, got[i].answer)
				}
			}
		})
	}
}

type watchAnswer struct {
	what   string
	answer ctlAnswer
}

// watchTranscript starts a fresh 1-member cluster of binary, runs the
// watches and writes against it, and returns the masked answers in a fixed
// order.
func watchTranscript(t *testing.T, ctl, binary string) []watchAnswer {
	t.Helper()
	c := framework.StartCluster(t, binary, 1, framework.WithFlags("--watch-progress-notify-interval=200ms"))
	m := newMasker(t, c)
	var out []watchAnswer
	record := func(args []string, res framework.CtlResult) {
		t.Logf("etcdctl %s: exit %d\n%s%s", strings.Join(args, " "), res.ExitCode, res.Stdout, res.Stderr)
		out = append(out, watchAnswer{what: strings.Join(args, " "), answer: ctlAnswer{
			Stdout:   m.mask(dropProgressLines(res.Stdout), nil),
			Stderr:   m.mask(dropLogLines(res.Stderr), nil),
			ExitCode: res.ExitCode,
		}})
	}
	write := func(s ctlStep) {
		res := framework.RunEtcdctl(t, ctl, c.Endpoints(), s.stdin, s.args...)
		require.Zero(t, res.ExitCode, "etcdctl %s: %s%s", strings.Join(s.args, " "), res.Stdout, res.Stderr)
		record(s.args, res)
	}
	// finish waits for the end of a watch: etcdctl exiting by itself, or
	// the last write printed (then it is interrupted).
	finish := func(w watchStep, p *framework.CtlProcess) {
		if w.exits {
			res, ok := p.Wait(framework.CtlTimeout)
			require.True(t, ok, "etcdctl %s did not exit: %s", strings.Join(w.args, " "), res.Stdout+res.Stderr)
			record(w.args, res)
			return
		}
		printedEnd := func(stdout string) bool {
			return strings.HasSuffix(stdout, "\nend\n") || strings.Contains(stdout, `"value":"ZW5k"`)
		}
		ok := p.WaitFor(framework.CtlTimeout, printedEnd)
		res := p.Stop()
		require.True(t, ok, "etcdctl %s did not print foo=end:\n%s%s", strings.Join(w.args, " "), res.Stdout, res.Stderr)
		record(w.args, res)
	}

	var live []*framework.CtlProcess
	for _, w := range liveWatches {
		p := framework.StartEtcdctl(t, ctl, c.Endpoints(), w.args...)
		// A progress notification shows the watch is in place.
		require.True(t, p.WaitFor(framework.CtlTimeout, func(s string) bool { return strings.Contains(s, "progress notify:") }),
			"etcdctl %s: no progress notification", strings.Join(w.args, " "))
		live = append(live, p)
	}
	for _, s := range watchWrites {
		write(s)
	}
	for i, w := range liveWatches {
		finish(w, live[i])
	}
	for _, w := range historyWatches {
		finish(w, framework.StartEtcdctl(t, ctl, c.Endpoints(), w.args...))
	}
	write(step("compaction", "6"))
	for _, w := range compactedWatches {
		finish(w, framework.StartEtcdctl(t, ctl, c.Endpoints(), w.args...))
	}
	return out
}

// dropProgressLines removes etcdctl's "progress notify: N" lines, whose
// number depends on timing.
func dropProgressLines(s string) string {
	var keep []string
	for _, line := range strings.SplitAfter(s, "\n") {
		if !strings.HasPrefix(line, "progress notify: ") {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "")
}

func TestDropProgressLines(t *testing.T) {
	require.Equal(t, "PUT\nfoo\nbar\n", dropProgressLines("progress notify: 1\nPUT\nfoo\nprogress notify: 2\nbar\n"))
}
