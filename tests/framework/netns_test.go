package framework

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The helper process: this test binary, run inside a member namespace,
// either accepting TCP connections on an address or dialing one.
const netnsHelperEnv = "EDGEKV_NETNS_HELPER"

// dialTimeout is how long a dial across a cut link waits for its SYN to
// be answered. A dial that should have worked and timed out is retried.
const dialTimeout = 500 * time.Millisecond

func TestNetnsHelperProcess(t *testing.T) {
	mode, addr, ok := strings.Cut(os.Getenv(netnsHelperEnv), " ")
	if !ok {
		return // not the helper
	}
	switch mode {
	case "listen":
		l, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		for {
			c, err := l.Accept()
			if err != nil {
				os.Exit(2)
			}
			c.Close()
		}
	case "dial":
		c, err := net.DialTimeout("tcp", addr, dialTimeout)
		if err != nil {
			os.Exit(1)
		}
		c.Close()
		os.Exit(0)
	}
}

// helper runs this binary as the helper in namespace ns.
func helper(ns, mode, addr string) *exec.Cmd {
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^TestNetnsHelperProcess$")
	cmd.Env = append(os.Environ(), netnsHelperEnv+"="+mode+" "+addr)
	return cmd
}

func TestNetns_CutLinksDropTrafficBetweenMembersOnlyAndTeardownRemovesAll(t *testing.T) {
	RequireNetns(t)
	const n, port = 3, "7000"
	var root string
	var nsNames []string
	t.Run("faults", func(t *testing.T) {
		nw := newNetns(t, "ekvfw", n)
		root, nsNames = nw.root, append(append([]string{}, nw.ns...), nw.sw)
		c := &Cluster{t: t, Members: make([]*Member, n), netns: nw}
		for i, ns := range nw.ns {
			l := helper(ns, "listen", nw.ips[i]+":"+port)
			if err := l.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Process.Kill(); l.Wait() })
		}
		// reach says whether member from (-1: the test) reaches member to.
		reach := func(from, to int) bool {
			addr := nw.ips[to] + ":" + port
			deadline := time.Now().Add(5 * time.Second)
			for {
				var err error
				if from < 0 {
					var conn net.Conn
					if conn, err = net.DialTimeout("tcp", addr, dialTimeout); err == nil {
						conn.Close()
					}
				} else {
					err = helper(nw.ns[from], "dial", addr).Run()
				}
				if err == nil {
					return true
				}
				// A refused connection (listener not up yet) is retried; a
				// dropped one is the answer.
				if strings.Contains(fmt.Sprint(err), "refused") && time.Now().Before(deadline) {
					time.Sleep(50 * time.Millisecond)
					continue
				}
				return false
			}
		}
		check := func(what string, want func(from, to int) bool) {
			t.Helper()
			for from := -1; from < n; from++ {
				for to := range n {
					if from == to {
						continue
					}
					got := reach(from, to)
					if !got && want(from, to) {
						got = reach(from, to) // a busy machine, not a cut
					}
					if got != want(from, to) {
						t.Errorf("%s: %d reaches %d: %v, want %v", what, from, to, got, !got)
					}
				}
			}
		}
		all := func(int, int) bool { return true }
		time.Sleep(200 * time.Millisecond) // the listeners start
		check("fresh", all)

		c.Cut(0, 1)
		check("0-1 cut", func(from, to int) bool { return link(from, to) != [2]int{0, 1} })
		c.Isolate(2)
		if got := c.CutLinks(); fmt.Sprint(got) != "[[0 1] [0 2] [1 2]]" {
			t.Errorf("CutLinks() = %v", got)
		}
		check("0-1 cut, 2 isolated", func(from, to int) bool { return from < 0 })
		c.Heal(0, 1)
		c.Heal(0, 2)
		check("1-2 cut", func(from, to int) bool { return link(from, to) != [2]int{1, 2} })

		c.SetPeerLoss(0.3)
		out, err := exec.Command("ip", "netns", "exec", nw.ns[1], "iptables", "-S", "INPUT").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "-s "+nw.ips[0]+"/32 -m statistic --mode random --probability 0.") ||
			!strings.Contains(string(out), "-s "+nw.ips[2]+"/32 -j DROP") {
			t.Errorf("member 1's rules with 30%% loss and 1-2 cut: %v\n%s", err, out)
		}
		c.HealAll()
		check("healed", all)
	})
	if root == "" {
		return // skipped or failed before the namespaces existed
	}
	if err := ip("link", "show", "dev", root); err == nil {
		t.Errorf("teardown left the link %s", root)
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, ns := range nsNames {
		if strings.Contains(string(out), ns) {
			t.Errorf("teardown left the namespace %s", ns)
		}
	}
}

func TestNetns_LeftoversOfDeadProcessesAreRemoved(t *testing.T) {
	RequireNetns(t)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	crashed := fmt.Sprintf("ekvfl7-%d-sw", dead.Process.Pid)
	running := fmt.Sprintf("ekvfl8-%d-m0", os.Getpid())
	other := fmt.Sprintf("ekvflx7-%d-sw", dead.Process.Pid) // another prefix
	for _, ns := range []string{crashed, running, other} {
		if err := ip("netns", "add", ns); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ip("netns", "del", ns) })
	}
	// Not named like a real root end: a live test binary may own that.
	if err := ip("link", "add", "name", "ekvfltest", "type", "veth", "peer", "name", "uplink", "netns", crashed); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ip("link", "del", "dev", "ekvfltest") })

	if err := RemoveNetnsLeftovers("ekvfl"); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	for ns, want := range map[string]bool{crashed: false, running: true, other: true} {
		if got := strings.Contains(string(out), ns); got != want {
			t.Errorf("namespace %s there: %v, want %v", ns, got, want)
		}
	}
	// The kernel destroys a namespace, and the veths in it, shortly after
	// the last reference goes.
	for deadline := time.Now().Add(10 * time.Second); ip("link", "show", "dev", "ekvfltest") == nil; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the root end of the crashed run's uplink is still there")
		}
	}
}
