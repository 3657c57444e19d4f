package watch

import (
	"fmt"
	"sync"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// BenchmarkHub_Notify measures Notify of a one-event revision with 1, 1000
// and 10000 synced watchers, each on its own stream with a consumer:
//
//   - keys: every watcher watches its own key, the event matches one;
//   - prefix: every watcher watches the same prefix, the event goes to all
//     (the fan-out cost).
func BenchmarkHub_Notify(b *testing.B) {
	for _, shape := range []string{"keys", "prefix"} {
		for _, n := range []int{1, 1000, 10000} {
			b.Run(fmt.Sprintf("%s/watchers=%d", shape, n), func(b *testing.B) {
				benchmarkNotify(b, shape, n)
			})
		}
	}
}

func benchmarkNotify(b *testing.B, shape string, n int) {
	h := New(newMemSource(), 1, Options{})
	h.Start() // victims recover as in a server
	var wg sync.WaitGroup
	defer wg.Wait()
	defer h.Close() // closes the streams: the consumers end
	for i := range n {
		s := h.NewStream()
		r := Request{Key: fmt.Appendf(nil, "key/%05d", i)}
		if shape == "prefix" {
			r = Request{Key: []byte("key/"), RangeEnd: []byte("key0")}
		}
		if _, _, err := s.Watch(r); err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range s.Chan() {
			}
		}()
	}
	// Pre-built events, so that the loop measures Notify alone.
	evs := make([][]*mvccpb.Event, b.N)
	for i := range evs {
		rev := int64(i + 2)
		key := fmt.Appendf(nil, "key/%05d", i%n)
		evs[i] = []*mvccpb.Event{{Type: mvccpb.Event_PUT,
			Kv:     &mvccpb.KeyValue{Key: key, Value: []byte("value"), CreateRevision: 2, ModRevision: rev, Version: rev - 1},
			PrevKv: &mvccpb.KeyValue{Key: key, Value: []byte("value"), CreateRevision: 2, ModRevision: rev - 1, Version: rev - 2},
		}}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		h.Notify(int64(i+2), evs[i])
	}
	b.StopTimer()
	h.mu.Lock()
	b.ReportMetric(float64(len(h.victims)), "victims")
	h.mu.Unlock()
}
