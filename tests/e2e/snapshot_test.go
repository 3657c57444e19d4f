package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
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

// TestSnapshot_AddedMemberJoinsBySnapshot: a member added with MemberAdd
// (what `etcdctl member add` calls) and started with
// --initial-cluster-state existing learns the cluster from its peers, gets
// the backend by snapshot since the others compacted their logs, and serves
// the same data.
func TestSnapshot_AddedMemberJoinsBySnapshot(t *testing.T) {
	skipEdgekvIfAsked(t)
	bin := framework.BuildEdgekv(t)
	c := framework.StartCluster(t, bin, 3,
		framework.WithFlags("--snapshot-count", "100", "--snapshot-catchup-entries", "10"))
	cli := c.ClientAll(t)
	const n = 300
	for i := 0; i < n; i++ {
		putWithRetry(t, cli, "any", fmt.Sprintf("/e2e/join/%04d", i), "v", failoverTimeout)
	}

	ports, err := framework.FreePorts(2)
	require.NoError(t, err)
	clientURL := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	ctx, cancel := context.WithTimeout(context.Background(), framework.OpTimeout)
	added, err := cli.MemberAdd(ctx, []string{peerURL})
	cancel()
	require.NoError(t, err)
	require.Len(t, added.Members, 4)

	var initial []string
	for _, m := range c.Members {
		initial = append(initial, m.Name+"="+m.PeerURL)
	}
	initial = append(initial, "m3="+peerURL)
	args := withFlags(c.Members[0].Args(), map[string]string{
		"--name": "m3", "--data-dir": t.TempDir() + "/m3.data",
		"--listen-client-urls": clientURL, "--advertise-client-urls": clientURL,
		"--listen-peer-urls": peerURL, "--initial-advertise-peer-urls": peerURL,
		"--initial-cluster": strings.Join(initial, ","), "--initial-cluster-state": "existing",
	})
	logPath := t.TempDir() + "/m3.log"
	logf, err := os.Create(logPath)
	require.NoError(t, err)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("log of m3:\n%s", b)
		}
	})

	m3 := framework.NewClient(t, clientURL)
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), framework.OpTimeout)
		resp, err := m3.Get(ctx, "/e2e/join/", clientv3.WithPrefix(), clientv3.WithCountOnly(), clientv3.WithSerializable())
		cancel()
		if err == nil && resp.Count == n {
			break
		}
		require.True(t, time.Now().Before(deadline), "the new member did not catch up: %v %v", resp, err)
		time.Sleep(200 * time.Millisecond)
	}
	log, err := os.ReadFile(logPath)
	require.NoError(t, err)
	require.Contains(t, string(log), "installed snapshot", "the new member must have joined by snapshot")

	// It is a full member: it takes writes and shows up named in member list.
	putWithRetry(t, m3, "m3", "/e2e/join/from-m3", "v", failoverTimeout)
	deadline = time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), framework.OpTimeout)
		ml, err := cli.MemberList(ctx)
		cancel()
		require.NoError(t, err)
		named := 0
		for _, m := range ml.Members {
			if m.Name != "" {
				named++
			}
		}
		if len(ml.Members) == 4 && named == 4 {
			break
		}
		require.True(t, time.Now().Before(deadline), "member list: %v", ml.Members)
		time.Sleep(200 * time.Millisecond)
	}
}

// withFlags returns args with the values of the given flags replaced.
func withFlags(args []string, set map[string]string) []string {
	out := append([]string{}, args...)
	for i := 0; i+1 < len(out); i++ {
		if v, ok := set[out[i]]; ok {
			out[i+1] = v
		}
	}
	return out
}
