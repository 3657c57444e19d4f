package backend

import (
	"bytes"
	"iter"

	"github.com/google/btree"
	bolt "go.etcd.io/bbolt"
)

// entry is one uncommitted write: a value, or a deletion.
type entry struct {
	key     []byte
	value   []byte
	deleted bool
}

func lessEntry(a, b entry) bool { return bytes.Compare(a.key, b.key) < 0 }

// bufferDegree is small: every Publish makes the next writes copy the
// nodes they touch, so small nodes copy less.
const bufferDegree = 8

// buffer holds uncommitted writes, per bucket, ordered by key: the
// writer's work buffer (the writes not yet handed to a commit), or the
// committing buffer (those of the commit in progress). The work buffer is
// mutated in place; a published buffer is a copy-on-write clone of it and
// is never mutated again, so readers (and the committing goroutine) use it
// without locks.
type buffer struct {
	buckets map[string]*btree.BTreeG[entry]
}

var emptyBuffer = &buffer{}

func newBuffer() *buffer { return &buffer{buckets: map[string]*btree.BTreeG[entry]{}} }

// set records a write in the working buffer.
func (b *buffer) set(bucket []byte, e entry) {
	t := b.buckets[string(bucket)]
	if t == nil {
		t = btree.NewG(bufferDegree, lessEntry)
		b.buckets[string(bucket)] = t
	}
	t.ReplaceOrInsert(e)
}

// clone is an immutable snapshot of the working buffer. Only the writer
// calls it (btree's Clone must not run concurrently with itself or with
// writes to the tree it clones).
func (b *buffer) clone() *buffer {
	c := &buffer{buckets: make(map[string]*btree.BTreeG[entry], len(b.buckets))}
	for name, t := range b.buckets {
		c.buckets[name] = t.Clone()
	}
	return c
}

// get looks key up: found reports whether the buffer knows the key at all
// (value nil and found true: deleted). A nil buffer knows nothing.
func (b *buffer) get(bucket, key []byte) (value []byte, found bool) {
	if b == nil {
		return nil, false
	}
	t := b.buckets[string(bucket)]
	if t == nil {
		return nil, false
	}
	e, ok := t.Get(entry{key: key})
	if !ok {
		return nil, false
	}
	if e.deleted {
		return nil, true
	}
	return e.value, true
}

// entries iterates the buffered writes of bucket in [from, to) in key
// order; nil if there are none.
func (b *buffer) entries(bucket, from, to []byte) iter.Seq[entry] {
	if b == nil {
		return nil
	}
	t := b.buckets[string(bucket)]
	if t == nil || t.Len() == 0 {
		return nil
	}
	return func(visit func(entry) bool) {
		switch {
		case from == nil && to == nil:
			t.Ascend(visit)
		case from == nil:
			t.AscendLessThan(entry{key: to}, visit)
		case to == nil:
			t.AscendGreaterOrEqual(entry{key: from}, visit)
		default:
			t.AscendRange(entry{key: from}, entry{key: to}, visit)
		}
	}
}

// mergeEntries merges two ordered entry sequences; on equal keys upper
// wins. Either may be nil.
func mergeEntries(upper, lower iter.Seq[entry]) iter.Seq[entry] {
	switch {
	case lower == nil:
		return upper
	case upper == nil:
		return lower
	}
	return func(yield func(entry) bool) {
		next, stop := iter.Pull(lower)
		defer stop()
		le, lok := next()
		stopped := false
		upper(func(ue entry) bool {
			for lok && bytes.Compare(le.key, ue.key) < 0 {
				if !yield(le) {
					stopped = true
					return false
				}
				le, lok = next()
			}
			if lok && bytes.Equal(le.key, ue.key) {
				le, lok = next()
			}
			if !yield(ue) {
				stopped = true
				return false
			}
			return true
		})
		for !stopped && lok {
			if !yield(le) {
				return
			}
			le, lok = next()
		}
	}
}

// overlay iterates the keys of [from, to) (nil from: from the first key;
// nil to: to the last) of base with the buffered writes of bucket in
// layers laid over it, the first layer on top: a buffered value replaces
// the committed (or lower) one, a buffered deletion hides it. base may be
// nil (an empty bucket); layers may be nil.
func overlay(bucket []byte, base *bolt.Bucket, from, to []byte, layers ...*buffer) iter.Seq2[[]byte, []byte] {
	var buffered iter.Seq[entry]
	for i := len(layers) - 1; i >= 0; i-- {
		buffered = mergeEntries(layers[i].entries(bucket, from, to), buffered)
	}
	return func(yield func(k, v []byte) bool) {
		var (
			c      *bolt.Cursor
			ck, cv []byte
		)
		if base != nil {
			c = base.Cursor()
			if from == nil {
				ck, cv = c.First()
			} else {
				ck, cv = c.Seek(from)
			}
		}
		inRange := func(k []byte) bool { return k != nil && (to == nil || bytes.Compare(k, to) < 0) }
		stopped := false
		visit := func(e entry) bool {
			for inRange(ck) && bytes.Compare(ck, e.key) < 0 {
				if !yield(ck, cv) {
					stopped = true
					return false
				}
				ck, cv = c.Next()
			}
			if ck != nil && bytes.Equal(ck, e.key) {
				ck, cv = c.Next()
			}
			if e.deleted {
				return true
			}
			if !yield(e.key, e.value) {
				stopped = true
				return false
			}
			return true
		}
		if buffered != nil {
			buffered(visit)
		}
		if stopped {
			return
		}
		for inRange(ck) {
			if !yield(ck, cv) {
				return
			}
			ck, cv = c.Next()
		}
	}
}
