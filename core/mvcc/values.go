package mvcc

import (
	"bytes"
	"fmt"
	"hash/crc32"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// ValueReader reads values stored outside the backend: persist/wal's
// ReadValue. It must be safe from many goroutines, and must return exactly
// the n bytes whose CRC-32C (Castagnoli) is crc, or an error.
type ValueReader interface {
	ReadValue(seq uint64, off int64, n int, crc uint32) ([]byte, error)
}

// segmentChecker is an optional capability of a ValueReader: whether a
// segment is there at all. Open uses it to refuse a backend whose values
// point into segments that are gone, rather than fail at the first read.
type segmentChecker interface {
	HasSegment(seq uint64) bool
}

// ValueLoc is where the bytes of a put's value lie in the WAL: Len bytes
// at offset Off of segment Seq (see Op.ValueAt).
type ValueLoc struct {
	Seq uint64
	Off int64
	Len int
}

// DefaultPointerMin is the smallest value Apply stores as a pointer when
// it is given its location: below it, the value inline is no larger than
// the pointer (about 20 bytes) plus what reading it back costs.
const DefaultPointerMin = 64

// DefaultValueCacheBytes bounds the cache of values read or written
// through pointers.
const DefaultValueCacheBytes = 4 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// segLive counts the pointers into one WAL segment.
type segLive struct {
	n     int64
	bytes int64
	// ever is the bytes of all the values stored into the segment that
	// this process knows of: those written since Open, plus those alive at
	// Open (the ones that died before are forgotten).
	ever int64
	// lo and hi bound the main revisions of the pointers stored into the
	// segment that this process knows of (0 if none): a segment holds
	// entries of consecutive Raft indexes, so its values were written at
	// consecutive revisions, and Migrate reads only those.
	lo, hi int64
}

// add adds d to c.
func (c segLive) add(d segLive) segLive {
	c.n += d.n
	c.bytes += d.bytes
	c.ever += d.ever
	if d.hi > 0 {
		if c.hi == 0 {
			c.lo, c.hi = d.lo, d.hi
		} else {
			c.lo, c.hi = min(c.lo, d.lo), max(c.hi, d.hi)
		}
	}
	return c
}

// liveSet tracks which WAL segments values still live in, for Pinned: the
// pointers stored (committed or not), the segments that lost pointers in
// writes not yet committed (a crash would bring those pointers back), and
// the read views that may still hold pointers a later write removed.
//
// Views: every read view registers with the store's publish generation
// (Store.gen) it began at; a segment that lost its last pointer at
// generation g stays pinned while a view of a generation below g is open.
type liveSet struct {
	mu   sync.Mutex
	segs map[uint64]segLive
	// unsynced are the segments that lost pointers in writes not yet
	// committed, with the epoch of the last such write: the number of
	// commits that took writes (freeze) before it. A commit that took the
	// writes up to epoch e clears the entries of epochs <= e only: the
	// writes made while it ran are not on disk yet.
	unsynced map[uint64]uint64
	epoch    uint64
	retired  map[uint64]uint64 // lost its last pointer at this generation
	views    map[uint64]int    // open read views by generation
}

func newLiveSet() *liveSet {
	return &liveSet{
		segs:     map[uint64]segLive{},
		unsynced: map[uint64]uint64{},
		retired:  map[uint64]uint64{},
		views:    map[uint64]int{},
	}
}

// merge adds the changes of a batch published as generation gen.
func (l *liveSet) merge(delta map[uint64]segLive, gen uint64) {
	if len(delta) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for seq, d := range delta {
		c := l.segs[seq].add(d)
		if d.n < 0 {
			l.unsynced[seq] = l.epoch
		}
		if c.n > 0 {
			l.segs[seq] = c
			continue
		}
		delete(l.segs, seq)
		if d.n < 0 {
			l.retired[seq] = gen
		}
	}
	if len(l.retired) > 64 {
		// Forget the segments no open view can hold pointers into, even
		// those Pinned was never asked about.
		oldest := gen
		for vg := range l.views {
			oldest = min(oldest, vg)
		}
		for seq, g := range l.retired {
			if g <= oldest {
				delete(l.retired, seq)
			}
		}
	}
}

// reset replaces the counts (Restore): the old pointers are gone from the
// disk, and from the views from gen on.
func (l *liveSet) reset(segs map[uint64]segLive, gen uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for seq := range l.segs {
		l.retired[seq] = gen
	}
	l.segs = segs
	clear(l.unsynced)
}

// freeze is called when a backend commit takes the pending writes (with
// the batch locked, so every merge so far is of writes it takes, and none
// after is): it returns the mark to pass to committed once that commit is
// on disk.
func (l *liveSet) freeze() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	mark := l.epoch
	l.epoch++
	return mark
}

// committed is called when the commit that froze at mark is on disk: the
// pointers removed by the writes it took are removed on disk too. Those
// removed since (in writes still in memory) are not.
func (l *liveSet) committed(mark uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for seq, e := range l.unsynced {
		if e <= mark {
			delete(l.unsynced, seq)
		}
	}
}

func (l *liveSet) addView(gen uint64) {
	l.mu.Lock()
	l.views[gen]++
	l.mu.Unlock()
}

func (l *liveSet) removeView(gen uint64) {
	l.mu.Lock()
	if l.views[gen]--; l.views[gen] <= 0 {
		delete(l.views, gen)
	}
	l.mu.Unlock()
}

func (l *liveSet) pinned(seq uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, unsynced := l.unsynced[seq]; l.segs[seq].n > 0 || unsynced {
		return true
	}
	if g, ok := l.retired[seq]; ok {
		for vg := range l.views {
			if vg < g {
				return true
			}
		}
		delete(l.retired, seq)
	}
	return false
}

func (l *liveSet) get(seq uint64) segLive {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.segs[seq]
}

// valueCache keeps recently written and read pointer values in memory, so
// that reading a value back soon after its put (the previous value an
// overwrite reports, a watcher catching up) does not go to the disk. A
// location names its bytes forever (segment sequences are never reused),
// so entries never go stale. First in, first out, within a byte budget
// that counts each entry's bookkeeping (cacheEntryOverhead) with its
// value, so that the budget is what the cache holds in memory.
type valueCache struct {
	mu     sync.Mutex
	budget int
	size   int
	m      map[valuePtr][]byte
	// The entries' locations, oldest first, in a ring: fifo[head] and
	// the n-1 after it. At most budget/cacheEntryOverhead long.
	fifo    []valuePtr
	head, n int
}

func newValueCache(budget int) *valueCache {
	return &valueCache{budget: budget, m: map[valuePtr][]byte{}}
}

func (c *valueCache) get(p valuePtr) ([]byte, bool) {
	if c.budget <= 0 {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[p]
	return bytes.Clone(v), ok
}

// cacheEntryOverhead is what an entry costs besides its value: its map
// slot (key, slice header, control bytes, spare slots), its place in the
// queue and the value's allocation rounding, about.
const cacheEntryOverhead = 128

// add keeps a copy of v for p.
func (c *valueCache) add(p valuePtr, v []byte) { c.insert(p, v, true) }

// keep keeps v itself for p: the caller must never modify it (a put's
// value, which the put's event holds as well).
func (c *valueCache) keep(p valuePtr, v []byte) { c.insert(p, v, false) }

func (c *valueCache) insert(p valuePtr, v []byte, copyIt bool) {
	cost := len(v) + cacheEntryOverhead
	if cost > c.budget/8 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[p]; ok {
		return
	}
	if copyIt {
		v = bytes.Clone(v)
	}
	c.m[p] = v
	c.push(p)
	c.size += cost
	for c.size > c.budget && c.n > 0 {
		old := c.fifo[c.head]
		c.head = (c.head + 1) % len(c.fifo)
		c.n--
		c.size -= len(c.m[old]) + cacheEntryOverhead
		delete(c.m, old)
	}
}

// push appends p to the ring, doubling it when full.
func (c *valueCache) push(p valuePtr) {
	if c.n == len(c.fifo) {
		grown := make([]valuePtr, max(2*len(c.fifo), 64))
		k := copy(grown, c.fifo[c.head:])
		copy(grown[k:], c.fifo[:c.head])
		c.fifo, c.head = grown, 0
	}
	c.fifo[(c.head+c.n)%len(c.fifo)] = p
	c.n++
}

// resolve reads the value p points at.
func (s *Store) resolve(p *valuePtr) ([]byte, error) {
	if v, ok := s.cache.get(*p); ok {
		return v, nil
	}
	if s.vals == nil {
		return nil, fmt.Errorf("mvcc: %w: a value pointer (segment %016x, offset %d), and no value reader", errBadPointer, p.Seq, p.Off)
	}
	v, err := s.vals.ReadValue(p.Seq, p.Off, int(p.Len), p.CRC)
	if err != nil {
		return nil, fmt.Errorf("mvcc: reading a value: %w", err)
	}
	s.cache.add(*p, v)
	return v, nil
}

// decode decodes a stored record, resolving a value pointer.
func (s *Store) decode(raw []byte) (*mvccpb.KeyValue, error) {
	kv, p, err := decodeKV(raw)
	if err != nil || p == nil {
		return kv, err
	}
	if kv.Value, err = s.resolve(p); err != nil {
		return nil, err
	}
	return kv, nil
}

// inline returns the inline encoding of a stored record: raw itself, or
// for a pointer record the record the value would have been stored as.
func (s *Store) inline(raw []byte) ([]byte, error) {
	if !isPointerRecord(raw) {
		return raw, nil
	}
	kv, err := s.decode(raw)
	if err != nil {
		return nil, err
	}
	return encodeKV(kv)
}

// Pinned reports whether WAL segment seq may still be read for a value: a
// pointer into it is stored (committed or not), was removed by a write not
// yet committed (a crash would bring it back), or may be held by a read in
// progress. The WAL keeps such a segment (wal.Options.Pinned). Safe from
// any goroutine.
func (s *Store) Pinned(seq uint64) bool { return s.live.pinned(seq) }

// LiveValues returns how many stored values point into WAL segment seq,
// and their bytes.
func (s *Store) LiveValues(seq uint64) (n int64, bytes int64) {
	c := s.live.get(seq)
	return c.n, c.bytes
}

// ValueBytes is the size of all the values stored as pointers: data that
// lives in the WAL rather than in the backend file (Size).
func (s *Store) ValueBytes() int64 {
	s.live.mu.Lock()
	defer s.live.mu.Unlock()
	var n int64
	for _, c := range s.live.segs {
		n += c.bytes
	}
	return n
}

// migrateBudget bounds the bytes of values one Migrate moves, so that a
// call takes bounded time and memory; the rest wait for the next call.
const migrateBudget = 32 << 20

// Migrate moves back into the backend the values that live in those of
// segs (WAL segments the Raft log no longer needs) that are mostly dead:
// more than half of the value bytes stored into them are dead, or their
// live values add up to fewer than minLive bytes (the server passes a
// quarter of the segment size: a segment kept for fewer would cost more
// than 4 times its values in space). Each of their pointer records is
// rewritten inline, and the batch is committed (ForceCommit) before
// Migrate returns, so that the segments may then be recycled (Pinned
// turns false once no read holds them). A segment whose values mostly
// live stays as it is: its values are written once. A value moves at most
// once, and a segment costs at most half of the values it held. It returns
// how many values moved. It must be called from the goroutine that calls
// Apply, between Applies. An error is a disk or corruption error: the
// caller must stop.
func (s *Store) Migrate(segs []uint64, minLive int64) (moved int, err error) {
	targets := map[uint64]bool{}
	for _, seq := range segs {
		if c := s.live.get(seq); c.n > 0 && (c.bytes*2 < c.ever || c.bytes < minLive) {
			targets[seq] = true
		}
	}
	if len(targets) == 0 {
		return 0, nil
	}
	// Only the revisions the targets' values were written at are read,
	// not the whole key bucket.
	var span segLive
	for seq := range targets {
		span = span.add(s.live.get(seq))
	}
	var from, end []byte // the whole bucket if the range is unknown
	if span.hi > 0 {
		from = revToBytes(revision{main: span.lo}, false)
		end = revToBytes(revision{main: span.hi + 1}, false)
	}
	start := time.Now()
	btx, err := s.be.BeginBatch()
	if err != nil {
		return 0, fmt.Errorf("mvcc: %w", err)
	}
	type rewrite struct{ k, v []byte }
	var (
		rws     []rewrite
		budget  int64
		scanned int
		delta   = map[uint64]segLive{}
	)
	for k, raw := range btx.Range(bucketKey, from, end) {
		scanned++
		if !isPointerRecord(raw) {
			continue
		}
		kv, p, derr := decodeKV(raw)
		if derr != nil {
			err = fmt.Errorf("revision %x: %w", k, derr)
			break
		}
		if !targets[p.Seq] {
			continue
		}
		if kv.Value, err = s.resolve(p); err != nil {
			break
		}
		v, eerr := encodeKV(kv)
		if eerr != nil {
			err = eerr
			break
		}
		rws = append(rws, rewrite{bytes.Clone(k), v})
		d := delta[p.Seq]
		d.n--
		d.bytes -= p.Len
		delta[p.Seq] = d
		if budget += p.Len; budget >= migrateBudget {
			break
		}
	}
	for _, rw := range rws {
		if err != nil {
			break
		}
		err = btx.Put(bucketKey, rw.k, rw.v)
	}
	if err != nil {
		return 0, fmt.Errorf("mvcc: migrating values: %w", btx.Abort(err))
	}
	s.mu.Lock()
	btx.Publish()
	s.gen++
	s.live.merge(delta, s.gen)
	s.mu.Unlock()
	if err := btx.End(); err != nil {
		return 0, fmt.Errorf("mvcc: %w", err)
	}
	if err := s.ForceCommit(); err != nil {
		return 0, err
	}
	s.migrateScanned.Add(int64(scanned))
	s.log.Info("moved values out of WAL segments into the backend", "segments", len(targets), "values", len(rws),
		"bytes", budget, "revisions-read", scanned, "took", time.Since(start))
	return len(rws), nil
}
