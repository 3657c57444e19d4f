package lease

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"math"
	"slices"
	"sync"
	"time"
)

// MaxLeaseTTL is the largest TTL a lease may be granted, in seconds (etcd's).
const MaxLeaseTTL = 9000000000

// Defaults and limits, etcd's.
const (
	// DefaultCheckpointInterval is how often the leader checkpoints the
	// remaining TTL of a lease whose TTL is longer than that.
	DefaultCheckpointInterval = 5 * time.Minute
	// DefaultExpiredRetryInterval is how long an expired lease waits before
	// it is reported again when its revoke did not land.
	DefaultExpiredRetryInterval = 3 * time.Second
	// RevokeRate is the most leases Expired reports per second (at the
	// server's 500 ms pace, half of it per call); Promote spreads expiries
	// so that a new leader stays under it.
	RevokeRate = 1000
	// MaxCheckpointBatch is the most checkpoints in one proposal.
	MaxCheckpointBatch = 1000
)

// Errors. The first three are etcd's answers to clients; ErrNotPrimary
// tells the server to ask the leader.
var (
	ErrLeaseNotFound    = errors.New("etcdserver: requested lease not found")
	ErrLeaseExists      = errors.New("etcdserver: lease already exists")
	ErrLeaseTTLTooLarge = errors.New("etcdserver: too large lease TTL")
	ErrNotPrimary       = errors.New("lease: not the primary lessor")
)

// Clock is the lessor's time source; tests inject a fake one.
type Clock interface{ Now() time.Time }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// Config configures a Lessor.
type Config struct {
	// MinTTL is the least TTL a lease is granted, in seconds: a shorter
	// one is raised to it (etcd: 1.5 election timeouts, rounded up).
	MinTTL int64
	// CheckpointInterval: 0 means DefaultCheckpointInterval.
	CheckpointInterval time.Duration
	// ExpiredRetryInterval: 0 means DefaultExpiredRetryInterval.
	ExpiredRetryInterval time.Duration
	// Clock: nil means the real clock.
	Clock Clock
}

// Checkpoint is a lease's remaining TTL as the leader proposes it.
type Checkpoint struct {
	ID           int64
	RemainingTTL int64 // seconds; 0 clears an earlier checkpoint
}

// Status is a lease as the leader sees it (LeaseTimeToLive).
type Status struct {
	ID         int64
	GrantedTTL int64    // seconds
	TTL        int64    // remaining seconds, truncated
	Keys       [][]byte // attached keys, sorted; only if asked for
}

// lease is one lease; every field is guarded by Lessor.mu.
type lease struct {
	id           int64
	ttl          int64
	remainingTTL int64
	expiry       time.Time // zero: never (this member is not the primary)
	keys         map[string]struct{}
	revoked      chan struct{} // closed when the lease is revoked
}

// countFrom is what a new leader counts from: the checkpointed
// remaining TTL if there is one, else the full TTL.
func (l *lease) countFrom() int64 {
	if l.remainingTTL > 0 {
		return l.remainingTTL
	}
	return l.ttl
}

func (l *lease) record() Record {
	return Record{ID: l.id, TTL: l.ttl, RemainingTTL: l.remainingTTL}
}

// Lessor is the lease table. See the package documentation for who calls
// what; every method is safe for concurrent use.
type Lessor struct {
	cfg Config

	mu     sync.RWMutex
	leases map[int64]*lease
	// keyLease is the lease each attached key carries: the leases' keys,
	// looked up by key.
	keyLease map[string]int64
	// primary is set between Promote and Demote; demoted is closed by
	// Demote, waking renewals that wait for a revoke.
	primary bool
	demoted chan struct{}
	extend  time.Duration // of the last Promote
	// expiries holds each lease's expiry, or the time to report it again
	// after it was reported expired; checkpoints the time of each lease's
	// next checkpoint. Both are empty unless primary.
	expiries    timerHeap
	checkpoints timerHeap
}

// New returns an empty, non-primary lessor.
func New(cfg Config) *Lessor {
	if cfg.CheckpointInterval <= 0 {
		cfg.CheckpointInterval = DefaultCheckpointInterval
	}
	if cfg.ExpiredRetryInterval <= 0 {
		cfg.ExpiredRetryInterval = DefaultExpiredRetryInterval
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.MinTTL < 1 {
		cfg.MinTTL = 1
	}
	return &Lessor{
		cfg:         cfg,
		leases:      map[int64]*lease{},
		keyLease:    map[string]int64{},
		expiries:    newTimerHeap(),
		checkpoints: newTimerHeap(),
	}
}

// Recover replaces the applied state with recs (the "lease" bucket as of
// the backend's consistent index), with no keys attached: the caller
// attaches them from the key-value store. A primary lessor stays primary
// and counts every lease from now, as Promote does. Renewals waiting on a
// lease that recs no longer hold are told it is gone.
func (le *Lessor) Recover(recs []Record) {
	le.mu.Lock()
	defer le.mu.Unlock()
	old := le.leases
	le.leases = make(map[int64]*lease, len(recs))
	le.keyLease = map[string]int64{}
	for _, r := range recs {
		l := &lease{id: r.ID, ttl: max(r.TTL, le.cfg.MinTTL), remainingTTL: r.RemainingTTL, keys: map[string]struct{}{}}
		if o, ok := old[r.ID]; ok {
			l.revoked = o.revoked
			delete(old, r.ID)
		} else {
			l.revoked = make(chan struct{})
		}
		le.leases[r.ID] = l
	}
	for _, o := range old {
		close(o.revoked)
	}
	le.expiries = newTimerHeap()
	le.checkpoints = newTimerHeap()
	if le.primary {
		le.promoteLocked(le.extend)
	}
}

// Grant adds lease id with ttl seconds, raised to the minimum TTL, and
// returns the record to persist. Errors: ErrLeaseNotFound for id 0 (as
// etcd), ErrLeaseTTLTooLarge, ErrLeaseExists; the table is then unchanged.
func (le *Lessor) Grant(id, ttl int64) (Record, error) {
	if id == 0 {
		return Record{}, ErrLeaseNotFound
	}
	if ttl > MaxLeaseTTL {
		return Record{}, ErrLeaseTTLTooLarge
	}
	le.mu.Lock()
	defer le.mu.Unlock()
	if _, ok := le.leases[id]; ok {
		return Record{}, ErrLeaseExists
	}
	l := &lease{id: id, ttl: max(ttl, le.cfg.MinTTL), keys: map[string]struct{}{}, revoked: make(chan struct{})}
	le.leases[id] = l
	if le.primary {
		now := le.cfg.Clock.Now()
		le.refresh(l, now, 0)
		le.scheduleCheckpoint(l, now)
	}
	return l.record(), nil
}

// Revoke removes lease id and returns the keys attached to it, sorted, for
// the caller to delete in the same backend transaction as the record.
func (le *Lessor) Revoke(id int64) ([][]byte, error) {
	le.mu.Lock()
	defer le.mu.Unlock()
	l, ok := le.leases[id]
	if !ok {
		return nil, ErrLeaseNotFound
	}
	delete(le.leases, id)
	for k := range l.keys {
		delete(le.keyLease, k)
	}
	le.expiries.remove(id)
	le.checkpoints.remove(id)
	close(l.revoked)
	return sortedKeys(l.keys), nil
}

// Checkpoint records the remaining TTL the leader measured for lease id
// and returns the record to persist; ok is false if there is no such lease
// (nothing to do, as in etcd). remaining is clamped to [0, TTL] so that
// every record written passes DecodeEntry.
func (le *Lessor) Checkpoint(id, remaining int64) (rec Record, ok bool) {
	le.mu.Lock()
	defer le.mu.Unlock()
	l, ok := le.leases[id]
	if !ok {
		return Record{}, false
	}
	l.remainingTTL = min(max(remaining, 0), l.ttl)
	if le.primary {
		le.scheduleCheckpoint(l, le.cfg.Clock.Now())
	}
	return l.record(), true
}

// Attach records that key carries lease id, and no longer the lease it
// carried before, if another.
func (le *Lessor) Attach(id int64, key []byte) error {
	le.mu.Lock()
	defer le.mu.Unlock()
	l, ok := le.leases[id]
	if !ok {
		return ErrLeaseNotFound
	}
	k := string(key)
	if old, ok := le.keyLease[k]; ok && old != id {
		delete(le.leases[old].keys, k)
	}
	l.keys[k] = struct{}{}
	le.keyLease[k] = id
	return nil
}

// Detach records that key carries no lease any more. Most keys carry
// none: that is checked under the read lock, so that a put without a
// lease does not contend with renewals.
func (le *Lessor) Detach(key []byte) {
	le.mu.RLock()
	_, ok := le.keyLease[string(key)]
	le.mu.RUnlock()
	if !ok {
		return
	}
	le.mu.Lock()
	defer le.mu.Unlock()
	k := string(key)
	if id, ok := le.keyLease[k]; ok {
		delete(le.leases[id].keys, k)
		delete(le.keyLease, k)
	}
}

// LeaseOf returns the lease key carries, 0 for none.
func (le *Lessor) LeaseOf(key []byte) int64 {
	le.mu.RLock()
	defer le.mu.RUnlock()
	return le.keyLease[string(key)]
}

// Exists returns nil if lease id exists, else ErrLeaseNotFound; it is the
// MVCC store's CheckLease.
func (le *Lessor) Exists(id int64) error {
	le.mu.RLock()
	defer le.mu.RUnlock()
	if _, ok := le.leases[id]; !ok {
		return ErrLeaseNotFound
	}
	return nil
}

// Leases returns the ID of every lease, soonest expiry first (on a member
// that is not the leader, in ID order).
func (le *Lessor) Leases() []int64 {
	le.mu.RLock()
	defer le.mu.RUnlock()
	ls := make([]*lease, 0, len(le.leases))
	for _, l := range le.leases {
		ls = append(ls, l)
	}
	sortByExpiry(ls)
	ids := make([]int64, len(ls))
	for i, l := range ls {
		ids[i] = l.id
	}
	return ids
}

// Primary reports whether this lessor is the primary (between Promote and
// Demote).
func (le *Lessor) Primary() bool {
	le.mu.RLock()
	defer le.mu.RUnlock()
	return le.primary
}

// Promote makes this lessor the primary, when its member has become leader
// and applied every entry of earlier terms. Each lease expires extend after
// its remaining TTL (the checkpointed one, else the full TTL) counted from
// now, so a new leader never ends a lease before the old leader would have.
// When leases are many, expiries are spread so that no second sees more
// than three quarters of RevokeRate of them (etcd #9395): a lease is only
// ever pushed later, never earlier.
func (le *Lessor) Promote(extend time.Duration) {
	le.mu.Lock()
	defer le.mu.Unlock()
	le.primary = true
	le.extend = extend
	le.demoted = make(chan struct{})
	le.promoteLocked(extend)
}

func (le *Lessor) promoteLocked(extend time.Duration) {
	now := le.cfg.Clock.Now()
	ls := make([]*lease, 0, len(le.leases))
	for _, l := range le.leases {
		le.refresh(l, now, extend)
		le.scheduleCheckpoint(l, now)
		ls = append(ls, l)
	}
	if len(ls) < RevokeRate {
		return // too few to pile up
	}
	sortByExpiry(ls)
	const perSecond = RevokeRate * 3 / 4
	window := ls[0].expiry // start of the current one-second window
	n := 0                 // expiries placed in it
	for _, l := range ls {
		if !l.expiry.Before(window.Add(time.Second)) {
			window, n = l.expiry, 0
		}
		if n == perSecond {
			window, n = window.Add(time.Second), 0
		}
		if l.expiry.Before(window) {
			l.expiry = window
			le.expiries.set(l.id, l.expiry)
		}
		n++
	}
}

// Demote ends primary duties: no lease expires on a follower. Renewals
// waiting for an expired lease's revoke return ErrNotPrimary.
func (le *Lessor) Demote() {
	le.mu.Lock()
	defer le.mu.Unlock()
	if !le.primary {
		return
	}
	le.primary = false
	for _, l := range le.leases {
		l.expiry = time.Time{}
	}
	le.expiries = newTimerHeap()
	le.checkpoints = newTimerHeap()
	close(le.demoted)
	le.demoted = nil
}

// Renew restarts lease id's TTL on the primary and returns the granted
// TTL. If the lease carries a checkpointed remaining TTL, clearCheckpoint
// is true: the caller must replicate a checkpoint of 0 for it, or a leader
// change would count from the stale remaining TTL and expire a lease that
// is being kept alive (etcd #13508).
//
// An expired lease is waiting for its revoke: Renew waits for it and
// returns ErrLeaseNotFound, or ErrNotPrimary if this lessor is demoted
// first, or ctx's error. ErrNotPrimary also comes at once on a follower.
func (le *Lessor) Renew(ctx context.Context, id int64) (ttl int64, clearCheckpoint bool, err error) {
	le.mu.Lock()
	if !le.primary {
		le.mu.Unlock()
		return 0, false, ErrNotPrimary
	}
	l, ok := le.leases[id]
	if !ok {
		le.mu.Unlock()
		return 0, false, ErrLeaseNotFound
	}
	now := le.cfg.Clock.Now()
	if !now.Before(l.expiry) {
		revoked, demoted := l.revoked, le.demoted
		le.mu.Unlock()
		select {
		case <-revoked:
			return 0, false, ErrLeaseNotFound
		case <-demoted:
			return 0, false, ErrNotPrimary
		case <-ctx.Done():
			return 0, false, ctx.Err()
		}
	}
	defer le.mu.Unlock()
	// The full TTL, even while a checkpoint is still recorded: clearing
	// it goes through Raft.
	l.expiry = now.Add(time.Duration(l.ttl) * time.Second)
	le.expiries.set(l.id, l.expiry)
	return l.ttl, l.remainingTTL > 0, nil
}

// TimeToLive returns lease id as the primary sees it, with its keys if
// keys is set. ErrNotPrimary on a follower: only the leader knows the
// remaining TTL.
func (le *Lessor) TimeToLive(id int64, keys bool) (Status, error) {
	le.mu.RLock()
	defer le.mu.RUnlock()
	if !le.primary {
		return Status{}, ErrNotPrimary
	}
	l, ok := le.leases[id]
	if !ok {
		return Status{}, ErrLeaseNotFound
	}
	st := Status{ID: id, GrantedTTL: l.ttl, TTL: int64(l.expiry.Sub(le.cfg.Clock.Now()).Seconds())}
	if keys {
		st.Keys = sortedKeys(l.keys)
	}
	return st, nil
}

// Expired returns up to limit leases whose expiry has passed, for the
// leader to revoke through Raft. Each is reported once, then again every
// ExpiredRetryInterval for as long as it is not revoked (a revoke lost to
// a leader change or a timeout is retried). Nothing on a follower.
func (le *Lessor) Expired(limit int) []int64 {
	le.mu.Lock()
	defer le.mu.Unlock()
	if !le.primary {
		return nil
	}
	now := le.cfg.Clock.Now()
	var out []int64
	for len(out) < limit {
		it, ok := le.expiries.peek()
		if !ok || now.Before(it.at) {
			break
		}
		l, ok := le.leases[it.id]
		if !ok {
			le.expiries.pop()
			continue
		}
		le.expiries.set(it.id, now.Add(le.cfg.ExpiredRetryInterval))
		if !now.Before(l.expiry) {
			out = append(out, it.id)
		}
	}
	return out
}

// DueCheckpoints returns up to limit checkpoints that are due: for each
// lease whose TTL exceeds the checkpoint interval, once per interval, its
// remaining TTL rounded up, unless that is its whole TTL (just renewed).
// The next checkpoint is scheduled at once, so a checkpoint lost to a
// failed proposal is retried an interval later. Nothing on a follower.
func (le *Lessor) DueCheckpoints(limit int) []Checkpoint {
	le.mu.Lock()
	defer le.mu.Unlock()
	if !le.primary {
		return nil
	}
	now := le.cfg.Clock.Now()
	var out []Checkpoint
	for len(out) < limit {
		it, ok := le.checkpoints.peek()
		if !ok || now.Before(it.at) {
			break
		}
		le.checkpoints.pop()
		l, ok := le.leases[it.id]
		if !ok || !now.Before(l.expiry) {
			continue
		}
		le.scheduleCheckpoint(l, now)
		remaining := int64(math.Ceil(l.expiry.Sub(now).Seconds()))
		if remaining >= l.ttl {
			continue
		}
		out = append(out, Checkpoint{ID: l.id, RemainingTTL: remaining})
	}
	return out
}

// refresh sets l's expiry to now + extend + its remaining TTL; le.mu held,
// primary.
func (le *Lessor) refresh(l *lease, now time.Time, extend time.Duration) {
	l.expiry = now.Add(extend + time.Duration(l.countFrom())*time.Second)
	le.expiries.set(l.id, l.expiry)
}

// scheduleCheckpoint arms l's next checkpoint one interval from now if its
// remaining TTL is longer than the interval; le.mu held, primary.
func (le *Lessor) scheduleCheckpoint(l *lease, now time.Time) {
	if l.countFrom() > int64(le.cfg.CheckpointInterval.Seconds()) {
		le.checkpoints.set(l.id, now.Add(le.cfg.CheckpointInterval))
	} else {
		le.checkpoints.remove(l.id)
	}
}

func sortedKeys(set map[string]struct{}) [][]byte {
	keys := make([][]byte, 0, len(set))
	for k := range set {
		keys = append(keys, []byte(k))
	}
	slices.SortFunc(keys, bytes.Compare)
	return keys
}

// sortByExpiry orders leases by expiry (a zero expiry, never, sorts as
// equal), then by ID.
func sortByExpiry(ls []*lease) {
	slices.SortFunc(ls, func(a, b *lease) int {
		if c := a.expiry.Compare(b.expiry); c != 0 {
			return c
		}
		return cmp.Compare(a.id, b.id)
	})
}
