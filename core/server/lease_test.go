package server

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/edgekv/edgekv/core/lease"
	"github.com/edgekv/edgekv/core/mvcc"
	"github.com/edgekv/edgekv/persist/backend"
)

// leaderOf waits for a leader whose lessor is primary and returns it.
func (c *testCluster) leaderOf(t *testing.T) *Server {
	t.Helper()
	var lead *Server
	retry(t, func() error {
		for _, s := range c.servers {
			if s != nil && s.node.Leader() == s.id && s.lessor.Primary() {
				lead = s
				return nil
			}
		}
		return errors.New("no promoted leader yet")
	})
	return lead
}

func grant(t *testing.T, s *Server, id, ttl int64) int64 {
	t.Helper()
	var resp *pb.LeaseGrantResponse
	retry(t, func() (err error) {
		resp, err = s.LeaseGrant(ctxT(t), &pb.LeaseGrantRequest{ID: id, TTL: ttl})
		return err
	})
	return resp.ID
}

func putLeased(t *testing.T, s *Server, key string, id int64) *pb.PutResponse {
	t.Helper()
	resp, err := s.Put(ctxT(t), &pb.PutRequest{Key: []byte(key), Value: []byte("v"), Lease: id})
	if err != nil {
		t.Fatalf("put %s with lease %x: %v", key, id, err)
	}
	return resp
}

func keysOf(t *testing.T, s *Server, prefix string) []string {
	t.Helper()
	resp, err := s.Range(ctxT(t), &pb.RangeRequest{Key: []byte(prefix), RangeEnd: []byte(prefix + "\xff"), Serializable: true, KeysOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, kv := range resp.Kvs {
		keys = append(keys, string(kv.Key))
	}
	return keys
}

// leaseRecords reads the "lease" bucket of s's backend.
func leaseRecords(t *testing.T, s *Server) map[int64]lease.Record {
	t.Helper()
	out := map[int64]lease.Record{}
	err := s.kv.ForEach(mvcc.BucketLease, func(k, v []byte) error {
		r, err := lease.DecodeEntry(k, v)
		out[r.ID] = r
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestServer_GrantPicksAnIDAndChecksLikeEtcd(t *testing.T) {
	c := newTestCluster(t, 1)
	s := c.leaderOf(t)
	resp, err := s.LeaseGrant(ctxT(t), &pb.LeaseGrantRequest{TTL: 1})
	if err != nil || resp.ID <= 0 || resp.Header.MemberId != s.id || resp.Header.Revision != 1 {
		t.Fatalf("grant without ID: %v %v", resp, err)
	}
	// 10 ticks of 10 ms: 1.5 election timeouts round up to 1 s.
	if resp.TTL != 1 {
		t.Fatalf("TTL %d, want 1", resp.TTL)
	}
	if _, err := s.LeaseGrant(ctxT(t), &pb.LeaseGrantRequest{ID: resp.ID, TTL: 5}); !errors.Is(err, ErrLeaseExists) {
		t.Fatalf("same ID again: %v", err)
	}
	if _, err := s.LeaseGrant(ctxT(t), &pb.LeaseGrantRequest{ID: 3, TTL: lease.MaxLeaseTTL + 1}); !errors.Is(err, ErrLeaseTTLTooLarge) {
		t.Fatalf("TTL too large: %v", err)
	}
	if _, err := s.LeaseRevoke(ctxT(t), &pb.LeaseRevokeRequest{ID: 3}); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("revoke of a missing lease: %v", err)
	}
	if _, err := s.Put(ctxT(t), &pb.PutRequest{Key: []byte("k"), Lease: 3}); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("put with a missing lease: %v", err)
	}
	txn := &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{
		RequestPut: &pb.PutRequest{Key: []byte("k"), Lease: 3}}}}}
	if _, err := s.Txn(ctxT(t), txn); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("txn put with a missing lease: %v", err)
	}
	if ls, _ := s.LeaseLeases(ctxT(t)); len(ls.Leases) != 1 || ls.Leases[0].ID != resp.ID {
		t.Fatalf("leases %v", ls.Leases)
	}
}

func TestServer_RevokeDeletesEveryAttachedKeyAtOneRevisionOnEveryMember(t *testing.T) {
	c := newTestCluster(t, 3)
	lead := c.leaderOf(t)
	follower := c.servers[0]
	if follower == lead {
		follower = c.servers[1]
	}
	id := grant(t, follower, 0, 600)
	other := grant(t, follower, 0, 600)
	for _, k := range []string{"l/a", "l/b", "l/c", "l/moved", "l/unleased"} {
		putLeased(t, follower, k, id)
	}
	putLeased(t, lead, "l/moved", other)                                               // detached from id
	putLeased(t, lead, "l/unleased", 0)                                                // detached, no lease
	putLeased(t, lead, "l/other", other)                                               // never on id
	txn := &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{ // attached in a txn
		RequestPut: &pb.PutRequest{Key: []byte("l/txn"), Lease: id}}}}}
	if _, err := lead.Txn(ctxT(t), txn); err != nil {
		t.Fatal(err)
	}
	ttl, err := lead.LeaseTimeToLive(ctxT(t), &pb.LeaseTimeToLiveRequest{ID: id, Keys: true})
	if err != nil || fmt.Sprintf("%s", ttl.Keys) != "[l/a l/b l/c l/txn]" || ttl.GrantedTTL != 600 {
		t.Fatalf("time to live: %v %v", ttl, err)
	}
	before := lead.kv.Rev()
	resp, err := follower.LeaseRevoke(ctxT(t), &pb.LeaseRevokeRequest{ID: id})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Revision != before+1 {
		t.Fatalf("revoke at revision %d, want one revision after %d", resp.Header.Revision, before)
	}
	want := []string{"l/moved", "l/other", "l/unleased"}
	for _, s := range c.servers {
		retry(t, func() error {
			if got := keysOf(t, s, "l/"); !slices.Equal(got, want) {
				return fmt.Errorf("member %x has %v", s.id, got)
			}
			if s.lessor.Exists(id) == nil || len(leaseRecords(t, s)) != 1 {
				return fmt.Errorf("member %x still has lease %x", s.id, id)
			}
			return nil
		})
	}
	// The deletes share the revision.
	h, err := lead.kv.Range(&pb.RangeRequest{Key: []byte("l/a"), Revision: before})
	if err != nil || len(h.Kvs) != 1 {
		t.Fatalf("l/a before the revoke: %v %v", h, err)
	}
}

func TestServer_ALeaseExpiresOnlyAfterItsTTLAndTakesItsKeys(t *testing.T) {
	clk := backend.NewManualClock(time.Unix(1_700_000_000, 0))
	c := newTestClusterWith(t, 3, func(cfg *Config) { cfg.LeaseClock = clk })
	lead := c.leaderOf(t)
	id := grant(t, lead, 0, 10)
	putLeased(t, lead, "exp/k", id)
	for _, s := range c.servers {
		retry(t, func() error {
			if got := keysOf(t, s, "exp/"); len(got) != 1 {
				return fmt.Errorf("member %x has %v", s.id, got)
			}
			return nil
		})
	}

	clk.Advance(10*time.Second - time.Millisecond)
	// What the lease loop asks: nothing is due (asking changes nothing
	// before the expiry).
	if got := lead.lessor.Expired(lease.RevokeRate); len(got) != 0 {
		t.Fatalf("expired before the TTL: %v", got)
	}
	for _, s := range c.servers {
		if got := keysOf(t, s, "exp/"); len(got) != 1 {
			t.Fatalf("member %x lost the key before the TTL: %v", s.id, got)
		}
	}
	clk.Advance(time.Millisecond)
	for _, s := range c.servers {
		retry(t, func() error {
			if got := keysOf(t, s, "exp/"); len(got) != 0 {
				return fmt.Errorf("member %x still has %v", s.id, got)
			}
			return nil
		})
	}
	ka, err := lead.LeaseKeepAlive(ctxT(t), id)
	if err != nil || ka.TTL != 0 {
		t.Fatalf("keep-alive of the expired lease: %v %v", ka, err)
	}
	if ttl, err := lead.LeaseTimeToLive(ctxT(t), &pb.LeaseTimeToLiveRequest{ID: id}); err != nil || ttl.TTL != -1 {
		t.Fatalf("time to live of the expired lease: %v %v", ttl, err)
	}
}

func TestServer_KeepAliveRenewsAndClearsACheckpoint(t *testing.T) {
	clk := backend.NewManualClock(time.Unix(1_700_000_000, 0))
	c := newTestClusterWith(t, 1, func(cfg *Config) {
		cfg.LeaseClock = clk
		cfg.LeaseCheckpointInterval = 10 * time.Second
	})
	s := c.leaderOf(t)
	id := grant(t, s, 0, 100)
	clk.Advance(30 * time.Second)
	retry(t, func() error {
		if r := leaseRecords(t, s)[id]; r.RemainingTTL != 70 {
			return fmt.Errorf("record %+v, want 70 s checkpointed", r)
		}
		return nil
	})
	ka, err := s.LeaseKeepAlive(ctxT(t), id)
	if err != nil || ka.TTL != 100 || ka.ID != id {
		t.Fatalf("keep-alive: %v %v", ka, err)
	}
	if r := leaseRecords(t, s)[id]; r.RemainingTTL != 0 {
		t.Fatalf("renewal left the checkpoint %+v", r)
	}
	ttl, err := s.LeaseTimeToLive(ctxT(t), &pb.LeaseTimeToLiveRequest{ID: id})
	if err != nil || ttl.TTL != 100 {
		t.Fatalf("time to live after renewal: %v %v", ttl, err)
	}
	if ka, err := s.LeaseKeepAlive(ctxT(t), 12345); err != nil || ka.TTL != 0 {
		t.Fatalf("keep-alive of a missing lease: %v %v", ka, err)
	}
}

func TestServer_ALeaseSurvivesRestartWithItsRemainingTTLAndKeys(t *testing.T) {
	clk := backend.NewManualClock(time.Unix(1_700_000_000, 0))
	c := newTestClusterWith(t, 1, func(cfg *Config) {
		cfg.LeaseClock = clk
		cfg.LeaseCheckpointInterval = 10 * time.Second
	})
	s := c.leaderOf(t)
	id := grant(t, s, 0, 100)
	putLeased(t, s, "r/k", id)
	clk.Advance(30 * time.Second)
	retry(t, func() error {
		if r := leaseRecords(t, s)[id]; r.RemainingTTL != 70 {
			return fmt.Errorf("record %+v, want 70 s checkpointed", r)
		}
		return nil
	})
	c.stop(0)
	clk.Advance(time.Hour) // down time does not count
	c.start(0)
	s = c.leaderOf(t)
	ttl, err := s.LeaseTimeToLive(ctxT(t), &pb.LeaseTimeToLiveRequest{ID: id, Keys: true})
	// Counted from the checkpoint, plus one election timeout (100 ms).
	if err != nil || ttl.TTL != 70 || ttl.GrantedTTL != 100 || fmt.Sprintf("%s", ttl.Keys) != "[r/k]" {
		t.Fatalf("after restart: %v %v", ttl, err)
	}
	clk.Advance(71 * time.Second)
	retry(t, func() error {
		if got := keysOf(t, s, "r/"); len(got) != 0 {
			return fmt.Errorf("key still there: %v", got)
		}
		return nil
	})
}

func TestServer_ANewLeaderCountsFromTheLastCheckpoint(t *testing.T) {
	clk := backend.NewManualClock(time.Unix(1_700_000_000, 0))
	c := newTestClusterWith(t, 3, func(cfg *Config) {
		cfg.LeaseClock = clk
		cfg.LeaseCheckpointInterval = 10 * time.Second
	})
	lead := c.leaderOf(t)
	id := grant(t, lead, 0, 100)
	putLeased(t, lead, "nl/k", id)
	clk.Advance(40 * time.Second)
	for _, s := range c.servers {
		retry(t, func() error {
			if r := leaseRecords(t, s)[id]; r.RemainingTTL != 60 {
				return fmt.Errorf("member %x record %+v, want 60 s", s.id, r)
			}
			return nil
		})
	}
	for i, s := range c.servers {
		if s == lead {
			c.stop(i)
		}
	}
	next := c.leaderOf(t)
	ttl, err := next.LeaseTimeToLive(ctxT(t), &pb.LeaseTimeToLiveRequest{ID: id, Keys: true})
	if err != nil || ttl.TTL != 60 || fmt.Sprintf("%s", ttl.Keys) != "[nl/k]" {
		t.Fatalf("on the new leader: %v %v, want 60 s left", ttl, err)
	}
}

func TestServer_AFollowerCaughtUpBySnapshotKnowsTheLeases(t *testing.T) {
	c := newTestClusterWith(t, 3, func(cfg *Config) {
		cfg.SnapshotCount = 20
		cfg.SnapshotCatchUpEntries = 5
	})
	lead := c.leaderOf(t)
	idx := 2
	if c.servers[idx] == lead {
		idx = 1
	}
	c.stop(idx)
	lead = c.leaderOf(t)
	id := grant(t, lead, 0, 600)
	for i := 0; i < 40; i++ {
		putLeased(t, lead, fmt.Sprintf("s/%02d", i), id)
	}
	c.start(idx)
	s := c.servers[idx]
	retry(t, func() error {
		if s.applied.get() < lead.applied.get() {
			return fmt.Errorf("at %d, leader at %d", s.applied.get(), lead.applied.get())
		}
		return nil
	})
	if s.snapshotsInstalled.Load() == 0 {
		t.Fatal("caught up without a snapshot")
	}
	if s.lessor.Exists(id) != nil {
		t.Fatal("the follower does not know the lease")
	}
	// It knows the keys too: the revoke deletes them there.
	if _, err := lead.LeaseRevoke(ctxT(t), &pb.LeaseRevokeRequest{ID: id}); err != nil {
		t.Fatal(err)
	}
	retry(t, func() error {
		if got := keysOf(t, s, "s/"); len(got) != 0 {
			return fmt.Errorf("%d keys left", len(got))
		}
		h0, _, _, _ := lead.kv.HashKV(0)
		h1, _, _, _ := s.kv.HashKV(0)
		if h0 != h1 {
			return fmt.Errorf("hashes differ")
		}
		return nil
	})
}

func TestLeaseIDGen_IDsArePositiveAndDifferAcrossRestarts(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	a := newLeaseIDGen(0xffffffffffffffff, now)
	b := newLeaseIDGen(0xffffffffffffffff, now.Add(time.Second))
	seen := map[int64]bool{}
	for i := 0; i < 1000; i++ {
		for _, id := range []int64{a.next(), b.next()} {
			if id <= 0 || seen[id] {
				t.Fatalf("id %x: positive and unique?", id)
			}
			seen[id] = true
		}
	}
}

func TestServer_MinLeaseTTLIsEtcds(t *testing.T) {
	for _, c := range []struct {
		tick  time.Duration
		ticks int
		want  int64
	}{
		{100 * time.Millisecond, 10, 2}, // etcd's defaults: 1.5 s
		{10 * time.Millisecond, 10, 1},
		{500 * time.Millisecond, 10, 8},
	} {
		if got := minLeaseTTL(Config{TickInterval: c.tick, ElectionTicks: c.ticks}); got != c.want {
			t.Errorf("%v x %d: %d, want %d", c.tick, c.ticks, got, c.want)
		}
	}
}
