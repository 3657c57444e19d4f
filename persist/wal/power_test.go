package wal

import (
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/edgekv/edgekv/persist/fsx"
)

// TestWAL_PowerLossOnARealDisk runs the crash test's load on the real file
// system through fsx.PowerFS (direct I/O where the disk takes it, for half
// the seeds), arms it at a random step so that the next sync with something
// to make durable is in flight when the power fails, and checks that the
// WAL reopens, from the real files, to a state the model allows, with every
// value pointer and located entry reading back, and that it appends after.
// The same checks as TestWAL_PowerLossNeverLosesAnAcknowledgedWrite, on the
// kernel's files, page cache and O_DIRECT instead of CrashFS.
func TestWAL_PowerLossOnARealDisk(t *testing.T) {
	seeds := 150
	if testing.Short() {
		seeds = 30
	}
	var sum fsx.PowerLoss
	direct := 0
	for seed := range int64(seeds) {
		root := t.TempDir()
		if err := os.MkdirAll(filepath.Join(root, "member"), 0o755); err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(root, "member", "wal")
		var loss fsx.PowerLoss
		pfs, err := fsx.NewPowerFS(fsx.OS{}, filepath.Join(root, "backup"), seed, func(l fsx.PowerLoss) { loss = l })
		if err != nil {
			t.Fatal(err)
		}
		var logs strings.Builder
		o := Options{FS: pfs, Logger: slog.New(slog.NewTextHandler(&logs, nil)), SegmentSize: 4 << 10, MaxWALs: 2, inlinePrepare: true, BufferedIO: seed%2 == 1}
		ptrs := newPtrModel(seed)
		o.Pinned = ptrs.pins.pinned
		rng := rand.New(rand.NewPCG(uint64(seed), 4))
		w, err := CreateWithOptions(dir, testMD, o)
		if err != nil {
			t.Fatalf("seed %d: Create: %v", seed, err)
		}
		if w.df != nil {
			direct++
		}
		armAt := rng.IntN(50)
		m, earlier, inflight := load(w, newModel(), rng, 300, ptrs, func(i int) {
			if i == armAt {
				pfs.Arm()
			}
		})
		if !pfs.Off() {
			t.Fatalf("seed %d: armed at step %d, yet no sync tripped the power off in 300 steps", seed, armAt)
		}
		w.Close() // fails: the power is off
		sum.Files += loss.Files
		sum.Dirs += loss.Dirs
		sum.Lost += loss.Lost
		sum.Kept += loss.Kept
		sum.Torn += loss.Torn
		sum.BytesLost += loss.BytesLost

		o.FS = fsx.OS{}
		w, st, err := OpenWithOptions(dir, o)
		if err != nil {
			t.Fatalf("seed %d: Open after power loss (%v): %v\n%s", seed, loss, err, logs.String())
		}
		now := matchOutcome(st, earlier, m, inflight)
		if now == nil {
			t.Fatalf("seed %d: after power loss (%v) the state matches no outcome:\n got hs %v snap %+v entries %v\nwant hs %+v snap %+v entries %v",
				seed, loss, st.HardState, st.Snapshot, view(st.Entries), m.hs, m.snap, m.entries())
		}
		if err := ptrs.check(w); err != nil {
			t.Fatalf("seed %d: after power loss (%v): %v", seed, loss, err)
		}
		if err := checkLocated(w, st.Entries); err != nil {
			t.Fatalf("seed %d: after power loss (%v): %v", seed, loss, err)
		}
		next := max(now.last, now.snap.Index) + 1
		add := ent(now.hs.Term+1, next, "after")
		if err := w.Save(hardState(now.hs.Term+1, 1, now.hs.Commit), []*raftpb.Entry{add}); err != nil {
			t.Fatalf("seed %d: Save after recovery: %v", seed, err)
		}
		if err := w.Close(); err != nil {
			t.Fatalf("seed %d: Close after recovery: %v", seed, err)
		}
	}
	if sum.Lost == 0 {
		t.Fatalf("no power loss dropped anything: %v", sum)
	}
	t.Logf("%d power losses (%d with direct I/O): %v", seeds, direct, sum)
}
