package lease

import (
	"container/heap"
	"time"
)

// timerHeap holds at most one time per lease, earliest first (ties by ID,
// so the order never depends on map iteration). Setting the time of a
// lease already in it moves it; that keeps the heap as small as the lease
// table whatever the renewal rate.
type timerHeap struct {
	items []timerItem
	index map[int64]int // lease ID -> position in items
}

type timerItem struct {
	id int64
	at time.Time
}

func newTimerHeap() timerHeap { return timerHeap{index: map[int64]int{}} }

// set schedules id at t, replacing any earlier schedule of id.
func (h *timerHeap) set(id int64, t time.Time) {
	if i, ok := h.index[id]; ok {
		h.items[i].at = t
		heap.Fix((*timerHeapImpl)(h), i)
		return
	}
	heap.Push((*timerHeapImpl)(h), timerItem{id: id, at: t})
}

// remove drops id's schedule, if any.
func (h *timerHeap) remove(id int64) {
	if i, ok := h.index[id]; ok {
		heap.Remove((*timerHeapImpl)(h), i)
	}
}

// peek returns the earliest schedule.
func (h *timerHeap) peek() (timerItem, bool) {
	if len(h.items) == 0 {
		return timerItem{}, false
	}
	return h.items[0], true
}

// pop removes the earliest schedule.
func (h *timerHeap) pop() { heap.Pop((*timerHeapImpl)(h)) }

// timerHeapImpl is the container/heap view of a timerHeap; its methods
// are only for the heap package.
type timerHeapImpl timerHeap

func (h *timerHeapImpl) Len() int { return len(h.items) }

func (h *timerHeapImpl) Less(i, j int) bool {
	a, b := h.items[i], h.items[j]
	if !a.at.Equal(b.at) {
		return a.at.Before(b.at)
	}
	return a.id < b.id
}

func (h *timerHeapImpl) Swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	h.index[h.items[i].id] = i
	h.index[h.items[j].id] = j
}

func (h *timerHeapImpl) Push(x any) {
	it := x.(timerItem)
	h.index[it.id] = len(h.items)
	h.items = append(h.items, it)
}

func (h *timerHeapImpl) Pop() any {
	n := len(h.items) - 1
	it := h.items[n]
	h.items = h.items[:n]
	delete(h.index, it.id)
	return it
}
