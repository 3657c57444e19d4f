package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/edgekv/edgekv/core/lease"
	"github.com/edgekv/edgekv/core/mvcc"
	"github.com/edgekv/edgekv/core/rpc"
	"github.com/edgekv/edgekv/core/server"
	"github.com/edgekv/edgekv/core/watch"
	"github.com/edgekv/edgekv/persist/wal"
	"github.com/edgekv/edgekv/transport"
)

// flags holds the server flags; names, meanings and defaults are etcd's.
type flags struct {
	name                     string
	dataDir                  string
	listenClientURLs         []string
	advertiseClientURLs      []string
	listenPeerURLs           []string
	initialAdvertisePeerURLs []string
	initialCluster           string
	initialClusterState      string
	initialClusterToken      string
	heartbeatMs              uint
	electionMs               uint
	maxRequestBytes          uint
	maxTxnOps                uint
	quotaBackendBytes        int64
	snapshotCount            uint64
	snapshotCatchUpEntries   uint64
	maxSnapshots             uint
	maxWALs                  uint
	walSegmentSize           int64
	backendBatchInterval     time.Duration
	backendBatchLimit        int
	leaseCheckpointInterval  time.Duration
	watchProgressInterval    time.Duration
	logLevel                 string
	enablePprof              bool
}

func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	f := &flags{}
	cmd := &cobra.Command{
		Use:   "edgekv",
		Short: "An etcd-compatible, Raft-replicated key-value store for the edge",
		Long: `edgekv serves the etcd v3 API. Run it with etcd's server flags to start a
member; every flag may also be given as EDGEKV_<FLAG_NAME> in the environment.`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			return flagsFromEnv(cmd.Flags(), os.LookupEnv, stderr)
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return serve(cmd.Context(), f, stderr)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.name, "name", "default", "Human-readable name for this member.")
	fs.StringVar(&f.dataDir, "data-dir", "", "Path to the data directory (default \"${name}.etcd\").")
	fs.StringSliceVar(&f.listenClientURLs, "listen-client-urls", []string{"http://localhost:2379"}, "List of URLs to listen on for client traffic.")
	fs.StringSliceVar(&f.advertiseClientURLs, "advertise-client-urls", []string{"http://localhost:2379"}, "List of this member's client URLs to advertise to the public.")
	fs.StringSliceVar(&f.listenPeerURLs, "listen-peer-urls", []string{"http://localhost:2380"}, "List of URLs to listen on for peer traffic (QUIC on that UDP host:port).")
	fs.StringSliceVar(&f.initialAdvertisePeerURLs, "initial-advertise-peer-urls", []string{"http://localhost:2380"}, "List of this member's peer URLs to advertise to the rest of the cluster.")
	fs.StringVar(&f.initialCluster, "initial-cluster", "default=http://localhost:2380", "Initial cluster configuration for bootstrapping.")
	fs.StringVar(&f.initialClusterState, "initial-cluster-state", "new", "Initial cluster state ('new' or 'existing').")
	fs.StringVar(&f.initialClusterToken, "initial-cluster-token", "etcd-cluster", "Initial cluster token; peers must prove they know it.")
	fs.UintVar(&f.heartbeatMs, "heartbeat-interval", 100, "Time (in milliseconds) of a heartbeat interval.")
	fs.UintVar(&f.electionMs, "election-timeout", 1000, "Time (in milliseconds) for an election to timeout.")
	fs.UintVar(&f.maxRequestBytes, "max-request-bytes", 1572864, "Maximum client request size in bytes the server will accept.")
	fs.UintVar(&f.maxTxnOps, "max-txn-ops", 128, "Maximum number of operations permitted in a transaction.")
	fs.Int64Var(&f.quotaBackendBytes, "quota-backend-bytes", server.DefaultQuotaBytes, "Backend size above which puts and txns are refused with etcd's \"database space exceeded\" (deletes and compaction still work); 0 means 2 GiB.")
	fs.Uint64Var(&f.snapshotCount, "snapshot-count", server.DefaultSnapshotCount, "Number of committed transactions to trigger a snapshot to disk.")
	fs.Uint64Var(&f.snapshotCatchUpEntries, "snapshot-catchup-entries", server.DefaultSnapshotCatchUpEntries, "Number of entries for a slow follower to catch up after compacting the raft storage entries.")
	fs.UintVar(&f.maxSnapshots, "max-snapshots", 5, "Maximum number of snapshot files to retain (0 is unlimited).")
	fs.UintVar(&f.maxWALs, "max-wals", 5, "Maximum number of wal files to retain (0 is unlimited).")
	fs.Int64Var(&f.walSegmentSize, "wal-segment-size", wal.DefaultSegmentSize, "Size in bytes of each preallocated write-ahead log segment.")
	// etcd commits every 100ms; on flash each commit costs a few pages of
	// metadata and two syncs, and the WAL already makes every write durable,
	// so edgekv waits longer by default (bench: make bench-disk).
	fs.DurationVar(&f.backendBatchInterval, "backend-batch-interval", time.Second, "The maximum time before committing the backend transaction (etcd: 100ms).")
	fs.IntVar(&f.backendBatchLimit, "backend-batch-limit", 10000, "The maximum operations before committing the backend transaction.")
	// etcd 3.4-3.6's name; etcd 3.7 dropped the flag and always uses 5m.
	// edgekv always checkpoints, and persists the checkpoints (etcd's
	// LeaseCheckpoint and LeaseCheckpointPersist feature gates).
	fs.DurationVar(&f.leaseCheckpointInterval, "experimental-lease-checkpoint-interval", lease.DefaultCheckpointInterval, "Duration of periodic checkpoints of the remaining TTL of leases longer than it.")
	fs.DurationVar(&f.watchProgressInterval, "watch-progress-notify-interval", watch.DefaultProgressInterval, "Duration of periodic watch progress notifications.")
	fs.StringVar(&f.logLevel, "log-level", "info", "Log level: debug, info, warn or error.")
	fs.BoolVar(&f.enablePprof, "enable-pprof", false, "Enable runtime profiling data via HTTP server. Address is at client URL + \"/debug/pprof/\"")
	cmd.AddCommand(newVersionCommand(), newBenchCommand(stdout, stderr))
	return cmd
}

// flagsFromEnv sets every flag not given on the command line from
// EDGEKV_<FLAG_NAME>, as etcd does with ETCD_<FLAG_NAME>.
func flagsFromEnv(fs *pflag.FlagSet, lookup func(string) (string, bool), stderr io.Writer) error {
	var err error
	fs.VisitAll(func(fl *pflag.Flag) {
		key := "EDGEKV_" + strings.ToUpper(strings.ReplaceAll(fl.Name, "-", "_"))
		v, ok := lookup(key)
		if !ok || err != nil {
			return
		}
		if fl.Changed {
			fmt.Fprintf(stderr, "edgekv: %s is shadowed by the command-line flag --%s\n", key, fl.Name)
			return
		}
		if fl.Value.Type() == "stringSlice" {
			// Set on a slice flag appends after the first call; replace instead.
			if sv, ok := fl.Value.(pflag.SliceValue); ok {
				if e := sv.Replace(strings.Split(v, ",")); e != nil {
					err = fmt.Errorf("%s=%q: %w", key, v, e)
				}
				fl.Changed = true
				return
			}
		}
		if e := fs.Set(fl.Name, v); e != nil {
			err = fmt.Errorf("%s=%q: %w", key, v, e)
		}
	})
	return err
}

func (f *flags) validate() error {
	if f.heartbeatMs == 0 || f.electionMs == 0 {
		return errors.New("--heartbeat-interval and --election-timeout must be positive")
	}
	if 5*f.heartbeatMs > f.electionMs {
		return fmt.Errorf("--election-timeout[%vms] should be at least as 5 times as --heartbeat-interval[%vms]", f.electionMs, f.heartbeatMs)
	}
	if f.initialClusterState != "new" && f.initialClusterState != "existing" {
		return fmt.Errorf("--initial-cluster-state must be 'new' or 'existing', not %q", f.initialClusterState)
	}
	if len(f.listenPeerURLs) != 1 {
		return fmt.Errorf("--listen-peer-urls: edgekv listens on exactly one peer URL, got %d", len(f.listenPeerURLs))
	}
	if f.leaseCheckpointInterval <= 0 {
		return fmt.Errorf("--experimental-lease-checkpoint-interval must be positive, not %v", f.leaseCheckpointInterval)
	}
	if f.maxRequestBytes == 0 || f.maxRequestBytes > 64<<20 {
		return fmt.Errorf("--max-request-bytes must be between 1 and %d", 64<<20)
	}
	return nil
}

func newLogger(level string, w io.Writer) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

func serve(ctx context.Context, f *flags, stderr io.Writer) error {
	if err := f.validate(); err != nil {
		return err
	}
	lg, err := newLogger(f.logLevel, stderr)
	if err != nil {
		return err
	}
	if f.dataDir == "" {
		f.dataDir = f.name + ".etcd"
	}
	initial, err := server.ParseInitialCluster(f.initialCluster)
	if err != nil {
		return err
	}
	peerAddr, err := transport.HostPort(f.listenPeerURLs[0])
	if err != nil {
		return fmt.Errorf("--listen-peer-urls: %w", err)
	}
	// Bind the client listeners first so that a taken port fails fast,
	// before any state is created on disk.
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for _, u := range f.listenClientURLs {
		addr, err := clientAddr(u)
		if err != nil {
			return fmt.Errorf("--listen-client-urls: %w", err)
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("--listen-client-urls: %w", err)
		}
		listeners = append(listeners, l)
	}

	walOpts, err := withDiskFaults(ctx, wal.Options{SegmentSize: f.walSegmentSize, MaxWALs: keepAll(f.maxWALs)}, f.dataDir, lg) // faults_on.go: test builds only
	if err != nil {
		return err
	}
	srv, err := server.New(server.Config{
		Name:                        f.name,
		DataDir:                     f.dataDir,
		InitialCluster:              initial,
		InitialClusterState:         f.initialClusterState,
		InitialClusterToken:         f.initialClusterToken,
		AdvertisePeerURLs:           f.initialAdvertisePeerURLs,
		AdvertiseClientURLs:         f.advertiseClientURLs,
		TickInterval:                time.Duration(f.heartbeatMs) * time.Millisecond,
		ElectionTicks:               int(f.electionMs / f.heartbeatMs),
		MaxRequestBytes:             int(f.maxRequestBytes),
		MaxTxnOps:                   int(f.maxTxnOps),
		QuotaBackendBytes:           f.quotaBackendBytes,
		SnapshotCount:               f.snapshotCount,
		SnapshotCatchUpEntries:      f.snapshotCatchUpEntries,
		MaxSnapshots:                keepAll(f.maxSnapshots),
		WAL:                         walOpts,
		Backend:                     mvcc.Options{BatchInterval: f.backendBatchInterval, BatchLimit: f.backendBatchLimit},
		LeaseCheckpointInterval:     f.leaseCheckpointInterval,
		WatchProgressNotifyInterval: f.watchProgressInterval,
		Logger:                      lg,
		DiscoverClusterID: func(ctx context.Context, self uint64, token string, peers map[uint64]string) (uint64, error) {
			addrs := make(map[uint64]string, len(peers))
			for id, u := range peers {
				addr, err := transport.HostPort(u)
				if err != nil {
					return 0, fmt.Errorf("--initial-cluster: %w", err)
				}
				addrs[id] = addr
			}
			return transport.DiscoverClusterID(ctx, self, token, addrs, lg.With("component", "transport"))
		},
		NewTransport: func(d server.TransportDeps) (server.PeerTransport, error) {
			t, err := transport.New(transport.Config{
				ID:         d.MemberID,
				ClusterID:  d.ClusterID,
				ListenAddr: peerAddr,
				Token:      d.Token,
				// A Raft message carries at most one request of
				// --max-request-bytes beyond its batch limit.
				MaxFrameBytes: int(f.maxRequestBytes) + 16<<20,
				Logger:        lg.With("component", "transport"),
				Raft:          d.Raft,
				Snapshots:     d.Snapshots,
				Metrics:       d.Metrics,
			})
			if err != nil {
				return nil, err
			}
			return withFaults(peerTransport{t}, lg) // faults_on.go: test builds only
		},
	})
	if err != nil {
		return err
	}
	api, err := rpc.New(rpc.Config{Backend: srv, MaxRequestBytes: int(f.maxRequestBytes), Version: server.Version,
		Metrics: srv.MetricsHandler(), Pprof: f.enablePprof, Logger: lg})
	if err != nil {
		srv.Stop()
		return err
	}
	srv.Start()
	for _, l := range listeners {
		go func(l net.Listener) {
			if err := api.Serve(l); err != nil {
				lg.Error("client listener failed", "addr", l.Addr(), "err", err)
			}
		}(l)
		lg.Info("serving client traffic", "addr", l.Addr().String())
	}
	listeners = nil // api.Stop closes them
	lg.Info("edgekv member started", "name", f.name, "data-dir", f.dataDir, "peer", peerAddr, "version", version)

	select {
	case <-ctx.Done():
		lg.Info("shutting down")
	case <-srv.Done():
		lg.Error("member stopped")
	}
	api.Stop()
	srv.Stop()
	return nil
}

// keepAll maps --max-wals and --max-snapshots, where 0 keeps every file as
// in etcd, to the options, where a negative number does.
func keepAll(n uint) int {
	if n == 0 {
		return -1
	}
	return int(n)
}

// clientAddr turns an etcd client URL into a TCP listen address.
func clientAddr(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	switch u.Scheme {
	case "http":
	case "https":
		return "", fmt.Errorf("%s: client TLS is not supported yet; use http://", raw)
	default:
		return "", fmt.Errorf("%s: scheme must be http", raw)
	}
	if u.Port() == "" {
		return "", fmt.Errorf("%s: no port", raw)
	}
	return u.Host, nil
}

// peerTransport adapts *transport.Transport to server.PeerTransport, which
// names peers by URL.
type peerTransport struct{ *transport.Transport }

func (p peerTransport) AddPeer(id uint64, peerURL string) error {
	addr, err := transport.HostPort(peerURL)
	if err != nil {
		return err
	}
	p.Transport.AddPeer(id, addr)
	return nil
}
