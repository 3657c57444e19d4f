//go:build edgekv_faults

package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/edgekv/edgekv/core/server"
	"github.com/edgekv/edgekv/persist/fsx"
	"github.com/edgekv/edgekv/persist/wal"
	"github.com/edgekv/edgekv/transport"
)

// faultEnv configures the fault injection of a test build: outgoing Raft
// messages are delayed, reordered and dropped as transport.ParseFaultConfig
// describes, e.g. EDGEKV_FAULT_DELAY=5ms-40ms,drop=0.05. SIGUSR1 turns the
// faults off and on again (they start on). This file exists
// only with the build tag edgekv_faults (the torture suite's delay-reorder
// and disk-fault scenarios build such a binary); every other build ignores
// the variable and has none of this code (faults_off.go).
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

// diskFaultEnv, set to 1, puts the write-ahead log on an fsx.FaultFS over
// its file system: it works normally until SIGUSR2, after which every
// fdatasync, fsync and directory sync of the WAL fails with EIO, for good.
// The member must then stop (fail-stop: core/server's Fatal), never go on
// with a write that did not reach the disk; the torture suite's
// disk-fault scenario checks that it does. Like faultEnv, it exists only
// with the build tag edgekv_faults.
const diskFaultEnv = "EDGEKV_FAULT_DISK"

// powerLossEnv, set to 1, puts the write-ahead log on an fsx.PowerFS,
// which remembers what every unsynced write, create, rename and remove of
// the WAL overwrote. On SIGPWR, the next WAL sync that has something to
// make durable is in flight when the power fails: the PowerFS undoes what
// a power loss may drop (a random part of the unsynced changes, at least
// one of those that sync covered, a write maybe torn at a sector) and the
// member kills itself with SIGKILL on the spot, as a machine losing power
// stops, logging powerLossLine first. An idle member loses its power
// powerLossIdle after the signal all the same. The torture suite's
// power-loss scenario restarts it from what is left. Test builds only,
// like faultEnv.
const powerLossEnv = "EDGEKV_FAULT_POWER"

const (
	powerLossIdle = 2 * time.Second
	powerLossLine = "POWER LOSS: the unsynced changes of the write-ahead log are undone and the member stops now (SIGPWR, test build)"
)

// withDiskFaults returns o with its file system wrapped as diskFaultEnv
// and powerLossEnv ask, and handles their signals until ctx ends. Removed
// WAL files wait for power loss in a directory of dataDir.
func withDiskFaults(ctx context.Context, o wal.Options, dataDir string, lg *slog.Logger) (wal.Options, error) {
	failSyncs, err := envSwitch(diskFaultEnv)
	if err != nil {
		return o, err
	}
	powerLoss, err := envSwitch(powerLossEnv)
	if err != nil {
		return o, err
	}
	if o.FS == nil && (failSyncs || powerLoss) {
		o.FS = fsx.OS{}
	}
	if powerLoss {
		seed := time.Now().UnixNano()
		pfs, err := fsx.NewPowerFS(o.FS, filepath.Join(dataDir, "power-loss.tmp"), seed, func(l fsx.PowerLoss) {
			lg.Warn(powerLossLine, "lost", l.Lost, "kept", l.Kept, "torn", l.Torn, "bytes_lost", l.BytesLost, "files", l.Files, "dirs", l.Dirs, "tripped_by", l.TrippedFile, "seed", seed)
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			for {
				time.Sleep(time.Hour) // SIGKILL is on its way; nothing else may run here
			}
		})
		if err != nil {
			return o, fmt.Errorf("%s: %w", powerLossEnv, err)
		}
		o.FS = pfs
		lg.Warn("FAULT INJECTION: the write-ahead log loses its unsynced changes and the member stops on SIGPWR (test build)", "env", powerLossEnv+"=1")
		onSignal(ctx, syscall.SIGPWR, func() {
			lg.Warn("FAULT INJECTION: power fails at the next sync of the write-ahead log (SIGPWR)")
			pfs.Arm()
			time.AfterFunc(powerLossIdle, func() { pfs.PowerOff() })
		})
	}
	if failSyncs {
		faults := fsx.NewFaultFS(o.FS)
		o.FS = faults
		lg.Warn("FAULT INJECTION: the write-ahead log's syncs will fail with EIO on SIGUSR2 (test build)", "env", diskFaultEnv+"=1")
		onSignal(ctx, syscall.SIGUSR2, func() {
			// Logged first: the next sync fails at once, and the member
			// may exit before a line logged after it.
			lg.Warn("FAULT INJECTION: every sync of the write-ahead log fails with EIO from now on (SIGUSR2)")
			faults.FailSyncs(syscall.EIO)
		})
	}
	return o, nil
}

// envSwitch reads the variable name: 1 is on, 0 or unset off.
func envSwitch(name string) (bool, error) {
	switch v := os.Getenv(name); v {
	case "", "0":
		return false, nil
	case "1":
		return true, nil
	default:
		return false, fmt.Errorf("%s=%q: want 1 (on) or 0 (off)", name, v)
	}
}

// onSignal calls f on every sig until ctx ends.
func onSignal(ctx context.Context, sig os.Signal, f func()) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, sig)
	go func() {
		defer signal.Stop(c)
		for {
			select {
			case <-ctx.Done():
				return
			case <-c:
				f()
			}
		}
	}()
}
