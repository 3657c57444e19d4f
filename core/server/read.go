package server

import (
	"context"
	"encoding/binary"
	"time"
)

// notifier is shared by every linearizable read that joins one ReadIndex
// round: they all learn the round's outcome together.
type notifier struct {
	c   chan struct{}
	err error
}

func newNotifier() *notifier { return &notifier{c: make(chan struct{})} }

func (n *notifier) notify(err error) {
	n.err = err
	close(n.c)
}

// linearizableReadNotify returns once this member has applied everything
// committed before the call began, confirmed by a ReadIndex round with a
// quorum. Concurrent callers share one round.
func (s *Server) linearizableReadNotify(ctx context.Context) error {
	if unsafeLocalReads {
		return nil // the deliberately broken test build: see unsafe_reads_on.go
	}
	s.readMu.Lock()
	nc := s.readNotify
	s.readMu.Unlock()
	select {
	case s.readwaitc <- struct{}{}:
	default:
	}
	select {
	case <-nc.c:
		return nc.err
	case <-ctx.Done():
		return ctx.Err()
	case <-s.stopc:
		return ErrStopped
	}
}

// readLoop runs one ReadIndex round at a time for every reader waiting.
func (s *Server) readLoop() {
	defer s.wg.Done()
	for {
		select {
		case <-s.readwaitc:
		case <-s.stopc:
			return
		}
		s.readMu.Lock()
		nr := s.readNotify
		s.readNotify = newNotifier()
		s.readMu.Unlock()
		nr.notify(s.readIndexRound())
	}
}

// readIndexRound asks Raft for a read index, retrying while no quorum
// answers, then waits for the apply loop to reach it.
func (s *Server) readIndexRound() error {
	id := s.nextID()
	rctx := make([]byte, 8)
	binary.BigEndian.PutUint64(rctx, id)
	deadline := time.NewTimer(s.requestTimeout())
	defer deadline.Stop()
	retry := time.NewTicker(500 * time.Millisecond)
	defer retry.Stop()

	send := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return s.node.ReadIndex(ctx, rctx)
	}
	if err := send(); err != nil {
		return ErrStopped
	}
	var index uint64
wait:
	for {
		select {
		case rs := <-s.readStatec:
			if len(rs.RequestCtx) == 8 && binary.BigEndian.Uint64(rs.RequestCtx) == id {
				index = rs.Index
				break wait
			}
			// A stale round's answer: ignore it.
		case <-s.leaderKnownc:
			if err := send(); err != nil {
				return ErrStopped
			}
		case <-retry.C:
			if err := send(); err != nil {
				return ErrStopped
			}
		case <-deadline.C:
			if s.node.Leader() == 0 {
				return ErrNoLeader
			}
			return ErrTimeout
		case <-s.stopc:
			return ErrStopped
		}
	}
	select {
	case <-s.applied.wait(index):
		return nil
	case <-deadline.C:
		return ErrTimeout
	case <-s.stopc:
		return ErrStopped
	}
}
