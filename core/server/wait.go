package server

import (
	"sync"
)

// waitList routes apply results to the goroutines that proposed them.
type waitList struct {
	mu sync.Mutex
	m  map[uint64]chan applyResult
}

type applyResult struct {
	resp any
	err  error
}

func (w *waitList) register(id uint64) <-chan applyResult {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil {
		w.m = map[uint64]chan applyResult{}
	}
	ch := make(chan applyResult, 1)
	w.m[id] = ch
	return ch
}

func (w *waitList) trigger(id uint64, r applyResult) {
	w.mu.Lock()
	ch, ok := w.m[id]
	delete(w.m, id)
	w.mu.Unlock()
	if ok {
		ch <- r
	}
}

func (w *waitList) cancel(id uint64) {
	w.mu.Lock()
	delete(w.m, id)
	w.mu.Unlock()
}

// indexWait lets goroutines wait until the applied index reaches a value.
type indexWait struct {
	mu      sync.Mutex
	applied uint64
	waiters []indexWaiter
}

type indexWaiter struct {
	index uint64
	ch    chan struct{}
}

// wait returns a channel closed once the applied index is >= index.
func (w *indexWait) wait(index uint64) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	ch := make(chan struct{})
	if w.applied >= index {
		close(ch)
		return ch
	}
	w.waiters = append(w.waiters, indexWaiter{index, ch})
	return ch
}

func (w *indexWait) set(applied uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if applied <= w.applied {
		return
	}
	w.applied = applied
	kept := w.waiters[:0]
	for _, x := range w.waiters {
		if x.index <= applied {
			close(x.ch)
		} else {
			kept = append(kept, x)
		}
	}
	clear(w.waiters[len(kept):])
	w.waiters = kept
}

func (w *indexWait) get() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.applied
}
