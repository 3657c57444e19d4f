package mvcc

import (
	"sync"
	"testing"
	"time"

	"github.com/edgekv/edgekv/persist/backend"
)

// TestStore_CommittedIndexIsTheCommittedBatchs: a commit runs while Apply
// goes on; CommittedIndex is the consistent index of the writes that
// commit took, not the writer's progress since (the entries above it are
// only in memory and in the Raft log).
func TestStore_CommittedIndexIsTheCommittedBatchs(t *testing.T) {
	started := make(chan struct{})
	gate := make(chan struct{})
	release := sync.OnceFunc(func() { close(gate) })
	defer release()
	var once sync.Once
	clock := backend.NewManualClock(time.Unix(0, 0))
	// A put writes 3 backend entries: 3 puts reach the limit.
	s := newTestStoreWith(t, Options{Clock: clock, BatchLimit: 9, OnCommit: func(time.Duration) {
		once.Do(func() { close(started); <-gate }) // hold the first commit
	}})
	s.put("a", "1")
	s.put("a", "2")
	s.put("a", "3") // index 3: a commit starts, and is held once on disk
	<-started
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.put("b", "1") // 4
		s.put("b", "2") // 5
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Apply blocked by a commit in progress")
	}
	if got := s.CommittedIndex(); got != 3 || s.ConsistentIndex() != 5 {
		t.Fatalf("during the commit: committed index %d, applied %d; want 3, 5", got, s.ConsistentIndex())
	}
	release()
	if err := s.ForceCommit(); err != nil {
		t.Fatal(err)
	}
	if s.CommittedIndex() != 5 || s.Commits() != 2 {
		t.Fatalf("after ForceCommit: committed index %d, %d commits; want 5, 2", s.CommittedIndex(), s.Commits())
	}
}

// TestLiveSet_ACommitClearsOnlyTheRemovalsItTook: a segment that lost
// pointers in writes made while a commit ran stays pinned after that
// commit: a crash would bring the pointers back.
func TestLiveSet_ACommitClearsOnlyTheRemovalsItTook(t *testing.T) {
	l := newLiveSet()
	l.merge(map[uint64]segLive{1: {n: 1, bytes: 10, ever: 10}, 2: {n: 1, bytes: 10, ever: 10}}, 1)
	l.merge(map[uint64]segLive{1: {n: -1, bytes: -10}}, 2)
	mark := l.freeze() // a commit takes the writes so far
	l.merge(map[uint64]segLive{2: {n: -1, bytes: -10}}, 3)
	if !l.pinned(1) || !l.pinned(2) {
		t.Fatalf("before the commit: pinned %v %v", l.pinned(1), l.pinned(2))
	}
	l.committed(mark)
	if l.pinned(1) {
		t.Fatal("segment 1 pinned after the commit that removed its pointer")
	}
	if !l.pinned(2) {
		t.Fatal("segment 2 released by a commit that did not take its removal")
	}
	l.committed(l.freeze())
	if l.pinned(2) {
		t.Fatal("segment 2 pinned after its removal was committed")
	}
}
