package server

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"

	"github.com/edgekv/edgekv/core/codec"
)

func TestProtoBytesField_FindsTheValueOfAnyPutRequest(t *testing.T) {
	for _, r := range []*pb.PutRequest{
		{Key: []byte("k"), Value: []byte("v")},
		{Key: bytes.Repeat([]byte("k"), 300), Value: bytes.Repeat([]byte("v"), 70000), Lease: 7, PrevKv: true},
		{Value: []byte("no key")},
		{Key: []byte("k"), Lease: -1, IgnoreLease: true, Value: bytes.Repeat([]byte{0}, 128)},
	} {
		body, err := proto.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		off, n, ok := protoBytesField(body, putValueField)
		if !ok || !bytes.Equal(body[off:off+n], r.Value) {
			t.Fatalf("%v: found %v at %d+%d", r, ok, off, n)
		}
		// Inside the CBOR envelope, the body ends the entry's data.
		data, err := codec.Marshal(request{ID: 1 << 50, Kind: kindPut, Body: body})
		if err != nil {
			t.Fatal(err)
		}
		bodyOff := len(data) - len(body)
		if !bytes.Equal(data[bodyOff:], body) {
			t.Fatal("the body does not end the envelope")
		}
	}
	// A repeated field: protobuf takes the last.
	b := protowireAppend(nil, 2, "first")
	b = protowireAppend(b, 1, "key")
	b = protowireAppend(b, 2, "second")
	var r pb.PutRequest
	if err := proto.Unmarshal(b, &r); err != nil || string(r.Value) != "second" {
		t.Fatalf("decoded %v, %v", &r, err)
	}
	if off, n, ok := protoBytesField(b, putValueField); !ok || string(b[off:off+n]) != "second" {
		t.Fatalf("found %q", b[off:off+n])
	}
	if _, _, ok := protoBytesField([]byte{0x12, 0x05, 'a'}, putValueField); ok {
		t.Fatal("found a field in a truncated message")
	}
}

func protowireAppend(b []byte, field byte, s string) []byte {
	return append(append(b, field<<3|2, byte(len(s))), s...)
}

// liveValues sums, over the first segments of a member's WAL, the values
// its store keeps there.
func liveValues(s *Server) (n int64) {
	for seq := uint64(0); seq < 1000; seq++ {
		c, _ := s.kv.LiveValues(seq)
		n += c
	}
	return n
}

func TestServer_LargeValuesAreWrittenOnceAndReadBackEverywhere(t *testing.T) {
	c := newTestClusterWith(t, 3, func(cfg *Config) {
		cfg.SnapshotCount = 40
		cfg.SnapshotCatchUpEntries = 10
		cfg.WAL.SegmentSize = 16 << 10
		cfg.WAL.MaxWALs = 2
	})
	rng := rand.New(rand.NewPCG(1, 2))
	want := map[string]string{}
	put := func(s *Server, k, v string) {
		retry(t, func() error {
			_, err := s.Put(ctxT(t), &pb.PutRequest{Key: []byte(k), Value: []byte(v)})
			return err
		})
		want[k] = v
	}
	value := func(i int) string {
		return fmt.Sprintf("%05d-%s", i, strings.Repeat(string(rune('a'+i%26)), 100+rng.IntN(300)))
	}
	check := func(s *Server) {
		t.Helper()
		resp, err := s.Range(ctxT(t), &pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l")})
		if err != nil {
			t.Fatalf("member %x: %v", s.ID(), err)
		}
		got := map[string]string{}
		for _, kv := range resp.Kvs {
			got[string(kv.Key)] = string(kv.Value)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("member %x reads %d keys, want %d (or different values)", s.ID(), len(got), len(want))
		}
	}
	vlogs := func(i int) []string {
		names, _ := filepath.Glob(filepath.Join(c.dirs[i], "member", "wal", "*.vlog"))
		return names
	}
	// Long-lived values: the segments they are in outlive the log's need
	// for them, as value segments.
	for i := range 150 {
		put(c.servers[i%3], fmt.Sprintf("k%03d", i), value(i))
	}
	kept := vlogs(0)
	if len(kept) == 0 {
		names, _ := filepath.Glob(filepath.Join(c.dirs[0], "member", "wal", "*"))
		t.Fatalf("no value segment kept for long-lived values: %v", baseNames(names))
	}
	c.stop(2) // falls behind: it will need a snapshot
	// Overwrites and compactions: the values in the value segments die,
	// the few left move into the backend, the segments are recycled.
	for i := range 450 {
		put(c.servers[i%2], fmt.Sprintf("k%03d", rng.IntN(150)), value(1000+i))
		if i%50 == 49 && i < 400 { // then snapshots, with their migrations

			retry(t, func() error {
				_, err := c.servers[0].Compact(ctxT(t), &pb.CompactionRequest{Revision: c.servers[0].kv.Rev()})
				return err
			})
		}
	}
	s0 := c.servers[0]
	if liveValues(s0) == 0 {
		t.Fatal("no value is stored as a pointer")
	}
	check(s0)
	for _, name := range kept {
		var seq uint64
		fmt.Sscanf(filepath.Base(name), "%x.vlog", &seq)
		if _, err := os.Stat(name); err == nil {
			n, b := s0.kv.LiveValues(seq)
			t.Fatalf("value segment %s holds %d values of %d bytes after most died: not migrated", filepath.Base(name), n, b)
		}
	}
	names, _ := filepath.Glob(filepath.Join(c.dirs[0], "member", "wal", "*"))
	t.Logf("member 0's WAL: %v", baseNames(names))

	c.start(2)
	s2 := c.servers[2]
	retry(t, func() error {
		if s2.applied.get() < s0.applied.get() {
			return fmt.Errorf("member 2 at %d, leader at %d", s2.applied.get(), s0.applied.get())
		}
		return nil
	})
	if s2.snapshotsInstalled.Load() == 0 {
		t.Fatal("member 2 caught up without a snapshot")
	}
	check(s2)
	h0, _, _, err := s0.kv.HashKV(0)
	if err != nil {
		t.Fatal(err)
	}
	h2, _, _, err := s2.kv.HashKV(0)
	if err != nil || h0 != h2 {
		t.Fatalf("hashes differ: %x vs %x (%v)", h0, h2, err)
	}
	// More writes, then every member restarts and reads the same.
	for i := range 60 {
		put(c.servers[i%3], fmt.Sprintf("k%03d", rng.IntN(150)), value(2000+i))
	}
	for i := range c.servers {
		c.stop(i)
	}
	for i := range c.servers {
		c.start(i)
	}
	for _, s := range c.servers {
		retry(t, func() error {
			_, err := s.Range(ctxT(t), &pb.RangeRequest{Key: []byte("k")})
			return err
		})
		check(s)
	}
	var hashes []uint32
	for _, s := range c.servers {
		h, _, _, err := s.kv.HashKV(0)
		if err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, h)
	}
	if hashes[0] != hashes[1] || hashes[0] != hashes[2] {
		t.Fatalf("hashes after restart: %x", hashes)
	}
}

func baseNames(paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = filepath.Base(p)
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			out[i] += "/"
		}
	}
	return out
}
