package snap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/edgekv/edgekv/core/codec"
)

// Errors.
var (
	ErrNoSnapshot = errors.New("snap: no snapshot")
	ErrCorrupt    = errors.New("snap: corrupt snapshot file")
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// MaxFileBytes bounds a .snap file; its data is only membership.
const MaxFileBytes = 64 << 20

type confStateRec struct {
	_              struct{} `cbor:",toarray"`
	Voters         []uint64
	Learners       []uint64
	VotersOutgoing []uint64
	LearnersNext   []uint64
	AutoLeave      bool
}

type snapshotRec struct {
	_         struct{} `cbor:",toarray"`
	Index     uint64
	Term      uint64
	ConfState confStateRec
	Data      []byte
}

// Encode returns the bytes of a .snap file for s.
func Encode(s *raftpb.Snapshot) ([]byte, error) {
	md := s.GetMetadata()
	cs := md.GetConfState()
	payload, err := codec.Marshal(snapshotRec{
		Index: md.GetIndex(),
		Term:  md.GetTerm(),
		ConfState: confStateRec{
			Voters:         cs.GetVoters(),
			Learners:       cs.GetLearners(),
			VotersOutgoing: cs.GetVotersOutgoing(),
			LearnersNext:   cs.GetLearnersNext(),
			AutoLeave:      cs.GetAutoLeave(),
		},
		Data: s.GetData(),
	})
	if err != nil {
		return nil, err
	}
	out := make([]byte, 4, 4+len(payload))
	binary.LittleEndian.PutUint32(out, crc32.Checksum(payload, crcTable))
	return append(out, payload...), nil
}

// Decode parses the bytes of a .snap file.
func Decode(b []byte) (*raftpb.Snapshot, error) {
	if len(b) < 4 {
		return nil, fmt.Errorf("%w: %d bytes", ErrCorrupt, len(b))
	}
	if len(b) > MaxFileBytes {
		return nil, fmt.Errorf("%w: %d bytes is over the limit", ErrCorrupt, len(b))
	}
	payload := b[4:]
	if crc32.Checksum(payload, crcTable) != binary.LittleEndian.Uint32(b) {
		return nil, fmt.Errorf("%w: crc mismatch", ErrCorrupt)
	}
	var r snapshotRec
	if err := codec.Unmarshal(payload, &r); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	cs := &raftpb.ConfState{
		Voters:         r.ConfState.Voters,
		Learners:       r.ConfState.Learners,
		VotersOutgoing: r.ConfState.VotersOutgoing,
		LearnersNext:   r.ConfState.LearnersNext,
	}
	if r.ConfState.AutoLeave {
		cs.AutoLeave = new(true)
	}
	return &raftpb.Snapshot{
		Data:     r.Data,
		Metadata: &raftpb.SnapshotMetadata{Index: new(r.Index), Term: new(r.Term), ConfState: cs},
	}, nil
}

// Snapshotter reads and writes the snapshot directory.
type Snapshotter struct {
	dir string
	lg  *slog.Logger
}

// New returns a Snapshotter for dir, creating it if needed, and removes
// the temporary files of writes a crash interrupted (nothing writes in
// dir yet).
func New(dir string, lg *slog.Logger) (*Snapshotter, error) {
	if lg == nil {
		lg = slog.Default()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".tmp") {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return nil, err
			}
		}
	}
	return &Snapshotter{dir: dir, lg: lg}, nil
}

func fileName(term, index uint64) string { return fmt.Sprintf("%016x-%016x.snap", term, index) }

// DBPath is where a received backend for the snapshot at index is kept
// until the member installs it.
func (s *Snapshotter) DBPath(index uint64) string {
	return filepath.Join(s.dir, fmt.Sprintf("%016x.snap.db", index))
}

// Save durably writes snap.
func (s *Snapshotter) Save(snap *raftpb.Snapshot) error {
	b, err := Encode(snap)
	if err != nil {
		return err
	}
	md := snap.GetMetadata()
	return writeFileSync(filepath.Join(s.dir, fileName(md.GetTerm(), md.GetIndex())), b)
}

// writeFileSync writes b to path through a temporary file, syncs it,
// renames it into place and syncs the directory.
func writeFileSync(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// SyncDir fsyncs a directory so that renames and creations in it last.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Load reads the snapshot with exactly this term and index.
func (s *Snapshotter) Load(term, index uint64) (*raftpb.Snapshot, error) {
	path := filepath.Join(s.dir, fileName(term, index))
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNoSnapshot, path)
	}
	if err != nil {
		return nil, err
	}
	snap, err := Decode(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if snap.GetMetadata().GetIndex() != index || snap.GetMetadata().GetTerm() != term {
		return nil, fmt.Errorf("%w: %s holds index %d term %d", ErrCorrupt, path,
			snap.GetMetadata().GetIndex(), snap.GetMetadata().GetTerm())
	}
	return snap, nil
}

// Purge removes .snap files other than the newest keep (all are kept if
// keep is negative), and received backends (.snap.db) for snapshots at or
// below installed, the index of the newest snapshot whose backend is in
// place. It leaves temporary files alone: they are writes in progress
// (Save, a backend being received), which may run meanwhile.
func (s *Snapshotter) Purge(keep int, installed uint64) error {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return err
	}
	var snaps []string
	for _, e := range ents {
		name := e.Name()
		switch {
		case strings.HasSuffix(name, ".snap"):
			snaps = append(snaps, name)
		case strings.HasSuffix(name, ".snap.db"):
			var idx uint64
			if _, err := fmt.Sscanf(name, "%016x.snap.db", &idx); err == nil && idx <= installed {
				if err := os.Remove(filepath.Join(s.dir, name)); err != nil {
					return err
				}
			}
		}
	}
	sort.Strings(snaps) // names sort by term, then index
	for keep >= 0 && len(snaps) > keep {
		if err := os.Remove(filepath.Join(s.dir, snaps[0])); err != nil {
			return err
		}
		snaps = snaps[1:]
	}
	return nil
}
