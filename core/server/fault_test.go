package server

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/edgekv/edgekv/persist/fsx"
)

// A member whose WAL fdatasync fails calls Fatal (which exits the process
// outside tests) and stops: no write after the failure is acknowledged or
// applied. The WAL is on the real disk through fsx.FaultFS, as in edgekv's
// fault build (cmd/edgekv/faults_on.go).
func TestServer_FailedWALSyncCallsFatalAndAcknowledgesNothingMore(t *testing.T) {
	faults := fsx.NewFaultFS(fsx.OS{})
	fatal := make(chan error, 16)
	c := newTestClusterWith(t, 1, func(cfg *Config) {
		cfg.WAL.FS = faults
		cfg.Fatal = func(err error) { fatal <- err }
	})
	s := c.servers[0]
	retry(t, func() error {
		_, err := s.Put(ctxT(t), &pb.PutRequest{Key: []byte("before"), Value: []byte("v")})
		return err
	})
	rev := s.kv.Rev()

	faults.FailSyncs(syscall.EIO)
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := s.Put(ctx, &pb.PutRequest{Key: []byte("after"), Value: []byte{byte('0' + i)}})
		cancel()
		t.Logf("put %d: %v", i, err)
		if err == nil {
			t.Fatalf("put %d after the WAL's fdatasync failed was acknowledged", i)
		}
	}
	select {
	case err := <-fatal:
		if !errors.Is(err, syscall.EIO) {
			t.Fatalf("Fatal called with %v, want the fdatasync's EIO", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a failed WAL fdatasync did not reach Fatal")
	}
	select {
	case <-s.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the member kept running after a failed WAL fdatasync")
	}
	if got := s.kv.Rev(); got != rev {
		t.Fatalf("revision moved from %d to %d after the failure", rev, got)
	}
	if faults.Failed().Syncs == 0 {
		t.Fatal("no sync failed")
	}
}
