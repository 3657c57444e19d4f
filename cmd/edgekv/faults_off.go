//go:build !edgekv_faults

package main

import (
	"log/slog"

	"github.com/edgekv/edgekv/core/server"
)

// withFaults returns pt: fault injection exists only in test builds with
// the tag edgekv_faults (faults_on.go), and EDGEKV_FAULT_DELAY is ignored.
func withFaults(pt server.PeerTransport, _ *slog.Logger) (server.PeerTransport, error) {
	return pt, nil
}
