package torture

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anishathalye/porcupine"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

const (
	keyPrefix = "/torture/k"
	// leaseBase is the first of the fixed lease IDs the clients grant
	// and revoke; fixed IDs make grant and revoke checkable.
	leaseBase = 7000
	leaseTTL  = 3600 // seconds: leases never expire during a run
	opTimeout = 2 * time.Second
)

func keyName(i int) string           { return keyPrefix + strconv.Itoa(i) }
func valueName(v int) string         { return "v" + strconv.Itoa(v) }
func leaseID(i int) clientv3.LeaseID { return clientv3.LeaseID(leaseBase + i) }

// recorder collects the history of every client.
type recorder struct {
	start time.Time
	// values hands out unique values across clients.
	values atomic.Int64

	mu      sync.Mutex
	ops     []porcupine.Operation
	unknown int
	maxRev  int64 // the highest revision a client was answered with
}

func newRecorder() *recorder { return &recorder{start: time.Now()} }

func (r *recorder) now() int64 { return int64(time.Since(r.start)) }

func (r *recorder) add(client int, in input, call int64, out output) {
	ret := r.now()
	if out.unknown {
		ret = neverReturned
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if out.unknown {
		r.unknown++
	}
	r.maxRev = max(r.maxRev, out.rev)
	r.ops = append(r.ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
}

// lastRevision is the highest revision a client was answered with so far.
func (r *recorder) lastRevision() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.maxRev
}

func (r *recorder) history() (ops []porcupine.Operation, unknown int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]porcupine.Operation(nil), r.ops...), r.unknown
}

// runClient issues random operations through cli until ctx ends.
func runClient(ctx context.Context, id int, cli *clientv3.Client, rec *recorder, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, uint64(id)))
	for ctx.Err() == nil {
		in := randomInput(rng, rec)
		call := rec.now()
		octx, cancel := context.WithTimeout(ctx, opTimeout)
		out, keep := do(octx, cli, in)
		cancel()
		if ctx.Err() != nil && out.unknown {
			// Cut short by the end of the run: still an unknown outcome.
			rec.add(id, in, call, out)
			return
		}
		if keep {
			rec.add(id, in, call, out)
		}
		if out.unknown {
			// The member is likely down: do not pile up unknowns.
			time.Sleep(100 * time.Millisecond)
		}
	}
}

func randomInput(rng *rand.Rand, rec *recorder) input {
	newValue := func() int { return int(rec.values.Add(1)) }
	key := rng.IntN(numKeys)
	switch p := rng.IntN(100); {
	case p < 35:
		return input{kind: opGet, key: key}
	case p < 55:
		in := input{kind: opPut, key: key, value: newValue()}
		if rng.IntN(2) == 0 {
			in.lease = 1 + rng.IntN(numLeases)
		}
		return in
	case p < 63:
		return input{kind: opDelete, key: key}
	case p < 78:
		// Expect a value recently handed out, or absence.
		expect := 0
		if n := int(rec.values.Load()); n > 0 && rng.IntN(4) != 0 {
			expect = max(1, n-rng.IntN(8))
		}
		return input{kind: opCAS, key: key, expect: expect, value: newValue()}
	case p < 88:
		return input{kind: opMultiPut, key: key, key2: (key + 1 + rng.IntN(numKeys-1)) % numKeys, value: newValue()}
	case p < 94:
		return input{kind: opGrant, lease: rng.IntN(numLeases)}
	default:
		return input{kind: opRevoke, lease: rng.IntN(numLeases)}
	}
}

// do runs in and says what came back; keep is false for a failed read,
// which tells nothing.
func do(ctx context.Context, cli *clientv3.Client, in input) (out output, keep bool) {
	var err error
	switch in.kind {
	case opGet:
		var r *clientv3.GetResponse
		if r, err = cli.Get(ctx, keyName(in.key)); err == nil {
			out.rev = r.Header.Revision
			if len(r.Kvs) > 0 {
				out.value = parseValue(string(r.Kvs[0].Value))
				out.modRev = r.Kvs[0].ModRevision
			}
			return out, true
		}
		return output{}, false
	case opPut:
		var opts []clientv3.OpOption
		if in.lease != 0 {
			opts = append(opts, clientv3.WithLease(leaseID(in.lease-1)))
		}
		var r *clientv3.PutResponse
		if r, err = cli.Put(ctx, keyName(in.key), valueName(in.value), opts...); err == nil {
			return output{rev: r.Header.Revision}, true
		}
	case opDelete:
		var r *clientv3.DeleteResponse
		if r, err = cli.Delete(ctx, keyName(in.key)); err == nil {
			return output{rev: r.Header.Revision, deleted: r.Deleted}, true
		}
	case opCAS:
		k := keyName(in.key)
		cmp := clientv3.Compare(clientv3.CreateRevision(k), "=", 0)
		if in.expect != 0 {
			cmp = clientv3.Compare(clientv3.Value(k), "=", valueName(in.expect))
		}
		var r *clientv3.TxnResponse
		if r, err = cli.Txn(ctx).If(cmp).Then(clientv3.OpPut(k, valueName(in.value))).Commit(); err == nil {
			return output{rev: r.Header.Revision, succeeded: r.Succeeded}, true
		}
	case opMultiPut:
		var r *clientv3.TxnResponse
		if r, err = cli.Txn(ctx).Then(clientv3.OpPut(keyName(in.key), valueName(in.value)),
			clientv3.OpPut(keyName(in.key2), valueName(in.value))).Commit(); err == nil {
			return output{rev: r.Header.Revision, succeeded: r.Succeeded}, true
		}
	case opGrant:
		// The client's Grant picks no ID; the raw call does.
		var r *pb.LeaseGrantResponse
		r, err = pb.NewLeaseClient(cli.ActiveConnection()).LeaseGrant(ctx, &pb.LeaseGrantRequest{TTL: leaseTTL, ID: int64(leaseID(in.lease))})
		if err == nil && r.Error != "" {
			err = errors.New(r.Error)
		}
		if err == nil {
			return output{rev: r.Header.Revision}, true
		}
		err = rpctypes.Error(err)
	case opRevoke:
		// Not cli.Revoke: the client retries a revoke on another member
		// when the connection breaks, so a revoke applied just before a
		// kill comes back as "lease not found" from its retry. The raw
		// call is retried only when it was never sent.
		var r *pb.LeaseRevokeResponse
		if r, err = pb.NewLeaseClient(cli.ActiveConnection()).LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: int64(leaseID(in.lease))}); err == nil {
			return output{rev: r.Header.Revision}, true
		}
		err = rpctypes.Error(err)
	}
	switch {
	case errors.Is(err, rpctypes.ErrLeaseNotFound):
		return output{errLeaseNotFound: true}, true
	case errors.Is(err, rpctypes.ErrLeaseExist):
		return output{errLeaseExists: true}, true
	}
	return output{unknown: true}, true
}

func parseValue(s string) int {
	if len(s) < 2 || s[0] != 'v' {
		panic(fmt.Sprintf("value %q was not written by the workload", s))
	}
	n, err := strconv.Atoi(s[1:])
	if err != nil {
		panic(fmt.Sprintf("value %q was not written by the workload", s))
	}
	return n
}
