//go:build !edgekv_faults

package main

import (
	"context"
	"log/slog"

	"github.com/edgekv/edgekv/core/server"
	"github.com/edgekv/edgekv/persist/wal"
)

// withFaults returns pt: fault injection exists only in test builds with
// the tag edgekv_faults (faults_on.go), and EDGEKV_FAULT_DELAY is ignored.
func withFaults(pt server.PeerTransport, _ *slog.Logger) (server.PeerTransport, error) {
	return pt, nil
}

// withDiskFaults returns o: EDGEKV_FAULT_DISK and EDGEKV_FAULT_POWER are
// ignored outside test builds with the tag edgekv_faults (faults_on.go).
func withDiskFaults(_ context.Context, o wal.Options, _ string, _ *slog.Logger) (wal.Options, error) {
	return o, nil
}
