package backend

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"
)

func TestReadTx_SeesPublishedWritesOverTheCommittedState(t *testing.T) {
	b, _ := openTest(t, Options{})
	write(t, b, "a", "1", "b", "2", "c", "3", "d", "4")
	if err := b.ForceCommit(); err != nil {
		t.Fatal(err)
	}
	// Not committed: a new key before all, an overwrite, a deletion, a
	// deletion of a missing key, a new key after all, a key between.
	write(t, b, "0", "new", "b", "20", "c", "", "x", "", "z", "26", "bb", "22")
	if b.Commits() != 1 || b.Pending() != 6 {
		t.Fatalf("%d commits, %d pending", b.Commits(), b.Pending())
	}
	tests := []struct {
		from, to string
		want     []string
	}{
		{"", "", []string{"0=new", "a=1", "b=20", "bb=22", "d=4", "z=26"}},
		{"b", "", []string{"b=20", "bb=22", "d=4", "z=26"}},
		{"", "c", []string{"0=new", "a=1", "b=20", "bb=22"}},
		{"c", "d", []string{}},
		{"bb", "z", []string{"bb=22", "d=4"}},
		{"a", "b", []string{"a=1"}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("range [%q, %q)", tt.from, tt.to), func(t *testing.T) {
			if got := dump(t, b, bucketA, tt.from, tt.to); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
	t.Run("get", func(t *testing.T) {
		tx, err := b.ReadTx()
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Done()
		for k, want := range map[string]string{"0": "new", "a": "1", "b": "20", "c": "", "x": "", "z": "26"} {
			if got := string(tx.Get(bucketA, []byte(k))); got != want {
				t.Fatalf("%s = %q, want %q", k, got, want)
			}
		}
		if tx.Get(bucketB, []byte("a")) != nil || tx.Get([]byte("nope"), []byte("a")) != nil {
			t.Fatal("found a key in the wrong bucket")
		}
	})
	t.Run("an early break stops the iteration", func(t *testing.T) {
		tx, err := b.ReadTx()
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Done()
		var got []string
		for k := range tx.Range(bucketA, nil, nil) {
			got = append(got, string(k))
			if len(got) == 3 {
				break
			}
		}
		if !reflect.DeepEqual(got, []string{"0", "a", "b"}) {
			t.Fatalf("got %q", got)
		}
	})
	t.Run("the same after the commit", func(t *testing.T) {
		before := dump(t, b, bucketA, "", "")
		if err := b.ForceCommit(); err != nil {
			t.Fatal(err)
		}
		if got := dump(t, b, bucketA, "", ""); !reflect.DeepEqual(got, before) {
			t.Fatalf("after the commit %q, before %q", got, before)
		}
	})
}

func TestReadTx_MatchesAModelUnderRandomWritesAndCommits(t *testing.T) {
	b, clock := openTest(t, Options{})
	rnd := rand.New(rand.NewPCG(1, 2))
	model := map[string]string{}
	key := func() string { return fmt.Sprintf("k%02d", rnd.IntN(40)) }
	for step := range 400 {
		var kvs []string
		for range 1 + rnd.IntN(6) {
			k := key()
			if rnd.IntN(3) == 0 {
				kvs = append(kvs, k, "")
				delete(model, k)
			} else {
				v := fmt.Sprint(step)
				kvs = append(kvs, k, v)
				model[k] = v
			}
		}
		write(t, b, kvs...)
		switch rnd.IntN(10) {
		case 0:
			clock.Advance(DefaultBatchInterval)
		case 1:
			if err := b.ForceCommit(); err != nil {
				t.Fatal(err)
			}
		}
		from, to := key(), key()
		if rnd.IntN(4) == 0 {
			from = ""
		}
		if rnd.IntN(4) == 0 || to <= from {
			to = ""
		}
		var want []string
		for _, k := range slices.Sorted(maps.Keys(model)) {
			if k >= from && (to == "" || k < to) {
				want = append(want, k+"="+model[k])
			}
		}
		if got := dump(t, b, bucketA, from, to); !slices.Equal(got, want) {
			t.Fatalf("step %d: [%q, %q) = %q, want %q", step, from, to, got, want)
		}
	}
	if b.Commits() == 0 {
		t.Fatal("never committed")
	}
}

func TestReadTx_SeesOnlyWhatWasPublishedWhenItBegan(t *testing.T) {
	b, _ := openTest(t, Options{})
	write(t, b, "a", "1")
	old, err := b.ReadTx()
	if err != nil {
		t.Fatal(err)
	}
	defer old.Done()

	tx, err := b.BeginBatch()
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Put(bucketA, []byte("b"), []byte("2")); err != nil {
		t.Fatal(err)
	}
	if string(tx.Get(bucketA, []byte("b"))) != "2" {
		t.Fatal("the batch does not see its own write")
	}
	if got := dump(t, b, bucketA, "", ""); !reflect.DeepEqual(got, []string{"a=1"}) {
		t.Fatalf("an unpublished write is visible: %q", got)
	}
	tx.Publish()
	if got := dump(t, b, bucketA, "", ""); !reflect.DeepEqual(got, []string{"a=1", "b=2"}) {
		t.Fatalf("after Publish %q", got)
	}
	if err := tx.End(); err != nil {
		t.Fatal(err)
	}
	if err := b.ForceCommit(); err != nil {
		t.Fatal(err)
	}
	if got := dumpTx(old, bucketA, "", ""); !reflect.DeepEqual(got, []string{"a=1"}) {
		t.Fatalf("an older read transaction sees %q", got)
	}
}

func TestBackend_CommitsOneIntervalAfterTheFirstWriteAndNeverWhenIdle(t *testing.T) {
	var observed []time.Duration
	b, clock := openTest(t, Options{OnCommit: func(d time.Duration) { observed = append(observed, d) }})
	clock.Advance(time.Hour)
	if b.Commits() != 0 || clock.Armed() != 0 {
		t.Fatalf("a fresh backend: %d commits, %d timers", b.Commits(), clock.Armed())
	}
	write(t, b, "a", "1")
	clock.Advance(90 * time.Millisecond)
	write(t, b, "b", "1")
	clock.Advance(9 * time.Millisecond)
	if b.Commits() != 0 {
		t.Fatal("committed before the interval")
	}
	clock.Advance(time.Millisecond)
	if b.Commits() != 1 || b.Pending() != 0 || len(observed) != 1 {
		t.Fatalf("%d commits, %d pending, %d observed", b.Commits(), b.Pending(), len(observed))
	}
	if clock.Armed() != 0 {
		t.Fatal("a timer is armed while idle")
	}
	clock.Advance(24 * time.Hour)
	if b.Commits() != 1 {
		t.Fatalf("an idle backend committed: %d", b.Commits())
	}
	// A batch without writes commits nothing and arms nothing.
	tx, err := b.BeginBatch()
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.End(); err != nil {
		t.Fatal(err)
	}
	if err := b.ForceCommit(); err != nil {
		t.Fatal(err)
	}
	if b.Commits() != 1 || clock.Armed() != 0 {
		t.Fatalf("an empty batch: %d commits, %d timers", b.Commits(), clock.Armed())
	}
}

func TestBackend_BatchLimitCommitsAtEnd(t *testing.T) {
	b, clock := openTest(t, Options{BatchLimit: 4})
	write(t, b, "a", "1", "b", "1", "c", "1")
	if b.Commits() != 0 {
		t.Fatal("committed below the limit")
	}
	write(t, b, "d", "1", "e", "1", "f", "1") // 6 >= 4: one commit, started at End
	if b.Pending() != 0 {
		t.Fatalf("End did not hand the writes to a commit: %d pending", b.Pending())
	}
	waitCommit(b)
	if b.Commits() != 1 || b.Pending() != 0 || clock.Armed() != 0 {
		t.Fatalf("%d commits, %d pending, %d timers", b.Commits(), b.Pending(), clock.Armed())
	}
}

func TestBackend_OpenWritesNothingWhenTheBucketsExist(t *testing.T) {
	b, _ := openTest(t, Options{})
	write(t, b, "a", "1")
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(b.path)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := openTestAt(t, b.path, Options{})
	if err := b2.Close(); err != nil {
		t.Fatal(err)
	}
	after, err := os.ReadFile(b.path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatal("Open and Close of an idle backend changed the file")
	}
}

func TestBackend_CloseCommitsThePendingBatch(t *testing.T) {
	b, _ := openTest(t, Options{})
	write(t, b, "a", "1", "b", "2")
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("a second Close: %v", err)
	}
	if _, err := b.ReadTx(); !errors.Is(err, ErrClosed) {
		t.Fatalf("ReadTx after Close: %v", err)
	}
	if _, err := b.BeginBatch(); !errors.Is(err, ErrClosed) {
		t.Fatalf("BeginBatch after Close: %v", err)
	}
	b2, _ := openTestAt(t, b.path, Options{})
	if got := dump(t, b2, bucketA, "", ""); !reflect.DeepEqual(got, []string{"a=1", "b=2"}) {
		t.Fatalf("after reopening %q", got)
	}
}

func TestBackend_CrashLosesTheUncommittedBatchWhole(t *testing.T) {
	b, _ := openTest(t, Options{})
	write(t, b, "a", "1", "b", "1")
	if err := b.ForceCommit(); err != nil {
		t.Fatal(err)
	}
	write(t, b, "a", "2", "b", "")
	write(t, b, "c", "2")
	crashed, _ := openTestAt(t, crashImage(t, b), Options{})
	if got := dump(t, crashed, bucketA, "", ""); !reflect.DeepEqual(got, []string{"a=1", "b=1"}) {
		t.Fatalf("after the crash %q, want the last commit", got)
	}
}

func TestBackend_AbortFailsTheBackend(t *testing.T) {
	b, clock := openTest(t, Options{})
	write(t, b, "a", "1")
	if err := b.ForceCommit(); err != nil {
		t.Fatal(err)
	}
	write(t, b, "b", "1") // published, not committed
	tx, err := b.BeginBatch()
	if err != nil {
		t.Fatal(err)
	}
	cause := errors.New("corrupt entry")
	if err := tx.Abort(cause); !errors.Is(err, ErrFailed) || !errors.Is(err, cause) {
		t.Fatalf("Abort = %v", err)
	}
	if err := tx.End(); !errors.Is(err, ErrBatchEnded) {
		t.Fatalf("End after Abort: %v", err)
	}
	for name, err := range map[string]error{
		"BeginBatch":  func() error { _, err := b.BeginBatch(); return err }(),
		"ForceCommit": b.ForceCommit(),
		"Snapshot":    func() error { _, err := b.Snapshot(); return err }(),
		"Err":         b.Err(),
	} {
		if !errors.Is(err, ErrFailed) || !errors.Is(err, cause) {
			t.Fatalf("%s after Abort: %v", name, err)
		}
	}
	clock.Advance(time.Hour)
	if b.Commits() != 1 {
		t.Fatal("a failed backend committed")
	}
	// Readers keep what was published.
	if got := dump(t, b, bucketA, "", ""); !reflect.DeepEqual(got, []string{"a=1", "b=1"}) {
		t.Fatalf("reads after the failure %q", got)
	}
	if err := b.Close(); !errors.Is(err, ErrFailed) {
		t.Fatalf("Close: %v", err)
	}
	b2, _ := openTestAt(t, b.path, Options{})
	if got := dump(t, b2, bucketA, "", ""); !reflect.DeepEqual(got, []string{"a=1"}) {
		t.Fatalf("after restart %q, want only the commit", got)
	}
}

func TestBackend_FailedWriteAbortsTheBatchAtEnd(t *testing.T) {
	b, _ := openTest(t, Options{})
	tx, err := b.BeginBatch()
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Put([]byte("missing"), []byte("k"), []byte("v")); !errors.Is(err, ErrBucketNotFound) {
		t.Fatalf("Put to a missing bucket: %v", err)
	}
	if err := tx.Put(bucketA, []byte("k"), []byte("v")); !errors.Is(err, ErrBucketNotFound) {
		t.Fatalf("Put after a failed Put: %v", err)
	}
	if err := tx.End(); !errors.Is(err, ErrFailed) || !errors.Is(err, ErrBucketNotFound) {
		t.Fatalf("End = %v", err)
	}
}

func TestBackend_FailedTimerCommitIsReportedToTheNextWriter(t *testing.T) {
	var file *os.File
	b, clock := openTest(t, Options{OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
		f, err := os.OpenFile(name, flag, perm)
		file = f
		return f, err
	}})
	write(t, b, "a", "1")
	file.Close() // the disk goes away
	clock.Advance(DefaultBatchInterval)
	if b.Commits() != 0 || b.Err() == nil {
		t.Fatalf("%d commits, Err %v", b.Commits(), b.Err())
	}
	if _, err := b.BeginBatch(); !errors.Is(err, ErrFailed) {
		t.Fatalf("BeginBatch after a failed commit: %v", err)
	}
}

func TestSnapshot_IsTheDatabaseAsOfAForcedCommit(t *testing.T) {
	b, _ := openTest(t, Options{})
	write(t, b, "a", "1", "b", "2")
	snap, err := b.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	if b.Commits() != 1 {
		t.Fatal("Snapshot did not commit the pending writes")
	}
	write(t, b, "c", "3")
	if err := b.ForceCommit(); err != nil {
		t.Fatal(err)
	}
	if string(snap.Get(bucketA, []byte("b"))) != "2" || snap.Get(bucketA, []byte("c")) != nil {
		t.Fatal("Get on the snapshot")
	}
	path := filepath.Join(t.TempDir(), "snap.db")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := io.Copy(f, snap); err != nil || n != snap.Size() {
		t.Fatalf("wrote %d of %d: %v", n, snap.Size(), err)
	}
	if err := errors.Join(f.Close(), snap.Close(), snap.Close()); err != nil {
		t.Fatal(err)
	}
	got, _ := openTestAt(t, path, Options{})
	if d := dump(t, got, bucketA, "", ""); !reflect.DeepEqual(d, []string{"a=1", "b=2"}) {
		t.Fatalf("snapshot holds %q", d)
	}
}

func TestBackend_RestoreReplacesTheDatabase(t *testing.T) {
	src, _ := openTest(t, Options{})
	write(t, src, "from", "snapshot")
	b, clock := openTest(t, Options{})
	received, _ := snapshotFile(t, src)
	write(t, b, "old", "1")
	if err := b.ForceCommit(); err != nil {
		t.Fatal(err)
	}
	write(t, b, "pending", "1")

	refuse := errors.New("refused")
	if err := b.Restore(received, func(*ReadTx) error { return refuse }); !errors.Is(err, refuse) {
		t.Fatalf("a refused restore: %v", err)
	}
	if got := dump(t, b, bucketA, "", ""); !reflect.DeepEqual(got, []string{"old=1", "pending=1"}) {
		t.Fatalf("a refused restore changed the backend: %q", got)
	}

	var checked []string
	if err := b.Restore(received, func(tx *ReadTx) error { checked = dumpTx(tx, bucketA, "", ""); return nil }); err != nil {
		t.Fatal(err)
	}
	want := []string{"from=snapshot"}
	if !reflect.DeepEqual(checked, want) {
		t.Fatalf("check saw %q", checked)
	}
	if got := dump(t, b, bucketA, "", ""); !reflect.DeepEqual(got, want) {
		t.Fatalf("after restore %q", got)
	}
	clock.Advance(time.Hour) // the dropped batch's timer does nothing
	if b.Commits() != 1 || b.Pending() != 0 {
		t.Fatalf("%d commits, %d pending", b.Commits(), b.Pending())
	}
	write(t, b, "next", "1")
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b2, _ := openTestAt(t, b.path, Options{})
	if got := dump(t, b2, bucketA, "", ""); !reflect.DeepEqual(got, []string{"from=snapshot", "next=1"}) {
		t.Fatalf("after restart %q", got)
	}
}

func TestBackend_SizesAreThoseOfTheLastCommit(t *testing.T) {
	b, _ := openTest(t, Options{})
	empty, emptyInUse := b.Size(), b.SizeInUse()
	if empty <= 0 || emptyInUse <= 0 || emptyInUse > empty {
		t.Fatalf("after open: Size %d, SizeInUse %d", empty, emptyInUse)
	}
	value := string(bytes.Repeat([]byte("v"), 1024))
	var kvs []string
	for i := range 1000 {
		kvs = append(kvs, fmt.Sprintf("k%04d", i), value)
	}
	write(t, b, kvs...)
	if b.Size() != empty || b.SizeInUse() != emptyInUse {
		t.Fatalf("before the commit: Size %d, SizeInUse %d; want %d, %d", b.Size(), b.SizeInUse(), empty, emptyInUse)
	}
	if err := b.ForceCommit(); err != nil {
		t.Fatal(err)
	}
	full, fullInUse := b.Size(), b.SizeInUse()
	if full < empty+1000*1024 || fullInUse < emptyInUse+1000*1024 || fullInUse > full {
		t.Fatalf("after 1 MB committed: Size %d, SizeInUse %d (empty: %d, %d)", full, fullInUse, empty, emptyInUse)
	}
	received, snapSize := snapshotFile(t, b)

	for i := range kvs {
		if i%2 == 1 {
			kvs[i] = "" // delete
		}
	}
	write(t, b, kvs...)
	if err := b.ForceCommit(); err != nil {
		t.Fatal(err)
	}
	// The pages a commit frees are pending until the next write
	// transaction begins (bbolt), as in etcd's figure.
	write(t, b, "next", "1")
	if err := b.ForceCommit(); err != nil {
		t.Fatal(err)
	}
	// The file does not shrink; the pages the values took are free.
	if b.Size() < full || b.SizeInUse() > full-900*1024 {
		t.Fatalf("after deleting it all: Size %d, SizeInUse %d (full: %d)", b.Size(), b.SizeInUse(), full)
	}

	if err := b.Restore(received, func(*ReadTx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if b.Size() != snapSize || b.SizeInUse() < fullInUse-64*1024 {
		t.Fatalf("after restoring the full database: Size %d, SizeInUse %d; want %d, about %d", b.Size(), b.SizeInUse(), snapSize, fullInUse)
	}
}

// snapshotFile writes a snapshot of b to a new file, as a follower
// receives one, and returns its path and size.
func snapshotFile(t *testing.T, b *Backend) (string, int64) {
	t.Helper()
	snap, err := b.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	size := snap.Size()
	path := filepath.Join(t.TempDir(), "received.db")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, snap); err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(f.Close(), snap.Close()); err != nil {
		t.Fatal(err)
	}
	return path, size
}
