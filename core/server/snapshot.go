package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/edgekv/edgekv/core/codec"
	"github.com/edgekv/edgekv/persist/snap"
	"github.com/edgekv/edgekv/persist/wal"
)

// snapshotData is the application part of a Raft snapshot: the membership
// as of the snapshot index. The key-value state is the backend file itself.
type snapshotData struct {
	_       struct{} `cbor:",toarray"`
	Members []Member
}

// raftStorage is what the Raft node persists through: the WAL, and the
// snapshot files followed by a WAL marker. Snapshots are saved from two
// goroutines: the append goroutine saves the ones Raft installs (sent by
// the leader), the snapshot goroutine the ones this member takes. mu
// orders them, so that a snapshot taken at an index below one installed
// meanwhile is dropped rather than moving the WAL's marker back.
type raftStorage struct {
	wal  *wal.WAL
	snap *snap.Snapshotter
	mu   sync.Mutex
	last uint64 // index of the last snapshot saved since start
}

func (r *raftStorage) Save(hs *raftpb.HardState, ents []*raftpb.Entry) error {
	return r.wal.Save(hs, ents)
}

// SaveSnapshot saves a snapshot Raft installs.
func (r *raftStorage) SaveSnapshot(s *raftpb.Snapshot) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.save(s)
}

// saveTaken saves a snapshot this member took, unless one at its index or
// above was saved meanwhile; it reports whether it saved it.
func (r *raftStorage) saveTaken(s *raftpb.Snapshot) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s.GetMetadata().GetIndex() <= r.last {
		return false, nil
	}
	return true, r.save(s)
}

// save writes the snapshot file first and the WAL marker second: on
// restart a marker always finds its file. The caller holds mu.
func (r *raftStorage) save(s *raftpb.Snapshot) error {
	if err := r.snap.Save(s); err != nil {
		return err
	}
	md := s.GetMetadata()
	if err := r.wal.SaveSnapshot(wal.SnapshotMarker{Index: md.GetIndex(), Term: md.GetTerm()}); err != nil {
		return err
	}
	r.last = max(r.last, md.GetIndex())
	return nil
}

// applyState is what the apply goroutine tracks besides the backend: the
// configuration as of the last applied entry, for snapshots.
type applyState struct {
	index     uint64
	term      uint64
	confState *raftpb.ConfState
	snapIndex uint64 // index of the last snapshot taken or installed
}

func (st *applyState) applyConfChange(cc *raftpb.ConfChange) {
	cs := st.confState
	id := cc.GetNodeId()
	cs.Voters = slices.DeleteFunc(cs.Voters, func(v uint64) bool { return v == id })
	cs.Learners = slices.DeleteFunc(cs.Learners, func(v uint64) bool { return v == id })
	switch cc.GetType() {
	case raftpb.ConfChangeAddNode:
		cs.Voters = append(cs.Voters, id)
	case raftpb.ConfChangeAddLearnerNode:
		cs.Learners = append(cs.Learners, id)
	}
	slices.Sort(cs.Voters)
	slices.Sort(cs.Learners)
}

// snapJob is a snapshot the apply goroutine took: the Raft metadata and
// membership as of index, which the backend holds once committed.
type snapJob struct {
	index, term uint64
	confState   *raftpb.ConfState
	data        []byte // snapshotData
}

// maybeSnapshot takes a snapshot when enough entries were applied since the
// last one, and hands it to the snapshot goroutine to make durable, so
// that applying goes on meanwhile (on an SD card the backend commit, the
// snapshot file and the WAL marker are five syncs, about 100 ms). Once a
// snapshot is saved, it moves values out of the WAL segments the log no
// longer needs, which writes the store and so happens here. It runs on the
// apply goroutine.
func (s *Server) maybeSnapshot() {
	if index := s.snapSaved.Swap(0); index != 0 {
		if err := s.migrateValues(index); err != nil {
			s.cfg.Fatal(err)
			return
		}
	}
	st := &s.ast
	// While the one before waits for the snapshot goroutine, the next
	// batch tries again. Only this goroutine sends, so the send below
	// does not block.
	if st.index-st.snapIndex < s.cfg.SnapshotCount || len(s.snapc) == cap(s.snapc) {
		return
	}
	data, err := codec.Marshal(snapshotData{Members: s.members.all()})
	if err != nil {
		s.cfg.Fatal(err)
		return
	}
	s.snapc <- snapJob{index: st.index, term: st.term, confState: cloneConfState(st.confState), data: data}
	st.snapIndex = st.index
}

// snapshotLoop saves the snapshots the apply goroutine takes, one at a
// time, each under snapMu.
func (s *Server) snapshotLoop() {
	defer s.wg.Done()
	for {
		select {
		case job := <-s.snapc:
			s.snapMu.Lock()
			err := s.saveSnapshot(job)
			s.snapMu.Unlock()
			if err != nil {
				s.cfg.Fatal(err)
				return
			}
		case <-s.stopc:
			return
		}
	}
}

// saveSnapshot makes a snapshot durable, then compacts the in-memory log
// and purges old files. A snapshot that one Raft installed meanwhile has
// overtaken is dropped.
func (s *Server) saveSnapshot(job snapJob) error {
	// The backend must hold everything up to the snapshot index before the
	// WAL entries below it may go.
	if err := s.kv.ForceCommit(); err != nil {
		return fmt.Errorf("committing the backend before a snapshot: %w", err)
	}
	sn, err := s.raftLog.CreateSnapshot(job.index, job.confState, job.data)
	if errors.Is(err, raft.ErrSnapOutOfDate) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("creating snapshot at %d: %w", job.index, err)
	}
	saved, err := s.storage.saveTaken(sn)
	if err != nil {
		return fmt.Errorf("saving snapshot at %d: %w", job.index, err)
	}
	if !saved {
		return nil
	}
	if job.index > s.cfg.SnapshotCatchUpEntries {
		compactTo := job.index - s.cfg.SnapshotCatchUpEntries
		if err := s.raftLog.Compact(compactTo); err != nil && !errors.Is(err, raft.ErrCompacted) {
			s.lg.Warn("compacting the raft log", "index", compactTo, "err", err)
		}
	}
	if _, err := s.wal.PurgeBefore(job.index); err != nil {
		if errors.Is(err, wal.ErrFailed) {
			return fmt.Errorf("purging write-ahead log segments: %w", err)
		}
		s.lg.Warn("purging write-ahead log segments", "err", err)
	}
	if err := s.snaps.Purge(s.cfg.MaxSnapshots, job.index); err != nil {
		s.lg.Warn("purging snapshot files", "err", err)
	}
	s.snapSaved.Store(job.index)
	s.snapshotsSaved.Add(1)
	s.lg.Info("saved snapshot", "index", job.index, "term", job.term)
	return nil
}

func cloneConfState(cs *raftpb.ConfState) *raftpb.ConfState {
	return &raftpb.ConfState{Voters: slices.Clone(cs.Voters), Learners: slices.Clone(cs.Learners)}
}

// onSendSnapshot is called on the Raft goroutine with a MsgSnap; the apply
// goroutine builds the snapshot to send.
func (s *Server) onSendSnapshot(m *raftpb.Message) {
	select {
	case s.snapSendc <- m:
	default:
		s.node.ReportSnapshot(m.GetTo(), raft.SnapshotFailure)
	}
}

// sendSnapshot sends the backend as it is now, with Raft metadata rewritten
// to the applied index it holds (etcd's "merged" snapshot): the follower
// then continues from there. Runs on the apply goroutine, so that the
// backend, the applied index and the membership agree.
func (s *Server) sendSnapshot(m *raftpb.Message) {
	if err := s.kv.ForceCommit(); err != nil {
		s.cfg.Fatal(fmt.Errorf("committing the backend before sending a snapshot: %w", err))
		return
	}
	db, size, ci, err := s.kv.Snapshot()
	if err != nil {
		s.lg.Error("reading the backend for a snapshot", "err", err)
		s.node.ReportSnapshot(m.GetTo(), raft.SnapshotFailure)
		return
	}
	data, err := codec.Marshal(snapshotData{Members: s.members.all()})
	if err != nil {
		db.Close()
		s.node.ReportSnapshot(m.GetTo(), raft.SnapshotFailure)
		return
	}
	st := &s.ast
	if ci != st.index {
		s.lg.Warn("backend and applied index disagree; sending the backend's", "backend", ci, "applied", st.index)
	}
	out := &raftpb.Message{
		Type: raftpb.MsgSnap.Enum(), To: m.To, From: m.From, Term: m.Term,
		Snapshot: &raftpb.Snapshot{
			Data: data,
			Metadata: &raftpb.SnapshotMetadata{
				Index: new(st.index), Term: new(st.term), ConfState: cloneConfState(st.confState),
			},
		},
	}
	s.lg.Info("sending snapshot", "to", fmt.Sprintf("%x", m.GetTo()), "index", st.index, "bytes", size)
	s.transport.SendSnapshot(out, db, size)
}

// ReceiveSnapshot stores a backend sent by the leader, durably, before its
// MsgSnap reaches Raft (the transport calls it).
func (s *Server) ReceiveSnapshot(_ context.Context, m *raftpb.Message, size int64, db io.Reader) error {
	index := m.GetSnapshot().GetMetadata().GetIndex()
	path := s.snaps.DBPath(index)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	n, err := io.Copy(f, db)
	if err == nil && n != size {
		err = fmt.Errorf("received %d of %d bytes", n, size)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	s.lg.Info("received snapshot", "index", index, "bytes", size)
	return snap.SyncDir(filepath.Dir(path))
}

// installSnapshot replaces the backend with the one received for snapshot
// sn and adopts its membership. Runs on the apply goroutine.
func (s *Server) installSnapshot(sn *raftpb.Snapshot) {
	md := sn.GetMetadata()
	if md.GetIndex() <= s.ast.index {
		return
	}
	// Not while a snapshot of the backend being replaced is saved.
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	if err := s.replaceBackend(md.GetIndex()); err != nil {
		s.cfg.Fatal(fmt.Errorf("installing snapshot %d: %w", md.GetIndex(), err))
		return
	}
	if err := s.adoptSnapshot(sn); err != nil {
		s.cfg.Fatal(err)
		return
	}
	s.watch.Restore(s.kv.Rev())
	if err := s.recoverLeases(); err != nil {
		s.cfg.Fatal(fmt.Errorf("installing snapshot %d: %w", md.GetIndex(), err))
		return
	}
	s.applied.set(md.GetIndex())
	s.snapshotsInstalled.Add(1)
	s.lg.Info("installed snapshot", "index", md.GetIndex(), "term", md.GetTerm())
}

// replaceBackend swaps in the received backend for index. mvcc checks the
// file before it replaces anything, so a bad file leaves the old backend.
func (s *Server) replaceBackend(index uint64) error {
	src := s.snaps.DBPath(index)
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("the backend for snapshot %d is missing: %w", index, err)
	}
	if err := s.kv.Restore(src); err != nil {
		return err
	}
	if ci := s.kv.ConsistentIndex(); ci < index {
		return fmt.Errorf("the received backend holds index %d, below the snapshot's %d", ci, index)
	}
	return nil
}

// adoptSnapshot sets the apply state and membership from a snapshot.
func (s *Server) adoptSnapshot(sn *raftpb.Snapshot) error {
	md := sn.GetMetadata()
	var data snapshotData
	if err := codec.Unmarshal(sn.GetData(), &data); err != nil {
		return fmt.Errorf("decoding snapshot %d: %w", md.GetIndex(), err)
	}
	s.ast.index, s.ast.term, s.ast.snapIndex = md.GetIndex(), md.GetTerm(), md.GetIndex()
	s.ast.confState = cloneConfState(md.GetConfState())
	s.members.reset(data.Members)
	for _, m := range data.Members {
		if m.ID != s.id && len(m.PeerURLs) > 0 {
			if err := s.transport.AddPeer(m.ID, m.PeerURLs[0]); err != nil {
				s.lg.Error("cannot reach member", "peer", fmt.Sprintf("%x", m.ID), "err", err)
			}
		}
	}
	return nil
}
