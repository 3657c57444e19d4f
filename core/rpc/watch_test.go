package rpc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/edgekv/edgekv/core/mvcc"
	"github.com/edgekv/edgekv/core/watch"
)

// fakeHubs gives each fakeBackend of the other tests a hub without history.
var fakeHubs sync.Map // *fakeBackend -> *watch.Hub

func (f *fakeBackend) Watchable() *watch.Hub {
	h, ok := fakeHubs.Load(f)
	if !ok {
		h, _ = fakeHubs.LoadOrStore(f, watch.New(idleSource{}, 1, watch.Options{}))
	}
	return h.(*watch.Hub)
}

func (f *fakeBackend) WatchHeader(rev int64) *pb.ResponseHeader {
	return &pb.ResponseHeader{ClusterId: 11, MemberId: 22, Revision: rev, RaftTerm: 33}
}

func (f *fakeBackend) Leader() uint64 { return 1 }

func (f *fakeBackend) ElectionTimeout() time.Duration { return time.Second }

type idleSource struct{}

func (idleSource) History(int64, int64, int) ([]*mvccpb.Event, int64, error) { return nil, 2, nil }
func (idleSource) Range(*pb.RangeRequest) (*pb.RangeResponse, error)         { return &pb.RangeResponse{}, nil }
func (idleSource) CompactRev() int64                                         { return 0 }

// watchFake is a backend whose watch hub runs over a real MVCC store that
// the test writes to, as the server's apply loop does.
type watchFake struct {
	*fakeBackend
	t      *testing.T
	st     *mvcc.Store
	hub    *watch.Hub
	index  uint64
	leader atomic.Uint64
}

func newWatchFake(t *testing.T) *watchFake {
	t.Helper()
	st, err := mvcc.Open(filepath.Join(t.TempDir(), "db"), mvcc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h := watch.New(st, st.Rev(), watch.Options{})
	h.Start()
	t.Cleanup(func() {
		h.Close()
		st.Close()
	})
	f := &watchFake{fakeBackend: &fakeBackend{kvs: map[string]string{}}, t: t, st: st, hub: h}
	f.leader.Store(1)
	return f
}

func (f *watchFake) Watchable() *watch.Hub { return f.hub }

func (f *watchFake) Leader() uint64 { return f.leader.Load() }

func (f *watchFake) ElectionTimeout() time.Duration { return 10 * time.Millisecond }

// apply applies req to the store and notifies the hub; it returns the
// revision.
func (f *watchFake) apply(req any) int64 {
	f.t.Helper()
	f.index++
	res, err := f.st.Apply(1, []mvcc.Op{{Index: f.index, Req: req}})
	if err != nil || res[0].Err != nil {
		f.t.Fatalf("apply %v: %v %v", req, err, res[0].Err)
	}
	if evs := res[0].Events; len(evs) > 0 {
		f.hub.Notify(evs[0].Kv.ModRevision, evs)
	}
	return f.st.Rev()
}

func (f *watchFake) put(key, val string) int64 {
	return f.apply(&pb.PutRequest{Key: []byte(key), Value: []byte(val)})
}

// watchClient opens a Watch stream to addr.
func watchClient(t *testing.T, addr string) pb.Watch_WatchClient {
	t.Helper()
	return watchClientCtx(t, addr, context.Background())
}

// watchClientCtx opens a Watch stream to addr with ctx's metadata.
func watchClientCtx(t *testing.T, addr string, ctx context.Context) pb.Watch_WatchClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	t.Cleanup(cancel)
	wc, err := pb.NewWatchClient(conn).Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return wc
}

func create(t *testing.T, wc pb.Watch_WatchClient, c *pb.WatchCreateRequest) {
	t.Helper()
	if err := wc.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: c}}); err != nil {
		t.Fatal(err)
	}
}

// summary writes a response as one line, header included.
func summary(r *pb.WatchResponse) string {
	var b strings.Builder
	h := r.Header
	fmt.Fprintf(&b, "id=%d hdr=%d/%d/%d/@%d", r.WatchId, h.ClusterId, h.MemberId, h.RaftTerm, h.Revision)
	if r.Created {
		b.WriteString(" created")
	}
	if r.Canceled {
		b.WriteString(" canceled")
	}
	if r.CancelReason != "" {
		fmt.Fprintf(&b, " reason=%q", r.CancelReason)
	}
	if r.CompactRevision != 0 {
		fmt.Fprintf(&b, " compact=%d", r.CompactRevision)
	}
	if r.Fragment {
		b.WriteString(" fragment")
	}
	for _, ev := range r.Events {
		fmt.Fprintf(&b, " %s:%s@%d", ev.Type, ev.Kv.Key, ev.Kv.ModRevision)
		if ev.PrevKv != nil {
			fmt.Fprintf(&b, "(prev %s)", ev.PrevKv.Value)
		}
	}
	return b.String()
}

func recvLine(t *testing.T, wc pb.Watch_WatchClient) string {
	t.Helper()
	r, err := wc.Recv()
	if err != nil {
		t.Fatalf("Recv: %v", err)
	}
	return summary(r)
}

func wantLines(t *testing.T, wc pb.Watch_WatchClient, want ...string) {
	t.Helper()
	for _, w := range want {
		if got := recvLine(t, wc); got != w {
			t.Fatalf("got  %s\nwant %s", got, w)
		}
	}
}

func TestWatch_CreateCancelProgressAndErrorsAreEtcds(t *testing.T) {
	f := newWatchFake(t)
	f.put("foo", "1") // 2
	f.put("foo", "2") // 3
	wc := watchClient(t, startServer(t, f))

	create(t, wc, &pb.WatchCreateRequest{Key: []byte("foo")})
	wantLines(t, wc, "id=0 hdr=11/22/33/@3 created")
	f.put("foo", "3") // 4
	wantLines(t, wc, "id=0 hdr=11/22/33/@4 PUT:foo@4")

	// From the past, with prev_kv and a filter, on a prefix.
	create(t, wc, &pb.WatchCreateRequest{Key: []byte("fo"), RangeEnd: []byte("fp"), StartRevision: 2, PrevKv: true,
		Filters: []pb.WatchCreateRequest_FilterType{pb.WatchCreateRequest_NODELETE}})
	wantLines(t, wc, "id=1 hdr=11/22/33/@4 created",
		"id=1 hdr=11/22/33/@4 PUT:foo@2 PUT:foo@3(prev 1) PUT:foo@4(prev 2)")
	f.apply(&pb.DeleteRangeRequest{Key: []byte("foo")}) // 5: filtered for watcher 1
	wantLines(t, wc, "id=0 hdr=11/22/33/@5 DELETE:foo@5")

	// etcd's refusals: created and canceled at once, watch ID -1.
	create(t, wc, &pb.WatchCreateRequest{Key: []byte("a"), WatchId: 1})
	wantLines(t, wc, `id=-1 hdr=11/22/33/@5 created canceled reason="mvcc: duplicate watch ID provided on the WatchStream"`)
	create(t, wc, &pb.WatchCreateRequest{Key: []byte("b"), RangeEnd: []byte("a")})
	wantLines(t, wc, `id=-1 hdr=11/22/33/@5 created canceled reason="mvcc: watcher range is empty"`)
	create(t, wc, &pb.WatchCreateRequest{Key: []byte("a"), StartRevision: -1})
	wantLines(t, wc, `id=-1 hdr=11/22/33/@5 created canceled reason="etcdserver: mvcc: required revision has been compacted"`)

	// A compacted start revision: created, then canceled with the
	// compaction revision (and header revision 0, as etcd).
	f.apply(&pb.CompactionRequest{Revision: 4})
	create(t, wc, &pb.WatchCreateRequest{Key: []byte("foo"), StartRevision: 3, WatchId: 7})
	wantLines(t, wc, "id=7 hdr=11/22/33/@5 created", "id=7 hdr=11/22/33/@0 canceled compact=4")

	// Progress for the stream: every watcher is synced (the compacted one
	// is over).
	if err := wc.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_ProgressRequest{ProgressRequest: &pb.WatchProgressRequest{}}}); err != nil {
		t.Fatal(err)
	}
	wantLines(t, wc, "id=-1 hdr=11/22/33/@5")

	// Cancel: answered; an unknown ID is not.
	for _, id := range []int64{42, 0} {
		if err := wc.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CancelRequest{CancelRequest: &pb.WatchCancelRequest{WatchId: id}}}); err != nil {
			t.Fatal(err)
		}
	}
	wantLines(t, wc, "id=0 hdr=11/22/33/@5 canceled")
	f.put("foo", "4") // 6: only watcher 1 is left
	wantLines(t, wc, "id=1 hdr=11/22/33/@6 PUT:foo@6")
}

func TestWatch_EndsWithServerStoppedWhenTheHubCloses(t *testing.T) {
	f := newWatchFake(t)
	wc := watchClient(t, startServer(t, f))
	create(t, wc, &pb.WatchCreateRequest{Key: []byte("foo")})
	wantLines(t, wc, "id=0 hdr=11/22/33/@1 created")
	f.hub.Close()
	_, err := wc.Recv()
	if got := rpctypes.Error(err); got.Error() != rpctypes.ErrStopped.Error() {
		t.Fatalf("got %v, want %v", err, rpctypes.ErrStopped)
	}
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("code %v, want Unavailable (clients retry elsewhere)", status.Code(err))
	}
}

func TestWatch_LargeResponsesAreFragmentedOnlyForWatchersThatAskIt(t *testing.T) {
	f := newWatchFake(t)
	big := strings.Repeat("v", 400<<10)
	for i := range 5 {
		f.put(fmt.Sprintf("k%d", i), big) // 2..6: 2 MB in all
	}
	addr := startServer(t, f) // fragments above 1 MiB + 512 KiB
	wc := watchClient(t, addr)
	create(t, wc, &pb.WatchCreateRequest{Key: []byte("k"), RangeEnd: []byte("l"), StartRevision: 1, Fragment: true})
	wantLines(t, wc, "id=0 hdr=11/22/33/@6 created")
	var parts []int
	for {
		r, err := wc.Recv()
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, len(r.Events))
		if size := proto.Size(r); size > (1<<20)+(512<<10)+(400<<10) {
			t.Fatalf("fragment of %d bytes", size)
		}
		if !r.Fragment {
			break
		}
	}
	if len(parts) < 2 || sum(parts) != 5 {
		t.Fatalf("fragments with %v events; want several, 5 in all", parts)
	}

	whole := watchClient(t, addr)
	create(t, whole, &pb.WatchCreateRequest{Key: []byte("k"), RangeEnd: []byte("l"), StartRevision: 1})
	wantLines(t, whole, "id=0 hdr=11/22/33/@6 created", "id=0 hdr=11/22/33/@6 PUT:k0@2 PUT:k1@3 PUT:k2@4 PUT:k3@5 PUT:k4@6")
}

func sum(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}

func TestSendFragments_SplitsAsEtcd(t *testing.T) {
	ev := func(i int) *mvccpb.Event {
		return &mvccpb.Event{Kv: &mvccpb.KeyValue{Key: fmt.Appendf(nil, "k%d", i), Value: bytes.Repeat([]byte("x"), 100), ModRevision: int64(i)}}
	}
	wr := &pb.WatchResponse{Header: &pb.ResponseHeader{Revision: 9}, WatchId: 3, Events: []*mvccpb.Event{ev(1), ev(2), ev(3), ev(4), ev(5)}}
	var got []*pb.WatchResponse
	send := func(r *pb.WatchResponse) error { got = append(got, r); return nil }
	if err := sendFragments(wr, 250, send); err != nil {
		t.Fatal(err)
	}
	var counts []int
	for i, r := range got {
		counts = append(counts, len(r.Events))
		if r.Fragment != (i < len(got)-1) || r.WatchId != 3 || r.Header.Revision != 9 {
			t.Fatalf("fragment %d: %v", i, summary(r))
		}
	}
	if fmt.Sprint(counts) != "[2 2 1]" {
		t.Fatalf("fragments of %v events, want [2 2 1]", counts)
	}
	// Small, or a single event: sent as is.
	got = nil
	if err := sendFragments(&pb.WatchResponse{Events: []*mvccpb.Event{ev(1)}}, 10, send); err != nil || len(got) != 1 || got[0].Fragment {
		t.Fatalf("single event: %v %v", got, err)
	}
}

// TestWatch_JSONGatewayStreams watches through the gateway's /v3/watch with
// a streaming HTTP POST, as curl does: one JSON result per line.
func TestWatch_JSONGatewayStreams(t *testing.T) {
	f := newWatchFake(t)
	addr := startServer(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/v3/watch",
		strings.NewReader(`{"create_request":{"key":"Zm9v","prev_kv":true}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	type result struct {
		Result struct {
			Header struct {
				Revision string `json:"revision"`
			} `json:"header"`
			WatchID string `json:"watch_id"`
			Created bool   `json:"created"`
			Events  []struct {
				Type string `json:"type"`
				Kv   struct {
					Key   []byte `json:"key"`
					Value []byte `json:"value"`
				} `json:"kv"`
				PrevKv *struct {
					Value []byte `json:"value"`
				} `json:"prev_kv"`
			} `json:"events"`
		} `json:"result"`
	}
	lines := bufio.NewReader(resp.Body)
	next := func() result {
		t.Helper()
		line, err := lines.ReadBytes('\n')
		if err != nil {
			t.Fatalf("reading the stream: %v (%q)", err, line)
		}
		var r result
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		return r
	}
	if r := next(); !r.Result.Created || r.Result.Header.Revision != "1" {
		t.Fatalf("first line: %+v", r)
	}
	f.put("foo", "bar")
	f.put("foo", "baz")
	for _, want := range []string{"bar", "baz"} {
		r := next()
		if len(r.Result.Events) != 1 || string(r.Result.Events[0].Kv.Value) != want {
			t.Fatalf("event line: %+v, want value %s", r, want)
		}
		if want == "baz" && (r.Result.Events[0].PrevKv == nil || string(r.Result.Events[0].PrevKv.Value) != "bar") {
			t.Fatalf("prev_kv missing: %+v", r)
		}
	}
}

// TestWatch_StreamsThatRequireALeaderEndWithoutOne: a stream opened with
// clientv3's WithRequireLeader (as etcdctl watch does) is refused by a
// member without a leader, and ended once the member has been without one
// for three election timeouts, with etcd's "no leader", so that the client
// goes to another member; other streams go on.
func TestWatch_StreamsThatRequireALeaderEndWithoutOne(t *testing.T) {
	f := newWatchFake(t)
	addr := startServer(t, f)
	requireLeader := metadata.AppendToOutgoingContext(context.Background(), rpctypes.MetadataRequireLeaderKey, rpctypes.MetadataHasLeader)

	f.leader.Store(0)
	refused := watchClientCtx(t, addr, requireLeader)
	if _, err := refused.Recv(); rpctypes.Error(err) != rpctypes.ErrNoLeader {
		t.Fatalf("without a leader: %v, want %v", err, rpctypes.ErrNoLeader)
	}

	f.leader.Store(1)
	strict := watchClientCtx(t, addr, requireLeader)
	create(t, strict, &pb.WatchCreateRequest{Key: []byte("k")})
	wantLines(t, strict, "id=0 hdr=11/22/33/@1 created")
	relaxed := watchClient(t, addr)
	create(t, relaxed, &pb.WatchCreateRequest{Key: []byte("k")})
	wantLines(t, relaxed, "id=0 hdr=11/22/33/@1 created")

	f.leader.Store(0)
	if _, err := strict.Recv(); rpctypes.Error(err) != rpctypes.ErrNoLeader {
		t.Fatalf("after losing the leader: %v, want %v", err, rpctypes.ErrNoLeader)
	}
	f.put("k", "v")
	wantLines(t, relaxed, "id=0 hdr=11/22/33/@2 PUT:k@2")
}
