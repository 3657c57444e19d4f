package server

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/edgekv/edgekv/core/lease"
	"github.com/edgekv/edgekv/core/mvcc"
)

// Lease timing, etcd's.
const (
	// leaseLoopInterval is how often the leader looks for expired leases
	// and due checkpoints.
	leaseLoopInterval = 500 * time.Millisecond
	// maxPendingRevokes bounds the revokes of expired leases in flight.
	maxPendingRevokes = 16
	// applyTimeout bounds the wait for the applied index to reach the
	// commit index before a lease is read on the leader.
	applyTimeout = time.Second
	// forwardRetry is the pause between two attempts to reach the leader.
	forwardRetry = 50 * time.Millisecond
)

// minLeaseTTL is etcd's minimum lease TTL: 1.5 election timeouts, in whole
// seconds rounded up, so that a lease outlives a leader election.
func minLeaseTTL(cfg Config) int64 {
	d := time.Duration((3*cfg.ElectionTicks)/2) * cfg.TickInterval
	return int64(math.Ceil(d.Seconds()))
}

func isLeaseKind(kind uint8) bool {
	return kind == kindLeaseGrant || kind == kindLeaseRevoke || kind == kindLeaseCheckpoint
}

// leaseIDGen picks lease IDs for grants that name none, as etcd's idutil:
// the member ID's low 16 bits, then a counter started from the clock in
// milliseconds (so a restarted member does not reuse the IDs it gave out).
type leaseIDGen struct {
	prefix uint64
	seq    atomic.Uint64
}

func newLeaseIDGen(member uint64, now time.Time) *leaseIDGen {
	g := &leaseIDGen{prefix: (member & 0xffff) << 48}
	g.seq.Store(uint64(now.UnixMilli()) << 8)
	return g
}

// next returns a positive ID.
func (g *leaseIDGen) next() int64 {
	return int64((g.prefix | g.seq.Add(1)&(1<<48-1)) & (1<<63 - 1))
}

// LeaseGrant replicates a grant. A request without an ID gets one here,
// before proposing, so that the apply is the same on every member.
func (s *Server) LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	if err := s.checkQuota(); err != nil {
		return nil, err
	}
	if r.ID == 0 {
		id := s.leaseIDs.next()
		for s.lessor.Exists(id) == nil {
			id = s.leaseIDs.next()
		}
		r = &pb.LeaseGrantRequest{ID: id, TTL: r.TTL}
	}
	resp, err := s.replicate(ctx, kindLeaseGrant, r)
	if err != nil {
		return nil, err
	}
	out := resp.(*pb.LeaseGrantResponse)
	s.header(&out.Header)
	return out, nil
}

// LeaseRevoke replicates a revoke: the lease and its keys go in one
// revision.
func (s *Server) LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	resp, err := s.replicate(ctx, kindLeaseRevoke, r)
	if err != nil {
		return nil, err
	}
	out := resp.(*pb.LeaseRevokeResponse)
	s.header(&out.Header)
	return out, nil
}

// LeaseKeepAlive renews lease id on the leader, forwarding to it from a
// follower, and answers as etcd's keep-alive stream does: TTL 0 for a lease
// that does not exist. The header is taken before the renewal, so its
// revision is never later than the renewal (etcd's reasoning).
func (s *Server) LeaseKeepAlive(ctx context.Context, id int64) (*pb.LeaseKeepAliveResponse, error) {
	resp := &pb.LeaseKeepAliveResponse{ID: id}
	s.header(&resp.Header)
	ttl, err := s.leaseRenew(ctx, id)
	switch {
	case errors.Is(err, lease.ErrLeaseNotFound):
		return resp, nil
	case err != nil:
		return nil, err
	}
	resp.TTL = ttl
	return resp, nil
}

// LeaseTimeToLive reports a lease as the leader sees it, forwarding to it
// from a follower; a lease that does not exist gets TTL -1, as in etcd.
func (s *Server) LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	resp, err := s.leaseTimeToLive(ctx, r)
	switch {
	case errors.Is(err, lease.ErrLeaseNotFound):
		resp = &pb.LeaseTimeToLiveResponse{ID: r.ID, TTL: -1}
	case err != nil:
		return nil, err
	}
	resp.Header = nil
	s.header(&resp.Header)
	return resp, nil
}

// LeaseLeases lists the leases of this member's applied state.
func (s *Server) LeaseLeases(context.Context) (*pb.LeaseLeasesResponse, error) {
	ids := s.lessor.Leases()
	resp := &pb.LeaseLeasesResponse{Leases: make([]*pb.LeaseStatus, len(ids))}
	for i, id := range ids {
		resp.Leases[i] = &pb.LeaseStatus{ID: id}
	}
	s.header(&resp.Header)
	return resp, nil
}

// leaseRenew renews on the leader: here if this member leads, else by
// forwarding (see onLeader).
func (s *Server) leaseRenew(ctx context.Context, id int64) (int64, error) {
	return onLeader(s, ctx, "renewal",
		func(ctx context.Context) (int64, error) { return s.renewAsLeader(ctx, id) },
		func(ctx context.Context, lead uint64) (int64, error) { return s.forwardRenew(ctx, lead, id) })
}

// onLeader runs local if this member leads, else forward to the leader,
// retrying while the leadership settles, within the request timeout: a
// lessor not primary yet (lease.ErrNotPrimary) or a failed forward is
// tried again. A request forwarded to this member is not forwarded again.
func onLeader[T any](s *Server, ctx context.Context, what string,
	local func(context.Context) (T, error), forward func(context.Context, uint64) (T, error)) (T, error) {
	var zero T
	forwarded := isForwarded(ctx)
	ctx, cancel := context.WithTimeout(ctx, s.requestTimeout())
	defer cancel()
	for {
		lead := s.node.Leader()
		switch {
		case lead == s.id:
			v, err := local(ctx)
			if !errors.Is(err, lease.ErrNotPrimary) {
				return v, err
			}
		case forwarded:
			return zero, ErrNotLeader
		case lead != 0:
			v, err := forward(ctx, lead)
			if err == nil || errors.Is(err, lease.ErrLeaseNotFound) {
				return v, err
			}
			s.lg.Debug("forwarding a lease "+what+" to the leader", "leader", fmt.Sprintf("%x", lead), "err", err)
		}
		if err := s.pause(ctx, forwardRetry); err != nil {
			return zero, err
		}
	}
}

// renewAsLeader renews on this member, the leader. lease.ErrNotPrimary
// means its lessor is not primary yet (or any more): ask again.
func (s *Server) renewAsLeader(ctx context.Context, id int64) (int64, error) {
	// A leader cut off from the others must not renew: the client would
	// believe a lease alive that the real leader expires (etcd #15247).
	// The client is told at once, so that it tries another member.
	if !s.ensureLeadership(ctx) {
		return 0, ErrNotLeader
	}
	if s.lessor.Exists(id) != nil {
		// It may be granted in an entry not applied yet.
		if err := s.waitAppliedIndex(); err != nil {
			return 0, err
		}
	}
	ttl, clear, err := s.lessor.Renew(ctx, id)
	if err != nil {
		return 0, err
	}
	if clear {
		if err := s.proposeCheckpoints(ctx, []lease.Checkpoint{{ID: id}}); err != nil {
			return 0, err
		}
	}
	return ttl, nil
}

func (s *Server) leaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	return onLeader(s, ctx, "time-to-live",
		func(context.Context) (*pb.LeaseTimeToLiveResponse, error) {
			if err := s.waitAppliedIndex(); err != nil {
				return nil, err
			}
			st, err := s.lessor.TimeToLive(r.ID, r.Keys)
			if err != nil {
				return nil, err
			}
			return &pb.LeaseTimeToLiveResponse{ID: st.ID, TTL: st.TTL, GrantedTTL: st.GrantedTTL, Keys: st.Keys}, nil
		},
		func(ctx context.Context, lead uint64) (*pb.LeaseTimeToLiveResponse, error) {
			return s.forwardTimeToLive(ctx, lead, r)
		})
}

// pause waits d, or returns etcd's error for why it cannot.
func (s *Server) pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-s.stopc:
		return ErrStopped
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			if s.node.Leader() == 0 {
				return ErrNoLeader
			}
			return ErrTimeout
		}
		return ctx.Err()
	}
}

// waitAppliedIndex waits until this member has applied everything it
// knows committed (etcd's waitAppliedIndex).
func (s *Server) waitAppliedIndex() error {
	t := time.NewTimer(applyTimeout)
	defer t.Stop()
	select {
	case <-s.applied.wait(s.node.CommitIndex()):
		return nil
	case <-t.C:
		return ErrTimeoutWaitAppliedIndex
	case <-s.stopc:
		return ErrStopped
	}
}

// ensureLeadership confirms with a quorum that this member still leads.
func (s *Server) ensureLeadership(ctx context.Context) bool {
	if s.node.Leader() != s.id {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, s.requestTimeout())
	defer cancel()
	if err := s.linearizableReadNotify(ctx); err != nil {
		return false
	}
	return s.node.Leader() == s.id
}

// proposeCheckpoints replicates remaining TTLs (0 clears one).
func (s *Server) proposeCheckpoints(ctx context.Context, cps []lease.Checkpoint) error {
	r := &pb.LeaseCheckpointRequest{Checkpoints: make([]*pb.LeaseCheckpoint, len(cps))}
	for i, cp := range cps {
		r.Checkpoints[i] = &pb.LeaseCheckpoint{ID: cp.ID, Remaining_TTL: cp.RemainingTTL}
	}
	_, err := s.replicate(ctx, kindLeaseCheckpoint, r)
	return err
}

// leaseLoop is the leader's lease timer: every 500 ms it revokes expired
// leases and checkpoints remaining TTLs through Raft. The lessor reports
// nothing on a follower.
func (s *Server) leaseLoop() {
	defer s.wg.Done()
	t := time.NewTicker(leaseLoopInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-s.stopc:
			return
		}
		if ids := s.lessor.Expired(lease.RevokeRate / 2); len(ids) > 0 {
			s.wg.Add(1)
			go s.revokeExpired(ids)
		}
		s.checkpointDue()
	}
}

// revokeExpired revokes expired leases, 16 at a time, once a quorum has
// confirmed this member leads: a stalled leader that others have replaced
// must not revoke what the new leader keeps alive (etcd #15247).
func (s *Server) revokeExpired(ids []int64) {
	defer s.wg.Done()
	if !s.ensureLeadership(context.Background()) {
		s.lg.Warn("not revoking expired leases: this member is not the leader", "leases", len(ids))
		return
	}
	sem := make(chan struct{}, maxPendingRevokes)
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, id := range ids {
		select {
		case sem <- struct{}{}:
		case <-s.stopc:
			return
		}
		wg.Go(func() {
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), s.requestTimeout())
			defer cancel()
			_, err := s.LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: id})
			switch {
			case err == nil:
				s.metrics.leasesExpired.Inc()
			case !errors.Is(err, lease.ErrLeaseNotFound):
				s.lg.Warn("revoking an expired lease", "lease", fmt.Sprintf("%016x", id), "err", err)
			}
		})
	}
}

// checkpointDue replicates the checkpoints that are due, in batches, at
// most half of etcd's checkpoint rate per call.
func (s *Server) checkpointDue() {
	for i := 0; i < lease.MaxCheckpointBatch/2; i++ {
		cps := s.lessor.DueCheckpoints(lease.MaxCheckpointBatch)
		if len(cps) == 0 {
			return
		}
		if i == 0 && !s.ensureLeadership(context.Background()) {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.requestTimeout())
		err := s.proposeCheckpoints(ctx, cps)
		cancel()
		if err != nil {
			s.lg.Warn("checkpointing leases", "leases", len(cps), "err", err)
			return
		}
		if len(cps) < lease.MaxCheckpointBatch {
			return
		}
	}
}

// maybePromoteLessor makes the lessor primary when this member, leader,
// applies the empty entry of its own term: every entry of earlier terms is
// applied by then, so the lessor knows every lease (etcd does the same).
// Runs on the apply goroutine.
func (s *Server) maybePromoteLessor(e *raftpb.Entry) {
	if e.GetType() != raftpb.EntryNormal || s.node.Leader() != s.id || e.GetTerm() != s.node.Term() {
		return
	}
	s.lessor.Promote(s.ElectionTimeout())
	// Leadership may have moved while promoting; the leader-change hook
	// demotes after it records the new leader, so one of the two sees it.
	if s.node.Leader() != s.id {
		s.lessor.Demote()
		return
	}
	s.lg.Info("lessor promoted", "leases", len(s.lessor.Leases()), "extend", s.ElectionTimeout())
}

// onLeaderChange is the Raft goroutine's hook: a member that does not lead
// expires nothing.
func (s *Server) onLeaderChange(lead uint64) {
	if lead != 0 {
		s.metrics.leaderChanges.Inc()
		// A read index asked for while there was no leader was dropped:
		// ask again now rather than at the next retry.
		select {
		case s.leaderKnownc <- struct{}{}:
		default:
		}
	}
	if lead != s.id {
		s.lessor.Demote()
	}
}

// leaseOp turns a committed lease request into its backend op, changing
// the lessor now: the op is applied right after, alone. An entry the
// backend already holds (a replay after restart) changes nothing: the
// lessor loaded its effect from the backend.
func (s *Server) leaseOp(p pendingOp, kind uint8, r any) pendingOp {
	if p.op.Index <= s.kv.ConsistentIndex() {
		return p
	}
	fail := func(err error) func(mvcc.Result) applyResult {
		return func(mvcc.Result) applyResult { return applyResult{err: err} }
	}
	header := func() *pb.ResponseHeader { return &pb.ResponseHeader{Revision: s.kv.Rev()} }
	switch kind {
	case kindLeaseGrant:
		req := r.(*pb.LeaseGrantRequest)
		rec, err := s.lessor.Grant(req.ID, req.TTL)
		if err != nil {
			p.done = fail(err)
			return p
		}
		p.op.Aux = []mvcc.AuxWrite{s.leaseRecordWrite(rec)}
		p.done = func(mvcc.Result) applyResult {
			return applyResult{resp: &pb.LeaseGrantResponse{Header: header(), ID: rec.ID, TTL: rec.TTL}}
		}
	case kindLeaseRevoke:
		req := r.(*pb.LeaseRevokeRequest)
		keys, err := s.lessor.Revoke(req.ID)
		if err != nil {
			p.done = fail(err)
			return p
		}
		if len(keys) > 0 {
			// One txn: every key goes at one revision, so a watcher sees
			// the lease end at once.
			txn := &pb.TxnRequest{Success: make([]*pb.RequestOp, len(keys))}
			for i, k := range keys {
				txn.Success[i] = &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{
					RequestDeleteRange: &pb.DeleteRangeRequest{Key: k}}}
			}
			p.op.Req = txn
		}
		p.op.Aux = []mvcc.AuxWrite{{Bucket: mvcc.BucketLease, Key: lease.Key(req.ID)}}
		p.done = func(res mvcc.Result) applyResult {
			if res.Err != nil {
				s.lg.Error("deleting the keys of a revoked lease", "lease", fmt.Sprintf("%016x", req.ID), "err", res.Err)
			}
			return applyResult{resp: &pb.LeaseRevokeResponse{Header: header()}}
		}
	case kindLeaseCheckpoint:
		req := r.(*pb.LeaseCheckpointRequest)
		for _, cp := range req.Checkpoints {
			if rec, ok := s.lessor.Checkpoint(cp.ID, cp.Remaining_TTL); ok {
				p.op.Aux = append(p.op.Aux, s.leaseRecordWrite(rec))
			}
		}
		p.done = func(mvcc.Result) applyResult {
			return applyResult{resp: &pb.LeaseCheckpointResponse{Header: header()}}
		}
	}
	return p
}

// leaseRecordWrite is the backend write of a lease record. The lessor only
// returns records that encode.
func (s *Server) leaseRecordWrite(rec lease.Record) mvcc.AuxWrite {
	v, err := lease.EncodeRecord(rec)
	if err != nil {
		panic(fmt.Sprintf("server: the lessor returned an invalid record: %v", err))
	}
	return mvcc.AuxWrite{Bucket: mvcc.BucketLease, Key: lease.Key(rec.ID), Value: v}
}

// attachLeases follows the keys' leases through the store's events: a put
// attaches its key to its lease (and so takes it from the one it carried),
// a put without a lease and a delete detach it. Runs on the apply
// goroutine, after the events' backend writes, in their order. The lessor
// knows each key's lease, so the events need no PrevKv for it.
func (s *Server) attachLeases(results []mvcc.Result) {
	for _, res := range results {
		for _, ev := range res.Events {
			if ev.Type == mvccpb.Event_PUT && ev.Kv.Lease != 0 {
				err := s.lessor.Attach(ev.Kv.Lease, ev.Kv.Key)
				if err == nil {
					continue
				}
				// The store checked the lease before the put.
				s.lg.Error("attaching a key to its lease", "lease", fmt.Sprintf("%016x", ev.Kv.Lease), "err", err)
			}
			// A revoke deletes its keys after the lease is gone, and
			// detached them: nothing to do then.
			s.lessor.Detach(ev.Kv.Key)
		}
	}
}

// recoverLeases loads the lessor from the backend: the records of the
// "lease" bucket, then every key's lease. Called before the apply loop
// starts and on the apply goroutine after a snapshot is installed.
func (s *Server) recoverLeases() error {
	var recs []lease.Record
	err := s.kv.ForEach(mvcc.BucketLease, func(k, v []byte) error {
		r, err := lease.DecodeEntry(k, v)
		if err != nil {
			return err
		}
		recs = append(recs, r)
		return nil
	})
	if err != nil {
		return fmt.Errorf("loading leases: %w", err)
	}
	s.lessor.Recover(recs)
	attached := 0
	err = s.kv.Leases(func(key []byte, id int64) error {
		if err := s.lessor.Attach(id, key); err != nil {
			s.lg.Warn("key carries a lease that does not exist", "key", key, "lease", fmt.Sprintf("%016x", id))
			return nil
		}
		attached++
		return nil
	})
	if err != nil {
		return fmt.Errorf("attaching keys to leases: %w", err)
	}
	if len(recs) > 0 {
		s.lg.Info("loaded leases", "leases", len(recs), "attached-keys", attached)
	}
	return nil
}
