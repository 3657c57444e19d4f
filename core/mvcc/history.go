package mvcc

import "go.etcd.io/etcd/api/v3/mvccpb"

// History returns the changes with main revision in [startRev, endRev) as
// events in revision order (endRev <= 0: up to the current revision), at
// most limit of them (limit <= 0: all) but never splitting a revision, and
// the revision to continue from. Events carry no PrevKv. It serves watchers
// catching up; like Range it sees the applied state and is safe
// concurrently with Apply.
// Errors: ErrCompacted when startRev is below the compaction revision.
func (s *Store) History(startRev, endRev int64, limit int) (events []*mvccpb.Event, next int64, err error) {
	v, done, err := s.readView()
	if err != nil {
		return nil, 0, err
	}
	defer done()
	if startRev < v.compactRev {
		return nil, 0, ErrCompacted
	}
	startRev = max(startRev, 1)
	if endRev <= 0 || endRev > v.rev+1 {
		endRev = v.rev + 1
	}
	next = startRev
	for k, raw := range v.tx.Range(bucketKey, mainRevPrefix(startRev), mainRevPrefix(endRev)) {
		rev, tomb, err := bytesToRev(k)
		if err != nil {
			return nil, 0, err
		}
		if limit > 0 && len(events) >= limit && rev.main != next-1 {
			return events, rev.main, nil
		}
		var kv *mvccpb.KeyValue
		if tomb {
			kv, _, err = decodeKV(raw)
		} else {
			kv, err = s.decode(raw)
		}
		if err != nil {
			return nil, 0, err
		}
		ev := &mvccpb.Event{Type: mvccpb.Event_PUT, Kv: kv}
		if tomb {
			ev.Type = mvccpb.Event_DELETE
			ev.Kv = &mvccpb.KeyValue{Key: kv.Key, ModRevision: rev.main}
		}
		events = append(events, ev)
		next = rev.main + 1
	}
	return events, endRev, nil
}
