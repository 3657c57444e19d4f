package lease

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// fakeClock moves only when told to.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newTestLessor(t *testing.T, cfg Config) (*Lessor, *fakeClock) {
	t.Helper()
	clk := newFakeClock()
	cfg.Clock = clk
	if cfg.MinTTL == 0 {
		cfg.MinTTL = 2
	}
	return New(cfg), clk
}

func mustGrant(t *testing.T, le *Lessor, id, ttl int64) Record {
	t.Helper()
	r, err := le.Grant(id, ttl)
	if err != nil {
		t.Fatalf("grant %d: %v", id, err)
	}
	return r
}

func TestLessor_GrantChecksLikeEtcd(t *testing.T) {
	le, _ := newTestLessor(t, Config{MinTTL: 3})
	cases := []struct {
		name    string
		id, ttl int64
		wantTTL int64
		wantErr error
	}{
		{"ttl below the minimum is raised", 1, 1, 3, nil},
		{"ttl zero is raised", 2, 0, 3, nil},
		{"ttl above the minimum is kept", 3, 60, 60, nil},
		{"the largest ttl", 4, MaxLeaseTTL, MaxLeaseTTL, nil},
		{"ttl too large", 5, MaxLeaseTTL + 1, 0, ErrLeaseTTLTooLarge},
		{"id 0", 0, 10, 0, ErrLeaseNotFound},
		{"existing id", 3, 10, 0, ErrLeaseExists},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := le.Grant(c.id, c.ttl)
			if !errors.Is(err, c.wantErr) {
				t.Fatalf("err %v, want %v", err, c.wantErr)
			}
			if err == nil && (r != Record{ID: c.id, TTL: c.wantTTL}) {
				t.Fatalf("record %+v, want TTL %d", r, c.wantTTL)
			}
		})
	}
	if got := le.Leases(); !slices.Equal(got, []int64{1, 2, 3, 4}) {
		t.Fatalf("leases %v", got)
	}
	if err := le.Exists(5); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("refused grant exists: %v", err)
	}
}

func TestLessor_RevokeReturnsTheAttachedKeysSorted(t *testing.T) {
	le, _ := newTestLessor(t, Config{})
	mustGrant(t, le, 7, 10)
	for _, k := range []string{"b", "a", "c", "gone"} {
		if err := le.Attach(7, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	le.Detach([]byte("gone"))
	keys, err := le.Revoke(7)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprintf("%q", keys) != `["a" "b" "c"]` {
		t.Fatalf("keys %q", keys)
	}
	if _, err := le.Revoke(7); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("second revoke: %v", err)
	}
	if err := le.Attach(7, []byte("x")); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("attach to a revoked lease: %v", err)
	}
	if id := le.LeaseOf([]byte("a")); id != 0 {
		t.Fatalf("a key of a revoked lease carries %d", id)
	}
}

// A key carries one lease: attaching it to another takes it from the
// first, and Detach takes it from whichever it carries.
func TestLessor_AKeyCarriesOneLease(t *testing.T) {
	le, _ := newTestLessor(t, Config{})
	mustGrant(t, le, 1, 10)
	mustGrant(t, le, 2, 10)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(le.Attach(1, []byte("k")))
	must(le.Attach(1, []byte("j")))
	must(le.Attach(2, []byte("k")))
	if a, b := le.LeaseOf([]byte("k")), le.LeaseOf([]byte("j")); a != 2 || b != 1 {
		t.Fatalf("k carries %d, j %d; want 2 and 1", a, b)
	}
	le.Detach([]byte("j"))
	le.Detach([]byte("never attached"))
	if keys, err := le.Revoke(1); err != nil || len(keys) != 0 {
		t.Fatalf("revoke 1: keys %q, %v; want none", keys, err)
	}
	if keys, err := le.Revoke(2); err != nil || fmt.Sprintf("%q", keys) != `["k"]` {
		t.Fatalf("revoke 2: keys %q, %v; want k", keys, err)
	}
	le.Recover(nil)
	if id := le.LeaseOf([]byte("k")); id != 0 {
		t.Fatalf("after Recover k carries %d", id)
	}
}

func TestLessor_AFollowerNeverExpiresRenewsOrAnswersTimeToLive(t *testing.T) {
	le, clk := newTestLessor(t, Config{})
	mustGrant(t, le, 1, 5)
	clk.Advance(time.Hour)
	if got := le.Expired(100); len(got) != 0 {
		t.Fatalf("follower reports expired %v", got)
	}
	if _, _, err := le.Renew(context.Background(), 1); !errors.Is(err, ErrNotPrimary) {
		t.Fatalf("renew on a follower: %v", err)
	}
	if _, err := le.TimeToLive(1, false); !errors.Is(err, ErrNotPrimary) {
		t.Fatalf("time to live on a follower: %v", err)
	}
	if got := le.DueCheckpoints(100); len(got) != 0 {
		t.Fatalf("follower checkpoints %v", got)
	}
}

func TestLessor_AnExpiredLeaseIsReportedOnceThenRetriedUntilRevoked(t *testing.T) {
	le, clk := newTestLessor(t, Config{ExpiredRetryInterval: 3 * time.Second})
	le.Promote(0)
	mustGrant(t, le, 1, 5)
	mustGrant(t, le, 2, 10)

	clk.Advance(5*time.Second - time.Millisecond)
	if got := le.Expired(100); len(got) != 0 {
		t.Fatalf("expired %v before its TTL", got)
	}
	clk.Advance(time.Millisecond)
	if got := le.Expired(100); !slices.Equal(got, []int64{1}) {
		t.Fatalf("expired %v, want [1]", got)
	}
	if got := le.Expired(100); len(got) != 0 {
		t.Fatalf("reported again at once: %v", got)
	}
	clk.Advance(3 * time.Second) // the revoke did not land: again
	if got := le.Expired(100); !slices.Equal(got, []int64{1}) {
		t.Fatalf("not retried: %v", got)
	}
	if _, err := le.Revoke(1); err != nil {
		t.Fatal(err)
	}
	clk.Advance(3 * time.Second) // now 11 s: lease 2 is due, 1 is gone
	if got := le.Expired(100); !slices.Equal(got, []int64{2}) {
		t.Fatalf("expired %v, want [2]", got)
	}
}

func TestLessor_ExpiredReportsAtMostTheLimit(t *testing.T) {
	le, clk := newTestLessor(t, Config{})
	le.Promote(0)
	for id := int64(1); id <= 10; id++ {
		mustGrant(t, le, id, 5)
	}
	clk.Advance(6 * time.Second)
	first := le.Expired(4)
	second := le.Expired(100)
	if len(first) != 4 || len(second) != 6 {
		t.Fatalf("got %v then %v, want 4 then 6", first, second)
	}
	if all := append(first, second...); !slices.Equal(all, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}) {
		t.Fatalf("reported %v", all)
	}
}

func TestLessor_RenewRestartsTheTTLAndAsksToClearACheckpoint(t *testing.T) {
	le, clk := newTestLessor(t, Config{})
	le.Promote(0)
	mustGrant(t, le, 1, 10)
	clk.Advance(8 * time.Second)
	ttl, clear, err := le.Renew(context.Background(), 1)
	if err != nil || ttl != 10 || clear {
		t.Fatalf("renew: ttl %d clear %v err %v", ttl, clear, err)
	}
	clk.Advance(9 * time.Second)
	if got := le.Expired(10); len(got) != 0 {
		t.Fatalf("renewed lease expired: %v", got)
	}
	st, err := le.TimeToLive(1, false)
	if err != nil || st.TTL != 1 || st.GrantedTTL != 10 {
		t.Fatalf("time to live %+v %v", st, err)
	}

	// A checkpointed remaining TTL must be cleared through Raft on renew.
	if _, ok := le.Checkpoint(1, 4); !ok {
		t.Fatal("checkpoint of a live lease")
	}
	if _, clear, _ := le.Renew(context.Background(), 1); !clear {
		t.Fatal("renew of a checkpointed lease does not ask to clear the checkpoint")
	}
	if st, _ := le.TimeToLive(1, false); st.TTL != 10 {
		t.Fatalf("renewed checkpointed lease has %d s left, want the full 10", st.TTL)
	}
	if r, _ := le.Checkpoint(1, 0); r.RemainingTTL != 0 {
		t.Fatalf("cleared checkpoint persists %+v", r)
	}
	if _, clear, _ := le.Renew(context.Background(), 1); clear {
		t.Fatal("asks to clear a checkpoint already cleared")
	}
	if _, _, err := le.Renew(context.Background(), 99); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("renew of a missing lease: %v", err)
	}
}

func TestLessor_RenewOfAnExpiredLeaseWaitsForItsRevoke(t *testing.T) {
	for _, c := range []struct {
		name string
		end  func(le *Lessor)
		want error
	}{
		{"revoked", func(le *Lessor) { le.Revoke(1) }, ErrLeaseNotFound},
		{"demoted", func(le *Lessor) { le.Demote() }, ErrNotPrimary},
	} {
		t.Run(c.name, func(t *testing.T) {
			le, clk := newTestLessor(t, Config{})
			le.Promote(0)
			mustGrant(t, le, 1, 5)
			clk.Advance(5 * time.Second)
			errc := make(chan error, 1)
			go func() {
				_, _, err := le.Renew(context.Background(), 1)
				errc <- err
			}()
			select {
			case err := <-errc:
				t.Fatalf("renew of an expired lease returned at once: %v", err)
			case <-time.After(20 * time.Millisecond):
			}
			c.end(le)
			if err := <-errc; !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
	t.Run("canceled", func(t *testing.T) {
		le, clk := newTestLessor(t, Config{})
		le.Promote(0)
		mustGrant(t, le, 1, 5)
		clk.Advance(6 * time.Second)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, _, err := le.Renew(ctx, 1); !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v", err)
		}
	})
}

func TestLessor_PromoteCountsFromTheCheckpointPlusTheExtension(t *testing.T) {
	le, clk := newTestLessor(t, Config{})
	mustGrant(t, le, 1, 60) // never checkpointed
	mustGrant(t, le, 2, 60)
	le.Checkpoint(2, 20)
	clk.Advance(time.Hour) // a follower's time does not count
	le.Promote(time.Second)
	for _, c := range []struct {
		id      int64
		expires time.Duration
	}{{1, 61 * time.Second}, {2, 21 * time.Second}} {
		st, err := le.TimeToLive(c.id, false)
		if err != nil || st.TTL != int64(c.expires/time.Second) || st.GrantedTTL != 60 {
			t.Fatalf("lease %d: %+v %v, want %v left", c.id, st, err, c.expires)
		}
	}
	clk.Advance(21*time.Second - time.Millisecond)
	if got := le.Expired(10); len(got) != 0 {
		t.Fatalf("expired early: %v", got)
	}
	clk.Advance(time.Millisecond)
	if got := le.Expired(10); !slices.Equal(got, []int64{2}) {
		t.Fatalf("expired %v, want [2]", got)
	}
}

func TestLessor_DemoteStopsEveryExpiry(t *testing.T) {
	le, clk := newTestLessor(t, Config{})
	le.Promote(0)
	mustGrant(t, le, 1, 5)
	le.Demote()
	le.Demote() // idempotent
	clk.Advance(time.Minute)
	if got := le.Expired(10); len(got) != 0 {
		t.Fatalf("demoted lessor expires %v", got)
	}
	if le.Primary() {
		t.Fatal("still primary")
	}
	le.Promote(0)
	clk.Advance(4 * time.Second)
	if got := le.Expired(10); len(got) != 0 {
		t.Fatalf("re-promoted lessor expires %v before the full TTL", got)
	}
}

func TestLessor_PromoteSpreadsManyExpiriesAndNeverShortensOne(t *testing.T) {
	le, clk := newTestLessor(t, Config{})
	const n = 3000
	for id := int64(1); id <= n; id++ {
		mustGrant(t, le, id, 10)
	}
	start := clk.Now()
	le.Promote(0)
	perSecond := map[int64]int{}
	for id := int64(1); id <= n; id++ {
		st, err := le.TimeToLive(id, false)
		if err != nil {
			t.Fatal(err)
		}
		if st.TTL < 10 {
			t.Fatalf("lease %d shortened to %d", id, st.TTL)
		}
		perSecond[st.TTL]++
	}
	for sec, count := range perSecond {
		if count > RevokeRate*3/4 {
			t.Fatalf("%d leases expire in second %d", count, sec)
		}
	}
	if len(perSecond) != 4 { // 750 + 750 + 750 + 750
		t.Fatalf("expiries spread over %v", perSecond)
	}
	// Every lease still expires, in time order, at the revoke rate.
	clk.Advance(20 * time.Second)
	total := 0
	for total < n {
		got := le.Expired(RevokeRate / 2)
		if len(got) == 0 {
			t.Fatalf("only %d of %d leases expired by %v", total, n, clk.Now().Sub(start))
		}
		total += len(got)
	}
}

func TestLessor_CheckpointsOnlyLongLeasesOncePerIntervalInBatches(t *testing.T) {
	le, clk := newTestLessor(t, Config{CheckpointInterval: 10 * time.Second})
	le.Promote(0)
	mustGrant(t, le, 1, 10) // not longer than the interval: never checkpointed
	for id := int64(2); id <= 6; id++ {
		mustGrant(t, le, id, 100)
	}
	clk.Advance(10*time.Second - time.Millisecond)
	if got := le.DueCheckpoints(100); len(got) != 0 {
		t.Fatalf("checkpoints before the interval: %v", got)
	}
	clk.Advance(time.Millisecond)
	first := le.DueCheckpoints(3)
	rest := le.DueCheckpoints(100)
	if len(first) != 3 || len(rest) != 2 {
		t.Fatalf("batches %v %v, want 3 then 2", first, rest)
	}
	for _, cp := range append(first, rest...) {
		if cp.ID == 1 || cp.RemainingTTL != 90 {
			t.Fatalf("checkpoint %+v, want 90 s left of leases 2..6", cp)
		}
	}
	if got := le.DueCheckpoints(100); len(got) != 0 {
		t.Fatalf("checkpointed twice in one interval: %v", got)
	}
	// A lease renewed when its checkpoint is due has nothing to
	// checkpoint; the others do, an interval later.
	clk.Advance(10 * time.Second)
	le.Renew(context.Background(), 2)
	got := le.DueCheckpoints(100)
	if len(got) != 4 {
		t.Fatalf("second round %v, want leases 3..6", got)
	}
	for _, cp := range got {
		if cp.ID == 2 || cp.RemainingTTL != 80 {
			t.Fatalf("second round checkpoint %+v", cp)
		}
	}
	// The renewed lease stays scheduled.
	clk.Advance(10 * time.Second)
	if got := le.DueCheckpoints(100); len(got) != 5 || got[0] != (Checkpoint{ID: 2, RemainingTTL: 90}) {
		t.Fatalf("third round %v, want lease 2 with 90 s left first", got)
	}
}

func TestLessor_RecoverLoadsRecordsAndTellsWaitersOfDroppedLeases(t *testing.T) {
	le, clk := newTestLessor(t, Config{MinTTL: 5})
	le.Promote(0)
	mustGrant(t, le, 1, 10)
	mustGrant(t, le, 2, 10)
	le.Attach(1, []byte("k"))
	clk.Advance(11 * time.Second)
	errc := make(chan error, 1)
	go func() {
		_, _, err := le.Renew(context.Background(), 2)
		errc <- err
	}()
	// Lease 2 is not in the snapshot; lease 3 was granted with a smaller
	// minimum TTL than this member's.
	le.Recover([]Record{{ID: 1, TTL: 10, RemainingTTL: 4}, {ID: 3, TTL: 2}})
	if err := <-errc; !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("waiter of a dropped lease: %v", err)
	}
	if got := le.Leases(); !slices.Equal(got, []int64{1, 3}) {
		t.Fatalf("leases %v", got)
	}
	// Still primary: counted from now, keys to be attached by the caller.
	st, err := le.TimeToLive(1, true)
	if err != nil || st.TTL != 4 || len(st.Keys) != 0 {
		t.Fatalf("lease 1 after recover: %+v %v", st, err)
	}
	if st, _ := le.TimeToLive(3, false); st.GrantedTTL != 5 {
		t.Fatalf("lease 3 TTL %d, want the minimum 5", st.GrantedTTL)
	}
}

func TestLessor_TimeToLiveListsKeysOnlyWhenAsked(t *testing.T) {
	le, clk := newTestLessor(t, Config{})
	le.Promote(0)
	mustGrant(t, le, 1, 30)
	le.Attach(1, []byte("z"))
	le.Attach(1, []byte("a"))
	clk.Advance(2500 * time.Millisecond)
	st, err := le.TimeToLive(1, false)
	if err != nil || st.Keys != nil || st.TTL != 27 {
		t.Fatalf("%+v %v", st, err)
	}
	st, _ = le.TimeToLive(1, true)
	if fmt.Sprintf("%q", st.Keys) != `["a" "z"]` {
		t.Fatalf("keys %q", st.Keys)
	}
	if _, err := le.TimeToLive(2, false); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("missing lease: %v", err)
	}
}

func TestLessor_ConcurrentUseIsSafe(t *testing.T) {
	le, clk := newTestLessor(t, Config{CheckpointInterval: time.Second})
	le.Promote(0)
	var wg sync.WaitGroup
	for g := int64(0); g < 4; g++ {
		wg.Go(func() {
			for i := int64(1); i <= 200; i++ {
				id := g*1000 + i
				le.Grant(id, 3)
				le.Attach(id, []byte("k"))
				le.Renew(context.Background(), id)
				le.TimeToLive(id, true)
				clk.Advance(10 * time.Millisecond)
				le.Expired(10)
				le.DueCheckpoints(10)
				le.Leases()
				if i%3 == 0 {
					le.Revoke(id)
				}
			}
		})
	}
	wg.Go(func() {
		for i := 0; i < 50; i++ {
			le.Demote()
			le.Promote(time.Second)
		}
	})
	wg.Wait()
}
