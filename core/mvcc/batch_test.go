package mvcc

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/edgekv/edgekv/persist/backend"
)

func TestStore_ReadsSeeAppliedWritesBeforeTheyAreCommitted(t *testing.T) {
	for seed := range uint64(3) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			// buffered commits only when the test forces it; direct
			// commits every Apply, as the store did before batching.
			buffered, _ := manualStore(t, 0)
			direct := newTestStoreWith(t, Options{BatchLimit: 1})
			mb, md := newModelRunner(t, buffered, seed), newModelRunner(t, direct, seed)
			forced := int64(0)
			for i := range 300 {
				mb.step()
				md.step()
				if got, want := buffered.readState(), direct.readState(); !reflect.DeepEqual(got, want) {
					t.Fatalf("step %d: reads through the buffer\n%+v\nwant (committed)\n%+v", i, got, want)
				}
				if buffered.Commits() != forced {
					t.Fatalf("step %d: %d commits, want %d", i, buffered.Commits(), forced)
				}
				// Now and then commit, so that the buffer lies over a
				// committed base it overrides (puts over old values,
				// tombstones, compactions deleting committed revisions).
				if i%37 == 36 {
					if err := buffered.ForceCommit(); err != nil {
						t.Fatal(err)
					}
					forced++
					if buffered.CommittedIndex() != buffered.ConsistentIndex() {
						t.Fatalf("committed index %d after ForceCommit, applied %d", buffered.CommittedIndex(), buffered.ConsistentIndex())
					}
				}
			}
			// The last commit may still run in the background: wait
			// for it (nothing is pending, so this commits nothing more).
			waitCommit(t, direct.Store)
			if direct.Commits() != int64(len(direct.ops)) {
				t.Fatalf("BatchLimit 1 committed %d times in %d Applies", direct.Commits(), len(direct.ops))
			}
		})
	}
}

func TestStore_CompactionInTheBufferHidesCommittedRevisions(t *testing.T) {
	s, _ := manualStore(t, 0)
	s.put("a", "1") // 2
	s.put("a", "2") // 3
	s.put("b", "1") // 4
	s.del("b", "")  // 5
	if err := s.ForceCommit(); err != nil {
		t.Fatal(err)
	}
	s.put("a", "3") // 6, uncommitted
	s.mustApply(&pb.CompactionRequest{Revision: 5})
	// a@2 and b@4 go (b's tombstone at exactly the compaction revision
	// stays, as in etcd).
	if got, want := s.backendRevisions(), []string{"3", "5t", "6"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("revisions seen through the buffer %q, want %q", got, want)
	}
	if _, err := s.Range(&pb.RangeRequest{Key: []byte("a"), Revision: 4}); !errors.Is(err, ErrCompacted) {
		t.Fatalf("range below the compaction: %v", err)
	}
	if kv := s.get("a"); string(kv.Value) != "3" || kv.Version != 3 {
		t.Fatalf("a = %v", kv)
	}
	h, _, _, err := s.HashKV(0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ForceCommit(); err != nil {
		t.Fatal(err)
	}
	if got, want := s.backendRevisions(), []string{"3", "5t", "6"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("revisions after the commit %q, want %q", got, want)
	}
	if h2, _, _, _ := s.HashKV(0); h2 != h {
		t.Fatalf("hash %x after the commit, %x before", h2, h)
	}
}

func TestStore_IdleStoreDoesNotCommit(t *testing.T) {
	s, clock := manualStore(t, 0)
	if clock.Armed() != 0 {
		t.Fatalf("a fresh store armed %d timers", clock.Armed())
	}
	clock.Advance(time.Hour)
	if s.Commits() != 0 {
		t.Fatalf("a fresh store committed %d times", s.Commits())
	}

	s.put("a", "1")
	clock.Advance(60 * time.Millisecond)
	s.put("b", "1") // does not push the deadline back
	clock.Advance(39 * time.Millisecond)
	if s.Commits() != 0 || s.CommittedIndex() != 0 {
		t.Fatalf("committed %d times (index %d) before the interval", s.Commits(), s.CommittedIndex())
	}
	clock.Advance(time.Millisecond)
	if s.Commits() != 1 || s.CommittedIndex() != 2 {
		t.Fatalf("%d commits, committed index %d, want 1 and 2", s.Commits(), s.CommittedIndex())
	}

	// Idle: no timer, no commit, however long.
	if clock.Armed() != 0 {
		t.Fatalf("%d timers armed while idle", clock.Armed())
	}
	clock.Advance(24 * time.Hour)
	if s.Commits() != 1 {
		t.Fatalf("an idle store committed: %d commits", s.Commits())
	}
	// Replayed entries change nothing and arm nothing.
	if _, err := s.Apply(1, []Op{{Index: 1, Req: putReq("a", "1")}}); err != nil {
		t.Fatal(err)
	}
	if err := s.ForceCommit(); err != nil {
		t.Fatal(err)
	}
	if clock.Armed() != 0 || s.Commits() != 1 {
		t.Fatalf("a replayed entry armed %d timers, %d commits", clock.Armed(), s.Commits())
	}

	s.put("c", "1")
	clock.Advance(100 * time.Millisecond)
	if s.Commits() != 2 {
		t.Fatalf("%d commits, want 2", s.Commits())
	}
}

func TestStore_BatchLimitCommitsInApply(t *testing.T) {
	var durations []time.Duration
	clock := backend.NewManualClock(time.Unix(0, 0))
	// A put Apply writes 3 backend entries: the revision, the consistent
	// index and the term.
	s := newTestStoreWith(t, Options{Clock: clock, BatchLimit: 9, OnCommit: func(d time.Duration) { durations = append(durations, d) }})
	s.put("a", "1")
	s.put("a", "2")
	if s.Commits() != 0 {
		t.Fatalf("%d commits below the limit", s.Commits())
	}
	s.put("a", "3")
	// The Apply handed the writes to a commit, which runs in the
	// background: wait for it.
	waitCommit(t, s.Store)
	if s.Commits() != 1 || s.CommittedIndex() != 3 || len(durations) != 1 {
		t.Fatalf("%d commits, committed index %d, %d observations; want 1, 3, 1", s.Commits(), s.CommittedIndex(), len(durations))
	}
	if clock.Armed() != 0 {
		t.Fatalf("the timer of a committed batch is still armed")
	}
	// One Apply of many entries commits once, at its end.
	s.apply(putReq("b", "1"), putReq("b", "2"), putReq("b", "3"), putReq("b", "4"), putReq("b", "5"), putReq("b", "6"), putReq("b", "7"))
	waitCommit(t, s.Store)
	if s.Commits() != 2 || s.CommittedIndex() != 10 {
		t.Fatalf("%d commits, committed index %d; want 2, 10", s.Commits(), s.CommittedIndex())
	}
}

func TestStore_CloseCommitsPendingWrites(t *testing.T) {
	s, _ := manualStore(t, 0)
	s.put("a", "1")
	s.del("a", "")
	s.put("b", "2")
	want := s.readState()
	if s.Commits() != 0 {
		t.Fatal("committed before Close")
	}
	s.reopen()
	if got := s.readState(); !reflect.DeepEqual(got, want) {
		t.Fatalf("after Close and Open\n%+v\nwant\n%+v", got, want)
	}
}

// crashImage copies the store's file as it is on disk now: bbolt writes
// the file only when it commits, and syncs it then, so the copy is what a
// power cut at this moment would leave.
func crashImage(t *testing.T, s *testStore) string {
	t.Helper()
	raw, err := os.ReadFile(s.path)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "crashed.db")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestStore_CrashLosesWritesTogetherWithTheirConsistentIndex(t *testing.T) {
	s, clock := manualStore(t, 0)
	m := newModelRunner(t, s, 11)
	for i := range 250 {
		m.step()
		if i%40 == 39 {
			clock.Advance(100 * time.Millisecond) // a timer commit
		}
	}
	committed := s.CommittedIndex()
	if committed == 0 || committed >= s.ConsistentIndex() {
		t.Fatalf("committed index %d, applied %d: want some of each", committed, s.ConsistentIndex())
	}
	want := s.readState()

	crashed := openTestStore(t, crashImage(t, s), Options{Logger: testLogger(t)})
	if crashed.ConsistentIndex() != committed || crashed.CommittedIndex() != committed {
		t.Fatalf("after the crash consistent index %d, want the committed %d", crashed.ConsistentIndex(), committed)
	}
	if crashed.Rev() >= want.Rev {
		t.Fatalf("after the crash revision %d, want the uncommitted writes (up to %d) gone", crashed.Rev(), want.Rev)
	}
	// The server replays the Raft log from the consistent index on: all
	// of it, in batches, including entries the backend already has.
	for i := 0; i < len(s.ops); i += 7 {
		batch := s.ops[i:min(i+7, len(s.ops))]
		if _, err := crashed.Apply(1, batch); err != nil {
			t.Fatal(err)
		}
	}
	if got := crashed.readState(); !reflect.DeepEqual(got, want) {
		t.Fatalf("after replay\n%+v\nwant\n%+v", got, want)
	}
}

func TestStore_SnapshotOpensToTheSameState(t *testing.T) {
	s, _ := manualStore(t, 0)
	m := newModelRunner(t, s, 5)
	for range 150 {
		m.step()
	}
	want := s.readState()
	rc, size, ci, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if ci != want.CI || s.CommittedIndex() != want.CI {
		t.Fatalf("snapshot at consistent index %d (committed %d), want %d", ci, s.CommittedIndex(), want.CI)
	}
	// Writes after the snapshot do not reach it.
	s.put("after", "snapshot")

	t.Run("through WriteTo", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "snap.db")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(f, rc)
		if err != nil || n != size {
			t.Fatalf("wrote %d of %d bytes: %v", n, size, err)
		}
		if err := errors.Join(rc.Close(), f.Close()); err != nil {
			t.Fatal(err)
		}
		got := openTestStore(t, path, Options{Logger: testLogger(t)})
		if st := got.readState(); !reflect.DeepEqual(st, want) {
			t.Fatalf("snapshot opens to\n%+v\nwant\n%+v", st, want)
		}
	})
	t.Run("through Read", func(t *testing.T) {
		rc, size, _, err := s.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		raw, err := io.ReadAll(struct{ io.Reader }{rc}) // hide WriterTo
		if err != nil || int64(len(raw)) != size {
			t.Fatalf("read %d of %d bytes: %v", len(raw), size, err)
		}
	})
	t.Run("closed before it is read", func(t *testing.T) {
		rc, _, _, err := s.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 10)
		if _, err := rc.Read(buf); err != nil {
			t.Fatal(err)
		}
		if err := rc.Close(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestStore_RestoreReplacesTheStateWithASnapshot(t *testing.T) {
	leader, _ := manualStore(t, 0)
	ml := newModelRunner(t, leader, 3)
	for range 120 {
		ml.step()
	}
	rc, _, ci, err := leader.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	follower, _ := manualStore(t, 0)
	follower.put("stale", "x") // committed
	if err := follower.ForceCommit(); err != nil {
		t.Fatal(err)
	}
	follower.put("stale", "y") // uncommitted: superseded by the snapshot
	received := filepath.Join(filepath.Dir(follower.path), "received.snap.db")
	f, err := os.Create(received)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, rc); err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(rc.Close(), f.Close()); err != nil {
		t.Fatal(err)
	}

	t.Run("a file that is not a backend is refused and changes nothing", func(t *testing.T) {
		bad := filepath.Join(filepath.Dir(follower.path), "bad.db")
		if err := os.WriteFile(bad, []byte("not a bbolt file"), 0o600); err != nil {
			t.Fatal(err)
		}
		before := follower.readState()
		if err := follower.Restore(bad); err == nil {
			t.Fatal("restored from garbage")
		}
		if after := follower.readState(); !reflect.DeepEqual(after, before) {
			t.Fatalf("a refused restore changed the store")
		}
		follower.put("still", "works")
	})

	want := leader.readState()
	if err := follower.Restore(received); err != nil {
		t.Fatal(err)
	}
	if follower.ConsistentIndex() != ci || follower.CommittedIndex() != ci {
		t.Fatalf("consistent index %d after restore, want %d", follower.ConsistentIndex(), ci)
	}
	if got := follower.readState(); !reflect.DeepEqual(got, want) {
		t.Fatalf("after restore\n%+v\nwant\n%+v", got, want)
	}
	if _, err := os.Stat(received); !os.IsNotExist(err) {
		t.Fatalf("the received file was not moved: %v", err)
	}
	// Both continue with the same entries to the same state, and the
	// follower keeps it across a restart.
	follower.raftIndex = ci
	for _, req := range []any{putReq("x", "1"), delReq("a", "z"), &pb.CompactionRequest{Revision: leader.Rev()}} {
		leader.apply(req)
		follower.apply(req)
	}
	follower.reopen()
	if got, want := follower.readState(), leader.readState(); !reflect.DeepEqual(got, want) {
		t.Fatalf("after more entries and a restart\n%+v\nwant\n%+v", got, want)
	}
}

func TestStore_FailedBackgroundCommitFailsEveryLaterApply(t *testing.T) {
	var file *os.File
	clock := backend.NewManualClock(time.Unix(0, 0))
	s := newTestStoreWith(t, Options{Clock: clock, BatchLimit: 1 << 30, backendOpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
		f, err := os.OpenFile(name, flag, perm)
		file = f
		return f, err
	}})
	s.put("a", "1")
	// The disk goes away under the store.
	if err := file.Close(); err != nil {
		t.Fatal(err)
	}
	clock.Advance(100 * time.Millisecond)
	if s.Commits() != 0 {
		t.Fatalf("the commit succeeded")
	}
	if _, err := s.Apply(1, []Op{{Index: 2, Req: putReq("b", "1")}}); !errors.Is(err, backend.ErrFailed) {
		t.Fatalf("Apply after a failed commit: %v, want backend.ErrFailed", err)
	}
	if err := s.ForceCommit(); !errors.Is(err, backend.ErrFailed) {
		t.Fatalf("ForceCommit after a failed commit: %v", err)
	}
	if _, _, _, err := s.Snapshot(); !errors.Is(err, backend.ErrFailed) {
		t.Fatalf("Snapshot after a failed commit: %v", err)
	}
	// Reads still answer from what was applied, until the server stops.
	if kv := s.get("a"); kv == nil || string(kv.Value) != "1" {
		t.Fatalf("a = %v", kv)
	}
	if err := s.Close(); !errors.Is(err, backend.ErrFailed) {
		t.Fatalf("Close: %v", err)
	}
}
