package framework

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// Network namespaces (WithNetns): each member in a Linux network namespace
// of its own, so that the links between members can be cut and made lossy
// with iptables inside the namespaces while the test's clients still
// reach every member.
//
//	root namespace (the test)      switch namespace           member namespace i
//	                               <prefix>X-<pid>-sw         <prefix>X-<pid>-m<i>
//	ekvnetX 10.231.X.1/24 ──veth── uplink ─┐
//	                                       ekbr (bridge) ── m<i> ──veth── eth0 10.231.X.(i+2)/24, lo
//
// X (0-255) numbers the subnet 10.231.X.0/24. It is chosen from the pid and
// probed: the root end of the uplink, ekvnetX, is the lock (creating a
// link whose name exists fails), so test binaries running at once, with
// any prefix, never share a subnet; one whose addresses some other
// interface already has is skipped. The pid in the namespace names lets
// RemoveNetnsLeftovers tell a crashed run's namespaces from a live one's.
// The bridge lives in a namespace of its own, not in the root one: with
// br_netfilter loaded (net.bridge.bridge-nf-call-iptables=1 is its
// default) bridged traffic goes through the iptables of the bridge's
// namespace, and the root namespace's rules (a FORWARD policy of DROP, as
// Docker sets) must not see it. The switch namespace has no rules (and
// bridge-nf-call-iptables=0 where it can be set); the only filtering is
// what the partition primitives put inside member namespaces.

// rootLink names the root end of a cluster's uplink: rootLink + X.
const rootLink = "ekvnet"

// NetnsRequirement says why member namespaces cannot be used here, or is
// nil if they can: they need root, ip (iproute2) and iptables-restore.
func NetnsRequirement() error {
	if os.Geteuid() != 0 {
		return errors.New("network namespaces need root")
	}
	for _, tool := range []string{"ip", "iptables-restore"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("network namespaces need %s (apt-get install iproute2 iptables, or scripts/install-tools.sh as root): %w", tool, err)
		}
	}
	return nil
}

// RequireNetns skips the test if member namespaces cannot be used here,
// saying why, except under CI (CI set), where it fails it: CI runs as root
// and must run every test.
func RequireNetns(t testing.TB) {
	t.Helper()
	if err := NetnsRequirement(); err != nil {
		skipOrFailInCI(t, err)
	}
}

func skipOrFailInCI(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%v (CI must run this test)", err)
	}
	t.Skipf("skipped: %v", err)
}

// netns is the network of a cluster started WithNetns.
type netns struct {
	t      testing.TB
	root   string   // the root end of the uplink: rootLink + X
	subnet int      // X of 10.231.X.0/24
	sw     string   // the switch namespace
	ns     []string // the namespace of member i
	ips    []string // the address of member i

	mu   sync.Mutex
	cut  map[[2]int]bool // links cut, i < j
	loss float64         // drop probability of packets from other members
}

// netnsPrefix are the prefixes WithNetns takes: short enough that the root
// end's name (prefix + up to 3 digits) fits the kernel's 15 characters.
// Letters only, so that the subnet number after it is unambiguous.
var netnsPrefix = regexp.MustCompile(`^[a-z]{1,10}$`)

// ip runs ip with args and returns its error with its output.
func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// newNetns creates the namespaces, veths and bridge for n members and
// removes them in t.Cleanup (registered before anything is created, so a
// failed setup is torn down too). Register it before the cleanup that
// kills the members, so it runs after. It skips the test (fails under CI)
// if namespaces cannot be used here.
func newNetns(t testing.TB, prefix string, n int) *netns {
	t.Helper()
	if !netnsPrefix.MatchString(prefix) {
		t.Fatalf("WithNetns(%q): the prefix must match %s", prefix, netnsPrefix)
	}
	RequireNetns(t)
	if err := RemoveNetnsLeftovers(prefix); err != nil {
		t.Logf("netns: removing leftovers of earlier runs: %v", err)
	}
	pid := os.Getpid()
	nw := &netns{t: t, subnet: -1, cut: map[[2]int]bool{}}
	t.Cleanup(nw.teardown)
	// Claim a subnet (see the top of this file).
	for k := range 256 {
		x := (pid + k) % 256
		if out, err := exec.Command("ip", "-o", "addr", "show", "to", fmt.Sprintf("10.231.%d.0/24", x)).Output(); err != nil || len(bytes.TrimSpace(out)) > 0 {
			continue // taken by an interface of someone else
		}
		root := rootLink + strconv.Itoa(x)
		sw := fmt.Sprintf("%s%d-%d-sw", prefix, x, pid)
		if err := ip("netns", "add", sw); err != nil {
			if strings.Contains(err.Error(), "exists") {
				continue // a cluster of this process has it
			}
			skipOrFailInCI(t, fmt.Errorf("cannot create a network namespace: %w", err))
		}
		if err := ip("link", "add", "name", root, "type", "veth", "peer", "name", "uplink", "netns", sw); err != nil {
			if e := ip("netns", "del", sw); e != nil {
				t.Logf("netns: %v", e)
			}
			if strings.Contains(err.Error(), "exists") {
				continue // another test binary has this subnet
			}
			t.Fatalf("netns: %v", err)
		}
		nw.root, nw.subnet, nw.sw = root, x, sw
		break
	}
	if nw.sw == "" {
		t.Fatalf("netns: no free subnet 10.231.X.0/24")
	}
	cmds := [][]string{
		{"-n", nw.sw, "link", "add", "name", "ekbr", "type", "bridge"},
		{"-n", nw.sw, "link", "set", "dev", "uplink", "master", "ekbr", "up"},
	}
	for i := range n {
		ns := fmt.Sprintf("%s%d-%d-m%d", prefix, nw.subnet, pid, i)
		addr := fmt.Sprintf("10.231.%d.%d", nw.subnet, i+2)
		if err := ip("netns", "add", ns); err != nil {
			t.Fatalf("netns: %v", err)
		}
		nw.ns, nw.ips = append(nw.ns, ns), append(nw.ips, addr)
		port := "m" + strconv.Itoa(i)
		cmds = append(cmds,
			[]string{"link", "add", "name", "eth0", "netns", ns, "type", "veth", "peer", "name", port, "netns", nw.sw},
			[]string{"-n", nw.sw, "link", "set", "dev", port, "master", "ekbr", "up"},
			[]string{"-n", ns, "addr", "add", addr + "/24", "dev", "eth0"},
			[]string{"-n", ns, "link", "set", "dev", "eth0", "up"},
			[]string{"-n", ns, "link", "set", "dev", "lo", "up"},
		)
	}
	cmds = append(cmds,
		[]string{"-n", nw.sw, "link", "set", "dev", "ekbr", "up"},
		[]string{"addr", "add", fmt.Sprintf("10.231.%d.1/24", nw.subnet), "dev", nw.root},
		[]string{"link", "set", "dev", nw.root, "up"},
	)
	for _, c := range cmds {
		if err := ip(c...); err != nil {
			t.Fatalf("netns: %v", err)
		}
	}
	// Bridged traffic need not go through iptables even here, where no
	// rules are; the file is missing without br_netfilter.
	_ = exec.Command("ip", "netns", "exec", nw.sw, "sh", "-c",
		"echo 0 > /proc/sys/net/bridge/bridge-nf-call-iptables").Run()
	t.Logf("netns: members in namespaces %s, addresses %s, bridge in %s, the test at 10.231.%d.1 (%s)",
		strings.Join(nw.ns, " "), strings.Join(nw.ips, " "), nw.sw, nw.subnet, nw.root)
	return nw
}

// teardown deletes the root end of the uplink and every namespace (which
// destroys the veths and the bridge in them). Run it after the members
// are killed: a namespace lives on, unnamed, while a process is in it.
func (nw *netns) teardown() {
	var errs []error
	if nw.root != "" {
		errs = append(errs, ip("link", "del", "dev", nw.root))
	}
	for _, ns := range append(nw.ns, nw.sw) {
		if ns != "" {
			errs = append(errs, ip("netns", "del", ns))
		}
	}
	if err := errors.Join(errs...); err != nil {
		nw.t.Errorf("netns teardown: %v", err)
	}
}

// RemoveNetnsLeftovers deletes the namespaces that WithNetns(prefix)
// created in a test process that is no longer running: a run that crashed
// or was killed before its cleanup. The veths and the bridge in them, and
// the root end of the uplink, go with them. Those of running processes
// are left alone.
func RemoveNetnsLeftovers(prefix string) error {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return fmt.Errorf("ip netns list: %w", err)
	}
	// The names newNetns gives: prefix, subnet, pid, role.
	ours := regexp.MustCompile(`^` + regexp.QuoteMeta(prefix) + `\d+-(\d+)-(sw|m\d+)$`)
	var errs []error
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		m := ours.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		if pid, _ := strconv.Atoi(m[1]); !processAlive(pid) {
			errs = append(errs, ip("netns", "del", name))
		}
	}
	return errors.Join(errs...)
}

func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// apply writes member i's rules into its namespace, replacing the filter
// table at once (iptables-restore): DROP everything from members whose
// link to i is cut, and with loss > 0 drop that fraction of the packets
// from the others, at random. nw.mu is held.
//
// Only INPUT is filtered, in both namespaces of a cut link, so both
// directions are cut and the packets vanish silently, as on a broken
// network (and as Jepsen partitions). A DROP in OUTPUT would not be
// silent: netfilter fails the sender's sendmsg with EPERM at once, and
// quic-go closes the connection on that local error, so the sender would
// know of the cut immediately instead of through timeouts.
func (nw *netns) apply(i int) error {
	var b strings.Builder
	b.WriteString("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n")
	for j, peer := range nw.ips {
		switch {
		case j == i:
		case nw.cut[link(i, j)]:
			fmt.Fprintf(&b, "-A INPUT -s %s -j DROP\n", peer)
		case nw.loss > 0:
			fmt.Fprintf(&b, "-A INPUT -s %s -m statistic --mode random --probability %.4f -j DROP\n", peer, nw.loss)
		}
	}
	b.WriteString("COMMIT\n")
	cmd := exec.Command("ip", "netns", "exec", nw.ns[i], "iptables-restore")
	cmd.Stdin = strings.NewReader(b.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("iptables-restore in %s: %w: %s\n%s", nw.ns[i], err, bytes.TrimSpace(out), b.String())
	}
	return nil
}

// applyAll applies the rules of the given members concurrently.
func (nw *netns) applyAll(members ...int) error {
	errs := make([]error, len(members))
	var wg sync.WaitGroup
	for k, i := range members {
		wg.Go(func() { errs[k] = nw.apply(i) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func link(i, j int) [2]int {
	if i > j {
		i, j = j, i
	}
	return [2]int{i, j}
}

// net returns the cluster's namespaces, failing the test if it was not
// started WithNetns.
func (c *Cluster) net() *netns {
	c.t.Helper()
	if c.netns == nil {
		c.t.Fatalf("network faults need a cluster started WithNetns")
	}
	return c.netns
}

// InNetns reports whether the cluster was started WithNetns.
func (c *Cluster) InNetns() bool { return c.netns != nil }

// Cut drops all traffic between members i and j (iptables DROP of the
// packets from the other's address, in both namespaces: see apply), as a
// broken link would, silently; their traffic with the test's clients and
// with other members is untouched. Cutting a cut link does nothing.
func (c *Cluster) Cut(i, j int) {
	c.t.Helper()
	c.setLinks(true, [2]int{i, j})
}

// Heal undoes Cut(i, j).
func (c *Cluster) Heal(i, j int) {
	c.t.Helper()
	c.setLinks(false, [2]int{i, j})
}

// Isolate cuts member i off from every other member.
func (c *Cluster) Isolate(i int) {
	c.t.Helper()
	var links [][2]int
	for j := range c.Members {
		if j != i {
			links = append(links, [2]int{i, j})
		}
	}
	c.setLinks(true, links...)
}

// Partition cuts every link between a member of side and one not in it.
func (c *Cluster) Partition(side ...int) {
	c.t.Helper()
	in := map[int]bool{}
	for _, i := range side {
		in[i] = true
	}
	var links [][2]int
	for i := range c.Members {
		for j := i + 1; j < len(c.Members); j++ {
			if in[i] != in[j] {
				links = append(links, [2]int{i, j})
			}
		}
	}
	c.setLinks(true, links...)
}

// CutLinks returns the links that are cut, each as [i, j] with i < j.
func (c *Cluster) CutLinks() [][2]int {
	c.t.Helper()
	nw := c.net()
	nw.mu.Lock()
	defer nw.mu.Unlock()
	return sortedCut(nw.cut)
}

func (c *Cluster) setLinks(cut bool, links ...[2]int) {
	c.t.Helper()
	nw := c.net()
	nw.mu.Lock()
	defer nw.mu.Unlock()
	touched := map[int]bool{}
	for _, l := range links {
		i, j := l[0], l[1]
		if i == j || i < 0 || j < 0 || i >= len(nw.ns) || j >= len(nw.ns) {
			c.t.Fatalf("netns: no link between members %d and %d", i, j)
		}
		if nw.cut[link(i, j)] != cut {
			nw.cut[link(i, j)] = cut
			touched[i], touched[j] = true, true
		}
	}
	var members []int
	for i := range touched {
		members = append(members, i)
	}
	if err := nw.applyAll(members...); err != nil {
		c.t.Fatalf("netns: %v", err)
	}
	verb := "heal"
	if cut {
		verb = "cut"
	}
	c.t.Logf("netns: %s %v; cut now %v", verb, links, sortedCut(nw.cut))
}

func sortedCut(cut map[[2]int]bool) [][2]int {
	var out [][2]int
	for l, c := range cut {
		if c {
			out = append(out, l)
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a][0] < out[b][0] || out[a][0] == out[b][0] && out[a][1] < out[b][1] })
	return out
}

// SetPeerLoss makes every member drop the fraction p (in [0, 1)) of the
// packets it receives from the other members, at random (iptables
// statistic match); 0 removes the loss. Cut links stay cut.
func (c *Cluster) SetPeerLoss(p float64) {
	c.t.Helper()
	if !(p >= 0 && p < 1) {
		c.t.Fatalf("netns: loss %v is not in [0, 1)", p)
	}
	nw := c.net()
	nw.mu.Lock()
	defer nw.mu.Unlock()
	nw.loss = p
	if err := nw.applyAll(nw.members()...); err != nil {
		c.t.Fatalf("netns: %v", err)
	}
	c.t.Logf("netns: peer packet loss %.0f%%", 100*p)
}

// HealAll heals every link and removes the packet loss.
func (c *Cluster) HealAll() {
	c.t.Helper()
	nw := c.net()
	nw.mu.Lock()
	defer nw.mu.Unlock()
	nw.cut, nw.loss = map[[2]int]bool{}, 0
	if err := nw.applyAll(nw.members()...); err != nil {
		c.t.Fatalf("netns: %v", err)
	}
	c.t.Logf("netns: healed every link, no packet loss")
}

func (nw *netns) members() []int {
	out := make([]int, len(nw.ns))
	for i := range out {
		out[i] = i
	}
	return out
}
