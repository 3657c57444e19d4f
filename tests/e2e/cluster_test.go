package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/edgekv/edgekv/tests/framework"
)

const (
	// prefix holds every key these tests write.
	prefix = "/e2e/data/"
	// failoverTimeout bounds how long writes may fail after the leader dies.
	failoverTimeout = 30 * time.Second
)

// TestCluster_AcknowledgedWritesSurviveLeaderKillAndFullRestart is the test a
// Raft-replicated store must pass: a write acknowledged by any member is seen
// by every member, the cluster keeps taking writes after its leader is killed,
// the killed member catches up when it comes back, and after every member is
// killed at once and restarted no acknowledged write is missing.
func TestCluster_AcknowledgedWritesSurviveLeaderKillAndFullRestart(t *testing.T) {
	forEachServer(t, func(t *testing.T, s server) {
		c := framework.StartCluster(t, s.build(t), 3)
		acked := map[string]string{} // every write some member acknowledged
		clients := make([]*clientv3.Client, len(c.Members))
		for i := range c.Members {
			clients[i] = c.Client(t, i)
		}
		all := []int{0, 1, 2}

		t.Log("phase 1: write through every member, read through every member")
		for i := range c.Members {
			for n := 0; n < 3; n++ {
				key, val := fmt.Sprintf("%sp1/via-m%d/%d", prefix, i, n), fmt.Sprintf("p1-%d-%d", i, n)
				resp := put(t, clients[i], key, val)
				acked[key] = val
				for j := range c.Members {
					requireReadsWrite(t, clients[j], c.Members[j].Name, key, val, resp.Header.Revision)
				}
			}
		}
		requireSameState(t, c, clients, all, acked)

		t.Log("phase 2: SIGKILL the leader; writes resume on a new leader")
		old := c.Leader(t)
		c.Kill(old)
		survivors := without(all, old)
		for _, i := range survivors {
			for n := 0; n < 5; n++ {
				key, val := fmt.Sprintf("%sp2/via-m%d/%d", prefix, i, n), fmt.Sprintf("p2-%d-%d", i, n)
				putWithRetry(t, clients[i], c.Members[i].Name, key, val, failoverTimeout)
				acked[key] = val
			}
		}
		newLeader := c.Leader(t)
		require.NotEqual(t, old, newLeader, "the killed member is still named leader")
		requireSameState(t, c, clients, survivors, acked)

		t.Log("phase 2: the killed member restarts and catches up")
		c.Restart(old)
		c.WaitReady(t, old)
		clients[old] = c.Client(t, old)
		requireSameState(t, c, clients, all, acked)
		key, val := prefix+"p2/via-restarted", "p2-restarted"
		put(t, clients[old], key, val)
		acked[key] = val
		requireSameState(t, c, clients, all, acked)

		t.Log("phase 3: SIGKILL every member, restart all; every acknowledged write is there")
		for _, i := range all {
			c.Kill(i)
		}
		for _, i := range all {
			c.Restart(i)
		}
		c.WaitReady(t)
		for _, i := range all {
			clients[i] = c.Client(t, i)
		}
		requireSameState(t, c, clients, all, acked)
		for _, i := range all {
			key, val := fmt.Sprintf("%sp3/via-m%d", prefix, i), fmt.Sprintf("p3-%d", i)
			putWithRetry(t, clients[i], c.Members[i].Name, key, val, failoverTimeout)
			acked[key] = val
		}
		requireSameState(t, c, clients, all, acked)
		require.Len(t, acked, 9+10+1+3)
	})
}

func put(t *testing.T, cli *clientv3.Client, key, val string) *clientv3.PutResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), framework.OpTimeout)
	defer cancel()
	resp, err := cli.Put(ctx, key, val)
	require.NoError(t, err, "put %s", key)
	return resp
}

// putWithRetry retries a put until it is acknowledged or timeout passes. A
// failed attempt may still have been applied; retrying the same value makes
// the outcome the same either way.
func putWithRetry(t *testing.T, cli *clientv3.Client, member, key, val string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := cli.Put(ctx, key, val)
		cancel()
		if err == nil {
			if attempt > 1 {
				t.Logf("put %s via %s acknowledged after %d attempts", key, member, attempt)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("put %s via %s not acknowledged within %v (%d attempts): %v", key, member, timeout, attempt, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// requireReadsWrite checks that member sees the acknowledged write of key=val
// at revision rev: first by a linearizable read, then by a serializable one.
// The linearizable read makes the member apply at least up to the write, so
// the serializable read that follows must see it too.
func requireReadsWrite(t *testing.T, cli *clientv3.Client, member, key, val string, rev int64) {
	t.Helper()
	for _, mode := range []struct {
		name string
		opts []clientv3.OpOption
	}{
		{"linearizable", nil},
		{"serializable", []clientv3.OpOption{clientv3.WithSerializable()}},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), framework.OpTimeout)
		resp, err := cli.Get(ctx, key, mode.opts...)
		cancel()
		require.NoError(t, err, "%s get %s via %s", mode.name, key, member)
		require.Len(t, resp.Kvs, 1, "%s get %s via %s", mode.name, key, member)
		require.Equal(t, val, string(resp.Kvs[0].Value), "%s get %s via %s", mode.name, key, member)
		require.Equal(t, rev, resp.Kvs[0].ModRevision, "%s get %s via %s: mod revision", mode.name, key, member)
		require.GreaterOrEqual(t, resp.Header.Revision, rev, "%s get %s via %s: header revision", mode.name, key, member)
	}
}

// requireSameState reads everything under prefix through each of members,
// linearizably and then serializably, and checks that they return the same
// keys, values, revisions and versions, and exactly the acknowledged writes.
func requireSameState(t *testing.T, c *framework.Cluster, clients []*clientv3.Client, members []int, acked map[string]string) {
	t.Helper()
	var (
		first     []string
		firstName string
	)
	for _, i := range members {
		name := c.Members[i].Name
		var lin *clientv3.GetResponse
		for _, opts := range [][]clientv3.OpOption{
			{clientv3.WithPrefix()},
			{clientv3.WithPrefix(), clientv3.WithSerializable()},
		} {
			ctx, cancel := context.WithTimeout(context.Background(), framework.OpTimeout)
			resp, err := clients[i].Get(ctx, prefix, opts...)
			cancel()
			require.NoError(t, err, "range %s via %s", prefix, name)
			got := map[string]string{}
			var state []string
			for _, kv := range resp.Kvs {
				got[string(kv.Key)] = string(kv.Value)
				state = append(state, describe(kv))
			}
			require.Equal(t, acked, got, "range %s via %s: not exactly the acknowledged writes", prefix, name)
			if lin == nil {
				lin = resp
			} else {
				require.Equal(t, lin.Header.Revision, resp.Header.Revision,
					"via %s: serializable read right after a linearizable one, no writes between", name)
			}
			if first == nil {
				first, firstName = state, name
			} else {
				require.Equal(t, first, state, "%s and %s disagree on revisions or versions", firstName, name)
			}
		}
	}
}

// describe is a key-value pair with everything a member must agree on.
func describe(kv *mvccpb.KeyValue) string {
	return fmt.Sprintf("%s=%s create=%d mod=%d ver=%d lease=%d",
		kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version, kv.Lease)
}

func without(xs []int, x int) []int {
	var out []int
	for _, y := range xs {
		if y != x {
			out = append(out, y)
		}
	}
	return out
}
