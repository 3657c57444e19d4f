package server

import (
	"crypto/sha1"
	"encoding/binary"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// Member is one member of the cluster as the log records it.
type Member struct {
	_          struct{} `cbor:",toarray"`
	ID         uint64
	Name       string
	PeerURLs   []string
	ClientURLs []string
	IsLearner  bool
}

// MemberID computes a member's ID the way etcd does for an initial cluster:
// the first 8 bytes of SHA-1 over the sorted peer URLs and the cluster token.
// The same flags therefore give the same IDs as etcd.
func MemberID(peerURLs []string, token string) uint64 {
	urls := slices.Clone(peerURLs)
	sort.Strings(urls)
	b := []byte(strings.Join(urls, ""))
	b = append(b, token...)
	h := sha1.Sum(b)
	return binary.BigEndian.Uint64(h[:8])
}

// ClusterID computes the cluster ID from its member IDs as etcd does.
func ClusterID(ids []uint64) uint64 {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	b := make([]byte, 8*len(ids))
	for i, id := range ids {
		binary.BigEndian.PutUint64(b[8*i:], id)
	}
	h := sha1.Sum(b)
	return binary.BigEndian.Uint64(h[:8])
}

// ParseInitialCluster parses etcd's --initial-cluster syntax
// "name1=url1,name1=url2,name2=url3" into name -> peer URLs.
func ParseInitialCluster(s string) (map[string][]string, error) {
	out := map[string][]string{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, url, ok := strings.Cut(part, "=")
		if !ok || name == "" || url == "" {
			return nil, fmt.Errorf("--initial-cluster: %q is not name=url", part)
		}
		out[name] = append(out[name], url)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--initial-cluster is empty")
	}
	return out, nil
}

// membership is the applied cluster membership. It is written from the Raft
// goroutine (conf changes) and the apply goroutine (attributes) and read by
// RPC handlers.
type membership struct {
	mu      sync.RWMutex
	members map[uint64]*Member
}

func (m *membership) set(mem Member) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.members == nil {
		m.members = map[uint64]*Member{}
	}
	if old, ok := m.members[mem.ID]; ok && len(mem.ClientURLs) == 0 {
		mem.ClientURLs = old.ClientURLs
	}
	c := mem
	m.members[mem.ID] = &c
}

func (m *membership) setClientURLs(id uint64, name string, urls []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if mem, ok := m.members[id]; ok {
		mem.ClientURLs = slices.Clone(urls)
		if name != "" {
			mem.Name = name
		}
	}
}

// all returns a copy of every member, ordered by ID.
func (m *membership) all() []Member {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]Member, 0, len(m.members))
	for _, mem := range m.members {
		c := *mem
		c.PeerURLs = slices.Clone(mem.PeerURLs)
		c.ClientURLs = slices.Clone(mem.ClientURLs)
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// reset replaces the membership, as a snapshot does.
func (m *membership) reset(members []Member) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.members = map[uint64]*Member{}
	for _, mem := range members {
		c := mem
		m.members[mem.ID] = &c
	}
}

func (m *membership) remove(id uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.members, id)
}

func (m *membership) get(id uint64) (Member, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	mem, ok := m.members[id]
	if !ok {
		return Member{}, false
	}
	return *mem, true
}

// list returns the members ordered by ID, as protobuf.
func (m *membership) list() []*pb.Member {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]*pb.Member, 0, len(m.members))
	for _, mem := range m.members {
		out = append(out, &pb.Member{
			ID:         mem.ID,
			Name:       mem.Name,
			PeerURLs:   slices.Clone(mem.PeerURLs),
			ClientURLs: slices.Clone(mem.ClientURLs),
			IsLearner:  mem.IsLearner,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
