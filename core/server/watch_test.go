package server

import (
	"errors"
	"fmt"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/edgekv/edgekv/core/watch"
)

// TestServer_WatchersSeeAppliedWritesAndCatchUpAfterASnapshot watches on a
// follower that is cut off from the others while they write and compact
// their logs, then comes back and catches up by installing a snapshot: its
// watcher (created before, never restarted) gets every write exactly once,
// in order, those applied one by one and those the snapshot brought.
func TestServer_WatchersSeeAppliedWritesAndCatchUpAfterASnapshot(t *testing.T) {
	c := newTestClusterWith(t, 3, func(cfg *Config) {
		cfg.SnapshotCount = 20
		cfg.SnapshotCatchUpEntries = 5
	})
	put := func(s *Server, k string) {
		retry(t, func() error {
			_, err := s.Put(ctxT(t), &pb.PutRequest{Key: []byte(k), Value: []byte("v-" + k)})
			return err
		})
	}
	s2 := c.servers[2]
	stream := s2.Watchable().NewStream()
	defer stream.Close()
	if _, _, err := stream.Watch(watch.Request{Key: []byte("w/"), RangeEnd: []byte("w0")}); err != nil {
		t.Fatal(err)
	}
	var got []string
	receive := func(n int) {
		t.Helper()
		timeout := time.After(30 * time.Second)
		for len(got) < n {
			select {
			case r := <-stream.Chan():
				for _, ev := range r.Events {
					got = append(got, string(ev.Kv.Key))
				}
				if hdr := s2.WatchHeader(r.Revision); hdr.MemberId != s2.ID() || hdr.ClusterId != s2.ClusterID() {
					t.Fatalf("header %v", hdr)
				}
			case <-timeout:
				t.Fatalf("got %d events, want %d: %v", len(got), n, got)
			}
		}
	}
	put(c.servers[0], "w/000")
	receive(1)

	// Cut member 2 off: messages to it are dropped.
	deps, _ := c.hub.peer(s2.ID())
	c.hub.mu.Lock()
	delete(c.hub.peers, s2.ID())
	c.hub.mu.Unlock()
	for i := 1; i <= 100; i++ {
		put(c.servers[i%2], fmt.Sprintf("w/%03d", i))
	}
	for _, s := range c.servers[:2] {
		if first, _ := s.raftLog.FirstIndex(); first <= s2.applied.get() {
			t.Fatalf("member %x did not compact its log past member 2 (first index %d)", s.ID(), first)
		}
	}
	c.hub.mu.Lock()
	c.hub.peers[s2.ID()] = deps
	c.hub.mu.Unlock()

	receive(101)
	// The watcher may see the events before installSnapshot counts itself.
	retry(t, func() error {
		if s2.snapshotsInstalled.Load() == 0 {
			return errors.New("member 2 caught up without installing a snapshot")
		}
		return nil
	})
	put(c.servers[0], "w/101")
	receive(102)
	for i, k := range got {
		if want := fmt.Sprintf("w/%03d", i); k != want {
			t.Fatalf("event %d is %s, want %s (all: %v)", i, k, want, got)
		}
	}
}
