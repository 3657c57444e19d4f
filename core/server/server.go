package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/edgekv/edgekv/core/codec"
	"github.com/edgekv/edgekv/core/mvcc"
	"github.com/edgekv/edgekv/core/raftnode"
	"github.com/edgekv/edgekv/persist/wal"
)

// PeerTransport is the peer transport as the server uses it: raftnode's
// Transport plus the peer table the server keeps in step with membership.
type PeerTransport interface {
	raftnode.Transport
	AddPeer(id uint64, peerURL string) error
	RemovePeer(id uint64)
	Close() error
}

// TransportFactory creates the peer transport once the member and cluster
// IDs are known. raft receives inbound messages.
type TransportFactory func(memberID, clusterID uint64, token string, raft raftnode.Raft) (PeerTransport, error)

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

	NewTransport TransportFactory
	Logger       *slog.Logger
	// Fatal is called on an unrecoverable storage error; default exits.
	Fatal func(error)
	// Ticks replaces the wall-clock Raft ticker (tests).
	Ticks <-chan time.Time
}

// DefaultQuotaBytes is etcd's default backend quota (2 GiB), which is
// also the most bbolt can map on 32-bit ARM.
const DefaultQuotaBytes = 2 << 30

// Version is the etcd API version edgekv implements and reports in Status.
const Version = "3.7.0"

// Server is one edgekv member.
type Server struct {
	cfg       Config
	lg        *slog.Logger
	id        uint64
	clusterID uint64

	wal       *wal.WAL
	kv        *mvcc.Store
	node      *raftnode.Node
	started   atomic.Bool // node may receive traffic
	transport PeerTransport
	members   membership

	reqSeq  atomic.Uint64 // low bits of request IDs
	waits   waitList
	applied indexWait
	applyc  chan []*raftpb.Entry

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
		cfg:        cfg,
		lg:         cfg.Logger,
		applyc:     make(chan []*raftpb.Entry, 64),
		readNotify: newNotifier(),
		readwaitc:  make(chan struct{}, 1),
		readStatec: make(chan raft.ReadState, 16),
		stopc:      make(chan struct{}),
		donec:      make(chan struct{}),
	}
	memberDir := filepath.Join(cfg.DataDir, "member")
	walDir := filepath.Join(memberDir, "wal")
	dbPath := filepath.Join(memberDir, "db")

	var (
		log       = raft.NewMemoryStorage()
		bootstrap []raft.Peer
		err       error
	)
	if wal.Exist(walDir) {
		if err := s.restart(walDir, log); err != nil {
			return nil, err
		}
	} else {
		if _, err := os.Stat(dbPath); err == nil {
			return nil, fmt.Errorf("%w: %s holds a backend but no write-ahead log; refusing to guess its history", ErrDataDirConflict, cfg.DataDir)
		}
		if bootstrap, err = s.bootstrap(walDir); err != nil {
			return nil, err
		}
	}
	s.lg = s.lg.With("member", fmt.Sprintf("%x", s.id))

	s.kv, err = mvcc.Open(dbPath, mvcc.Options{Logger: s.lg})
	if err != nil {
		s.wal.Close()
		return nil, fmt.Errorf("opening backend: %w", err)
	}
	s.transport, err = cfg.NewTransport(s.id, s.clusterID, s.cfg.InitialClusterToken, (*inbound)(s))
	if err != nil {
		s.kv.Close()
		s.wal.Close()
		return nil, fmt.Errorf("starting peer transport: %w", err)
	}
	s.node, err = raftnode.New(raftnode.Config{
		ID:            s.id,
		TickInterval:  cfg.TickInterval,
		ElectionTick:  cfg.ElectionTicks,
		HeartbeatTick: 1,
		Ticks:         cfg.Ticks,
		Storage:       s.wal,
		Log:           log,
		Transport:     s.transport,
		Bootstrap:     bootstrap,
		Logger:        s.lg,
		Fatal:         cfg.Fatal,
		OnConfChange:  s.onConfChange,
		OnCommitted:   s.onCommitted,
		OnReadState:   s.onReadState,
	})
	if err != nil {
		s.transport.Close()
		s.kv.Close()
		s.wal.Close()
		return nil, err
	}
	return s, nil
}

// bootstrap creates the WAL of a brand-new member of a new cluster.
func (s *Server) bootstrap(walDir string) ([]raft.Peer, error) {
	cfg := s.cfg
	if cfg.InitialClusterState == "existing" {
		return nil, fmt.Errorf("--initial-cluster-state=existing: joining a running cluster needs member add, which edgekv does not support yet")
	}
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
	s.clusterID = ClusterID(ids)
	w, err := wal.Create(walDir, wal.Metadata{Name: cfg.Name, MemberID: s.id, ClusterID: s.clusterID, Token: cfg.InitialClusterToken})
	if err != nil {
		return nil, fmt.Errorf("creating write-ahead log: %w", err)
	}
	s.wal = w
	s.lg.Info("bootstrapped new member", "name", cfg.Name, "id", fmt.Sprintf("%x", s.id), "cluster-id", fmt.Sprintf("%x", s.clusterID))
	return peers, nil
}

// restart reopens the WAL, checks it belongs to this member and loads it.
func (s *Server) restart(walDir string, log *raft.MemoryStorage) error {
	w, st, err := wal.Open(walDir, s.lg)
	if err != nil {
		return fmt.Errorf("opening write-ahead log: %w", err)
	}
	md := st.Metadata
	conflict := func(what string) error {
		w.Close()
		return fmt.Errorf("%w: %s belongs to member %q (id %x) of cluster %x with token %q; refusing to start %s",
			ErrDataDirConflict, s.cfg.DataDir, md.Name, md.MemberID, md.ClusterID, md.Token, what)
	}
	if md.Name != s.cfg.Name {
		return conflict(fmt.Sprintf("as member %q (--name)", s.cfg.Name))
	}
	if s.cfg.InitialClusterToken != "" && md.Token != s.cfg.InitialClusterToken {
		return conflict(fmt.Sprintf("in the cluster with token %q (--initial-cluster-token)", s.cfg.InitialClusterToken))
	}
	if self, ok := s.cfg.InitialCluster[s.cfg.Name]; ok && s.cfg.InitialClusterState != "existing" {
		if id := MemberID(self, md.Token); id != md.MemberID {
			return conflict(fmt.Sprintf("as member id %x (from --initial-cluster %s=%s)", id, s.cfg.Name, self))
		}
	}
	s.id, s.clusterID, s.wal = md.MemberID, md.ClusterID, w
	s.cfg.InitialClusterToken = md.Token
	if st.HardState != nil {
		if err := log.SetHardState(st.HardState); err != nil {
			return err
		}
	}
	if err := log.Append(st.Entries); err != nil {
		return err
	}
	s.lg.Info("restarting member from its write-ahead log", "name", md.Name, "id", fmt.Sprintf("%x", md.MemberID),
		"cluster-id", fmt.Sprintf("%x", md.ClusterID), "entries", len(st.Entries), "commit", st.HardState.GetCommit())
	return nil
}

func sameURLs(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	sort.Strings(a)
	sort.Strings(b)
	return slices.Equal(a, b)
}

// ID returns this member's ID.
func (s *Server) ID() uint64 { return s.id }

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
	s.wg.Add(3)
	go s.applyLoop()
	go s.readLoop()
	go s.publish()
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

func (s *Server) onConfChange(index uint64, cc *raftpb.ConfChange, _ *raftpb.ConfState) {
	id := cc.GetNodeId()
	switch cc.GetType() {
	case raftpb.ConfChangeAddNode, raftpb.ConfChangeAddLearnerNode:
		var m Member
		if err := codec.Unmarshal(cc.GetContext(), &m); err != nil {
			s.lg.Error("conf change carries an unreadable member", "index", index, "err", err)
			m = Member{ID: id}
		}
		m.ID = id
		m.IsLearner = cc.GetType() == raftpb.ConfChangeAddLearnerNode
		s.members.set(m)
		if id != s.id && len(m.PeerURLs) > 0 {
			if err := s.transport.AddPeer(id, m.PeerURLs[0]); err != nil {
				s.lg.Error("cannot reach member", "peer", fmt.Sprintf("%x", id), "urls", m.PeerURLs, "err", err)
			}
		}
	case raftpb.ConfChangeRemoveNode:
		s.members.remove(id)
		if id != s.id {
			s.transport.RemovePeer(id)
		}
	}
}

func (s *Server) onCommitted(ents []*raftpb.Entry) {
	select {
	case s.applyc <- ents:
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
