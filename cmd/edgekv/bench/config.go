package bench

import (
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// Errors returned by Run. ErrAllFailed and ErrMissingEvents come with a
// Report; the others before any load ran.
var (
	// ErrInvalidConfig wraps every complaint of Config.Validate.
	ErrInvalidConfig = errors.New("bench: invalid configuration")
	// ErrNoEndpoint means no endpoint answered Status within DialTimeout.
	ErrNoEndpoint = errors.New("bench: no endpoint reachable")
	// ErrNoLeader means TargetLeader was set and no endpoint is the leader.
	ErrNoLeader = errors.New("bench: no endpoint is the leader")
	// ErrAllFailed means not a single measured operation succeeded.
	ErrAllFailed = errors.New("bench: every operation failed")
	// ErrStalled means operations had succeeded but then none did for
	// StallTimeout, so the run was stopped.
	ErrStalled = errors.New("bench: the run stalled")
	// ErrWrongCluster means a response came from another cluster than the
	// one preflight found: the endpoint now belongs to someone else (a
	// member was replaced on the same port), so the run stops at once.
	ErrWrongCluster = errors.New("bench: response from another cluster")
	// ErrMissingEvents means watch-latency watchers did not get every event.
	ErrMissingEvents = errors.New("bench: watch events missing")
)

// Config holds what every load shares; the names are those of the flags.
type Config struct {
	Endpoints []string
	// Conns is the number of gRPC connections, each its own clientv3.Client.
	Conns int
	// Clients is the number of concurrent clients, spread round-robin over
	// the connections.
	Clients int
	// Total is the number of operations; 0 means until Duration.
	Total int
	// Duration stops the run after that time; 0 means until Total.
	Duration time.Duration
	KeySize  int
	ValSize  int
	// KeySpace is the number of distinct keys (etcd's --key-space-size).
	KeySpace int
	// SequentialKeys chooses key i mod KeySpace for operation i instead of a
	// uniformly random one.
	SequentialKeys bool
	// TargetLeader sends everything to the leader's endpoint.
	TargetLeader bool
	// DialTimeout bounds the preflight Status calls.
	DialTimeout time.Duration
	// RequestTimeout bounds every operation; 0 means none.
	RequestTimeout time.Duration
	// Rate limits operations per second over all clients; 0 means none.
	Rate int
	// StallTimeout stops a run in which no operation succeeded for that
	// long; 0 means max(30s, 3 × RequestTimeout).
	StallTimeout time.Duration
	// Log receives progress lines; nil discards them.
	Log io.Writer
	// ProgressInterval is how often a progress line is written; 0 means
	// every 5 seconds.
	ProgressInterval time.Duration
}

// Validate reports the first unusable setting.
func (c *Config) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, a...)...)
	}
	switch {
	case len(c.Endpoints) == 0:
		return bad("--endpoints is empty")
	case c.Conns < 1:
		return bad("--conns must be at least 1, not %d", c.Conns)
	case c.Clients < 1:
		return bad("--clients must be at least 1, not %d", c.Clients)
	case c.Total < 0:
		return bad("--total must not be negative")
	case c.Duration < 0:
		return bad("--duration must not be negative")
	case c.Total == 0 && c.Duration == 0:
		return bad("one of --total and --duration must be positive")
	case c.KeySize < 1:
		return bad("--key-size must be at least 1, not %d", c.KeySize)
	case c.ValSize < 0:
		return bad("--val-size must not be negative")
	case c.KeySpace < 1:
		return bad("--key-space must be at least 1, not %d", c.KeySpace)
	case !keysFit(c.KeySize, uint64(c.KeySpace)):
		return bad("--key-space %d does not fit in --key-size %d bytes", c.KeySpace, c.KeySize)
	case c.Rate < 0:
		return bad("--rate must not be negative")
	case c.DialTimeout < 0 || c.RequestTimeout < 0 || c.StallTimeout < 0:
		return bad("timeouts must not be negative")
	}
	for _, ep := range c.Endpoints {
		if strings.TrimSpace(ep) == "" {
			return bad("--endpoints has an empty entry")
		}
	}
	return nil
}

// keysFit reports whether n distinct indexes fit in size-byte keys.
func keysFit(size int, n uint64) bool {
	if size >= 8 {
		return true
	}
	return n <= uint64(1)<<(8*size)
}

// maxOps is the number of operation numbers a run may hand out.
func (c *Config) maxOps() uint64 {
	if c.Total > 0 {
		return uint64(c.Total)
	}
	return math.MaxUint64
}

func (c *Config) logf(format string, a ...any) {
	if c.Log != nil {
		fmt.Fprintf(c.Log, "bench: "+format+"\n", a...)
	}
}
