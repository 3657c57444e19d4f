package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/edgekv/edgekv/tests/framework"
)

// TestSnapshot_StoppedMemberCatchesUpBySnapshot: a member stopped while the
// others take enough writes to snapshot and compact their logs past it gets
// the backend streamed over QUIC when it comes back, and ends with the same
// data and the same HashKV as the others.
func TestSnapshot_StoppedMemberCatchesUpBySnapshot(t *testing.T) {
	skipEdgekvIfAsked(t)
	c := framework.StartCluster(t, framework.BuildEdgekv(t), 3,
		framework.WithFlags("--snapshot-count", "100", "--snapshot-catchup-entries", "10"))
	c.Stop(2)

	cli := framework.NewClient(t, c.Members[0].ClientURL, c.Members[1].ClientURL)
	const n = 600
	for i := 0; i < n; i++ {
		// The stopped member may have led: allow time for an election.
		putWithRetry(t, cli, "m0/m1", fmt.Sprintf("/e2e/snap/%04d", i), strings.Repeat("v", 100), failoverTimeout)
	}
	c.Restart(2)
	c.WaitReady(t, 2)

	m2 := c.Client(t, 2)
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), framework.OpTimeout)
		resp, err := m2.Get(ctx, "/e2e/snap/", clientv3.WithPrefix(), clientv3.WithCountOnly(), clientv3.WithSerializable())
		cancel()
		if err == nil && resp.Count == n {
			break
		}
		require.True(t, time.Now().Before(deadline), "member 2 did not catch up: %v %v", resp, err)
		time.Sleep(200 * time.Millisecond)
	}
	log, err := os.ReadFile(c.Members[2].LogPath)
	require.NoError(t, err)
	require.Contains(t, string(log), "installed snapshot", "member 2 must have caught up by snapshot")

	// Same state everywhere.
	var hashes []uint32
	var rev int64
	for i := range c.Members {
		ctx, cancel := context.WithTimeout(context.Background(), framework.OpTimeout)
		st, err := c.Client(t, i).Get(ctx, "/e2e/snap/0000")
		require.NoError(t, err)
		if rev == 0 {
			rev = st.Header.Revision
		}
		h, err := c.Client(t, i).HashKV(ctx, c.Members[i].ClientURL, rev)
		cancel()
		require.NoError(t, err)
		hashes = append(hashes, h.Hash)
	}
	require.Equal(t, hashes[0], hashes[1])
	require.Equal(t, hashes[0], hashes[2])
}
