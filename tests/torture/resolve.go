package torture

import (
	"context"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/edgekv/edgekv/tests/internal/watchcheck"
)

// readHistory returns the committed history: every event under the
// workload's prefix from the first revision to last, with prev_kv, read
// through a fresh watch (nothing is ever compacted during a run, and
// every revision after the first is a write of the workload).
func readHistory(t *testing.T, cli *clientv3.Client, last int64) []*mvccpb.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	events, err := watchcheck.ReadHistory(ctx, cli, keyPrefix, 2, last)
	if err != nil {
		t.Fatal(err)
	}
	return events
}

// committedAt returns, for every value the workload wrote, the revision
// the history has it at.
func committedAt(history []*mvccpb.Event) map[int]int64 {
	at := map[int]int64{}
	for _, ev := range history {
		if ev.Type == mvccpb.PUT {
			at[parseValue(string(ev.Kv.Value))] = ev.Kv.ModRevision
		}
	}
	return at
}

// resolveUnknown settles the unknown outcomes of writes of a value (put,
// compare-and-swap, 2-key txn) from the committed history: every value is
// unique, so one that the history holds took effect at that revision, and
// one it does not hold had no effect at all (not applied, or its compare
// or lease check failed). The first keeps its open-ended interval (it may
// have taken effect any time after its call) but gets its revision, so
// the checker no longer has to try it everywhere; the second is dropped.
// Unknown deletes, grants and revokes stay unknown. This is Jepsen's
// final-read resolution: it trusts the history only for operations
// nobody was told the outcome of, and the reads still check the history
// against everything acknowledged.
func resolveUnknown(ops []porcupine.Operation, at map[int]int64) (out []porcupine.Operation, resolved, dropped int) {
	for _, op := range ops {
		in, o := op.Input.(input), op.Output.(output)
		if !o.unknown || (in.kind != opPut && in.kind != opCAS && in.kind != opMultiPut) {
			out = append(out, op)
			continue
		}
		rev, ok := at[in.value]
		if !ok {
			dropped++
			continue
		}
		op.Output = output{rev: rev, succeeded: in.kind != opPut}
		out = append(out, op)
		resolved++
	}
	return out, resolved, dropped
}
