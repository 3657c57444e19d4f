package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/edgekv/edgekv/tests/framework"
)

// TestBadInput_RequestOverMaxRequestBytesIsRefused: a put larger than
// --max-request-bytes (1.5 MiB by default) gets etcd's own error, changes
// nothing, and the member keeps serving. The same body runs against etcd.
func TestBadInput_RequestOverMaxRequestBytesIsRefused(t *testing.T) {
	forEachServer(t, func(t *testing.T, s server) {
		c := framework.StartCluster(t, s.build(t), 1)
		cli := c.Client(t, 0)
		ctx, cancel := context.WithTimeout(context.Background(), framework.OpTimeout)
		defer cancel()

		big := strings.Repeat("x", 1536*1024+1024)
		_, err := cli.Put(ctx, "/e2e/big", big)
		require.Error(t, err)
		require.Equal(t, rpctypes.ErrRequestTooLarge.Error(), rpctypes.Error(err).Error())

		resp, err := cli.Get(ctx, "/e2e/big")
		require.NoError(t, err)
		require.Zero(t, resp.Count, "the refused put must change nothing")

		_, err = cli.Put(ctx, "/e2e/small", "ok")
		require.NoError(t, err, "the member keeps serving after refusing a request")
	})
}

// runMember runs the edgekv binary with args until it exits (at most 30 s)
// and returns its combined output and exit error.
func runMember(t *testing.T, bin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("edgekv %v did not exit: it should have refused to start\n%s", args, out)
	}
	return string(out), err
}

// TestBadInput_DataDirOfAnotherMemberOrClusterRefusesToStart: started over a
// data dir that belongs to another member or cluster, edgekv exits non-zero
// with a message that names the conflict, and the data dir is unchanged.
func TestBadInput_DataDirOfAnotherMemberOrClusterRefusesToStart(t *testing.T) {
	skipEdgekvIfAsked(t)
	bin := framework.BuildEdgekv(t)
	c := framework.StartCluster(t, bin, 1)
	m := c.Members[0]
	c.Stop(0)
	before := snapshotDir(t, m.DataDir)
	ports, err := framework.FreePorts(2)
	require.NoError(t, err)
	client := "http://127.0.0.1:" + itoa(ports[0])
	peer := "http://127.0.0.1:" + itoa(ports[1])

	t.Run("another member", func(t *testing.T) {
		out, err := runMember(t, bin, "--name", "intruder", "--data-dir", m.DataDir,
			"--listen-client-urls", client, "--advertise-client-urls", client,
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			"--initial-cluster", "intruder="+peer)
		require.Error(t, err)
		require.Contains(t, out, "data dir conflict")
		require.Contains(t, out, `member "`+m.Name+`"`)
		require.Contains(t, out, `"intruder"`)
	})
	t.Run("another cluster", func(t *testing.T) {
		out, err := runMember(t, bin, "--name", m.Name, "--data-dir", m.DataDir,
			"--listen-client-urls", client, "--advertise-client-urls", client,
			"--listen-peer-urls", m.PeerURL, "--initial-advertise-peer-urls", m.PeerURL,
			"--initial-cluster", m.Name+"="+m.PeerURL, "--initial-cluster-token", "some-other-cluster")
		require.Error(t, err)
		require.Contains(t, out, "data dir conflict")
		require.Contains(t, out, "some-other-cluster")
	})
	require.Equal(t, before, snapshotDir(t, m.DataDir), "a refused start must not touch the data dir")

	c.Restart(0)
	c.WaitReady(t)
}

// TestBadInput_PeerWithoutTheClusterTokenIsRefused: a member started with the
// wrong --initial-cluster-token that names a real member as its peer is
// refused by it ("cluster token mismatch"), gets no leader, and the real
// cluster goes on serving.
func TestBadInput_PeerWithoutTheClusterTokenIsRefused(t *testing.T) {
	skipEdgekvIfAsked(t)
	bin := framework.BuildEdgekv(t)
	c := framework.StartCluster(t, bin, 3)
	ports, err := framework.FreePorts(2)
	require.NoError(t, err)
	client := "http://127.0.0.1:" + itoa(ports[0])
	peer := "http://127.0.0.1:" + itoa(ports[1])
	intruder := exec.Command(bin, "--name", "intruder", "--data-dir", t.TempDir()+"/intruder",
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "intruder="+peer+","+c.Members[0].Name+"="+c.Members[0].PeerURL,
		"--initial-cluster-token", "not-the-token")
	require.NoError(t, intruder.Start())
	t.Cleanup(func() { intruder.Process.Kill(); intruder.Wait() })

	// The real member logs the refusal.
	deadline := time.Now().Add(20 * time.Second)
	for {
		log, _ := os.ReadFile(c.Members[0].LogPath)
		if strings.Contains(string(log), "cluster token mismatch") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never refused the intruder", c.Members[0].Name)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The intruder cannot form a quorum: no leader, so no linearizable read.
	icli := framework.NewClient(t, client)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	_, err = icli.Get(ctx, "x")
	cancel()
	require.Error(t, err, "the intruder must not reach a quorum with the real cluster")

	cli := c.ClientAll(t)
	ctx, cancel = context.WithTimeout(context.Background(), framework.OpTimeout)
	defer cancel()
	_, err = cli.Put(ctx, "/e2e/after-intruder", "ok")
	require.NoError(t, err)
}

func itoa(i int) string { return strconv.Itoa(i) }

// snapshotDir lists every file under dir with its size and modification time.
func snapshotDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := walkFiles(dir, func(path string, info os.FileInfo) {
		out[path] = info.ModTime().String() + " " + itoa(int(info.Size()))
	})
	require.NoError(t, err)
	return out
}

// TestBadInput_FlippedByteInTheWALRefusesToStart: a byte flipped in the
// middle of the write-ahead log (valid records after it) is corruption, not a
// torn write: the member refuses to start and names the file and offset.
func TestBadInput_FlippedByteInTheWALRefusesToStart(t *testing.T) {
	skipEdgekvIfAsked(t)
	bin := framework.BuildEdgekv(t)
	c := framework.StartCluster(t, bin, 1)
	cli := c.Client(t, 0)
	for i := 0; i < 20; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), framework.OpTimeout)
		_, err := cli.Put(ctx, "/e2e/wal/"+itoa(i), "value")
		cancel()
		require.NoError(t, err)
	}
	m := c.Members[0]
	c.Stop(0)

	segs, err := filepath.Glob(filepath.Join(m.DataDir, "member", "wal", "*.wal"))
	require.NoError(t, err)
	require.NotEmpty(t, segs)
	first := segs[0] // names sort by sequence: the oldest, with data after it
	b, err := os.ReadFile(first)
	require.NoError(t, err)
	b[12] ^= 0x20 // inside the first record's payload
	require.NoError(t, os.WriteFile(first, b, 0o600))

	out, err := runMember(t, bin, m.Args()...)
	require.Error(t, err, "a corrupt WAL must stop the member")
	require.Contains(t, out, filepath.Base(first))
	require.Contains(t, out, "offset")
	require.Contains(t, out, "corrupt")
}
