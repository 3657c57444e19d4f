package torture

import (
	"testing"

	"github.com/anishathalye/porcupine"
)

// seq builds a history of operations that do not overlap, in order.
func seq(steps ...struct {
	in  input
	out output
}) []porcupine.Operation {
	var ops []porcupine.Operation
	for i, s := range steps {
		ret := int64(2*i + 1)
		if s.out.unknown {
			ret = neverReturned
		}
		ops = append(ops, porcupine.Operation{ClientId: i % 3, Input: s.in, Call: int64(2 * i), Output: s.out, Return: ret})
	}
	return ops
}

type io = struct {
	in  input
	out output
}

func TestModel_AcceptsEtcdsAnswers(t *testing.T) {
	h := seq(
		io{input{kind: opGet, key: 0}, output{rev: 1}},
		io{input{kind: opPut, key: 0, value: 1}, output{rev: 2}},
		io{input{kind: opGet, key: 0}, output{rev: 2, value: 1, modRev: 2}},
		io{input{kind: opCAS, key: 0, expect: 1, value: 2}, output{rev: 3, succeeded: true}},
		io{input{kind: opCAS, key: 0, expect: 1, value: 3}, output{rev: 3}},
		io{input{kind: opDelete, key: 1}, output{rev: 3}},
		io{input{kind: opPut, key: 1, value: 4, lease: 1}, output{errLeaseNotFound: true}},
		io{input{kind: opGrant, lease: 0}, output{rev: 3}},
		io{input{kind: opGrant, lease: 0}, output{errLeaseExists: true}},
		io{input{kind: opPut, key: 1, value: 4, lease: 1}, output{rev: 4}},
		io{input{kind: opMultiPut, key: 2, key2: 3, value: 5}, output{rev: 5, succeeded: true}},
		// Revoking the lease deletes k1 in one revision.
		io{input{kind: opRevoke, lease: 0}, output{rev: 6}},
		io{input{kind: opGet, key: 1}, output{rev: 6}},
		io{input{kind: opRevoke, lease: 0}, output{errLeaseNotFound: true}},
		io{input{kind: opDelete, key: 0}, output{rev: 7, deleted: 1}},
		io{input{kind: opGet, key: 3}, output{rev: 7, value: 5, modRev: 5}},
	)
	if !porcupine.CheckOperations(kvModel, h) {
		t.Fatal("a correct history was refused")
	}
}

func TestModel_RefusesAStaleRead(t *testing.T) {
	h := seq(
		io{input{kind: opPut, key: 0, value: 1}, output{rev: 2}},
		io{input{kind: opPut, key: 0, value: 2}, output{rev: 3}},
		io{input{kind: opGet, key: 0}, output{rev: 2, value: 1, modRev: 2}},
	)
	if porcupine.CheckOperations(kvModel, h) {
		t.Fatal("a stale read after a completed write was accepted")
	}
	// Same value, stale revision: still caught.
	h = seq(
		io{input{kind: opPut, key: 0, value: 1}, output{rev: 2}},
		io{input{kind: opPut, key: 1, value: 2}, output{rev: 3}},
		io{input{kind: opGet, key: 0}, output{rev: 2, value: 1, modRev: 2}},
	)
	if porcupine.CheckOperations(kvModel, h) {
		t.Fatal("a read at an old revision was accepted")
	}
}

func TestModel_LetsAnUnknownWriteTakeEffectLaterOrNever(t *testing.T) {
	taken := seq(
		io{input{kind: opPut, key: 0, value: 1}, output{unknown: true}},
		io{input{kind: opGet, key: 0}, output{rev: 1}},
		io{input{kind: opGet, key: 0}, output{rev: 2, value: 1, modRev: 2}},
	)
	if !porcupine.CheckOperations(kvModel, taken) {
		t.Fatal("an unknown put that took effect late was refused")
	}
	never := seq(
		io{input{kind: opPut, key: 0, value: 1}, output{unknown: true}},
		io{input{kind: opPut, key: 0, value: 2}, output{rev: 2}},
		io{input{kind: opGet, key: 0}, output{rev: 2, value: 2, modRev: 2}},
	)
	if !porcupine.CheckOperations(kvModel, never) {
		t.Fatal("an unknown put that never took effect was refused")
	}
	// But a value nobody wrote, or a lost acknowledged write, is caught.
	lost := seq(
		io{input{kind: opPut, key: 0, value: 1}, output{rev: 2}},
		io{input{kind: opGet, key: 0}, output{rev: 2}},
	)
	if porcupine.CheckOperations(kvModel, lost) {
		t.Fatal("a lost acknowledged write was accepted")
	}
}
