package torture

import (
	"context"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// readHistory returns, for every value the workload wrote, the revision
// the cluster committed it at, read through a watch of the keys from the
// first revision to last (nothing is ever compacted during a run).
func readHistory(t *testing.T, cli *clientv3.Client, last int64) map[int]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	at := map[int]int64{}
	if last < 2 {
		return at
	}
	wch := cli.Watch(ctx, keyPrefix, clientv3.WithPrefix(), clientv3.WithRev(2))
	for resp := range wch {
		if err := resp.Err(); err != nil {
			t.Fatalf("reading the history: %v", err)
		}
		for _, ev := range resp.Events {
			if ev.Type == mvccpb.PUT {
				at[parseValue(string(ev.Kv.Value))] = ev.Kv.ModRevision
			}
			if ev.Kv.ModRevision >= last {
				return at
			}
		}
		if resp.Header.Revision >= last && len(resp.Events) == 0 {
			return at
		}
	}
	t.Fatalf("reading the history: the watch ended before revision %d", last)
	return nil
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
