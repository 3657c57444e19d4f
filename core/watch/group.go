package watch

import (
	"bytes"
	"slices"
	"sort"
)

// kind is how a watcher selects keys, which decides where a group indexes it.
type kind uint8

const (
	kindKey    kind = iota + 1 // one key
	kindPrefix                 // every key starting with key ([key, prefixEnd(key)))
	kindRange                  // [key, end), or every key >= key when end is nil
)

// set is a set of watchers.
type set map[*watcher]struct{}

// group is a set of watchers indexed by what they watch, so that the
// watchers of one key are found without looking at the others: single keys
// and prefixes by map lookups (one per distinct prefix length), other ranges
// by a scan of those starting at or before the key. Prefix watches
// (etcdctl watch --prefix, the clients' WithPrefix) are the common range;
// a general range is rarer, and costs a comparison per range per event.
type group struct {
	members  set
	keys     map[string]set
	prefixes map[string]set
	// prefixLens counts the prefixes in prefixes by length: a key is looked
	// up once per distinct length.
	prefixLens map[int]int
	// ranges holds the kindRange watchers sorted by key.
	ranges []*watcher
}

func newGroup() *group {
	return &group{members: set{}, keys: map[string]set{}, prefixes: map[string]set{}, prefixLens: map[int]int{}}
}

func (g *group) size() int { return len(g.members) }

func (g *group) has(w *watcher) bool {
	_, ok := g.members[w]
	return ok
}

func (g *group) add(w *watcher) {
	if g.has(w) {
		panic("watch: watcher added to a group twice")
	}
	g.members[w] = struct{}{}
	switch w.kind {
	case kindKey:
		addTo(g.keys, string(w.key), w)
	case kindPrefix:
		if addTo(g.prefixes, string(w.key), w) {
			g.prefixLens[len(w.key)]++
		}
	case kindRange:
		i := sort.Search(len(g.ranges), func(i int) bool { return bytes.Compare(g.ranges[i].key, w.key) > 0 })
		g.ranges = slices.Insert(g.ranges, i, w)
	}
}

// remove takes w out of the group, reporting whether it was there.
func (g *group) remove(w *watcher) bool {
	if !g.has(w) {
		return false
	}
	delete(g.members, w)
	switch w.kind {
	case kindKey:
		removeFrom(g.keys, string(w.key), w)
	case kindPrefix:
		if removeFrom(g.prefixes, string(w.key), w) {
			if g.prefixLens[len(w.key)]--; g.prefixLens[len(w.key)] == 0 {
				delete(g.prefixLens, len(w.key))
			}
		}
	case kindRange:
		i := sort.Search(len(g.ranges), func(i int) bool { return bytes.Compare(g.ranges[i].key, w.key) >= 0 })
		for ; i < len(g.ranges); i++ {
			if g.ranges[i] == w {
				g.ranges = slices.Delete(g.ranges, i, i+1)
				break
			}
		}
	}
	return true
}

// addTo adds w to m[k], reporting whether m[k] is new.
func addTo(m map[string]set, k string, w *watcher) bool {
	s, ok := m[k]
	if !ok {
		s = set{}
		m[k] = s
	}
	s[w] = struct{}{}
	return !ok
}

// removeFrom removes w from m[k], reporting whether m[k] is now gone.
func removeFrom(m map[string]set, k string, w *watcher) bool {
	s := m[k]
	delete(s, w)
	if len(s) == 0 {
		delete(m, k)
		return true
	}
	return false
}

// match appends to buf the watchers of the group that watch key, each once,
// and returns the extended buf.
func (g *group) match(key []byte, buf []*watcher) []*watcher {
	for w := range g.keys[string(key)] {
		buf = append(buf, w)
	}
	for l := range g.prefixLens {
		if l <= len(key) {
			for w := range g.prefixes[string(key[:l])] {
				buf = append(buf, w)
			}
		}
	}
	n := sort.Search(len(g.ranges), func(i int) bool { return bytes.Compare(g.ranges[i].key, key) > 0 })
	for _, w := range g.ranges[:n] {
		if w.end == nil || bytes.Compare(key, w.end) < 0 {
			buf = append(buf, w)
		}
	}
	return buf
}

// prefixEnd is the end of the range of keys that start with prefix, as
// etcd's clientv3.GetPrefixRangeEnd; nil when there is none (every byte is
// 0xff).
func prefixEnd(prefix []byte) []byte {
	end := bytes.Clone(prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}
