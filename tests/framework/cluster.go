package framework

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Defaults for StartCluster. Heartbeat and election timeout are etcd's own
// defaults: shorter ones make failover faster but elections flap on a loaded
// two-core machine.
const (
	DefaultHeartbeat    = 100 * time.Millisecond
	DefaultElection     = 1000 * time.Millisecond
	DefaultReadyTimeout = 30 * time.Second
	DefaultStopTimeout  = 10 * time.Second
	// OpTimeout bounds one client call made by the harness.
	OpTimeout = 2 * time.Second
	// logTail is how much of each member's log is shown when a test fails.
	logTail = 64 << 10
)

// Option changes how StartCluster starts members.
type Option func(*config)

type config struct {
	heartbeat, election time.Duration
	readyTimeout        time.Duration
	flags               []string
	env                 []string
	wrapper             []string
	memberWrapper       func(m *Member) []string
	token               string
	netnsPrefix         string
}

// WithTimeouts sets --heartbeat-interval and --election-timeout.
func WithTimeouts(heartbeat, election time.Duration) Option {
	return func(c *config) { c.heartbeat, c.election = heartbeat, election }
}

// WithReadyTimeout bounds how long StartCluster and WaitReady wait for members
// to answer a linearizable read.
func WithReadyTimeout(d time.Duration) Option {
	return func(c *config) { c.readyTimeout = d }
}

// WithFlags appends flags to every member's command line.
func WithFlags(flags ...string) Option {
	return func(c *config) { c.flags = append(c.flags, flags...) }
}

// WithEnv adds KEY=VALUE pairs to every member's environment.
func WithEnv(kv ...string) Option {
	return func(c *config) { c.env = append(c.env, kv...) }
}

// WithWrapper runs every member under a program, e.g. WithWrapper("qemu-aarch64").
func WithWrapper(argv ...string) Option {
	return func(c *config) { c.wrapper = append(c.wrapper, argv...) }
}

// WithMemberWrapper runs each member under the program that wrap returns for
// it (after any WithWrapper), e.g. strace writing to a file per member:
//
//	WithMemberWrapper(func(m *Member) []string {
//		return []string{"strace", "-f", "-o", m.DataDir + ".strace"}
//	})
//
// A wrapped member is started in its own process group, and Kill, Stop and
// Close signal the whole group, so a wrapper that forks (strace) never leaves
// the server behind. Use Member.ServerPID for the server under the wrapper.
func WithMemberWrapper(wrap func(m *Member) []string) Option {
	return func(c *config) { c.memberWrapper = wrap }
}

// WithNetns runs each member in a Linux network namespace of its own,
// behind a bridge, with its client and peer URLs on its namespace's
// address (10.231.X.2, .3, ...; the test reaches them from 10.231.X.1), so
// that Cut, Heal, Isolate, Partition, SetPeerLoss and HealAll can fault
// the network between members (netns.go). prefix (letters, at most 10)
// names the namespaces and links; leftovers with it from a crashed run
// are removed first, and everything is removed in t.Cleanup. Members run
// under "ip netns exec <namespace>", which execs the server (so PID is the
// server's). It needs root, ip and iptables-restore: without them the test
// is skipped, or failed under CI.
func WithNetns(prefix string) Option {
	return func(c *config) { c.netnsPrefix = prefix }
}

// Member is one server process of a Cluster.
type Member struct {
	Name       string
	DataDir    string
	ClientPort int
	PeerPort   int
	Host       string // 127.0.0.1, or with WithNetns the address in its namespace
	ClientURL  string // http://Host:ClientPort
	PeerURL    string // http://Host:PeerPort (TCP for etcd, QUIC over UDP for edgekv)
	LogPath    string // stdout and stderr of every run of this member
	Netns      string // the member's network namespace (WithNetns), or ""

	argv    []string
	env     []string
	wrapped bool // argv starts with a wrapper: signal the process group

	mu   sync.Mutex
	proc *process // nil when not running
}

type process struct {
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{} // closed when the process has exited
	err  error         // exit status, valid after done
}

// Cluster is a set of members started with one --initial-cluster.
type Cluster struct {
	t       testing.TB
	binary  string
	cfg     config
	Members []*Member
	netns   *netns // WithNetns, else nil
}

// StartCluster starts n members of binary (edgekv or etcd: anything taking
// etcd's server flags) on 127.0.0.1 (or in network namespaces, WithNetns),
// each with its own client and peer port and a data dir under t.TempDir(),
// and waits until every member answers a linearizable Get. The processes are killed in t.Cleanup, and if the test
// failed the tail of each member's log is shown with t.Log.
func StartCluster(t testing.TB, binary string, n int, opts ...Option) *Cluster {
	t.Helper()
	cfg := config{
		heartbeat:    DefaultHeartbeat,
		election:     DefaultElection,
		readyTimeout: DefaultReadyTimeout,
		token:        fmt.Sprintf("e2e-%d-%d", os.Getpid(), time.Now().UnixNano()),
	}
	for _, o := range opts {
		o(&cfg)
	}
	// The temp dir is created before the cleanup below is registered, so the
	// processes are gone before their data dirs are removed.
	dir := t.TempDir()
	ports, err := FreePorts(2 * n)
	if err != nil {
		t.Fatalf("start cluster: %v", err)
	}
	c := &Cluster{t: t, binary: binary, cfg: cfg}
	if cfg.netnsPrefix != "" {
		// Its cleanup runs after the one below that kills the members.
		c.netns = newNetns(t, cfg.netnsPrefix, n)
	}
	var initial []string
	for i := 0; i < n; i++ {
		m := &Member{
			Name:       fmt.Sprintf("m%d", i),
			Host:       "127.0.0.1",
			ClientPort: ports[2*i],
			PeerPort:   ports[2*i+1],
		}
		if c.netns != nil {
			m.Host, m.Netns = c.netns.ips[i], c.netns.ns[i]
		}
		m.DataDir = filepath.Join(dir, m.Name+".data")
		m.LogPath = filepath.Join(dir, m.Name+".log")
		m.ClientURL = "http://" + m.Host + ":" + strconv.Itoa(m.ClientPort)
		m.PeerURL = "http://" + m.Host + ":" + strconv.Itoa(m.PeerPort)
		initial = append(initial, m.Name+"="+m.PeerURL)
		c.Members = append(c.Members, m)
	}
	for _, m := range c.Members {
		m.argv = nil
		if m.Netns != "" {
			m.argv = append(m.argv, "ip", "netns", "exec", m.Netns)
		}
		m.argv = append(m.argv, cfg.wrapper...)
		if cfg.memberWrapper != nil {
			m.argv = append(m.argv, cfg.memberWrapper(m)...)
		}
		m.wrapped = len(m.argv) > 0
		m.argv = append(m.argv, binary,
			"--name", m.Name,
			"--data-dir", m.DataDir,
			"--listen-client-urls", m.ClientURL,
			"--advertise-client-urls", m.ClientURL,
			"--listen-peer-urls", m.PeerURL,
			"--initial-advertise-peer-urls", m.PeerURL,
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new",
			"--initial-cluster-token", cfg.token,
			"--heartbeat-interval", strconv.FormatInt(cfg.heartbeat.Milliseconds(), 10),
			"--election-timeout", strconv.FormatInt(cfg.election.Milliseconds(), 10),
		)
		m.argv = append(m.argv, cfg.flags...)
		m.env = cfg.env
	}
	t.Cleanup(c.Close)
	t.Cleanup(func() {
		if t.Failed() {
			c.dumpLogs()
		}
	})
	for i := range c.Members {
		c.start(i)
	}
	c.WaitReady(t)
	return c
}

// Args returns the member's command line after the binary (and any
// wrapper), for running the same member by hand.
func (m *Member) Args() []string {
	for i, a := range m.argv {
		if strings.HasPrefix(a, "--") {
			return append([]string{}, m.argv[i:]...)
		}
	}
	return nil
}

// Endpoints are the client URLs of all members, in member order.
func (c *Cluster) Endpoints() []string {
	eps := make([]string, len(c.Members))
	for i, m := range c.Members {
		eps[i] = m.ClientURL
	}
	return eps
}

// Client returns a client of member i only, closed in t.Cleanup. Make a new
// one after restarting the member: a client's reconnect backoff may otherwise
// outlast the test's deadlines.
func (c *Cluster) Client(t testing.TB, i int) *clientv3.Client {
	t.Helper()
	return NewClient(t, c.Members[i].ClientURL)
}

// ClientAll returns a client of every member, closed in t.Cleanup.
func (c *Cluster) ClientAll(t testing.TB) *clientv3.Client {
	t.Helper()
	return NewClient(t, c.Endpoints()...)
}

// NewClient returns an official etcd v3 client of endpoints, closed in t.Cleanup.
func NewClient(t testing.TB, endpoints ...string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("client of %v: %v", endpoints, err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// Running reports whether member i's process is running.
func (c *Cluster) Running(i int) bool {
	m := c.Members[i]
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.proc == nil {
		return false
	}
	select {
	case <-m.proc.done:
		return false
	default:
		return true
	}
}

// PID is the process id of the member's running process, or 0 if it is not
// running. For a member started under a wrapper (WithWrapper,
// WithMemberWrapper) it is the wrapper's; see ServerPID.
func (m *Member) PID() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.proc == nil {
		return 0
	}
	select {
	case <-m.proc.done:
		return 0
	default:
		return m.proc.cmd.Process.Pid
	}
}

// ServerPID is the process id of the server itself: PID, or for a member
// started under a wrapper that forks the server (strace), the wrapper's
// deepest descendant (a wrapper that does not fork, like qemu-user, is the
// server). It fails if the member is not running.
func (m *Member) ServerPID() (int, error) {
	pid := m.PID()
	if pid == 0 {
		return 0, fmt.Errorf("%s is not running", m.Name)
	}
	if !m.wrapped {
		return pid, nil
	}
	return deepestDescendant(pid)
}

// Kill sends SIGKILL to member i and waits for it to exit: a crash, with no
// chance to flush anything.
func (c *Cluster) Kill(i int) {
	c.t.Helper()
	c.t.Logf("cluster: SIGKILL %s", c.Members[i].Name)
	if err := c.signal(i, syscall.SIGKILL, DefaultStopTimeout); err != nil {
		c.t.Fatalf("kill %s: %v", c.Members[i].Name, err)
	}
}

// KillAll sends SIGKILL to every running member at once, then waits for each
// to exit: a power cut of the whole cluster, with no member outliving another
// by more than the time it takes to send the signals.
func (c *Cluster) KillAll() {
	c.t.Helper()
	var procs []*process
	for i, m := range c.Members {
		m.mu.Lock()
		p := m.proc
		m.mu.Unlock()
		if p == nil || !c.Running(i) {
			continue
		}
		if err := signalProcess(p.cmd.Process, syscall.SIGKILL, m.wrapped); err != nil {
			c.t.Fatalf("kill %s: %v", m.Name, err)
		}
		procs = append(procs, p)
	}
	c.t.Logf("cluster: SIGKILL all %d running members", len(procs))
	deadline := time.After(DefaultStopTimeout)
	for _, p := range procs {
		select {
		case <-p.done:
		case <-deadline:
			c.t.Fatalf("kill all: a member is still running %v after SIGKILL", DefaultStopTimeout)
		}
	}
}

// Stop sends SIGTERM to member i and waits for it to exit, sending SIGKILL if
// it has not within DefaultStopTimeout.
func (c *Cluster) Stop(i int) {
	c.t.Helper()
	c.t.Logf("cluster: SIGTERM %s", c.Members[i].Name)
	if err := c.signal(i, syscall.SIGTERM, DefaultStopTimeout); err != nil {
		c.t.Logf("cluster: %s did not stop on SIGTERM (%v); killing it", c.Members[i].Name, err)
		c.Kill(i)
	}
}

// Restart starts member i again with the same command line and data dir. It
// does not wait: a restarted member may need a quorum before it can serve, so
// call WaitReady once enough members are up.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	if c.Running(i) {
		c.t.Fatalf("restart %s: still running", c.Members[i].Name)
	}
	c.start(i)
}

// WaitReady waits until each of the given members (all if none are given)
// answers a linearizable Get, at most the ready timeout, and fails the test
// if one does not or exits meanwhile.
func (c *Cluster) WaitReady(t testing.TB, members ...int) {
	t.Helper()
	if len(members) == 0 {
		for i := range c.Members {
			members = append(members, i)
		}
	}
	deadline := time.Now().Add(c.cfg.readyTimeout)
	for _, i := range members {
		m := c.Members[i]
		cli := NewClient(t, m.ClientURL)
		var lastErr error
		for {
			if !c.Running(i) {
				t.Fatalf("%s exited while waiting for it to serve: %v (log: %s)", m.Name, c.exitErr(i), m.LogPath)
			}
			ctx, cancel := context.WithTimeout(context.Background(), OpTimeout)
			_, lastErr = cli.Get(ctx, "/e2e/ready-probe")
			cancel()
			if lastErr == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s did not answer a linearizable Get within %v: %v", m.Name, c.cfg.readyTimeout, lastErr)
			}
			time.Sleep(100 * time.Millisecond)
		}
		cli.Close()
	}
	t.Logf("cluster: members %v ready", members)
}

// Leader returns the index of the member every running member names as leader
// (via Maintenance.Status), waiting up to the ready timeout for them to agree
// on a running one.
func (c *Cluster) Leader(t testing.TB) int {
	t.Helper()
	deadline := time.Now().Add(c.cfg.readyTimeout)
	var last string
	for {
		idx, why := c.leaderOnce(t)
		if idx >= 0 {
			return idx
		}
		last = why
		if time.Now().After(deadline) {
			t.Fatalf("no agreed leader within %v: %s", c.cfg.readyTimeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *Cluster) leaderOnce(t testing.TB) (int, string) {
	t.Helper()
	ids := map[uint64]int{}
	leaders := map[uint64]bool{}
	for i, m := range c.Members {
		if !c.Running(i) {
			continue
		}
		cli := NewClient(t, m.ClientURL)
		ctx, cancel := context.WithTimeout(context.Background(), OpTimeout)
		st, err := cli.Status(ctx, m.ClientURL)
		cancel()
		cli.Close()
		if err != nil {
			return -1, fmt.Sprintf("status of %s: %v", m.Name, err)
		}
		ids[st.Header.MemberId] = i
		leaders[st.Leader] = true
	}
	if len(leaders) != 1 {
		return -1, fmt.Sprintf("members disagree on the leader: %v", leaders)
	}
	for id := range leaders {
		if i, ok := ids[id]; ok {
			return i, ""
		}
		return -1, fmt.Sprintf("leader %x is not a running member", id)
	}
	return -1, "no running member"
}

// Close kills every running member. It is registered with t.Cleanup by
// StartCluster; calling it earlier is allowed.
func (c *Cluster) Close() {
	for i := range c.Members {
		if c.Running(i) {
			if err := c.signal(i, syscall.SIGKILL, DefaultStopTimeout); err != nil {
				c.t.Logf("cluster: close %s: %v", c.Members[i].Name, err)
			}
		}
	}
}

func (c *Cluster) start(i int) {
	c.t.Helper()
	m := c.Members[i]
	m.mu.Lock()
	defer m.mu.Unlock()
	log, err := os.OpenFile(m.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.t.Fatalf("start %s: %v", m.Name, err)
	}
	fmt.Fprintf(log, "=== %s start: %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(m.argv, " "))
	cmd := exec.Command(m.argv[0], m.argv[1:]...)
	cmd.Env = append(os.Environ(), m.env...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = sysProcAttr(m.wrapped)
	if err := cmd.Start(); err != nil {
		log.Close()
		c.t.Fatalf("start %s: %v", m.Name, err)
	}
	p := &process{cmd: cmd, log: log, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		fmt.Fprintf(log, "=== %s exit: %v\n", time.Now().Format(time.RFC3339Nano), p.err)
		log.Close()
		close(p.done)
	}()
	m.proc = p
	c.t.Logf("cluster: started %s (pid %d): %s", m.Name, cmd.Process.Pid, strings.Join(m.argv, " "))
}

func (c *Cluster) signal(i int, sig syscall.Signal, wait time.Duration) error {
	m := c.Members[i]
	m.mu.Lock()
	p := m.proc
	m.mu.Unlock()
	if p == nil {
		return errors.New("not running")
	}
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := signalProcess(p.cmd.Process, sig, m.wrapped); err != nil {
		return err
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(wait):
		return fmt.Errorf("still running %v after %v", wait, sig)
	}
}

func (c *Cluster) exitErr(i int) error {
	m := c.Members[i]
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.proc == nil {
		return errors.New("never started")
	}
	select {
	case <-m.proc.done:
		return m.proc.err
	default:
		return nil
	}
}

func (c *Cluster) dumpLogs() {
	for _, m := range c.Members {
		c.t.Logf("===== log of %s (%s), last %d KiB =====\n%s", m.Name, m.LogPath, logTail>>10, tail(m.LogPath, logTail))
	}
}

// tail returns at most the last n bytes of a file.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		f.Seek(st.Size()-n, io.SeekStart)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return err.Error()
	}
	return string(data)
}
