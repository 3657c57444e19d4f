//go:build edgekv_faults

package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/edgekv/edgekv/core/server"
	"github.com/edgekv/edgekv/transport"
)

// faultEnv configures the fault injection of a test build: outgoing Raft
// messages are delayed, reordered and dropped as transport.ParseFaultConfig
// describes, e.g. EDGEKV_FAULT_DELAY=5ms-40ms,drop=0.05. SIGUSR1 turns the
// faults off and on again (they start on). This file exists
// only with the build tag edgekv_faults (the torture suite's delay-reorder
// scenario builds such a binary); every other build ignores the variable
// and has none of this code (faults_off.go).
const faultEnv = "EDGEKV_FAULT_DELAY"

// faultStatsEvery is how often the counts of delayed and dropped messages
// are logged ("fault injection", delayed=N dropped=M passed=K), for the
// tests.
const faultStatsEvery = time.Second

// withFaults wraps pt in a transport.Faults configured from faultEnv, if
// set. On error it closes pt.
func withFaults(pt server.PeerTransport, lg *slog.Logger) (server.PeerTransport, error) {
	v := os.Getenv(faultEnv)
	if v == "" {
		return pt, nil
	}
	cfg, err := transport.ParseFaultConfig(v)
	if err == nil {
		var f *transport.Faults
		if f, err = transport.NewFaults(pt, cfg); err == nil {
			lg.Warn("FAULT INJECTION: outgoing Raft messages are delayed and dropped (test build)", "config", cfg.String())
			ft := &faultyTransport{PeerTransport: pt, f: f, lg: lg, stop: make(chan struct{}), done: make(chan struct{})}
			go ft.logStats()
			return ft, nil
		}
	}
	pt.Close()
	return nil, fmt.Errorf("%s: %w", faultEnv, err)
}

// faultyTransport sends Raft messages through a transport.Faults; the
// rest (snapshots, peers) goes straight to the transport.
type faultyTransport struct {
	server.PeerTransport
	f          *transport.Faults
	lg         *slog.Logger
	stop, done chan struct{}
	once       sync.Once
}

func (t *faultyTransport) Send(msgs []*raftpb.Message) { t.f.Send(msgs) }

func (t *faultyTransport) Close() error {
	t.once.Do(func() {
		close(t.stop)
		<-t.done
		t.f.Close()
		t.logNow()
	})
	return t.PeerTransport.Close()
}

// logStats logs the counts every faultStatsEvery, and toggles the faults
// on SIGUSR1.
func (t *faultyTransport) logStats() {
	defer close(t.done)
	tick := time.NewTicker(faultStatsEvery)
	defer tick.Stop()
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	for {
		select {
		case <-t.stop:
			return
		case <-tick.C:
			t.logNow()
		case <-usr1:
			t.f.SetActive(!t.f.Active())
			t.lg.Warn("fault injection toggled (SIGUSR1)", "active", t.f.Active())
		}
	}
}

func (t *faultyTransport) logNow() {
	st := t.f.Stats()
	t.lg.Info("fault injection", "delayed", st.Delayed, "dropped", st.Dropped, "passed", st.Passed, "active", t.f.Active())
}
