package torture

import (
	"fmt"
	"hash/maphash"
	"math"
	"strings"

	"github.com/anishathalye/porcupine"
)

// The keys and leases the workload uses: few, so that operations collide.
const (
	numKeys   = 4
	numLeases = 2
)

// opKind is what a client called.
type opKind uint8

const (
	opGet opKind = iota
	opPut
	opDelete
	opCAS      // txn: if value(key) == expect (0: key absent) then put else nothing
	opMultiPut // txn: put key and key2 in one revision
	opGrant    // lease grant with a fixed ID
	opRevoke   // lease revoke: deletes the keys attached, in one revision
)

func (k opKind) String() string {
	return [...]string{"get", "put", "delete", "cas", "multiput", "grant", "revoke"}[k]
}

// input is one call. Values are small integers standing for unique
// strings ("v<n>"); 0 means absent.
type input struct {
	kind   opKind
	key    int
	key2   int // opMultiPut
	value  int // opPut, opCAS (new), opMultiPut
	expect int // opCAS
	lease  int // opPut: 0 none, else lease index + 1; opGrant, opRevoke: lease index
}

// output is what came back. unknown: an error that does not tell whether
// the operation took effect (timeout, member gone); such an operation may
// take effect at any point after its call, or never.
type output struct {
	unknown bool
	// rev is the response header's revision.
	rev int64
	// opGet: the key's value (0: absent) and mod revision.
	value  int
	modRev int64
	// opDelete: keys deleted. opCAS: succeeded.
	deleted   int64
	succeeded bool
	// errLeaseNotFound / errLeaseExists: etcd refused the call, and nothing changed.
	errLeaseNotFound, errLeaseExists bool
}

type keyState struct {
	value           int // 0: absent
	modRev, version int64
	lease           int // 0: none, else lease index + 1
}

// state is the store the clients see: a comparable value, so porcupine
// compares states with ==.
type state struct {
	rev    int64
	keys   [numKeys]keyState
	leases [numLeases]bool
}

// initialState is a fresh cluster: revision 1, nothing stored.
func initialState() state { return state{rev: 1} }

// step applies in to s as etcd would, and says whether out is what etcd
// could have answered.
func step(s state, in input, out output) (bool, state) {
	next, want := apply(s, in)
	if out.unknown {
		// It took effect here (if it never did, porcupine puts it last,
		// where its effect no longer matters).
		return true, next
	}
	return out == want, next
}

// apply returns the state after in and the answer etcd gives.
func apply(s state, in input) (state, output) {
	switch in.kind {
	case opGet:
		k := s.keys[in.key]
		return s, output{rev: s.rev, value: k.value, modRev: k.modRev}
	case opPut:
		if in.lease != 0 && !s.leases[in.lease-1] {
			return s, output{errLeaseNotFound: true}
		}
		s.rev++
		s.put(in.key, in.value, in.lease)
		return s, output{rev: s.rev}
	case opDelete:
		if s.keys[in.key].value == 0 {
			return s, output{rev: s.rev}
		}
		s.rev++
		s.keys[in.key] = keyState{}
		return s, output{rev: s.rev, deleted: 1}
	case opCAS:
		if s.keys[in.key].value != in.expect {
			return s, output{rev: s.rev}
		}
		s.rev++
		s.put(in.key, in.value, 0)
		return s, output{rev: s.rev, succeeded: true}
	case opMultiPut:
		s.rev++
		s.put(in.key, in.value, 0)
		s.put(in.key2, in.value, 0)
		return s, output{rev: s.rev, succeeded: true}
	case opGrant:
		if s.leases[in.lease] {
			return s, output{errLeaseExists: true}
		}
		s.leases[in.lease] = true
		return s, output{rev: s.rev}
	case opRevoke:
		if !s.leases[in.lease] {
			return s, output{errLeaseNotFound: true}
		}
		s.leases[in.lease] = false
		attached := false
		for i := range s.keys {
			if s.keys[i].value != 0 && s.keys[i].lease == in.lease+1 {
				attached = true
			}
		}
		if attached {
			s.rev++
			for i := range s.keys {
				if s.keys[i].value != 0 && s.keys[i].lease == in.lease+1 {
					s.keys[i] = keyState{}
				}
			}
		}
		return s, output{rev: s.rev}
	}
	panic(fmt.Sprintf("unknown op %d", in.kind))
}

// put writes key at the current revision (s.rev is already the new one).
func (s *state) put(key, value, lease int) {
	k := s.keys[key]
	if k.value == 0 {
		k.version = 0
	}
	k.value, k.modRev, k.lease = value, s.rev, lease
	k.version++
	s.keys[key] = k
}

var hashSeed = maphash.MakeSeed()

// kvModel is etcd's key-value and lease semantics as porcupine checks them.
// Revisions are part of it: every answer's header revision must be the
// store's revision at the point the operation takes effect, which catches
// a stale read even where the stale value happens to equal the current one.
var kvModel = porcupine.Model{
	Init: func() any { return initialState() },
	Step: func(st, in, out any) (bool, any) {
		return step(st.(state), in.(input), out.(output))
	},
	Hash: func(st any) uint64 {
		return maphash.Comparable(hashSeed, st.(state))
	},
	DescribeOperation: func(in, out any) string { return describe(in.(input), out.(output)) },
	DescribeState: func(st any) string {
		s := st.(state)
		var b strings.Builder
		fmt.Fprintf(&b, "rev %d", s.rev)
		for i, k := range s.keys {
			if k.value != 0 {
				fmt.Fprintf(&b, " k%d=v%d@%d", i, k.value, k.modRev)
				if k.lease != 0 {
					fmt.Fprintf(&b, "(lease %d)", k.lease-1)
				}
			}
		}
		for i, l := range s.leases {
			if l {
				fmt.Fprintf(&b, " lease%d", i)
			}
		}
		return b.String()
	},
}

func describe(in input, out output) string {
	var call string
	switch in.kind {
	case opGet, opDelete:
		call = fmt.Sprintf("%s(k%d)", in.kind, in.key)
	case opPut:
		call = fmt.Sprintf("put(k%d, v%d, lease %d)", in.key, in.value, in.lease-1)
	case opCAS:
		call = fmt.Sprintf("cas(k%d, v%d -> v%d)", in.key, in.expect, in.value)
	case opMultiPut:
		call = fmt.Sprintf("multiput(k%d, k%d = v%d)", in.key, in.key2, in.value)
	case opGrant, opRevoke:
		call = fmt.Sprintf("%s(lease %d)", in.kind, in.lease)
	}
	switch {
	case out.unknown:
		return call + " -> ?"
	case out.errLeaseNotFound:
		return call + " -> lease not found"
	case out.errLeaseExists:
		return call + " -> lease exists"
	case in.kind == opGet:
		return fmt.Sprintf("%s -> v%d@%d (rev %d)", call, out.value, out.modRev, out.rev)
	case in.kind == opDelete:
		return fmt.Sprintf("%s -> %d deleted (rev %d)", call, out.deleted, out.rev)
	case in.kind == opCAS:
		return fmt.Sprintf("%s -> %v (rev %d)", call, out.succeeded, out.rev)
	default:
		return fmt.Sprintf("%s -> ok (rev %d)", call, out.rev)
	}
}

// neverReturned is the return time of an operation with an unknown
// outcome: it may take effect at any time after its call.
const neverReturned = math.MaxInt64
