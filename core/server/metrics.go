package server

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are a member's Prometheus metrics, under etcd's names so that
// existing dashboards and alerts work unchanged. Each Server has its own
// registry, so that several members can run in one process (tests).
type metrics struct {
	reg             *prometheus.Registry
	walFsync        prometheus.Histogram
	backendCommit   prometheus.Histogram
	leaderChanges   prometheus.Counter
	proposalsFailed prometheus.Counter
	leasesExpired   prometheus.Counter
}

// diskBuckets are etcd's buckets for disk latencies: 1 ms to 8 s.
var diskBuckets = prometheus.ExponentialBuckets(0.001, 2, 14)

func newMetrics(s *Server) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		walFsync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "etcd", Subsystem: "disk", Name: "wal_fsync_duration_seconds",
			Help:    "The latency distributions of fsync called by WAL.",
			Buckets: diskBuckets,
		}),
		backendCommit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "etcd", Subsystem: "disk", Name: "backend_commit_duration_seconds",
			Help:    "The latency distributions of commit called by backend.",
			Buckets: diskBuckets,
		}),
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "etcd", Subsystem: "server", Name: "leader_changes_seen_total",
			Help: "The number of leader changes seen.",
		}),
		proposalsFailed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "etcd", Subsystem: "server", Name: "proposals_failed_total",
			Help: "The total number of failed proposals seen.",
		}),
		leasesExpired: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "etcd_debugging", Subsystem: "server", Name: "lease_expired_total",
			Help: "The total number of expired leases.",
		}),
	}
	gauge := func(subsystem, name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "etcd", Subsystem: subsystem, Name: name, Help: help}, f)
	}
	counter := func(subsystem, name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "etcd", Subsystem: subsystem, Name: name, Help: help}, f)
	}
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	m.reg.MustRegister(
		m.walFsync, m.backendCommit, m.leaderChanges, m.proposalsFailed, m.leasesExpired,
		counter("disk", "wal_write_bytes_total", "Total number of bytes written in WAL.",
			func() float64 { return float64(s.wal.Stats().BytesWritten) }),
		gauge("server", "has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.",
			func() float64 { return b2f(s.node.Leader() != 0) }),
		gauge("server", "is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise.",
			func() float64 { return b2f(s.node.Leader() == s.id) }),
		gauge("server", "proposals_committed_total", "The total number of consensus proposals committed.",
			func() float64 { return float64(s.node.CommitIndex()) }),
		gauge("server", "proposals_applied_total", "The total number of consensus proposals applied.",
			func() float64 { return float64(s.applied.get()) }),
		gauge("mvcc", "db_total_size_in_bytes", "Total size of the underlying database physically allocated in bytes.",
			func() float64 { return float64(s.kv.Size()) }),
		gauge("mvcc", "db_total_size_in_use_in_bytes", "Total size of the underlying database logically in use in bytes.",
			func() float64 { return float64(s.kv.SizeInUse()) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// MetricsHandler serves this member's metrics in the Prometheus format.
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{})
}
