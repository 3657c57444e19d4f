package torture

import (
	"context"
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/edgekv/edgekv/tests/framework"
)

// nemesis injects one kind of fault, for real, again and again until ctx
// ends, and counts the faults that fired. Every fault is healed before
// the next one and when ctx ends: the cluster is whole again afterwards.
type nemesis struct {
	name string
	// run injects faults until ctx ends; it returns how many fired.
	run func(ctx context.Context, t testing.TB, c *framework.Cluster, rng *rand.Rand) int
}

// sleep waits d or until ctx ends; it reports whether the whole d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

var nemeses = []nemesis{
	{"none", func(ctx context.Context, _ testing.TB, _ *framework.Cluster, _ *rand.Rand) int {
		<-ctx.Done()
		return 0
	}},
	{"kill-one", killOneEvery(func(_ testing.TB, c *framework.Cluster, rng *rand.Rand) int {
		return rng.IntN(len(c.Members))
	})},
	{"kill-leader", killOneEvery(func(t testing.TB, c *framework.Cluster, _ *rand.Rand) int {
		return c.Leader(t)
	})},
	{"kill-all", func(ctx context.Context, t testing.TB, c *framework.Cluster, _ *rand.Rand) int {
		n := 0
		for sleep(ctx, 1500*time.Millisecond) {
			c.KillAll()
			n++
			time.Sleep(300 * time.Millisecond)
			for i := range c.Members {
				c.Restart(i)
			}
			c.WaitReady(t)
		}
		return n
	}},
	{"pause-leader", func(ctx context.Context, t testing.TB, c *framework.Cluster, _ *rand.Rand) int {
		n := 0
		for sleep(ctx, 800*time.Millisecond) {
			pause(ctx, t, c, c.Leader(t), 2*time.Second)
			n++
			c.WaitReady(t)
		}
		return n
	}},
	{"pause-follower", func(ctx context.Context, t testing.TB, c *framework.Cluster, rng *rand.Rand) int {
		n := 0
		for sleep(ctx, 800*time.Millisecond) {
			l := c.Leader(t)
			i := (l + 1 + rng.IntN(len(c.Members)-1)) % len(c.Members)
			pause(ctx, t, c, i, 2*time.Second)
			n++
			c.WaitReady(t)
		}
		return n
	}},
}

// killOneEvery SIGKILLs the member victim picks, restarts it a second
// later, and waits for the cluster, over and over.
func killOneEvery(victim func(t testing.TB, c *framework.Cluster, rng *rand.Rand) int) func(context.Context, testing.TB, *framework.Cluster, *rand.Rand) int {
	return func(ctx context.Context, t testing.TB, c *framework.Cluster, rng *rand.Rand) int {
		n := 0
		for sleep(ctx, 800*time.Millisecond) {
			i := victim(t, c, rng)
			c.Kill(i)
			n++
			sleep(ctx, time.Second)
			c.Restart(i)
			c.WaitReady(t)
		}
		return n
	}
}

// pause stops member i (SIGSTOP) for d (less if ctx ends), then lets it
// go on (SIGCONT).
func pause(ctx context.Context, t testing.TB, c *framework.Cluster, i int, d time.Duration) {
	t.Helper()
	pid, err := c.Members[i].ServerPID()
	if err != nil {
		t.Fatalf("pause %s: %v", c.Members[i].Name, err)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP %s: %v", c.Members[i].Name, err)
	}
	sleep(ctx, d)
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatalf("SIGCONT %s: %v", c.Members[i].Name, err)
	}
}

func nemesisByName(name string) (nemesis, error) {
	for _, n := range nemeses {
		if n.name == name {
			return n, nil
		}
	}
	return nemesis{}, fmt.Errorf("no nemesis %q", name)
}
