package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// logWriter sends progress lines to t.Log, so they show only on failure.
type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testConfig(t testing.TB, endpoints ...string) Config {
	return Config{
		Endpoints:      endpoints,
		Conns:          2,
		Clients:        8,
		Total:          300,
		KeySize:        8,
		ValSize:        16,
		KeySpace:       50,
		DialTimeout:    5 * time.Second,
		RequestTimeout: 5 * time.Second,
		Log:            logWriter{t},
	}
}

// checkJSON writes r as JSON and checks that it is exactly one object with
// every field the harnesses read.
func checkJSON(t *testing.T, r *Report) map[string]any {
	t.Helper()
	var buf bytes.Buffer
	if err := r.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(&buf)
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("report JSON: %v", err)
	}
	if dec.More() {
		t.Fatal("more than one JSON value")
	}
	for _, k := range []string{"load", "endpoints", "clients", "conns", "total", "count", "errors",
		"error_samples", "seconds", "throughput", "latency_ms", "histogram", "extra"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON has no %q", k)
		}
	}
	lat, _ := m["latency_ms"].(map[string]any)
	for _, k := range []string{"mean", "p50", "p90", "p99", "p999", "max"} {
		if _, ok := lat[k].(float64); !ok {
			t.Errorf("latency_ms has no number %q: %v", k, lat)
		}
	}
	var sum float64
	hist, _ := m["histogram"].([]any)
	for _, h := range hist {
		b, _ := h.(map[string]any)
		if _, ok := b["le_ms"].(float64); !ok {
			t.Errorf("histogram bucket without le_ms: %v", b)
		}
		c, _ := b["count"].(float64)
		sum += c
	}
	if sum != m["count"] {
		t.Errorf("histogram counts add up to %v, count is %v", sum, m["count"])
	}
	if _, ok := m["error_samples"].([]any); !ok {
		t.Errorf("error_samples is %v, want an array", m["error_samples"])
	}
	if _, ok := m["extra"].(map[string]any); !ok {
		t.Errorf("extra is %v, want an object", m["extra"])
	}
	var table bytes.Buffer
	if err := r.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	t.Log(table.String())
	return m
}

func mustRun(t *testing.T, cfg Config, load Load) *Report {
	t.Helper()
	r, err := Run(context.Background(), cfg, load)
	if err != nil {
		if r != nil {
			t.Logf("report: %+v", *r)
		}
		t.Fatalf("Run(%s): %v", load.Name(), err)
	}
	return r
}

func wantCleanRun(t *testing.T, r *Report, count int) {
	t.Helper()
	if r.Errors != 0 || r.Count != int64(count) {
		t.Fatalf("count %d errors %d %v, want %d and none", r.Count, r.Errors, r.ErrorSamples, count)
	}
	m := checkJSON(t, r)
	if m["count"] != float64(count) {
		t.Errorf("JSON count %v", m["count"])
	}
	if r.Throughput <= 0 || r.LatencyMs.P50 <= 0 || r.LatencyMs.Max < r.LatencyMs.P999 {
		t.Errorf("implausible numbers: %+v", r.LatencyMs)
	}
}

func TestRun_PutWritesKeysOfTheKeySpace(t *testing.T) {
	f := newFake()
	cfg := testConfig(t, f.start(t))
	r := mustRun(t, cfg, Put())
	wantCleanRun(t, r, cfg.Total)
	if r.Load != "put" || r.Clients != 8 || r.Conns != 2 || r.Total != 300 {
		t.Errorf("report header: %+v", r)
	}
	if got := f.writes.Load(); got != int64(cfg.Total) {
		t.Errorf("server saw %d puts", got)
	}
	if n := f.keyCount(); n < 40 || n > cfg.KeySpace {
		t.Errorf("%d distinct keys for a key space of %d", n, cfg.KeySpace)
	}
}

func TestRun_SequentialKeysCoverTheKeySpace(t *testing.T) {
	f := newFake()
	cfg := testConfig(t, f.start(t))
	cfg.SequentialKeys = true
	cfg.Total, cfg.KeySpace = 200, 100
	wantCleanRun(t, mustRun(t, cfg, Put()), 200)
	for i := range uint64(100) {
		if v := f.version(Key(i, 8)); v != 2 {
			t.Fatalf("key %d has version %d, want 2", i, v)
		}
	}
}

func TestRun_RangeGetsPrefilledKeys(t *testing.T) {
	for _, c := range []string{"l", "s"} {
		t.Run(c, func(t *testing.T) {
			f := newFake()
			cfg := testConfig(t, f.start(t))
			r := mustRun(t, cfg, Range(RangeOptions{Consistency: c}))
			wantCleanRun(t, r, cfg.Total)
			if f.keyCount() != cfg.KeySpace || r.Extra["prefilled"] != int64(cfg.KeySpace) {
				t.Errorf("%d keys, prefilled %d, want %d", f.keyCount(), r.Extra["prefilled"], cfg.KeySpace)
			}
			// The pre-fill is batched and untimed: a handful of txns.
			if w := f.writes.Load(); w != 1 {
				t.Errorf("pre-fill took %d writes, want 1 txn for 50 keys", w)
			}
		})
	}
}

func TestRun_RangeWithoutPrefillCountsMissingKeysAsErrors(t *testing.T) {
	f := newFake()
	cfg := testConfig(t, f.start(t))
	// Without pre-fill a get of an absent key is no error.
	wantCleanRun(t, mustRun(t, cfg, Range(RangeOptions{NoPrefill: true})), cfg.Total)
	if f.keyCount() != 0 {
		t.Errorf("--no-prefill wrote %d keys", f.keyCount())
	}
}

func TestRun_TxnCASSuccessesMatchTheVersions(t *testing.T) {
	f := newFake()
	cfg := testConfig(t, f.start(t))
	cfg.KeySpace = 5 // contention between the 8 clients
	r := mustRun(t, cfg, TxnCAS())
	wantCleanRun(t, r, cfg.Total)
	ok, failed := r.Extra["cas_success"], r.Extra["cas_failure"]
	if ok+failed != r.Count || ok == 0 {
		t.Fatalf("cas_success %d + cas_failure %d != count %d", ok, failed, r.Count)
	}
	// Every key started absent and only successful swaps wrote it.
	var versions int64
	for i := range uint64(cfg.KeySpace) {
		versions += f.version(Key(i, cfg.KeySize))
	}
	if versions != ok {
		t.Errorf("the keys' versions add up to %d, cas_success is %d", versions, ok)
	}
}

func TestRun_TxnCASWithOneClientAlwaysSucceeds(t *testing.T) {
	f := newFake()
	cfg := testConfig(t, f.start(t))
	cfg.Clients = 1
	r := mustRun(t, cfg, TxnCAS())
	wantCleanRun(t, r, cfg.Total)
	if r.Extra["cas_failure"] != 0 {
		t.Errorf("a lone client failed %d swaps", r.Extra["cas_failure"])
	}
}

func TestRun_DeleteDeletesEveryPrefilledKeyOnce(t *testing.T) {
	f := newFake()
	cfg := testConfig(t, f.start(t))
	r := mustRun(t, cfg, Delete())
	wantCleanRun(t, r, cfg.Total)
	if f.keyCount() != 0 || r.Extra["not_found"] != 0 || r.Extra["prefilled"] != int64(cfg.Total) {
		t.Errorf("%d keys left, extra %v", f.keyCount(), r.Extra)
	}
}

func TestRun_WatchLatencySeesEveryEventAtEveryWatcher(t *testing.T) {
	f := newFake()
	cfg := testConfig(t, f.start(t))
	cfg.Total = 100
	o := WatchOptions{Watchers: 20, Streams: 4, PutRate: 1000}
	r := mustRun(t, cfg, WatchLatency(o))
	wantCleanRun(t, r, 20*100)
	want := map[string]int64{"puts": 100, "watchers": 20, "streams": 4, "missing_events": 0, "duplicate_events": 0, "out_of_order_events": 0}
	for k, v := range want {
		if r.Extra[k] != v {
			t.Errorf("extra %s = %d, want %d", k, r.Extra[k], v)
		}
	}
	if r.Total != 2000 || r.Clients != 20 {
		t.Errorf("total %d clients %d", r.Total, r.Clients)
	}
	if n := f.watchStreams.Load(); n != 4 {
		t.Errorf("the watchers used %d streams, want 4", n)
	}
}

func TestRun_WatchLatencyMissingEventsFailTheRun(t *testing.T) {
	f := newFake()
	f.dropEventsOf = 3
	cfg := testConfig(t, f.start(t))
	cfg.Total = 20
	r, err := Run(context.Background(), cfg, WatchLatency(WatchOptions{Watchers: 4, Streams: 2, PutRate: 1000, Straggle: 200 * time.Millisecond}))
	if !errors.Is(err, ErrMissingEvents) {
		t.Fatalf("got %v, want ErrMissingEvents", err)
	}
	if r == nil || r.Extra["missing_events"] != 20 || r.Count != 60 {
		t.Fatalf("report %+v", r)
	}
	checkJSON(t, r)
}

func TestRun_LeaseKeepaliveKeepsEveryLeaseAliveThenRevokes(t *testing.T) {
	for _, stream := range []bool{false, true} {
		t.Run(map[bool]string{false: "once", true: "stream"}[stream], func(t *testing.T) {
			f := newFake()
			cfg := testConfig(t, f.start(t))
			r := mustRun(t, cfg, LeaseKeepalive(LeaseOptions{Leases: 3, Stream: stream}))
			wantCleanRun(t, r, cfg.Total)
			if got := f.keepalives.Load(); got != int64(cfg.Total) {
				t.Errorf("server saw %d keep-alives", got)
			}
			if f.leaseCount() != 0 || r.Extra["leases"] != 3 {
				t.Errorf("%d leases left, extra %v", f.leaseCount(), r.Extra)
			}
		})
	}
}

func TestRun_SomeFailuresAreCountedAndTheRunGoesOn(t *testing.T) {
	f := newFake()
	f.fail = func(n int64) error {
		if n%3 == 0 {
			return rpctypes.ErrGRPCNoSpace
		}
		return nil
	}
	cfg := testConfig(t, f.start(t))
	r, err := Run(context.Background(), cfg, Put())
	if err != nil {
		t.Fatal(err)
	}
	if r.Errors != 100 || r.Count != 200 {
		t.Fatalf("count %d errors %d", r.Count, r.Errors)
	}
	if len(r.ErrorSamples) != 1 || !strings.Contains(r.ErrorSamples[0], "database space exceeded") {
		t.Errorf("error samples %q", r.ErrorSamples)
	}
	checkJSON(t, r)
}

func TestRun_FailingEndpointCountsErrorsAndFails(t *testing.T) {
	f := newFake()
	f.fail = func(int64) error { return rpctypes.ErrGRPCNoSpace }
	cfg := testConfig(t, f.start(t))
	cfg.Total = 100000
	r, err := Run(context.Background(), cfg, Put())
	if !errors.Is(err, ErrAllFailed) {
		t.Fatalf("got %v, want ErrAllFailed", err)
	}
	if r == nil || r.Count != 0 || r.Errors < 10 || r.Errors > 1000 {
		t.Fatalf("report %+v: the run should stop soon after the first failures", r)
	}
	m := checkJSON(t, r)
	if m["errors"].(float64) < 10 || !strings.Contains(r.ErrorSamples[0], "database space exceeded") {
		t.Errorf("errors %v samples %q", m["errors"], r.ErrorSamples)
	}
}

func TestRun_HangingEndpointTimesOutInsteadOfHanging(t *testing.T) {
	f := newFake()
	f.hangFrom = 1
	cfg := testConfig(t, f.start(t))
	cfg.RequestTimeout = 100 * time.Millisecond
	start := time.Now()
	r, err := Run(context.Background(), cfg, Put())
	if !errors.Is(err, ErrAllFailed) {
		t.Fatalf("got %v, want ErrAllFailed", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
	if r.Errors < 8 || !strings.Contains(strings.Join(r.ErrorSamples, " "), "deadline exceeded") {
		t.Errorf("errors %d samples %q", r.Errors, r.ErrorSamples)
	}
}

func TestRun_EndpointThatStopsAnsweringStallsTheRun(t *testing.T) {
	for name, timeout := range map[string]time.Duration{"with request timeout": 100 * time.Millisecond, "without": 0} {
		t.Run(name, func(t *testing.T) {
			f := newFake()
			f.hangFrom = 51
			cfg := testConfig(t, f.start(t))
			cfg.Total, cfg.Clients = 100000, 4
			cfg.RequestTimeout, cfg.StallTimeout = timeout, 500*time.Millisecond
			start := time.Now()
			r, err := Run(context.Background(), cfg, Put())
			if !errors.Is(err, ErrStalled) {
				t.Fatalf("got %v, want ErrStalled", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v", d)
			}
			if r.Count != 50 || (timeout > 0) != (r.Errors > 0) {
				t.Errorf("count %d errors %d", r.Count, r.Errors)
			}
			checkJSON(t, r)
		})
	}
}

func TestRun_AnswerFromAnotherClusterStopsTheRun(t *testing.T) {
	f := newFake()
	f.switchClusterAt = 51
	cfg := testConfig(t, f.start(t))
	cfg.Total = 100000
	r, err := Run(context.Background(), cfg, Put())
	if !errors.Is(err, ErrWrongCluster) {
		t.Fatalf("got %v, want ErrWrongCluster", err)
	}
	// Each client stops at its first foreign answer.
	if r.Count > 50 || r.Errors < 1 || r.Errors > int64(cfg.Clients) || f.writes.Load() > 50+int64(cfg.Clients) {
		t.Errorf("count %d errors %d writes %d", r.Count, r.Errors, f.writes.Load())
	}
	if !strings.Contains(r.ErrorSamples[0], "cluster 8 answered, the run started on 7") {
		t.Errorf("samples %q", r.ErrorSamples)
	}
}

func TestRun_EndpointsOfTwoClustersAreRefused(t *testing.T) {
	a, b := newFake(), newFake()
	b.cluster.Store(9)
	_, err := Run(context.Background(), testConfig(t, a.start(t), b.start(t)), Put())
	if err == nil || !strings.Contains(err.Error(), "span two clusters") {
		t.Fatalf("got %v", err)
	}
}

func TestRun_UnreachableEndpointFailsFast(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	cfg := testConfig(t, addr)
	cfg.DialTimeout = 300 * time.Millisecond
	start := time.Now()
	r, err := Run(context.Background(), cfg, Put())
	if !errors.Is(err, ErrNoEndpoint) || r != nil {
		t.Fatalf("got %v, %v; want ErrNoEndpoint", r, err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestRun_TargetLeaderSendsEverythingToTheLeader(t *testing.T) {
	follower, leader := newFake(), newFake()
	follower.id, follower.leader = 1, 2
	leader.id, leader.leader = 2, 2
	fe, le := follower.start(t), leader.start(t)
	cfg := testConfig(t, fe, le)
	cfg.TargetLeader = true
	r := mustRun(t, cfg, Put())
	if !slices.Equal(r.Endpoints, []string{le}) {
		t.Errorf("endpoints %v, want the leader's %s", r.Endpoints, le)
	}
	if follower.writes.Load() != 0 || leader.writes.Load() != int64(cfg.Total) {
		t.Errorf("follower saw %d writes, leader %d", follower.writes.Load(), leader.writes.Load())
	}

	// Without a leader among the endpoints, nothing runs.
	cfg.Endpoints = []string{fe}
	if _, err := Run(context.Background(), cfg, Put()); !errors.Is(err, ErrNoLeader) {
		t.Errorf("got %v, want ErrNoLeader", err)
	}
}

func TestRun_DurationBoundsTheRun(t *testing.T) {
	f := newFake()
	cfg := testConfig(t, f.start(t))
	cfg.Total, cfg.Duration, cfg.Rate = 0, 300*time.Millisecond, 100
	r := mustRun(t, cfg, Put())
	if r.Seconds < 0.25 || r.Seconds > 2 || r.Count < 10 || r.Count > 40 {
		t.Errorf("%.2fs and %d ops for 300ms at 100/s", r.Seconds, r.Count)
	}
}

func TestRun_RateSpacesTheOperations(t *testing.T) {
	f := newFake()
	cfg := testConfig(t, f.start(t))
	cfg.Total, cfg.Rate = 50, 200
	r := mustRun(t, cfg, Put())
	// 50 operations 5ms apart cannot take less than 245ms.
	if r.Seconds < 0.245 {
		t.Errorf("50 ops at 200/s took %.3fs", r.Seconds)
	}
}

func TestRun_CancelReturnsThePartialReport(t *testing.T) {
	f := newFake()
	cfg := testConfig(t, f.start(t))
	cfg.Total, cfg.Rate = 100000, 500
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	r, err := Run(ctx, cfg, Put())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if r == nil || r.Count == 0 || r.Errors != 0 {
		t.Fatalf("partial report %+v", r)
	}
}

func TestConfig_ValidateRejectsUnusableSettings(t *testing.T) {
	base := Config{Endpoints: []string{"x:1"}, Conns: 1, Clients: 1, Total: 1, KeySize: 8, KeySpace: 1}
	if err := base.Validate(); err != nil {
		t.Fatalf("base config: %v", err)
	}
	cases := map[string]func(*Config){
		"no endpoints":             func(c *Config) { c.Endpoints = nil },
		"empty endpoint":           func(c *Config) { c.Endpoints = []string{" "} },
		"no conns":                 func(c *Config) { c.Conns = 0 },
		"no clients":               func(c *Config) { c.Clients = 0 },
		"neither total nor time":   func(c *Config) { c.Total = 0 },
		"zero key size":            func(c *Config) { c.KeySize = 0 },
		"key space too big":        func(c *Config) { c.KeySize, c.KeySpace = 1, 257 },
		"negative rate":            func(c *Config) { c.Rate = -1 },
		"negative request timeout": func(c *Config) { c.RequestTimeout = -1 },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			c := base
			mutate(&c)
			if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("got %v", err)
			}
		})
	}
	for name, l := range map[string]Load{
		"bad consistency":      Range(RangeOptions{Consistency: "x"}),
		"more streams":         WatchLatency(WatchOptions{Watchers: 2, Streams: 3}),
		"delete without total": Delete(),
	} {
		t.Run(name, func(t *testing.T) {
			c := base
			c.Total, c.Duration = 0, time.Second
			if _, err := Run(context.Background(), c, l); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("got %v", err)
			}
		})
	}
}
