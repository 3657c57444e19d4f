package mvcc

import (
	"fmt"
	"hash/crc32"
)

// HashKV hashes the "key" bucket as of rev (0: the current revision), the
// way etcd's HashKV does, so members with the same history agree: crc32
// (Castagnoli) over the bucket name and then, in revision order, every
// bucket key and value with main revision <= rev, except revisions at or
// below the compaction revision that a compaction at rev would drop, and a
// tombstone at exactly the compaction revision. A value stored as a
// pointer into the WAL is hashed as the inline record it stands for, so
// the hash does not depend on which values a member keeps where. It
// returns the hash, the revision hashed and the compaction revision (-1:
// never compacted). It hashes the applied state, committed to disk or
// not, so the result does not depend on when commits happen.
// Errors: ErrCompacted (rev below the compaction revision), ErrFutureRev.
func (s *Store) HashKV(rev int64) (hash uint32, hashRev int64, compactRev int64, err error) {
	s.mu.RLock()
	compactRev, currentRev := s.compactRev, s.rev
	switch {
	case rev > 0 && rev < compactRev:
		s.mu.RUnlock()
		return 0, 0, compactRev, ErrCompacted
	case rev > currentRev:
		s.mu.RUnlock()
		return 0, 0, compactRev, ErrFutureRev
	case rev <= 0:
		rev = currentRev
	}
	keep := s.index.keep(rev)
	tx, err := s.be.ReadTx()
	gen := s.gen
	if err == nil {
		s.live.addView(gen) // value pointers are read until the end
	}
	s.mu.RUnlock()
	if err != nil {
		return 0, 0, compactRev, fmt.Errorf("mvcc: %w", err)
	}
	defer s.live.removeView(gen)
	defer tx.Done()

	h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	h.Write(bucketKey)
	lower := revision{main: compactRev + 1}
	for k, v := range tx.Range(bucketKey, nil, mainRevPrefix(rev+1)) {
		kr, tomb, err := bytesToRev(k)
		if err != nil {
			return 0, 0, compactRev, err
		}
		if lower.greaterThan(kr) && len(keep) > 0 {
			if _, ok := keep[kr]; !ok {
				continue
			}
		}
		if kr.main == compactRev && tomb {
			continue
		}
		// A value stored as a pointer is hashed as the record it would
		// be inline, so members agree whatever their layout.
		if v, err = s.inline(v); err != nil {
			return 0, 0, compactRev, err
		}
		h.Write(k)
		h.Write(v)
	}
	return h.Sum32(), rev, compactRev, nil
}
