package backend

import (
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// holdCommits makes every commit wait, on its goroutine and before it
// writes anything, until release is called; started receives a value
// as each commit reaches the hold.
func holdCommits(b *Backend) (started <-chan struct{}, release func()) {
	st := make(chan struct{}, 16)
	gate := make(chan struct{})
	var once sync.Once
	b.commitHook = func(*commitJob) {
		st <- struct{}{}
		<-gate
	}
	return st, func() { once.Do(func() { close(gate) }) }
}

func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s blocked", what)
	}
}

func blocks(t *testing.T, what string, f func()) (wait func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
		t.Fatalf("%s did not wait", what)
	case <-time.After(50 * time.Millisecond):
	}
	return func() {
		t.Helper()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s still blocked", what)
		}
	}
}

func TestBackend_ACommitInProgressDoesNotBlockTheWriter(t *testing.T) {
	b, _ := openTest(t, Options{BatchLimit: 3})
	write(t, b, "a", "1", "b", "1", "c", "1") // the limit: a commit starts
	waitCommit(b)
	started, release := holdCommits(b)
	defer release()
	write(t, b, "d", "1")
	within(t, "End with the limit reached", func() { write(t, b, "e", "1", "f", "1") })
	<-started

	// The writer goes on: reads of its batch see the committing writes,
	// and its own.
	within(t, "a batch during a commit", func() {
		tx, err := b.BeginBatch()
		if err != nil {
			t.Error(err)
			return
		}
		if err := tx.Put(bucketA, []byte("g"), []byte("1")); err != nil {
			t.Error(err)
		}
		if err := tx.Delete(bucketA, []byte("a")); err != nil {
			t.Error(err)
		}
		if string(tx.Get(bucketA, []byte("d"))) != "1" || string(tx.Get(bucketA, []byte("g"))) != "1" || string(tx.Get(bucketA, []byte("b"))) != "1" || tx.Get(bucketA, []byte("a")) != nil {
			t.Error("the batch does not see the committing writes or its own")
		}
		var got []string
		for k, v := range tx.Range(bucketA, nil, nil) {
			got = append(got, string(k)+"="+string(v))
		}
		if want := []string{"b=1", "c=1", "d=1", "e=1", "f=1", "g=1"}; !reflect.DeepEqual(got, want) {
			t.Errorf("the batch ranges %q, want %q", got, want)
		}
		if err := tx.End(); err != nil {
			t.Error(err)
		}
	})
	if got, want := dump(t, b, bucketA, "", ""), []string{"b=1", "c=1", "d=1", "e=1", "f=1", "g=1"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("readers during the commit see %q, want %q", got, want)
	}
	// On disk: the first commit only.
	crashed, _ := openTestAt(t, crashImage(t, b), Options{})
	if got := dump(t, crashed, bucketA, "", ""); !reflect.DeepEqual(got, []string{"a=1", "b=1", "c=1"}) {
		t.Fatalf("on disk during the commit %q", got)
	}

	// A commit asked for meanwhile waits for the one in progress, and so
	// does the writer once the limit is reached again (back-pressure).
	var forceErr error
	waitForce := blocks(t, "ForceCommit during a commit", func() { forceErr = b.ForceCommit() })
	release()
	waitForce()
	if forceErr != nil {
		t.Fatal(forceErr)
	}
	if b.Commits() != 3 || b.Pending() != 0 {
		t.Fatalf("%d commits, %d pending; want 3, 0", b.Commits(), b.Pending())
	}
	crashed2, _ := openTestAt(t, crashImage(t, b), Options{})
	if got, want := dump(t, crashed2, bucketA, "", ""), []string{"b=1", "c=1", "d=1", "e=1", "f=1", "g=1"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("on disk after ForceCommit %q, want %q", got, want)
	}
}

func TestBackend_BatchLimitWaitsOnlyForACommitInProgress(t *testing.T) {
	b, _ := openTest(t, Options{BatchLimit: 2})
	started, release := holdCommits(b)
	defer release()
	within(t, "End starting a commit", func() { write(t, b, "a", "1", "b", "1") })
	<-started
	within(t, "End below the limit", func() { write(t, b, "c", "1") })
	wait := blocks(t, "End at the limit during a commit", func() { write(t, b, "d", "1") })
	release()
	wait()
	waitCommit(b)
	if b.Commits() != 2 {
		t.Fatalf("%d commits, want 2", b.Commits())
	}
}

func TestBackend_TimerCommitDoesNotBlockTheWriter(t *testing.T) {
	b, err := Open(filepath.Join(t.TempDir(), "db"), Options{Buckets: [][]byte{bucketA}, BatchInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	started, release := holdCommits(b)
	defer release()
	write(t, b, "a", "1")
	<-started // the timer's commit, held
	within(t, "writes during a timer commit", func() {
		for i := range 10 {
			write(t, b, fmt.Sprint("k", i), "1")
		}
	})
	wait := blocks(t, "Close during a commit", func() {
		if err := b.Close(); err != nil {
			t.Error(err)
		}
	})
	release()
	wait()
	b2, _ := openTestAt(t, b.path, Options{})
	if got := dump(t, b2, bucketA, "", ""); len(got) != 11 {
		t.Fatalf("after Close %q", got)
	}
}

// TestReadTx_NeverMissesAPublishedWriteDuringCommits hammers readers
// while the writer writes and commits run on the timer, on BatchLimit and
// forced: every write published before a read transaction began is in
// it.
func TestReadTx_NeverMissesAPublishedWriteDuringCommits(t *testing.T) {
	b, err := Open(filepath.Join(t.TempDir(), "db"), Options{
		Buckets: [][]byte{bucketA, bucketB}, SeqBuckets: [][]byte{bucketA},
		BatchInterval: 200 * time.Microsecond, BatchLimit: 64,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var hold atomic.Bool
	b.commitHook = func(*commitJob) {
		if hold.Load() {
			time.Sleep(100 * time.Microsecond) // widen the window
		}
	}
	var (
		published atomic.Int64 // batches published
		stop      atomic.Bool
		wg        sync.WaitGroup
		failed    atomic.Value
	)
	key := func(i int64) []byte { return []byte(fmt.Sprintf("k%08d", i)) }
	dkey := func(i int64) []byte { return []byte(fmt.Sprintf("d%08d", i)) }
	wg.Add(1)
	go func() { // the writer
		defer wg.Done()
		for i := int64(0); !stop.Load(); i++ {
			tx, err := b.BeginBatch()
			if err != nil {
				failed.Store(err)
				return
			}
			_ = tx.Put(bucketA, key(i), []byte("v"))
			_ = tx.Put(bucketA, dkey(i), []byte("v"))
			_ = tx.Delete(bucketA, dkey(i-1)) // each d key lives one batch
			_ = tx.Put(bucketB, []byte("last"), []byte(strconv.FormatInt(i, 10)))
			if err := tx.End(); err != nil {
				failed.Store(err)
				return
			}
			published.Store(i + 1)
			hold.Store(i%3 == 0)
		}
	}()
	wg.Add(1)
	go func() { // forced commits
		defer wg.Done()
		for !stop.Load() {
			if err := b.ForceCommit(); err != nil {
				failed.Store(err)
				return
			}
			time.Sleep(300 * time.Microsecond)
		}
	}()
	var reads atomic.Int64
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				n := published.Load()
				tx, err := b.ReadTx()
				if err != nil {
					failed.Store(err)
					return
				}
				if n > 0 {
					last, _ := strconv.ParseInt(string(tx.Get(bucketB, []byte("last"))), 10, 64)
					if tx.Get(bucketB, []byte("last")) == nil || last < n-1 {
						failed.Store(fmt.Errorf("published %d batches, read sees last=%q", n, tx.Get(bucketB, []byte("last"))))
					}
					// The newest published key is there, and so is every
					// key since; the deleted ones are not.
					first := true
					for k := range tx.Range(bucketA, key(n-1), nil) {
						if first && string(k) != string(key(n-1)) {
							failed.Store(fmt.Errorf("published %d batches, read misses %s (first is %s)", n, key(n-1), k))
						}
						first = false
					}
					if first || tx.Get(bucketA, key(n-1)) == nil {
						failed.Store(fmt.Errorf("published %d batches, read misses %s", n, key(n-1)))
					}
					for k := range tx.Range(bucketA, dkey(0), dkey(n-1)) {
						failed.Store(fmt.Errorf("published %d batches, read sees deleted %s", n, k))
						break
					}
				}
				tx.Done()
				reads.Add(1)
			}
		}()
	}
	// At least 700 ms, and until enough commits and reads have raced,
	// however slow the machine (under qemu 700 ms once made 8 commits).
	start := time.Now()
	for time.Since(start) < 700*time.Millisecond || b.Commits() < 10 || reads.Load() < 100 {
		if time.Since(start) > time.Minute || failed.Load() != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		t.Fatal(err)
	}
	if b.Commits() < 10 || reads.Load() < 100 {
		t.Fatalf("only %d commits, %d reads in %v", b.Commits(), reads.Load(), time.Since(start))
	}
	t.Logf("%d batches, %d commits, %d reads", published.Load(), b.Commits(), reads.Load())
}

func TestBackend_FailedBackgroundCommitIsSticky(t *testing.T) {
	b, _ := openTest(t, Options{BatchLimit: 1})
	started, release := holdCommits(b)
	write(t, b, "a", "1")
	<-started
	// The commit fails (the database handle goes away under it).
	b.commitHook = nil
	if err := b.db.Close(); err != nil {
		t.Fatal(err)
	}
	release()
	waitCommit(b)
	if err := b.Err(); !errors.Is(err, ErrFailed) {
		t.Fatalf("Err after a failed commit: %v", err)
	}
	if _, err := b.BeginBatch(); !errors.Is(err, ErrFailed) {
		t.Fatalf("BeginBatch after a failed commit: %v", err)
	}
	if err := b.ForceCommit(); !errors.Is(err, ErrFailed) {
		t.Fatalf("ForceCommit after a failed commit: %v", err)
	}
	if b.Commits() != 0 {
		t.Fatalf("%d commits", b.Commits())
	}
}
