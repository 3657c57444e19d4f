package server

import (
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/edgekv/edgekv/core/mvcc"
	"github.com/edgekv/edgekv/core/watch"
)

// Watchable returns the member's watch hub, over which core/rpc serves the
// Watch service.
func (s *Server) Watchable() *watch.Hub { return s.watch }

// WatchHeader returns the header of a watch response at revision rev, with
// this member's cluster ID, member ID and Raft term.
func (s *Server) WatchHeader(rev int64) *pb.ResponseHeader {
	h := &pb.ResponseHeader{Revision: rev}
	s.header(&h)
	return h
}

// Leader returns the ID of the member's leader, 0 when it knows none.
func (s *Server) Leader() uint64 { return s.node.Leader() }

// ElectionTimeout returns the member's election timeout
// (--election-timeout).
func (s *Server) ElectionTimeout() time.Duration {
	return time.Duration(s.cfg.ElectionTicks) * s.cfg.TickInterval
}

// notifyWatchers hands the watch hub the events of each applied request, in
// apply order: every request that changed something took one revision, the
// ModRevision of its events. Runs on the apply goroutine, before the
// waiting requests are woken, so that a client that saw a write's response
// and then starts watching from the current revision does not get that
// write's events (as in etcd).
func (s *Server) notifyWatchers(results []mvcc.Result) {
	for _, r := range results {
		if len(r.Events) > 0 {
			s.watch.Notify(r.Events[0].Kv.ModRevision, r.Events)
		}
	}
}
