package mvcc

import (
	"bufio"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// ioCounters reads this process's write counters from /proc/self/io:
// wchar (bytes handed to write syscalls) and write_bytes (bytes sent to
// the block layer, counted when the page cache is dirtied). ok is false
// where /proc/self/io does not exist.
func ioCounters() (wchar, writeBytes int64, ok bool) {
	f, err := os.Open("/proc/self/io")
	if err != nil {
		return 0, 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, value, found := strings.Cut(sc.Text(), ": ")
		if !found {
			continue
		}
		n, err := strconv.ParseInt(value, 10, 64)
		if err != nil {
			continue
		}
		switch name {
		case "wchar":
			wchar = n
		case "write_bytes":
			writeBytes = n
		}
	}
	return wchar, writeBytes, sc.Err() == nil
}

// BenchmarkApplyPut applies puts of 8-byte keys and 256-byte values, one
// Raft entry per Apply, and reports the bytes written and the commits per
// put. Informational: numbers for comparison come from `make bench`.
func BenchmarkApplyPut(b *testing.B) {
	for _, bc := range []struct {
		name string
		opts Options
	}{
		{"batched", Options{}},
		{"batched-events-without-prev", Options{EventPrevKV: func() bool { return false }}},
		{"commit-every-apply", Options{BatchLimit: 1}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s, err := Open(filepath.Join(b.TempDir(), "db"), bc.opts)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			const keys = 1 << 16
			reqs := putRequests(keys)
			index := uint64(0)
			commits0 := s.Commits()
			wchar0, wb0, ioOK := ioCounters()
			start := time.Now()
			b.ResetTimer()
			for i := range b.N {
				index++
				if _, err := s.Apply(1, []Op{{Index: index, Req: reqs[i%keys]}}); err != nil {
					b.Fatal(err)
				}
			}
			if err := s.ForceCommit(); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			elapsed := time.Since(start)
			b.ReportMetric(float64(s.Commits()-commits0)/float64(b.N), "commits/op")
			if ioOK {
				wchar1, wb1, _ := ioCounters()
				b.ReportMetric(float64(wchar1-wchar0)/float64(b.N), "written-B/op")
				b.ReportMetric(float64(wb1-wb0)/float64(b.N), "disk-B/op")
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "puts/s")
		})
	}
}

// putRequests returns puts of 256-byte values to n 8-byte keys.
func putRequests(n int) []*pb.PutRequest {
	value := make([]byte, 256)
	reqs := make([]*pb.PutRequest, n)
	for i := range reqs {
		key := make([]byte, 8)
		binary.BigEndian.PutUint64(key, uint64(i))
		reqs[i] = &pb.PutRequest{Key: key, Value: value}
	}
	return reqs
}

// BenchmarkApplyRandomPuts applies puts to random keys of 100,000 in
// Applies of 64, as a loaded member does (about 50 entries per Apply at
// 256 clients): each Apply then copies the index nodes its puts touch.
// ns/op, B/op and allocs/op are per put.
//
//	go test -run '^$' -bench ApplyRandomPuts -benchmem -count 6 ./core/mvcc/
func BenchmarkApplyRandomPuts(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "db"), Options{EventPrevKV: func() bool { return false }})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const keys, batch = 100000, 64
	reqs := putRequests(keys)
	index := uint64(0)
	ops := make([]Op, 0, batch)
	apply := func() {
		if _, err := s.Apply(1, ops); err != nil {
			b.Fatal(err)
		}
		ops = ops[:0]
	}
	for _, r := range reqs {
		index++
		ops = append(ops, Op{Index: index, Req: r})
		if len(ops) == batch {
			apply()
		}
	}
	apply()
	rng := rand.New(rand.NewPCG(1, 2))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		index++
		ops = append(ops, Op{Index: index, Req: reqs[rng.IntN(keys)]})
		if len(ops) == batch {
			apply()
		}
	}
	if len(ops) > 0 {
		apply()
	}
}
