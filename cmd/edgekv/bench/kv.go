package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Put returns the put load: every operation puts a key chosen from the key
// space.
func Put() Load { return putLoad{} }

type putLoad struct{}

func (putLoad) Name() string               { return "put" }
func (putLoad) validate(cfg *Config) error { return nil }
func (l putLoad) run(ctx context.Context, e *env) (*Report, error) {
	return runClosed(ctx, e, l.Name(), &kvOps{kind: opPut})
}

// RangeOptions configures the range load.
type RangeOptions struct {
	// Consistency is "l" (linearizable, the default) or "s" (serializable).
	Consistency string
	// NoPrefill skips writing the key space before measuring.
	NoPrefill bool
}

// Range returns the range load: every operation gets one key chosen from
// the key space, which is pre-filled first unless o.NoPrefill.
func Range(o RangeOptions) Load { return rangeLoad{o} }

type rangeLoad struct{ o RangeOptions }

func (rangeLoad) Name() string { return "range" }
func (l rangeLoad) validate(*Config) error {
	switch l.o.Consistency {
	case "", "l", "s":
		return nil
	}
	return fmt.Errorf("%w: --consistency must be l or s, not %q", ErrInvalidConfig, l.o.Consistency)
}
func (l rangeLoad) run(ctx context.Context, e *env) (*Report, error) {
	return runClosed(ctx, e, l.Name(), &kvOps{kind: opRange, serializable: l.o.Consistency == "s", prefill: !l.o.NoPrefill})
}

// TxnCAS returns the compare-and-swap load: every operation is
// If(Version(key) == v) Then(Put(key)) Else(Get(key)), where v is the
// version the client last saw of key. A failed compare counts as a
// successful operation; extra.cas_success and extra.cas_failure count the
// two branches.
func TxnCAS() Load { return casLoad{} }

type casLoad struct{}

func (casLoad) Name() string               { return "txn-cas" }
func (casLoad) validate(cfg *Config) error { return nil }
func (l casLoad) run(ctx context.Context, e *env) (*Report, error) {
	return runClosed(ctx, e, l.Name(), &kvOps{kind: opCAS})
}

// Delete returns the delete load: Total keys are pre-filled, then each is
// deleted once. extra.not_found counts deletes that found no key.
func Delete() Load { return deleteLoad{} }

type deleteLoad struct{}

func (deleteLoad) Name() string { return "delete" }
func (deleteLoad) validate(cfg *Config) error {
	if cfg.Total <= 0 {
		return fmt.Errorf("%w: delete needs --total, the number of keys to pre-fill and delete", ErrInvalidConfig)
	}
	if !keysFit(cfg.KeySize, uint64(cfg.Total)) {
		return fmt.Errorf("%w: --total %d keys do not fit in --key-size %d bytes", ErrInvalidConfig, cfg.Total, cfg.KeySize)
	}
	return nil
}
func (l deleteLoad) run(ctx context.Context, e *env) (*Report, error) {
	return runClosed(ctx, e, l.Name(), &kvOps{kind: opDelete, prefill: true})
}

type opKind int

const (
	opPut opKind = iota
	opRange
	opCAS
	opDelete
)

// kvOps is the opLoad of the single-key KV loads.
type kvOps struct {
	kind         opKind
	serializable bool
	prefill      bool
	cfg          *Config
	cluster      clusterCheck
	keys         *keys
	prefilled    uint64
}

// keyCount is the number of distinct keys the load touches.
func (l *kvOps) keyCount(cfg *Config) uint64 {
	if l.kind == opDelete {
		return uint64(cfg.Total)
	}
	return uint64(cfg.KeySpace)
}

func (l *kvOps) prepare(ctx context.Context, e *env, clients []*clientv3.Client) error {
	l.cfg, l.cluster = e.cfg, e.cluster
	l.keys = newKeys(e.cfg.KeySize, l.keyCount(e.cfg))
	if !l.prefill {
		return nil
	}
	l.prefilled = l.keyCount(e.cfg)
	return prefill(ctx, e, clients, l.keys, l.prefilled)
}

func (l *kvOps) worker(c int, cli *clientv3.Client) worker {
	r := newRand(c)
	w := &kvWorker{
		kind:      l.kind,
		c:         cli,
		cluster:   l.cluster,
		keys:      l.keys,
		pick:      keyPicker{space: uint64(l.cfg.KeySpace), seq: l.cfg.SequentialKeys, r: r},
		val:       randomValue(r, l.cfg.ValSize),
		mustExist: l.kind == opRange && l.prefill,
	}
	if l.serializable {
		w.opts = []clientv3.OpOption{clientv3.WithSerializable()}
	}
	if l.kind == opCAS {
		w.versions = make(map[uint64]int64)
	}
	return w
}

func (l *kvOps) finish(_ context.Context, e *env, _ []*clientv3.Client, workers []worker, r *Report) {
	if l.prefill {
		r.Extra["prefilled"] = int64(l.prefilled)
	}
	for _, w := range workers {
		w := w.(*kvWorker)
		switch l.kind {
		case opCAS:
			r.Extra["cas_success"] += w.casOK
			r.Extra["cas_failure"] += w.casFailed
		case opDelete:
			r.Extra["not_found"] += w.notFound
		}
	}
}

// errKeyMissing is a get of a pre-filled key that found nothing.
var errKeyMissing = errors.New("bench: pre-filled key not found")

// kvWorker is one client of a KV load.
type kvWorker struct {
	kind    opKind
	c       *clientv3.Client
	cluster clusterCheck
	keys    *keys
	pick    keyPicker
	val     string
	opts    []clientv3.OpOption

	mustExist bool
	versions  map[uint64]int64 // txn-cas: the last version seen of each key
	casOK     int64
	casFailed int64
	notFound  int64
}

func (w *kvWorker) do(ctx context.Context, i uint64) error {
	switch w.kind {
	case opPut:
		resp, err := w.c.Put(ctx, w.keys.key(w.pick.pick(i)), w.val)
		if err != nil {
			return err
		}
		return w.cluster.check(resp.Header)
	case opRange:
		resp, err := w.c.Get(ctx, w.keys.key(w.pick.pick(i)), w.opts...)
		if err != nil {
			return err
		}
		if err := w.cluster.check(resp.Header); err != nil {
			return err
		}
		if w.mustExist && len(resp.Kvs) == 0 {
			return errKeyMissing
		}
		return nil
	case opCAS:
		return w.cas(ctx, w.pick.pick(i))
	case opDelete:
		resp, err := w.c.Delete(ctx, w.keys.key(i))
		if err != nil {
			return err
		}
		if err := w.cluster.check(resp.Header); err != nil {
			return err
		}
		if resp.Deleted == 0 {
			w.notFound++
		}
		return nil
	}
	panic("bench: unknown operation")
}

func (w *kvWorker) cas(ctx context.Context, k uint64) error {
	key := w.keys.key(k)
	v := w.versions[k]
	resp, err := w.c.Txn(ctx).
		If(clientv3.Compare(clientv3.Version(key), "=", v)).
		Then(clientv3.OpPut(key, w.val)).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return err
	}
	if err := w.cluster.check(resp.Header); err != nil {
		return err
	}
	if resp.Succeeded {
		w.versions[k] = v + 1
		w.casOK++
		return nil
	}
	if len(resp.Responses) != 1 || resp.Responses[0].GetResponseRange() == nil {
		return fmt.Errorf("bench: txn-cas: the else branch returned %d responses, want one range", len(resp.Responses))
	}
	w.casFailed++
	seen := int64(0)
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
		seen = kvs[0].Version
	}
	w.versions[k] = seen
	return nil
}

// prefill puts keys [0, n) in transactions of up to 64 puts, spread over
// the clients; it is not timed.
func prefill(ctx context.Context, e *env, clients []*clientv3.Client, ks *keys, n uint64) error {
	cfg := e.cfg
	// Stay well below the default --max-request-bytes (1.5 MiB) and
	// --max-txn-ops (128).
	batch := uint64(max(1, min(64, (256<<10)/(cfg.KeySize+cfg.ValSize+16))))
	val := randomValue(newRand(len(clients)), cfg.ValSize)
	start := time.Now()
	cfg.logf("pre-filling %d keys of %d bytes (not timed)", n, cfg.ValSize)
	batches := int((n + batch - 1) / batch)
	err := spread(ctx, clients, batches, func(ctx context.Context, c *clientv3.Client, b int) error {
		first := uint64(b) * batch
		last := min(first+batch, n)
		ops := make([]clientv3.Op, 0, last-first)
		for i := first; i < last; i++ {
			ops = append(ops, clientv3.OpPut(ks.key(i), val))
		}
		octx, cancel := e.opContext(ctx)
		defer cancel()
		if _, err := c.Txn(octx).Then(ops...).Commit(); err != nil {
			return fmt.Errorf("bench: pre-filling keys %d-%d: %w", first, last-1, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	cfg.logf("pre-filled %d keys in %.2fs", n, time.Since(start).Seconds())
	return nil
}
