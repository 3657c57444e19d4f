package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/edgekv/edgekv/core/codec"
	"github.com/edgekv/edgekv/core/lease"
	"github.com/edgekv/edgekv/core/mvcc"
	"github.com/edgekv/edgekv/core/raftnode"
	"github.com/edgekv/edgekv/core/watch"
	"github.com/edgekv/edgekv/persist/fsx"
	"github.com/edgekv/edgekv/persist/snap"
	"github.com/edgekv/edgekv/persist/wal"
)

// PeerTransport is the peer transport as the server uses it: raftnode's
// Transport, snapshot streams, and the peer table the server keeps in step
// with membership.
type PeerTransport interface {
	raftnode.Transport
	// SendSnapshot streams a MsgSnap with the backend db (size bytes) on
	// its own stream, closes db, and reports the outcome to Raft.
	SendSnapshot(m *raftpb.Message, db io.ReadCloser, size int64)
	AddPeer(id uint64, peerURL string) error
	RemovePeer(id uint64)
	Close() error
}

// SnapshotReceiver stores a backend received with a MsgSnap, durably, before
// the transport hands the message to Raft. *Server implements it.
type SnapshotReceiver interface {
	ReceiveSnapshot(ctx context.Context, m *raftpb.Message, size int64, db io.Reader) error
}

// TransportDeps is what a TransportFactory gets: the member's identity and
// where inbound traffic goes.
type TransportDeps struct {
	MemberID, ClusterID uint64
	Token               string
	Raft                raftnode.Raft
	Snapshots           SnapshotReceiver
	// Metrics is the member's registry, for the transport's own metrics.
	Metrics prometheus.Registerer
}

// TransportFactory creates the peer transport once the member and cluster
// IDs are known.
type TransportFactory func(TransportDeps) (PeerTransport, error)

// Config is a member's configuration; field meanings follow etcd's flags.
type Config struct {
	Name                string
	DataDir             string
	InitialCluster      map[string][]string // name -> peer URLs (--initial-cluster)
	InitialClusterState string              // "new" or "existing"
	InitialClusterToken string
	AdvertisePeerURLs   []string
	AdvertiseClientURLs []string
	TickInterval        time.Duration // --heartbeat-interval
	ElectionTicks       int           // --election-timeout / --heartbeat-interval
	MaxRequestBytes     int
	MaxTxnOps           int
	QuotaBackendBytes   int64 // 0 means DefaultQuotaBytes

	SnapshotCount          uint64 // applied entries between snapshots (--snapshot-count)
	SnapshotCatchUpEntries uint64 // entries kept after a snapshot for slow followers
	MaxSnapshots           int    // snapshot files kept (--max-snapshots); 0 means 5, negative keeps all
	WAL                    wal.Options
	Backend                mvcc.Options
	// WatchProgressNotifyInterval is the period of watch progress
	// notifications (--watch-progress-notify-interval); 0 means 10 minutes.
	WatchProgressNotifyInterval time.Duration
	// LeaseCheckpointInterval is how often the leader checkpoints the
	// remaining TTL of leases longer than it; 0 means 5 minutes.
	LeaseCheckpointInterval time.Duration
	// LeaseClock replaces the lessor's wall clock (tests).
	LeaseClock lease.Clock

	NewTransport TransportFactory
	// DiscoverClusterID asks running members (ID -> peer URL) for the
	// cluster ID, for a member joining with InitialClusterState
	// "existing"; the transport implements it.
	DiscoverClusterID func(ctx context.Context, self uint64, token string, peers map[uint64]string) (uint64, error)
	Logger            *slog.Logger
	// Fatal is called on an unrecoverable storage error; default exits.
	Fatal func(error)
	// Ticks replaces the wall-clock Raft ticker (tests).
	Ticks <-chan time.Time
}

// DefaultQuotaBytes is etcd's default backend quota (2 GiB), which is
// also the most bbolt can map on 32-bit ARM.
const DefaultQuotaBytes = 2 << 30

// Defaults for snapshots, as etcd 3.6+.
const (
	DefaultSnapshotCount          = 10000
	DefaultSnapshotCatchUpEntries = 5000
)

// Version is the etcd API version edgekv implements and reports in Status.
const Version = "3.7.0"

// Server is one edgekv member.
type Server struct {
	cfg       Config
	lg        *slog.Logger
	metrics   *metrics
	id        uint64
	clusterID uint64

	wal       *wal.WAL
	walState  *wal.State        // what restart read, until Start loads it
	joinPeers map[uint64]string // members to reach first when joining
	snaps     *snap.Snapshotter
	storage   *raftStorage
	raftLog   *raft.MemoryStorage
	dbPath    string
	kv        *mvcc.Store
	watch     *watch.Hub
	ast       applyState // owned by the apply goroutine
	lessor    *lease.Lessor
	leaseIDs  *leaseIDGen
	fwd       leaderConn // to the leader, for lease requests

	snapshotsInstalled atomic.Int64
	snapshotsSaved     atomic.Int64
	// snapc takes the snapshots the apply goroutine takes to the snapshot
	// goroutine; snapMu is held while one is saved, and by the apply
	// goroutine while it replaces the backend; snapSaved is the index of
	// the last one saved, until the apply goroutine moves values for it.
	snapc     chan snapJob
	snapMu    sync.Mutex
	snapSaved atomic.Uint64
	node      *raftnode.Node
	started   atomic.Bool // node may receive traffic
	transport PeerTransport
	members   membership

	reqSeq  atomic.Uint64 // low bits of request IDs
	waits   waitList
	applied indexWait
	applyc  chan applyItem
	// leaderKnownc is signalled when a leader becomes known, so that a
	// read index round waiting for one retries at once.
	leaderKnownc chan struct{}
	snapSendc    chan *raftpb.Message

	readMu     sync.Mutex
	readNotify *notifier
	readwaitc  chan struct{}
	readStatec chan raft.ReadState

	stopc    chan struct{}
	donec    chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

// New opens or bootstraps a member in cfg.DataDir. It refuses a data
// directory that belongs to another member or cluster.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = 1536 * 1024
	}
	if cfg.MaxTxnOps <= 0 {
		cfg.MaxTxnOps = 128
	}
	if cfg.QuotaBackendBytes <= 0 {
		cfg.QuotaBackendBytes = DefaultQuotaBytes
	}
	if cfg.TickInterval <= 0 {
		cfg.TickInterval = 100 * time.Millisecond
	}
	if cfg.SnapshotCount == 0 {
		cfg.SnapshotCount = DefaultSnapshotCount
	}
	if cfg.SnapshotCatchUpEntries == 0 {
		cfg.SnapshotCatchUpEntries = DefaultSnapshotCatchUpEntries
	}
	if cfg.MaxSnapshots == 0 {
		cfg.MaxSnapshots = 5
	}
	if cfg.ElectionTicks <= 0 {
		cfg.ElectionTicks = 10
	}
	if cfg.Fatal == nil {
		lg := cfg.Logger
		cfg.Fatal = func(err error) {
			lg.Error("fatal error; stopping the member so that no write is lost silently", "err", err)
			os.Exit(1)
		}
	}
	s := &Server{
		cfg:          cfg,
		lg:           cfg.Logger,
		applyc:       make(chan applyItem, 64),
		leaderKnownc: make(chan struct{}, 1),
		snapSendc:    make(chan *raftpb.Message, 4),
		snapc:        make(chan snapJob, 1),
		readNotify:   newNotifier(),
		readwaitc:    make(chan struct{}, 1),
		readStatec:   make(chan raft.ReadState, 16),
		stopc:        make(chan struct{}),
		donec:        make(chan struct{}),
	}
	s.metrics = newMetrics(s)
	s.lessor = lease.New(lease.Config{
		MinTTL:               minLeaseTTL(cfg),
		CheckpointInterval:   cfg.LeaseCheckpointInterval,
		ExpiredRetryInterval: s.requestTimeout(),
		Clock:                cfg.LeaseClock,
	})
	memberDir := filepath.Join(cfg.DataDir, "member")
	walDir := filepath.Join(memberDir, "wal")
	s.dbPath = filepath.Join(memberDir, "db")
	s.raftLog = raft.NewMemoryStorage()
	s.ast.confState = &raftpb.ConfState{}

	var (
		bootstrap []raft.Peer
		restored  *raftpb.Snapshot
		err       error
	)
	if wal.ExistIn(s.walOptions().FS, walDir) {
		if restored, err = s.restart(walDir); err != nil {
			return nil, err
		}
	} else {
		if _, err := os.Stat(s.dbPath); err == nil {
			return nil, fmt.Errorf("%w: %s holds a backend but no write-ahead log; refusing to guess its history", ErrDataDirConflict, cfg.DataDir)
		}
		if bootstrap, err = s.bootstrap(walDir); err != nil {
			return nil, err
		}
	}
	s.lg = s.lg.With("member", fmt.Sprintf("%x", s.id))
	s.leaseIDs = newLeaseIDGen(s.id, time.Now())
	fail := func(err error) (*Server, error) {
		if s.transport != nil {
			s.transport.Close()
		}
		if s.kv != nil {
			s.kv.Close()
		}
		s.wal.Close()
		return nil, err
	}
	if s.snaps, err = snap.New(filepath.Join(memberDir, "snap"), s.lg); err != nil {
		return fail(err)
	}
	s.storage = &raftStorage{wal: s.wal, snap: s.snaps}
	if s.kv, err = mvcc.Open(s.dbPath, s.mvccOptions()); err != nil {
		return fail(fmt.Errorf("opening backend: %w", err))
	}
	s.transport, err = cfg.NewTransport(TransportDeps{
		MemberID: s.id, ClusterID: s.clusterID, Token: s.cfg.InitialClusterToken,
		Raft: (*inbound)(s), Snapshots: s, Metrics: s.metrics.reg,
	})
	if err != nil {
		s.transport = nil
		return fail(fmt.Errorf("starting peer transport: %w", err))
	}
	for id, u := range s.joinPeers {
		if err := s.transport.AddPeer(id, u); err != nil {
			return fail(err)
		}
	}
	if restored != nil {
		if err := s.restoreSnapshot(restored); err != nil {
			return fail(err)
		}
	}
	if err := s.recoverLeases(); err != nil {
		return fail(err)
	}
	if st := s.walState; st != nil {
		// A commit index is written without a sync (Raft's MustSync), and a
		// snapshot received from the leader is saved before the hard state
		// of its Ready: after a crash the commit may lag the snapshot, which
		// is committed by definition.
		if idx := st.Snapshot.Index; st.HardState.GetCommit() < idx {
			st.HardState.Commit = new(idx)
		}
		if err := s.raftLog.SetHardState(st.HardState); err != nil {
			return fail(err)
		}
		if err := s.raftLog.Append(st.Entries); err != nil {
			return fail(err)
		}
		s.walState = nil
	}
	s.watch = watch.New(s.kv, s.kv.Rev(), watch.Options{
		Logger:           s.lg.With("component", "watch"),
		ProgressInterval: cfg.WatchProgressNotifyInterval,
	})
	s.node, err = raftnode.New(raftnode.Config{
		ID:             s.id,
		TickInterval:   cfg.TickInterval,
		ElectionTick:   cfg.ElectionTicks,
		HeartbeatTick:  1,
		Ticks:          cfg.Ticks,
		Storage:        s.storage,
		Log:            s.raftLog,
		Transport:      s.transport,
		Bootstrap:      bootstrap,
		Logger:         s.lg,
		Fatal:          cfg.Fatal,
		OnConfChange:   s.onConfChange,
		OnCommitted:    s.onCommitted,
		OnReadState:    s.onReadState,
		OnSnapshot:     s.onSnapshot,
		OnLeaderChange: s.onLeaderChange,
		OnSendSnapshot: s.onSendSnapshot,
	})
	if err != nil {
		return fail(err)
	}
	return s, nil
}

// bootstrap creates the WAL of a brand-new member: of a new cluster, or of
// a running one that added it (--initial-cluster-state existing).
func (s *Server) bootstrap(walDir string) ([]raft.Peer, error) {
	cfg := s.cfg
	self, ok := cfg.InitialCluster[cfg.Name]
	if !ok {
		return nil, fmt.Errorf("--initial-cluster has no member named %q (--name)", cfg.Name)
	}
	if len(cfg.AdvertisePeerURLs) > 0 && !sameURLs(self, cfg.AdvertisePeerURLs) {
		return nil, fmt.Errorf("--initial-cluster must include %s=%s (--initial-advertise-peer-urls), but has %s=%s",
			cfg.Name, cfg.AdvertisePeerURLs, cfg.Name, self)
	}
	names := make([]string, 0, len(cfg.InitialCluster))
	for name := range cfg.InitialCluster {
		names = append(names, name)
	}
	sort.Strings(names)
	var ids []uint64
	var peers []raft.Peer
	seen := map[uint64]string{}
	for _, name := range names {
		urls := cfg.InitialCluster[name]
		id := MemberID(urls, cfg.InitialClusterToken)
		if other, dup := seen[id]; dup {
			return nil, fmt.Errorf("--initial-cluster: members %q and %q have the same peer URLs", other, name)
		}
		seen[id] = name
		ids = append(ids, id)
		mctx, err := codec.Marshal(Member{ID: id, Name: name, PeerURLs: urls})
		if err != nil {
			return nil, err
		}
		peers = append(peers, raft.Peer{ID: id, Context: mctx})
	}
	s.id = MemberID(self, cfg.InitialClusterToken)
	if cfg.InitialClusterState == "existing" {
		if err := s.discoverCluster(); err != nil {
			return nil, err
		}
		peers = nil // the leader sends the log or a snapshot
	} else {
		s.clusterID = ClusterID(ids)
	}
	w, err := wal.CreateWithOptions(walDir, wal.Metadata{Name: cfg.Name, MemberID: s.id, ClusterID: s.clusterID, Token: cfg.InitialClusterToken}, s.walOptions())
	if err != nil {
		return nil, fmt.Errorf("creating write-ahead log: %w", err)
	}
	s.wal = w
	s.lg.Info("bootstrapped new member", "name", cfg.Name, "id", fmt.Sprintf("%x", s.id), "cluster-id", fmt.Sprintf("%x", s.clusterID),
		"state", cfg.InitialClusterState)
	return peers, nil
}

// discoverCluster learns the cluster ID from the running members named in
// --initial-cluster, which must already have added this member.
func (s *Server) discoverCluster() error {
	if s.cfg.DiscoverClusterID == nil {
		return errors.New("--initial-cluster-state=existing: no way to reach the running members")
	}
	others := map[uint64]string{}
	for name, urls := range s.cfg.InitialCluster {
		if name != s.cfg.Name {
			others[MemberID(urls, s.cfg.InitialClusterToken)] = urls[0]
		}
	}
	if len(others) == 0 {
		return errors.New("--initial-cluster-state=existing: --initial-cluster names no running member to join")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id, err := s.cfg.DiscoverClusterID(ctx, s.id, s.cfg.InitialClusterToken, others)
	if err != nil {
		return fmt.Errorf("joining the cluster of %v: %w (was this member added with 'member add' and the same --initial-cluster-token?)",
			slices.Collect(maps.Values(others)), err)
	}
	s.clusterID = id
	s.joinPeers = others
	return nil
}

// restart reopens the WAL and checks it belongs to this member. It returns
// the snapshot the WAL starts from, if any, for restoreSnapshot.
func (s *Server) restart(walDir string) (*raftpb.Snapshot, error) {
	w, st, err := wal.OpenWithOptions(walDir, s.walOptions())
	if err != nil {
		return nil, fmt.Errorf("opening write-ahead log: %w", err)
	}
	md := st.Metadata
	conflict := func(what string) error {
		w.Close()
		return fmt.Errorf("%w: %s belongs to member %q (id %x) of cluster %x with token %q; refusing to start %s",
			ErrDataDirConflict, s.cfg.DataDir, md.Name, md.MemberID, md.ClusterID, md.Token, what)
	}
	if md.Name != s.cfg.Name {
		return nil, conflict(fmt.Sprintf("as member %q (--name)", s.cfg.Name))
	}
	if s.cfg.InitialClusterToken != "" && md.Token != s.cfg.InitialClusterToken {
		return nil, conflict(fmt.Sprintf("in the cluster with token %q (--initial-cluster-token)", s.cfg.InitialClusterToken))
	}
	if self, ok := s.cfg.InitialCluster[s.cfg.Name]; ok && s.cfg.InitialClusterState != "existing" {
		if id := MemberID(self, md.Token); id != md.MemberID {
			return nil, conflict(fmt.Sprintf("as member id %x (from --initial-cluster %s=%s)", id, s.cfg.Name, self))
		}
	}
	s.id, s.clusterID, s.wal = md.MemberID, md.ClusterID, w
	s.cfg.InitialClusterToken = md.Token
	s.walState = st
	s.lg.Info("restarting member from its write-ahead log", "name", md.Name, "id", fmt.Sprintf("%x", md.MemberID),
		"cluster-id", fmt.Sprintf("%x", md.ClusterID), "snapshot", st.Snapshot.Index, "entries", len(st.Entries),
		"commit", st.HardState.GetCommit())
	if st.Snapshot.Index == 0 {
		return nil, nil
	}
	sn, err := snap.New(filepath.Join(filepath.Dir(walDir), "snap"), s.lg)
	if err != nil {
		return nil, err
	}
	restored, err := sn.Load(st.Snapshot.Term, st.Snapshot.Index)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("the write-ahead log starts at snapshot %d (term %d), whose file cannot be read: %w",
			st.Snapshot.Index, st.Snapshot.Term, err)
	}
	return restored, nil
}

// restoreSnapshot loads the snapshot and the WAL tail into the Raft log at
// restart, installing a received backend if a crash came between receiving
// and installing it.
func (s *Server) restoreSnapshot(sn *raftpb.Snapshot) error {
	md := sn.GetMetadata()
	if s.kv.ConsistentIndex() < md.GetIndex() {
		s.lg.Warn("backend is older than the snapshot; installing the received backend",
			"backend", s.kv.ConsistentIndex(), "snapshot", md.GetIndex())
		if err := s.replaceBackend(md.GetIndex()); err != nil {
			return fmt.Errorf("restoring snapshot %d: %w", md.GetIndex(), err)
		}
	}
	if err := s.raftLog.ApplySnapshot(sn); err != nil {
		return err
	}
	return s.adoptSnapshot(sn)
}

func sameURLs(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	sort.Strings(a)
	sort.Strings(b)
	return slices.Equal(a, b)
}

// ID returns this member's ID.
func (s *Server) ID() uint64 { return s.id }

// walOptions are the WAL options, with logging and metrics filled in.
func (s *Server) walOptions() wal.Options {
	o := s.cfg.WAL
	if o.FS == nil {
		o.FS = fsx.OS{}
	}
	if o.Logger == nil {
		o.Logger = s.lg
	}
	o.OnSync = func(d time.Duration) { s.metrics.walFsync.Observe(d.Seconds()) }
	o.Pinned = s.pinned
	return o
}

// mvccOptions are the backend options, with the logger filled in.
func (s *Server) mvccOptions() mvcc.Options {
	o := s.cfg.Backend
	if o.Logger == nil {
		o.Logger = s.lg
	}
	o.OnCommit = func(d time.Duration) { s.metrics.backendCommit.Observe(d.Seconds()) }
	o.CheckLease = s.lessor.Exists
	o.Values = s.wal // opened before the store
	// The hub exists before anything is applied; the lessor needs no
	// PrevKv (attachLeases).
	o.EventPrevKV = func() bool { return s.watch != nil && s.watch.WantPrevKV() }
	return o
}

// ClusterID returns the cluster's ID.
func (s *Server) ClusterID() uint64 { return s.clusterID }

// inbound is the raftnode.Raft the transport delivers into; it drops
// traffic that arrives before the node has started.
type inbound Server

var errNotStarted = errors.New("member not started")

func (in *inbound) Process(ctx context.Context, m *raftpb.Message) error {
	if !in.started.Load() {
		return errNotStarted
	}
	return in.node.Process(ctx, m)
}

func (in *inbound) ReportUnreachable(id uint64) {
	if in.started.Load() {
		in.node.ReportUnreachable(id)
	}
}

func (in *inbound) ReportSnapshot(id uint64, st raft.SnapshotStatus) {
	if in.started.Load() {
		in.node.ReportSnapshot(id, st)
	}
}

// Start runs the member: Raft, apply, linearizable reads, and publishing
// this member's client URLs.
func (s *Server) Start() {
	s.node.Start()
	s.started.Store(true)
	s.watch.Start()
	s.wg.Add(5)
	go s.applyLoop()
	go s.snapshotLoop()
	go s.readLoop()
	go s.publish()
	go s.leaseLoop()
	go func() {
		select {
		case <-s.node.Done():
			s.stop()
		case <-s.stopc:
		}
	}()
}

// Stop stops the member and closes its files.
func (s *Server) Stop() {
	s.stop()
	<-s.donec
}

func (s *Server) stop() {
	s.stopOnce.Do(func() {
		close(s.stopc)
		go func() {
			s.node.Stop()
			s.transport.Close()
			s.wg.Wait()
			s.fwd.close()
			s.watch.Close() // its goroutines read the backend
			s.kv.Close()
			s.wal.Close()
			close(s.donec)
		}()
	})
}

// Done is closed once the member has stopped.
func (s *Server) Done() <-chan struct{} { return s.donec }

// requestTimeout follows etcd: 5 s plus two election timeouts.
func (s *Server) requestTimeout() time.Duration {
	return 5*time.Second + 2*time.Duration(s.cfg.ElectionTicks)*s.cfg.TickInterval
}

// onConfChange keeps the transport's peer table in step with committed
// membership changes, on the Raft goroutine (the member table itself is
// updated in apply order).
func (s *Server) onConfChange(index uint64, cc *raftpb.ConfChange, _ *raftpb.ConfState) {
	id := cc.GetNodeId()
	if id == s.id {
		return
	}
	switch cc.GetType() {
	case raftpb.ConfChangeAddNode, raftpb.ConfChangeAddLearnerNode:
		var m Member
		if err := codec.Unmarshal(cc.GetContext(), &m); err != nil || len(m.PeerURLs) == 0 {
			s.lg.Error("conf change names no peer URL", "index", index, "err", err)
			return
		}
		if err := s.transport.AddPeer(id, m.PeerURLs[0]); err != nil {
			s.lg.Error("cannot reach member", "peer", fmt.Sprintf("%x", id), "urls", m.PeerURLs, "err", err)
		}
	case raftpb.ConfChangeRemoveNode:
		s.transport.RemovePeer(id)
	}
}

func (s *Server) onCommitted(ents []*raftpb.Entry) {
	select {
	case s.applyc <- applyItem{ents: ents}:
	case <-s.stopc:
	}
}

func (s *Server) onSnapshot(sn *raftpb.Snapshot) {
	select {
	case s.applyc <- applyItem{snap: sn}:
	case <-s.stopc:
	}
}

func (s *Server) onReadState(rs raft.ReadState) {
	select {
	case s.readStatec <- rs:
	default:
		// A reader only waits for the latest round; a full queue means
		// nobody is listening for an older one.
	}
}

// publish proposes this member's name and client URLs until they are
// applied, as etcd does, so that member list shows them.
func (s *Server) publish() {
	defer s.wg.Done()
	attr := Member{ID: s.id, Name: s.cfg.Name, ClientURLs: s.cfg.AdvertiseClientURLs}
	body, err := codec.Marshal(attr)
	if err != nil {
		s.lg.Error("encoding member attributes", "err", err)
		return
	}
	for {
		if m, ok := s.members.get(s.id); ok && slices.Equal(m.ClientURLs, attr.ClientURLs) && m.Name == attr.Name {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.requestTimeout())
		_, err := s.propose(ctx, kindAttr, body)
		cancel()
		if err == nil {
			return
		}
		if errors.Is(err, ErrStopped) {
			return
		}
		select {
		case <-time.After(500 * time.Millisecond):
		case <-s.stopc:
			return
		}
	}
}
