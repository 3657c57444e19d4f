package rpc

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/edgekv/edgekv/core/watch"
)

// WatchBackend is what the Watch service needs from a member.
type WatchBackend interface {
	// Watchable is the member's watch hub.
	Watchable() *watch.Hub
	// WatchHeader is a response header at revision rev, with the member's
	// cluster ID, member ID and Raft term.
	WatchHeader(rev int64) *pb.ResponseHeader
	// Leader is the ID of the member's leader, 0 when it knows none, and
	// ElectionTimeout its election timeout: a stream that requires a
	// leader is refused without one, and ended once the member has been
	// without one for maxNoLeaderTimeouts election timeouts, as in etcd.
	Leader() uint64
	ElectionTimeout() time.Duration
}

// maxNoLeaderTimeouts is how many election timeouts without a leader end
// the streams that require one (etcd's maxNoLeaderCnt).
const maxNoLeaderTimeouts = 3

// ctrlBufLen bounds the created and canceled responses waiting for the send
// loop (etcd's ctrlStreamBufLen).
const ctrlBufLen = 128

// watchServer is etcd's Watch service over the member's watch hub: one gRPC
// stream multiplexes any number of watchers, as in etcd's v3rpc.
type watchServer struct {
	pb.UnimplementedWatchServer
	b  WatchBackend
	lg *slog.Logger
	// maxResponseBytes is the size above which a watcher that asked for
	// fragments gets its responses split (etcd: --max-request-bytes plus
	// the gRPC overhead allowance).
	maxResponseBytes int

	mu sync.Mutex
	// noLeader is closed when the streams that require a leader must end;
	// a new one then replaces it.
	noLeader chan struct{}
	stopc    chan struct{}
	// The monitor starts with the first stream and stops with the server.
	monitorOnce, stopOnce sync.Once
	monitorDone           chan struct{}
}

func newWatchServer(b WatchBackend, lg *slog.Logger, maxResponseBytes int) *watchServer {
	return &watchServer{b: b, lg: lg, maxResponseBytes: maxResponseBytes,
		noLeader: make(chan struct{}), stopc: make(chan struct{}), monitorDone: make(chan struct{})}
}

// stop stops the leader monitor.
func (s *watchServer) stop() {
	s.stopOnce.Do(func() {
		close(s.stopc)
		s.monitorOnce.Do(func() { close(s.monitorDone) }) // never started
		<-s.monitorDone
	})
}

// monitorLeader checks for a leader every election timeout and ends the
// streams that require one after maxNoLeaderTimeouts checks without, as
// etcd's monitorLeader.
func (s *watchServer) monitorLeader() {
	defer close(s.monitorDone)
	period := s.b.ElectionTimeout()
	if period <= 0 {
		period = time.Second // etcd's default election timeout
	}
	t := time.NewTicker(period)
	defer t.Stop()
	missed := 0
	for {
		select {
		case <-t.C:
		case <-s.stopc:
			return
		}
		if s.b.Leader() != 0 {
			missed = 0
			continue
		}
		if missed++; missed >= maxNoLeaderTimeouts {
			s.mu.Lock()
			close(s.noLeader)
			s.noLeader = make(chan struct{})
			s.mu.Unlock()
		}
	}
}

// requiresLeader reports whether the client asked (clientv3's
// WithRequireLeader) that the stream end when the member has no leader.
func requiresLeader(ctx context.Context) bool {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return false
	}
	v := md.Get(rpctypes.MetadataRequireLeaderKey)
	return len(v) > 0 && v[0] == rpctypes.MetadataHasLeader
}

// watchStream is one gRPC Watch stream: recvLoop turns requests into hub
// calls and control responses (created, canceled); sendLoop sends those and
// the hub's responses, holding back a watcher's responses until its created
// response has gone out.
type watchStream struct {
	srv  *watchServer
	grpc pb.Watch_WatchServer
	hub  *watch.Hub
	ws   *watch.Stream
	ctrl chan *pb.WatchResponse

	mu       sync.Mutex
	fragment map[int64]bool // watchers that asked for fragmented responses

	closec   chan struct{}
	sendDone chan struct{}
	sendErr  error // why sendLoop ended; read after sendDone
}

func (s *watchServer) Watch(stream pb.Watch_WatchServer) error {
	s.monitorOnce.Do(func() { go s.monitorLeader() })
	var noLeader <-chan struct{} // nil: the stream does not require a leader
	if requiresLeader(stream.Context()) {
		if s.b.Leader() == 0 {
			return rpctypes.ErrGRPCNoLeader
		}
		s.mu.Lock()
		noLeader = s.noLeader
		s.mu.Unlock()
	}
	hub := s.b.Watchable()
	sws := &watchStream{
		srv:      s,
		grpc:     stream,
		hub:      hub,
		ws:       hub.NewStream(),
		ctrl:     make(chan *pb.WatchResponse, ctrlBufLen),
		fragment: map[int64]bool{},
		closec:   make(chan struct{}),
		sendDone: make(chan struct{}),
	}
	go func() {
		defer close(sws.sendDone)
		sws.sendErr = sws.sendLoop()
	}()
	// recvLoop is not waited for: Recv may block past the end of the
	// stream's context; it ends with the stream.
	errc := make(chan error, 1)
	go func() {
		if err := sws.recvLoop(); err != nil {
			errc <- err
		}
	}()

	var err error
	select {
	case err = <-errc:
		// recvLoop ended: nothing sends on ctrl any more.
		close(sws.ctrl)
	case <-stream.Context().Done():
		err = stream.Context().Err()
	case <-noLeader:
		err = rpctypes.ErrGRPCNoLeader
	case <-sws.sendDone:
		switch {
		case stream.Context().Err() != nil:
			err = stream.Context().Err()
		case sws.sendErr != nil:
			err = sws.sendErr
		default:
			err = rpctypes.ErrGRPCStopped // the hub closed: the member stops
		}
	}
	if errors.Is(err, context.Canceled) {
		err = rpctypes.ErrGRPCWatchCanceled
	}
	sws.ws.Close()
	close(sws.closec)
	<-sws.sendDone
	return err
}

func (sws *watchStream) header(rev int64) *pb.ResponseHeader { return sws.srv.b.WatchHeader(rev) }

// control queues a created or canceled response; false if the stream ended.
func (sws *watchStream) control(wr *pb.WatchResponse) bool {
	select {
	case sws.ctrl <- wr:
		return true
	case <-sws.closec:
		return false
	}
}

func (sws *watchStream) recvLoop() error {
	for {
		req, err := sws.grpc.Recv()
		if errors.Is(err, io.EOF) {
			// The client closed its side; its watchers go on until the
			// stream ends, as in etcd.
			return nil
		}
		if err != nil {
			return err
		}
		switch uv := req.RequestUnion.(type) {
		case *pb.WatchRequest_CreateRequest:
			if uv.CreateRequest != nil && !sws.create(uv.CreateRequest) {
				return nil
			}
		case *pb.WatchRequest_CancelRequest:
			if uv.CancelRequest == nil {
				continue
			}
			id := uv.CancelRequest.WatchId
			if err := sws.ws.Cancel(id); err != nil {
				continue // unknown ID: etcd answers nothing
			}
			sws.mu.Lock()
			delete(sws.fragment, id)
			sws.mu.Unlock()
			if !sws.control(&pb.WatchResponse{Header: sws.header(sws.hub.Rev()), WatchId: id, Canceled: true}) {
				return nil
			}
		case *pb.WatchRequest_ProgressRequest:
			if uv.ProgressRequest != nil {
				sws.ws.RequestProgress()
			}
		default:
			// An unknown request does not end the stream, as in etcd.
			sws.srv.lg.Debug("ignoring an unknown watch request", "type", uv)
		}
	}
}

// create adds a watcher and queues its created response (created and
// canceled, with the reason, if it cannot be). It returns false if the
// stream ended.
func (sws *watchStream) create(c *pb.WatchCreateRequest) bool {
	if c.StartRevision < 0 {
		return sws.control(&pb.WatchResponse{Header: sws.header(sws.hub.Rev()), WatchId: watch.InvalidWatchID,
			Created: true, Canceled: true, CancelReason: rpctypes.ErrCompacted.Error()})
	}
	r := watch.Request{ID: c.WatchId, Key: c.Key, RangeEnd: c.RangeEnd, StartRev: c.StartRevision,
		PrevKV: c.PrevKv, ProgressNotify: c.ProgressNotify}
	for _, f := range c.Filters {
		switch f {
		case pb.WatchCreateRequest_NOPUT:
			r.NoPut = true
		case pb.WatchCreateRequest_NODELETE:
			r.NoDelete = true
		}
	}
	id, rev, err := sws.ws.Watch(r)
	wr := &pb.WatchResponse{WatchId: id, Created: true}
	if err != nil {
		rev = sws.hub.Rev()
		wr.Canceled, wr.CancelReason = true, err.Error()
	} else if c.Fragment {
		sws.mu.Lock()
		sws.fragment[id] = true
		sws.mu.Unlock()
	}
	wr.Header = sws.header(rev)
	return sws.control(wr)
}

// sendLoop sends the control responses and the hub's responses. A
// watcher's responses wait until its created response is sent, as etcd's
// do. It returns the send error that ended it, or nil.
func (sws *watchStream) sendLoop() error {
	announced := map[int64]bool{}
	pending := map[int64][]*pb.WatchResponse{}
	for {
		select {
		case r, ok := <-sws.ws.Chan():
			if !ok {
				return nil
			}
			wr := &pb.WatchResponse{
				Header:          sws.header(r.Revision),
				WatchId:         r.WatchID,
				Events:          r.Events,
				CompactRevision: r.CompactRevision,
				Canceled:        r.Canceled,
			}
			// A progress notification for the whole stream (-1) needs no
			// announcement.
			if r.WatchID != watch.InvalidWatchID && !announced[r.WatchID] {
				pending[r.WatchID] = append(pending[r.WatchID], wr)
				continue
			}
			if err := sws.send(wr); err != nil {
				return err
			}
		case c, ok := <-sws.ctrl:
			if !ok {
				return nil
			}
			if err := sws.grpc.Send(c); err != nil {
				return err
			}
			if c.Canceled && c.WatchId != watch.InvalidWatchID {
				delete(announced, c.WatchId)
				delete(pending, c.WatchId)
				continue
			}
			if c.Created {
				announced[c.WatchId] = true
				for _, wr := range pending[c.WatchId] {
					if err := sws.send(wr); err != nil {
						return err
					}
				}
				delete(pending, c.WatchId)
			}
		case <-sws.closec:
			return nil
		}
	}
}

// send sends a hub response, in fragments if its watcher asked for them.
func (sws *watchStream) send(wr *pb.WatchResponse) error {
	sws.mu.Lock()
	fragment := sws.fragment[wr.WatchId]
	sws.mu.Unlock()
	if fragment {
		return sendFragments(wr, sws.srv.maxResponseBytes, sws.grpc.Send)
	}
	return sws.grpc.Send(wr)
}

// sendFragments sends wr, split into responses of at most maxBytes (each
// with at least one event) if it is larger and has several events, as
// etcd's sendFragments: all but the last have Fragment set.
func sendFragments(wr *pb.WatchResponse, maxBytes int, send func(*pb.WatchResponse) error) error {
	if proto.Size(wr) < maxBytes || len(wr.Events) < 2 {
		return send(wr)
	}
	for idx := 0; idx < len(wr.Events); {
		// A new response each time: send may keep it after it returns.
		cur := &pb.WatchResponse{
			Header:          wr.Header,
			WatchId:         wr.WatchId,
			Created:         wr.Created,
			Canceled:        wr.Canceled,
			CompactRevision: wr.CompactRevision,
			CancelReason:    wr.CancelReason,
			Fragment:        true,
			Events:          make([]*mvccpb.Event, 0, len(wr.Events)-idx),
		}
		for _, ev := range wr.Events[idx:] {
			cur.Events = append(cur.Events, ev)
			if len(cur.Events) > 1 && proto.Size(cur) >= maxBytes {
				cur.Events = cur.Events[:len(cur.Events)-1]
				break
			}
			idx++
		}
		if idx == len(wr.Events) {
			cur.Fragment = false
		}
		if err := send(cur); err != nil {
			return err
		}
	}
	return nil
}
