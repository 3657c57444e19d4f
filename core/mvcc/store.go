package mvcc

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/edgekv/edgekv/core/codec"
)

// Bucket names. Only "key" and "meta" belong to this package; the others are
// created empty here so the backend file has its full layout from the start.
var (
	bucketKey     = []byte("key")
	bucketMeta    = []byte("meta")
	bucketLease   = []byte("lease")
	bucketAuth    = []byte("auth")
	bucketMembers = []byte("members")
	bucketWasm    = []byte("wasm")
)

// Keys of the "meta" bucket; values are CBOR unsigned/signed integers.
var (
	metaConsistentIndex = []byte("consistent_index")
	metaTerm            = []byte("term")
	metaCompactRev      = []byte("compact_rev")
)

// initialMmapSize is bbolt's first mapping: small enough for the address
// space of 32-bit ARM, large enough that a small store never remaps.
const initialMmapSize = 64 << 20

// Options configures a Store.
type Options struct {
	// Logger receives the store's logs; nil discards them.
	Logger *slog.Logger
	// CheckLease, if not nil, is called from Apply for every lease a put is
	// about to attach (lease != 0, not ignore_lease), as etcd checks the
	// lessor. A non-nil error fails the request (for a txn, the whole txn)
	// and is returned in Result.Err unchanged, so the lease package's own
	// sentinel (etcd's ErrLeaseNotFound) reaches the rpc layer. It must be
	// deterministic across members, i.e. reflect only applied state.
	CheckLease func(id int64) error
}

// Store is the multi-version key-value store. See the package
// documentation for its threading contract.
type Store struct {
	db         *bolt.DB
	log        *slog.Logger
	checkLease func(id int64) error

	// mu guards the published state below. Readers hold it shared while
	// they look up the index and open their bbolt read transaction; the
	// writer holds it exclusively only to publish a committed batch.
	mu         sync.RWMutex
	index      *treeIndex
	rev        int64
	compactRev int64

	consistentIndex atomic.Uint64
	term            atomic.Uint64
}

// Op is one committed Raft entry for Apply.
type Op struct {
	// Index is the Raft index of the entry.
	Index uint64
	// Req is *pb.PutRequest, *pb.DeleteRangeRequest, *pb.TxnRequest,
	// *pb.CompactionRequest, or nil for an entry that only advances the
	// consistent index.
	Req any
}

// Result is the outcome of one Op.
type Result struct {
	// Resp is the matching *pb.PutResponse, *pb.DeleteRangeResponse,
	// *pb.TxnResponse or *pb.CompactionResponse; nil when Err is set, for a
	// nil Req, and for a skipped (already applied) op.
	Resp any
	// Err is a per-request error: the request changed nothing.
	Err error
	// Events are the changes the request made, in order, all at the
	// revision in the response header: PUT with the new KeyValue, DELETE
	// with Kv = {Key, ModRevision}; PrevKv is the key's previous value
	// when it existed. They feed the watchers and the lessor (attach
	// Kv.Lease, detach PrevKv.Lease).
	Events []*mvccpb.Event
}

// Open opens (creating if missing) the bbolt file at path and rebuilds the
// key index from it.
func Open(path string, opts Options) (*Store, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:         10 * time.Second,
		InitialMmapSize: initialMmapSize,
		FreelistType:    bolt.FreelistMapType,
	})
	if err != nil {
		return nil, fmt.Errorf("mvcc: opening %s: %w", path, err)
	}
	s := &Store{db: db, log: log, checkLease: opts.CheckLease, index: newTreeIndex(), rev: 1, compactRev: -1}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketKey, bucketMeta, bucketLease, bucketAuth, bucketMembers, bucketWasm} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("creating bucket %q: %w", name, err)
			}
		}
		return nil
	})
	if err == nil {
		err = db.View(s.restore)
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("mvcc: opening %s: %w", path, err)
	}
	log.Info("mvcc store opened", "path", path, "revision", s.rev, "compact-revision", s.compactRev,
		"consistent-index", s.consistentIndex.Load(), "keys", s.index.tree.Len())
	return s, nil
}

// restore rebuilds the index and the revisions from the backend, as etcd's
// restore does.
func (s *Store) restore(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	var ci, term uint64
	if err := getMeta(meta, metaConsistentIndex, &ci); err != nil {
		return err
	}
	if err := getMeta(meta, metaTerm, &term); err != nil {
		return err
	}
	compactRev := int64(-1)
	if err := getMeta(meta, metaCompactRev, &compactRev); err != nil {
		return err
	}

	keys := make(map[string]*keyIndex)
	currentRev := int64(1)
	err := tx.Bucket(bucketKey).ForEach(func(k, v []byte) error {
		rev, tomb, err := bytesToRev(k)
		if err != nil {
			return err
		}
		if rev.main < currentRev {
			return fmt.Errorf("mvcc: key bucket out of order at %x", k)
		}
		currentRev = rev.main
		kv, err := decodeKV(v)
		if err != nil {
			return fmt.Errorf("revision %x: %w", k, err)
		}
		ki, ok := keys[string(kv.Key)]
		switch {
		case !ok && tomb:
			ki = &keyIndex{key: kv.Key}
			ki.restoreTombstone(rev)
			keys[string(kv.Key)] = ki
		case !ok:
			ki = &keyIndex{key: kv.Key}
			ki.restore(revision{main: kv.CreateRevision}, rev, kv.Version)
			keys[string(kv.Key)] = ki
		case tomb:
			if err := ki.tombstone(rev); err != nil {
				s.log.Warn("tombstone of a deleted key while restoring", "key", kv.Key, "revision", rev.main)
			}
		default:
			ki.put(rev)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, ki := range keys {
		s.index.insert(ki)
	}
	s.rev = max(currentRev, compactRev)
	s.compactRev = compactRev
	s.consistentIndex.Store(ci)
	s.term.Store(term)
	return nil
}

func getMeta(b *bolt.Bucket, key []byte, v any) error {
	raw := b.Get(key)
	if raw == nil {
		return nil
	}
	if err := codec.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("mvcc: meta %s: %w", key, err)
	}
	return nil
}

func putMeta(b *bolt.Bucket, key []byte, v any) error {
	raw, err := codec.Marshal(v)
	if err != nil {
		return fmt.Errorf("mvcc: meta %s: %w", key, err)
	}
	if err := b.Put(key, raw); err != nil {
		return fmt.Errorf("mvcc: meta %s: %w", key, err)
	}
	return nil
}

// Close closes the backend. It waits for reads in progress.
func (s *Store) Close() error { return s.db.Close() }

// ConsistentIndex is the Raft index of the last applied entry.
func (s *Store) ConsistentIndex() uint64 { return s.consistentIndex.Load() }

// Term is the term passed with the last applied batch.
func (s *Store) Term() uint64 { return s.term.Load() }

// Rev is the current revision; a fresh store is at revision 1.
func (s *Store) Rev() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.rev
}

// CompactRev is the revision of the last compaction, -1 if the store was
// never compacted (as etcd).
func (s *Store) CompactRev() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.compactRev
}

// Size is the size of the backend file in bytes.
func (s *Store) Size() int64 {
	var size int64
	_ = s.db.View(func(tx *bolt.Tx) error {
		size = tx.Size()
		return nil
	})
	return size
}

// SizeInUse is Size minus the pages on the free list, as etcd reports it.
func (s *Store) SizeInUse() int64 {
	return s.Size() - int64(s.db.Stats().FreePageN)*int64(s.db.Info().PageSize)
}

// view is what a read sees: an index, the key bucket of a bbolt
// transaction at least as new as the index, and the compaction revision.
type view struct {
	index      *treeIndex
	keys       *bolt.Bucket
	rev        int64
	compactRev int64
}

// readView opens a consistent read view of the committed state. The caller
// must call done.
func (s *Store) readView() (v *view, done func(), err error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	// The bbolt transaction begins under the lock: the index only ever
	// names revisions committed before it was published, and a batch that
	// deletes revisions (a compaction) commits under the exclusive lock.
	tx, err := s.db.Begin(false)
	if err != nil {
		return nil, nil, fmt.Errorf("mvcc: begin read: %w", err)
	}
	v = &view{index: s.index, keys: tx.Bucket(bucketKey), rev: s.rev, compactRev: s.compactRev}
	return v, func() { _ = tx.Rollback() }, nil
}

// readKV reads the stored value of rev (not a tombstone).
func (v *view) readKV(rev revision) (*mvccpb.KeyValue, error) {
	raw := v.keys.Get(revToBytes(rev, false))
	if raw == nil {
		return nil, fmt.Errorf("mvcc: revision %d_%d missing from the backend", rev.main, rev.sub)
	}
	return decodeKV(raw)
}

// writer is the state of one Apply batch: a bbolt write transaction and a
// private copy of the index that is published after the commit.
type writer struct {
	view
	s         *Store
	tx        *bolt.Tx
	compacted bool
}

// Apply applies ops in Raft order in one bbolt write transaction, together
// with the consistent index (the largest applied Index) and term, and then
// publishes the result to readers. Ops with Index <= ConsistentIndex() were
// applied before and are skipped with an empty Result. The returned error
// is a backend failure after which the caller must stop: the batch is not
// applied.
//
// Apply must be called from one goroutine at a time.
func (s *Store) Apply(term uint64, ops []Op) ([]Result, error) {
	results := make([]Result, len(ops))
	ci := s.consistentIndex.Load()
	pending := false
	for _, op := range ops {
		if op.Index > ci {
			pending = true
			break
		}
	}
	if !pending {
		return results, nil
	}

	tx, err := s.db.Begin(true)
	if err != nil {
		return nil, fmt.Errorf("mvcc: begin write: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			_ = tx.Rollback()
		}
	}()

	s.mu.Lock()
	w := &writer{
		view: view{index: s.index.clone(), keys: tx.Bucket(bucketKey), rev: s.rev, compactRev: s.compactRev},
		s:    s,
		tx:   tx,
	}
	s.mu.Unlock()

	for i, op := range ops {
		if op.Index <= ci {
			continue
		}
		ci = op.Index
		res, err := w.apply(op.Req)
		if err != nil {
			return nil, fmt.Errorf("mvcc: applying entry %d: %w", op.Index, err)
		}
		results[i] = res
	}

	meta := tx.Bucket(bucketMeta)
	if err := putMeta(meta, metaConsistentIndex, ci); err != nil {
		return nil, err
	}
	if err := putMeta(meta, metaTerm, term); err != nil {
		return nil, err
	}

	if w.compacted {
		// Readers must not pair the old index with a backend that lost
		// the revisions it names.
		s.mu.Lock()
		defer s.mu.Unlock()
	}
	committed = true
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("mvcc: commit: %w", err)
	}
	if !w.compacted {
		s.mu.Lock()
		defer s.mu.Unlock()
	}
	s.index, s.rev, s.compactRev = w.index, w.rev, w.compactRev
	s.consistentIndex.Store(ci)
	s.term.Store(term)
	return results, nil
}

// errRequest marks an error that fails one request, not the batch.
type errRequest struct{ err error }

func (e errRequest) Error() string { return e.err.Error() }
func (e errRequest) Unwrap() error { return e.err }

func requestErr(err error) error { return errRequest{err} }

// apply runs one request. A request error comes back in Result.Err; any
// other error is a backend failure.
func (w *writer) apply(req any) (Result, error) {
	var (
		resp any
		t    *txnCtx
		err  error
	)
	switch r := req.(type) {
	case nil:
		return Result{}, nil
	case *pb.PutRequest:
		t = w.begin()
		resp, err = w.put(t, r)
	case *pb.DeleteRangeRequest:
		t = w.begin()
		resp, err = t.deleteRangeOp(r)
	case *pb.TxnRequest:
		t = w.begin()
		resp, err = t.txn(r)
	case *pb.CompactionRequest:
		resp, err = w.compact(r)
	default:
		return Result{Err: fmt.Errorf("mvcc: unknown request type %T", req)}, nil
	}
	var reqErr errRequest
	if errors.As(err, &reqErr) {
		return Result{Err: reqErr.err}, nil
	}
	if err != nil {
		return Result{}, err
	}
	res := Result{Resp: resp}
	if t != nil && len(t.changes) > 0 {
		res.Events = t.changes
		w.rev++
	}
	return res, nil
}

// begin starts a write request at the writer's current revision.
func (w *writer) begin() *txnCtx { return &txnCtx{v: &w.view, w: w, beginRev: w.rev} }

func (w *writer) put(t *txnCtx, r *pb.PutRequest) (*pb.PutResponse, error) {
	if err := w.checkPut(&w.view, w.rev, r); err != nil {
		return nil, err
	}
	return t.putOp(r)
}

// checkPut does etcd's checks before a put: the lease exists, and a put
// with ignore_value or ignore_lease finds the key, in v at rev.
func (w *writer) checkPut(v *view, rev int64, r *pb.PutRequest) error {
	if r.Lease != 0 && w.s.checkLease != nil {
		if err := w.s.checkLease(r.Lease); err != nil {
			return requestErr(err)
		}
	}
	if r.IgnoreValue || r.IgnoreLease {
		if _, _, _, err := v.index.get(r.Key, rev); err != nil {
			return requestErr(ErrKeyNotFound)
		}
	}
	return nil
}

// compact applies a compaction request: drop from the index and the
// backend every revision no read at or after rev can reach.
func (w *writer) compact(r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	rev := r.Revision
	if rev <= w.compactRev {
		return nil, requestErr(ErrCompacted)
	}
	if rev > w.rev {
		return nil, requestErr(ErrFutureRev)
	}
	start := time.Now()
	keep := w.index.compact(rev)

	end := mainRevPrefix(rev + 1)
	var (
		removed int
		batch   [][]byte
	)
	c := w.keys.Cursor()
	for k, _ := c.First(); k != nil && bytes.Compare(k, end) < 0; k, _ = c.Next() {
		r, _, err := bytesToRev(k)
		if err != nil {
			return nil, err
		}
		if _, ok := keep[r]; !ok {
			batch = append(batch, bytes.Clone(k))
		}
	}
	// Deleting through a moving cursor can skip entries; delete after.
	for _, k := range batch {
		if err := w.keys.Delete(k); err != nil {
			return nil, fmt.Errorf("mvcc: compacting: %w", err)
		}
		removed++
	}
	if err := putMeta(w.tx.Bucket(bucketMeta), metaCompactRev, rev); err != nil {
		return nil, err
	}
	w.compactRev = rev
	w.compacted = true
	w.s.log.Info("compacted", "revision", rev, "removed", removed, "took", time.Since(start))
	return &pb.CompactionResponse{Header: &pb.ResponseHeader{Revision: w.rev}}, nil
}
