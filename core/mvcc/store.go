package mvcc

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/edgekv/edgekv/core/codec"
	"github.com/edgekv/edgekv/persist/backend"
)

// Bucket names. Only "key" and "meta" belong to this package; the others are
// created empty here so the backend file has its full layout from the start.
var (
	bucketKey  = []byte("key")
	bucketMeta = []byte("meta")

	// The buckets other packages own, written through Op.Aux and read with
	// ForEach.
	BucketLease   = []byte("lease")
	BucketAuth    = []byte("auth")
	BucketMembers = []byte("members")
	BucketWasm    = []byte("wasm")
)

// Keys of the "meta" bucket; values are CBOR unsigned/signed integers.
var (
	metaConsistentIndex = []byte("consistent_index")
	metaTerm            = []byte("term")
	metaCompactRev      = []byte("compact_rev")
)

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
	// BatchInterval is the longest an applied write stays in memory only
	// before it is committed to disk (etcd's --backend-batch-interval);
	// 0: 100 ms.
	BatchInterval time.Duration
	// BatchLimit commits at the end of an Apply once this many backend
	// writes are pending (etcd's --backend-batch-limit); 0: 10000, 1:
	// every Apply commits, as before batching.
	BatchLimit int
	// OnCommit, if set, observes the duration of every backend commit
	// (etcd_disk_backend_commit_duration_seconds). It runs on the
	// committing goroutine (the apply goroutine or the batch timer's) with
	// the batch locked: it must be quick and must not call the Store.
	OnCommit func(time.Duration)
	// Clock drives the batch timer; nil: the real clock. Tests inject a
	// backend.ManualClock.
	Clock backend.Clock

	// Values reads the values stored as pointers into the WAL (the
	// server's *wal.WAL). With it, a put given its value's location
	// (Op.ValueAt) stores a pointer instead of the value; see "Value
	// pointers" in the package documentation. nil: every value is stored
	// inline, and a backend holding pointers cannot be read.
	Values ValueReader
	// PointerMin is the smallest value stored as a pointer; 0:
	// DefaultPointerMin.
	PointerMin int
	// ValueCacheBytes bounds the in-memory cache of pointer values
	// recently written or read; 0: DefaultValueCacheBytes, negative: none.
	ValueCacheBytes int

	// EventPrevKV, asked once per Apply, says whether that Apply's events
	// need their PrevKv: reading each put's or delete's previous version
	// costs a backend read and a decode. nil: always. The server says yes
	// while a watcher asked prev_kv (the watch hub reads what a watcher
	// that came during the Apply misses, as etcd reads prev_kv for every
	// watcher); nothing else needs it (the lessor knows each key's lease).
	// A put or delete request's own prev_kv is always read.
	EventPrevKV func() bool

	// backendOpenFile lets tests make the disk fail.
	backendOpenFile func(name string, flag int, perm os.FileMode) (*os.File, error)
}

// Store is the multi-version key-value store. See the package
// documentation for its threading contract.
type Store struct {
	be         *backend.Backend
	path       string
	log        *slog.Logger
	checkLease func(id int64) error
	prevKV     func() bool
	vals       ValueReader
	pointerMin int
	cache      *valueCache
	live       *liveSet

	// mu guards the published state below. Readers hold it shared while
	// they look up the index and open their bbolt read transaction; the
	// writer holds it exclusively only to publish a committed batch.
	mu         sync.RWMutex
	index      *treeIndex
	rev        int64
	compactRev int64
	// gen counts publications (Apply, Migrate, Restore), for the read
	// views that pin value segments (liveSet).
	gen uint64

	consistentIndex atomic.Uint64
	term            atomic.Uint64
	// committedIndex is the consistent index on disk: the one a restart
	// would find.
	committedIndex atomic.Uint64
	// migrateScanned counts the key bucket records Migrate has read.
	migrateScanned atomic.Int64
}

// Op is one committed Raft entry for Apply.
type Op struct {
	// Index is the Raft index of the entry.
	Index uint64
	// Req is *pb.PutRequest, *pb.DeleteRangeRequest, *pb.TxnRequest,
	// *pb.CompactionRequest, or nil for an entry that only advances the
	// consistent index (and writes Aux). Apply keeps the values of its
	// puts (in their events and the value cache): the caller must not
	// modify them afterwards.
	Req any
	// ValueAt, for a *pb.PutRequest, is where the bytes of its value lie
	// in the WAL (the entry was made durable before it was committed).
	// With Options.Values set and a value of at least PointerMin bytes,
	// Apply stores a pointer to them instead of the value. Ignored for
	// other requests, and for a put with ignore_value.
	ValueAt *ValueLoc
	// Aux are writes to the buckets other packages own (BucketLease,
	// BucketAuth, BucketMembers, BucketWasm), made after Req in the same
	// backend transaction as Req and the consistent index, so a crash
	// keeps or loses them together. They are made whatever Req's outcome,
	// and skipped with the op when it was applied before.
	Aux []AuxWrite
}

// AuxWrite is a write to a bucket another package owns.
type AuxWrite struct {
	Bucket, Key []byte
	// Value nil deletes Key.
	Value []byte
}

// auxBuckets are the buckets Aux may write and ForEach may read.
var auxBuckets = map[string]bool{
	string(BucketLease): true, string(BucketAuth): true,
	string(BucketMembers): true, string(BucketWasm): true,
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
	// when it existed and Options.EventPrevKV asked for it. They feed the
	// watchers and the lessor.
	Events []*mvccpb.Event
}

// Open opens (creating if missing) the bbolt file at path and rebuilds the
// key index from what is on disk; ConsistentIndex is then the consistent
// index of the last commit, and the caller replays the entries above it.
func Open(path string, opts Options) (*Store, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{log: log, checkLease: opts.CheckLease, prevKV: opts.EventPrevKV, path: path, vals: opts.Values, pointerMin: opts.PointerMin, live: newLiveSet()}
	if s.pointerMin <= 0 {
		s.pointerMin = DefaultPointerMin
	}
	cacheBytes := opts.ValueCacheBytes
	if cacheBytes == 0 {
		cacheBytes = DefaultValueCacheBytes
	}
	s.cache = newValueCache(cacheBytes)
	removeSnapshotTemps(path, log)
	be, err := backend.Open(path, backend.Options{
		Logger:        log,
		Buckets:       [][]byte{bucketKey, bucketMeta, BucketLease, BucketAuth, BucketMembers, BucketWasm},
		SeqBuckets:    [][]byte{bucketKey},
		BatchInterval: opts.BatchInterval,
		BatchLimit:    opts.BatchLimit,
		Clock:         opts.Clock,
		OpenFile:      opts.backendOpenFile,
		// A commit runs in the background while Apply goes on: what it
		// covers is captured when it takes the pending writes (between
		// Applies, with the batch locked: consistentIndex and the pointer
		// counts then describe exactly the writes it commits, the
		// consistent index among them) and published once they are on
		// disk. This must not take s.mu: Restore holds s.mu while it
		// waits for a commit in progress.
		Freeze: func() func() {
			ci := s.consistentIndex.Load()
			mark := s.live.freeze()
			return func() {
				s.committedIndex.Store(ci)
				s.live.committed(mark)
			}
		},
		OnCommit: opts.OnCommit,
	})
	if err != nil {
		return nil, fmt.Errorf("mvcc: %w", err)
	}
	s.be = be
	st, err := s.load(be.ReadTx)
	if err == nil && st.pointers > 0 && s.vals == nil {
		err = fmt.Errorf("%w: %d values live in the WAL, and no value reader was given", errBadPointer, st.pointers)
	}
	if c, ok := s.vals.(segmentChecker); ok && err == nil {
		for seq, l := range st.live {
			if !c.HasSegment(seq) {
				err = fmt.Errorf("%w: %d values live in WAL segment %016x, which is missing", errBadPointer, l.n, seq)
				break
			}
		}
	}
	if err != nil {
		be.Close()
		return nil, fmt.Errorf("mvcc: opening %s: %w", path, err)
	}
	s.install(st)
	log.Info("mvcc store opened", "path", path, "revision", s.rev, "compact-revision", s.compactRev,
		"consistent-index", s.consistentIndex.Load(), "keys", s.index.tree.Len(), "values-in-wal", st.pointers)
	return s, nil
}

// reader is what a view reads the backend through: a backend.ReadTx for
// readers, the backend.BatchTx for Apply.
type reader interface {
	Get(bucket, key []byte) []byte
	Range(bucket, from, to []byte) iter.Seq2[[]byte, []byte]
}

var (
	_ reader = (*backend.ReadTx)(nil)
	_ reader = (*backend.BatchTx)(nil)
)

// state is what Open and Restore rebuild from a backend file.
type state struct {
	index      *treeIndex
	rev        int64
	compactRev int64
	ci, term   uint64
	live       map[uint64]segLive // pointers per WAL segment
	pointers   int64
}

// load rebuilds the index and the revisions from a backend read
// transaction, as etcd's restore does.
func (s *Store) load(begin func() (*backend.ReadTx, error)) (*state, error) {
	tx, err := begin()
	if err != nil {
		return nil, err
	}
	defer tx.Done()
	return s.loadFrom(tx, true)
}

// loadFrom reads a backend; a pointer record is an error unless
// allowPointers (a backend from another member: its pointers name that
// member's WAL).
func (s *Store) loadFrom(tx *backend.ReadTx, allowPointers bool) (*state, error) {
	for _, name := range [][]byte{bucketKey, bucketMeta} {
		if !tx.HasBucket(name) {
			return nil, fmt.Errorf("mvcc: no %q bucket", name)
		}
	}
	st := &state{index: newTreeIndex(), compactRev: -1, live: map[uint64]segLive{}}
	if err := getMeta(tx, metaConsistentIndex, &st.ci); err != nil {
		return nil, err
	}
	if err := getMeta(tx, metaTerm, &st.term); err != nil {
		return nil, err
	}
	if err := getMeta(tx, metaCompactRev, &st.compactRev); err != nil {
		return nil, err
	}

	// The keys met so far, by key; each map key shares the bytes of its
	// keyIndex's key, which nothing changes while the map lives.
	keys := make(map[string]*keyIndex)
	var all []*keyIndex // the keyIndexes of keys, in the order met
	currentRev := int64(1)
	var r record
	for k, v := range tx.Range(bucketKey, nil, nil) {
		rev, tomb, err := bytesToRev(k)
		if err != nil {
			return nil, err
		}
		if rev.main < currentRev {
			return nil, fmt.Errorf("mvcc: key bucket out of order at %x", k)
		}
		currentRev = rev.main
		// r aliases v, valid only in tx, and is not materialised: of it,
		// only the key of a new keyIndex is kept, copied.
		if err := r.parse(v); err != nil {
			return nil, fmt.Errorf("revision %x: %w", k, err)
		}
		if r.pointer {
			if !allowPointers {
				return nil, fmt.Errorf("mvcc: revision %x: %w: the value is a pointer into another member's WAL", k, errBadPointer)
			}
			st.live[r.ptr.Seq] = st.live[r.ptr.Seq].add(segLive{n: 1, bytes: r.ptr.Len, ever: r.ptr.Len, lo: rev.main, hi: rev.main})
			st.pointers++
		}
		ki, ok := keys[string(r.key)]
		switch {
		case !ok:
			if key := bytes.Clone(r.key); tomb {
				ki = restoredTombstone(key, rev)
			} else {
				ki = restoredKeyIndex(key, revision{main: r.createRev}, rev, r.version)
			}
			keys[unsafe.String(unsafe.SliceData(ki.key), len(ki.key))] = ki
			all = append(all, ki)
		case tomb:
			if err := ki.tombstone(rev); err != nil {
				s.log.Warn("tombstone of a deleted key while restoring", "key", ki.key, "revision", rev.main)
			}
		default:
			ki.put(rev)
		}
	}
	// In key order, the inserts go down the tree's rightmost path, which
	// stays in the cache: faster than random ones, sort included.
	slices.SortFunc(all, func(a, b *keyIndex) int { return bytes.Compare(a.key, b.key) })
	for _, ki := range all {
		st.index.insert(ki)
	}
	st.rev = max(currentRev, st.compactRev)
	return st, nil
}

// install publishes a loaded state; the caller holds s.mu or owns s.
func (s *Store) install(st *state) {
	s.index, s.rev, s.compactRev = st.index, st.rev, st.compactRev
	s.gen++
	s.live.reset(st.live, s.gen)
	s.consistentIndex.Store(st.ci)
	s.committedIndex.Store(st.ci)
	s.term.Store(st.term)
}

func getMeta(r reader, key []byte, v any) error {
	raw := r.Get(bucketMeta, key)
	if raw == nil {
		return nil
	}
	if err := codec.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("mvcc: meta %s: %w", key, err)
	}
	return nil
}

func putMeta(tx *backend.BatchTx, key []byte, v any) error {
	raw, err := codec.Marshal(v)
	if err != nil {
		return fmt.Errorf("mvcc: meta %s: %w", key, err)
	}
	return tx.Put(bucketMeta, key, raw)
}

// Close commits what is pending and closes the backend. It waits for
// reads and snapshots in progress.
func (s *Store) Close() error { return s.be.Close() }

// ForceCommit commits the applied writes now (there is nothing to do if
// none are pending). The server calls it before it persists a Raft
// snapshot or compacts the Raft log, so that no entry it drops is still
// needed to rebuild the backend: after it, CommittedIndex ==
// ConsistentIndex. Safe from any goroutine; it waits for an Apply in
// progress.
func (s *Store) ForceCommit() error {
	if err := s.be.ForceCommit(); err != nil {
		return fmt.Errorf("mvcc: %w", err)
	}
	return nil
}

// CommittedIndex is the consistent index on disk: the entries above it
// live only in memory and in the Raft log until the next commit.
func (s *Store) CommittedIndex() uint64 { return s.committedIndex.Load() }

// Commits is the number of backend commits since Open.
func (s *Store) Commits() int64 { return s.be.Commits() }

// Snapshot commits what is pending and returns the whole backend file as
// of that commit, for sending to a follower, with its size and the
// consistent index it covers. The file is self-contained: if the backend
// holds value pointers, rc reads a temporary copy (next to the backend
// file, removed by rc.Close) in which every value is inline, since a
// pointer means nothing to another member. rc also implements
// io.WriterTo (io.Copy uses it, without a goroutine). It holds a backend
// read transaction or the copy until rc.Close, which the caller must
// call. Safe from any goroutine.
func (s *Store) Snapshot() (rc io.ReadCloser, size int64, consistentIndex uint64, err error) {
	// A view for as long as the snapshot's pointers are read.
	gen := s.beginView()
	defer s.live.removeView(gen)
	snap, err := s.be.Snapshot()
	if err != nil {
		return nil, 0, 0, fmt.Errorf("mvcc: %w", err)
	}
	var ci uint64
	if raw := snap.Get(bucketMeta, metaConsistentIndex); raw != nil {
		if err := codec.Unmarshal(raw, &ci); err != nil {
			snap.Close()
			return nil, 0, 0, fmt.Errorf("mvcc: snapshot meta: %w", err)
		}
	}
	pointers := false
	for _, v := range snap.Range(bucketKey, nil, nil) {
		if isPointerRecord(v) {
			pointers = true
			break
		}
	}
	if !pointers {
		return snap, snap.Size(), ci, nil
	}
	defer snap.Close()
	f, err := os.CreateTemp(filepath.Dir(s.path), filepath.Base(s.path)+snapshotTempPattern)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("mvcc: snapshot: %w", err)
	}
	tmp := f.Name()
	f.Close()
	err = snap.CopyTo(tmp, func(bucket, _, v []byte) ([]byte, error) {
		if !bytes.Equal(bucket, bucketKey) {
			return v, nil
		}
		return s.inline(v)
	})
	if err != nil {
		os.Remove(tmp)
		return nil, 0, 0, fmt.Errorf("mvcc: snapshot: %w", err)
	}
	if f, err = os.Open(tmp); err == nil {
		var fi os.FileInfo
		if fi, err = f.Stat(); err == nil {
			return &tempFile{File: f}, fi.Size(), ci, nil
		}
		f.Close()
	}
	os.Remove(tmp)
	return nil, 0, 0, fmt.Errorf("mvcc: snapshot: %w", err)
}

// snapshotTempPattern names the temporary copies Snapshot streams
// ("db.snapshot-*.tmp"); Open removes leftovers.
const snapshotTempPattern = ".snapshot-*.tmp"

// tempFile is a file removed when closed.
type tempFile struct{ *os.File }

func (f *tempFile) Close() error {
	err := f.File.Close()
	if rerr := os.Remove(f.Name()); err == nil {
		err = rerr
	}
	return err
}

// removeSnapshotTemps removes the copies a crash left behind.
func removeSnapshotTemps(path string, log *slog.Logger) {
	names, _ := filepath.Glob(path + snapshotTempPattern)
	for _, name := range names {
		if err := os.Remove(name); err != nil {
			log.Warn("removing a leftover snapshot copy", "file", name, "err", err)
		}
	}
}

// Restore replaces the store with the backend file at path (a snapshot
// received from the leader, as written by Snapshot). The file is moved, not
// copied: it must be on the same file system as the store's file (e.g.
// under <data-dir>/member/snap). The file is checked and its key index
// built before anything changes: an error of that kind (the file is not a
// valid backend) leaves the store as it was. Then the writes applied but
// not committed are dropped (the snapshot supersedes them), Restore waits
// for reads and snapshots in progress, renames the file into place and
// reopens it; ConsistentIndex, Rev, CompactRev and Term become the
// snapshot's. A file holding value pointers is refused: it came from
// another member, whose WAL they point into. An error at that stage (wrapping backend.ErrFailed) is a disk
// error: the caller must stop.
//
// It must be called from the goroutine that calls Apply, between Applies.
func (s *Store) Restore(path string) error {
	var st *state
	check := func(tx *backend.ReadTx) error {
		var err error
		st, err = s.loadFrom(tx, false)
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.be.Restore(path, check); err != nil {
		return fmt.Errorf("mvcc: %w", err)
	}
	s.install(st)
	s.log.Info("mvcc store restored from snapshot", "revision", s.rev, "compact-revision", s.compactRev,
		"consistent-index", st.ci, "keys", s.index.tree.Len())
	return nil
}

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

// Size is the size of the backend file in bytes, as of the last commit.
func (s *Store) Size() int64 { return s.be.Size() }

// SizeInUse is Size minus the pages on the free list, as etcd reports it.
func (s *Store) SizeInUse() int64 { return s.be.SizeInUse() }

// view is what a read sees: an index, a backend transaction holding
// exactly the writes published with that index (or later ones that do not
// remove anything it names), and the compaction revision.
type view struct {
	s          *Store
	index      *treeIndex
	tx         reader
	rev        int64
	compactRev int64
}

// readView opens a consistent read view of the applied state, committed to
// disk or not. The caller must call done.
func (s *Store) readView() (v *view, done func(), err error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	// The read transaction begins under the lock: Apply publishes its
	// backend writes and its index together under the exclusive lock, so
	// the transaction holds every revision the index names (a compaction's
	// deletions are published with the index that no longer names them).
	tx, err := s.be.ReadTx()
	if err != nil {
		return nil, nil, fmt.Errorf("mvcc: %w", err)
	}
	gen := s.gen
	s.live.addView(gen) // the view may hold value pointers until done
	v = &view{s: s, index: s.index, tx: tx, rev: s.rev, compactRev: s.compactRev}
	return v, func() { tx.Done(); s.live.removeView(gen) }, nil
}

// beginView registers a read of the published state, which may hold value
// pointers until the caller removes it (s.live.removeView).
func (s *Store) beginView() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	s.live.addView(s.gen)
	return s.gen
}

// readKV reads the stored value of rev (not a tombstone).
func (v *view) readKV(rev revision) (*mvccpb.KeyValue, error) {
	raw := v.tx.Get(bucketKey, revToBytes(rev, false))
	if raw == nil {
		return nil, fmt.Errorf("mvcc: revision %d_%d missing from the backend", rev.main, rev.sub)
	}
	return v.s.decode(raw)
}

// writer is the state of one Apply: the backend batch and a private copy
// of the index that is published with the batch's writes.
type writer struct {
	view
	btx *backend.BatchTx
	// prevKV: events carry PrevKv (Options.EventPrevKV).
	prevKV bool
	// live are the changes to the pointer counts, published with the
	// batch.
	live map[uint64]segLive
}

// addLive counts n more (or fewer) pointers of size bytes each into
// segment seq; rev is the main revision of pointers added.
func (w *writer) addLive(seq uint64, n, bytes, rev int64) {
	if w.live == nil {
		w.live = map[uint64]segLive{}
	}
	d := segLive{n: n, bytes: n * bytes}
	if n > 0 {
		d.ever, d.lo, d.hi = d.bytes, rev, rev
	}
	w.live[seq] = w.live[seq].add(d)
}

// Apply applies ops in Raft order into the backend's batch, together with
// the consistent index (the largest applied Index) and term, and publishes
// the result to readers: Range, ReadTxn, History and HashKV see it as soon
// as Apply returns. It does not wait for the disk: the batch is committed
// (in the same bbolt transaction as the consistent index, so a crash loses
// both together) in the background, after Options.BatchInterval, or
// starting in this call once Options.BatchLimit writes are pending (this
// call then waits only if the previous commit still runs). Ops with Index <=
// ConsistentIndex() were applied before and are skipped with an empty
// Result.
//
// The returned error is a backend failure, this batch's or an earlier
// background commit's (wrapping backend.ErrFailed): the caller must stop.
// Nothing applied since the last commit reaches the disk.
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

	btx, err := s.be.BeginBatch()
	if err != nil {
		return nil, fmt.Errorf("mvcc: %w", err)
	}
	s.mu.Lock()
	w := &writer{
		view:   view{s: s, index: s.index.clone(), tx: btx, rev: s.rev, compactRev: s.compactRev},
		btx:    btx,
		prevKV: s.prevKV == nil || s.prevKV(),
	}
	s.mu.Unlock()

	for i, op := range ops {
		if op.Index <= ci {
			continue
		}
		ci = op.Index
		res, err := w.apply(op.Req, op.ValueAt)
		if err == nil {
			err = w.aux(op.Aux)
		}
		if err != nil {
			return nil, fmt.Errorf("mvcc: %w", btx.Abort(fmt.Errorf("applying entry %d: %w", op.Index, err)))
		}
		results[i] = res
	}
	if err := errors.Join(putMeta(btx, metaConsistentIndex, ci), putMeta(btx, metaTerm, term)); err != nil {
		return nil, fmt.Errorf("mvcc: %w", btx.Abort(err))
	}

	s.mu.Lock()
	btx.Publish()
	s.index, s.rev, s.compactRev = w.index, w.rev, w.compactRev
	s.gen++
	s.live.merge(w.live, s.gen)
	s.consistentIndex.Store(ci)
	s.term.Store(term)
	s.mu.Unlock()
	if err := btx.End(); err != nil {
		return nil, fmt.Errorf("mvcc: %w", err)
	}
	return results, nil
}

// errRequest marks an error that fails one request, not the batch.
type errRequest struct{ err error }

func (e errRequest) Error() string { return e.err.Error() }
func (e errRequest) Unwrap() error { return e.err }

func requestErr(err error) error { return errRequest{err} }

// apply runs one request. A request error comes back in Result.Err; any
// other error is a backend failure.
func (w *writer) apply(req any, at *ValueLoc) (Result, error) {
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
		if !r.IgnoreValue {
			t.valueAt = at
		}
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

// aux makes an op's writes to the other packages' buckets. A bucket
// outside auxBuckets is a programming error of the caller, which fails
// the batch rather than silently writing mvcc's own buckets.
func (w *writer) aux(writes []AuxWrite) error {
	for _, a := range writes {
		if !auxBuckets[string(a.Bucket)] {
			return fmt.Errorf("aux write to bucket %q, which is not an aux bucket", a.Bucket)
		}
		var err error
		if a.Value == nil {
			err = w.btx.Delete(a.Bucket, a.Key)
		} else {
			err = w.btx.Put(a.Bucket, a.Key, a.Value)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// ForEach calls fn for every key and value of an aux bucket (BucketLease,
// ...) in the applied state, committed to disk or not, in key order; an
// error from fn stops it and is returned. fn must not keep k or v after it
// returns, nor call the Store's write methods. Safe from any goroutine.
func (s *Store) ForEach(bucket []byte, fn func(k, v []byte) error) error {
	if !auxBuckets[string(bucket)] {
		return fmt.Errorf("mvcc: %q is not an aux bucket", bucket)
	}
	v, done, err := s.readView()
	if err != nil {
		return err
	}
	defer done()
	for k, val := range v.tx.Range(bucket, nil, nil) {
		if err := fn(k, val); err != nil {
			return err
		}
	}
	return nil
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
	for k, v := range w.btx.Range(bucketKey, nil, end) {
		r, _, err := bytesToRev(k)
		if err != nil {
			return nil, err
		}
		if _, ok := keep[r]; !ok {
			batch = append(batch, bytes.Clone(k))
			p, err := decodePointer(v)
			if err != nil {
				return nil, fmt.Errorf("revision %x: %w", k, err)
			}
			if p != nil {
				w.addLive(p.Seq, -1, p.Len, 0)
			}
		}
	}
	// Deleting through a moving cursor can skip entries; delete after.
	for _, k := range batch {
		if err := w.btx.Delete(bucketKey, k); err != nil {
			return nil, fmt.Errorf("mvcc: compacting: %w", err)
		}
		removed++
	}
	if err := putMeta(w.btx, metaCompactRev, rev); err != nil {
		return nil, err
	}
	w.compactRev = rev
	w.s.log.Info("compacted", "revision", rev, "removed", removed, "took", time.Since(start))
	return &pb.CompactionResponse{Header: &pb.ResponseHeader{Revision: w.rev}}, nil
}
