package wal

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
)

func FuzzDecodeRecord(f *testing.F) {
	hs, _ := encodeHardState(hardState(3, 2, 1))
	es, _ := appendEntryRecords(nil, ents(1, 1, 3), maxRecordLen-1)
	md, _ := encodeMetadata(testMD)
	snap, _ := encodeSnapshotForTest(7, 2)
	good := appendRecord(nil, recHardState, hs)
	f.Add(good)
	f.Add(es)
	f.Add(appendRecord(nil, recMetadata, md))
	f.Add(appendRecord(nil, recSnapshot, snap))
	f.Add(good[:len(good)-1])
	f.Add([]byte{})
	f.Add(make([]byte, 16))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		typ, payload, n, err := decodeRecord(b)
		if err != nil {
			return
		}
		if n < headerSize+1 || n > len(b) {
			t.Fatalf("n = %d for %d bytes", n, len(b))
		}
		if again := appendRecord(nil, typ, payload); !bytes.Equal(again, b[:n]) {
			t.Fatalf("re-encoding differs:\n%x\n%x", again, b[:n])
		}
		// Payload decoders must not panic on anything with a valid CRC.
		switch typ {
		case recMetadata:
			decodeMetadata(payload)
		case recEntries:
			decodeEntries(payload)
		case recHardState:
			decodeHardState(payload)
		case recSnapshot:
			decodeSnapshot(payload)
		}
	})
}

// FuzzOpen writes the fuzz bytes as the body of the only segment, after a
// valid metadata record. Open must not panic; if it succeeds, the WAL must
// take a Save and open again to the same state plus the new entry.
func FuzzOpen(f *testing.F) {
	md, _ := encodeMetadata(testMD)
	head := appendRecord(nil, recMetadata, md)
	hs, _ := encodeHardState(hardState(3, 2, 1))
	es, _ := appendEntryRecords(nil, ents(1, 1, 3), maxRecordLen-1)
	over, _ := appendEntryRecords(nil, ents(2, 2, 2), maxRecordLen-1)
	snap, _ := encodeSnapshotForTest(2, 1)
	body := append(append([]byte(nil), es...), appendRecord(nil, recHardState, hs)...)
	f.Add(body)
	f.Add(append(append([]byte(nil), es...), over...))
	f.Add(append(append([]byte(nil), es...), appendRecord(nil, recSnapshot, snap)...))
	f.Add(body[:len(body)-3])
	f.Add(append(body[:len(body)-3], make([]byte, 40)...))
	f.Add(append(append([]byte(nil), body...), 0, 0, 0, 0, 1))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, body []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, segmentName(0, 0))
		if err := os.WriteFile(path, append(append([]byte(nil), head...), body...), 0o600); err != nil {
			t.Fatal(err)
		}
		lg := slog.New(slog.NewTextHandler(io.Discard, nil))
		w, st, err := Open(dir, lg)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open failed without ErrCorrupt: %v", err)
			}
			return
		}
		next := uint64(1)
		if n := len(st.Entries); n > 0 {
			next = st.Entries[n-1].GetIndex() + 1
		} else if st.Snapshot.Index > 0 {
			next = st.Snapshot.Index + 1
		}
		if next == 0 { // index overflow; nothing can follow
			w.Close()
			return
		}
		add := ent(9, next, "fuzz")
		if err := w.Save(nil, []*raftpb.Entry{add}); err != nil {
			t.Fatalf("Save after Open: %v", err)
		}
		w.Close()
		w2, st2, err := Open(dir, lg)
		if err != nil {
			t.Fatalf("reopen after Save: %v", err)
		}
		defer w2.Close()
		checkEntries(t, st2.Entries, append(st.Entries, add))
		checkHardState(t, st2.HardState, st.HardState)
	})
}

// FuzzReplay frames the fuzz bytes into CRC-valid records, so that the
// fuzzer reaches the payload decoders and the replay rules, which a CRC
// would otherwise hide. Input: repeated [type, length, payload...]; what is
// left after the last whole chunk is appended raw. The replayer must not
// panic, and what it accepts must be a consecutive log.
func FuzzReplay(f *testing.F) {
	md, _ := encodeMetadata(testMD)
	chunk := func(typ byte, p []byte) []byte { return append([]byte{typ, byte(len(p))}, p...) }
	e1, _ := codecEntries(ents(1, 1, 3))
	e2, _ := codecEntries(ents(2, 2, 2))
	e3, _ := codecEntries(ents(2, 9, 9))
	hs, _ := encodeHardState(hardState(3, 2, 1))
	snap, _ := encodeSnapshotForTest(2, 1)
	f.Add(bytes.Join([][]byte{chunk(recEntries, e1), chunk(recEntries, e2), chunk(recHardState, hs)}, nil))
	f.Add(bytes.Join([][]byte{chunk(recEntries, e1), chunk(recSnapshot, snap), chunk(recEntries, e3)}, nil))
	f.Add(bytes.Join([][]byte{chunk(recEntries, e1), chunk(recMetadata, md), {0, 0, 0}}, nil))
	f.Fuzz(func(t *testing.T, in []byte) {
		data := appendRecord(nil, recMetadata, md)
		for len(in) >= 2 && int(in[1]) <= len(in)-2 {
			typ, n := in[0], int(in[1])
			data = appendRecord(data, typ, in[2:2+n])
			in = in[2+n:]
		}
		data = append(data, in...)
		var r replayer
		res, err := r.scan("fuzz.wal", data, true)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("scan failed without ErrCorrupt: %v", err)
			}
			return
		}
		if res.end > len(data) {
			t.Fatalf("end %d past %d bytes", res.end, len(data))
		}
		st := r.state()
		for i, e := range st.Entries {
			if e.GetIndex() <= st.Snapshot.Index || (i > 0 && e.GetIndex() != st.Entries[i-1].GetIndex()+1) {
				t.Fatalf("replayed log not consecutive after snapshot %d: %v", st.Snapshot.Index, view(st.Entries))
			}
		}
		if n := len(st.Entries); n > 0 && r.next != st.Entries[n-1].GetIndex()+1 {
			t.Fatalf("next %d after last index %d", r.next, st.Entries[n-1].GetIndex())
		}
	})
}

func codecEntries(es []*raftpb.Entry) ([]byte, error) {
	b, err := appendEntryRecords(nil, es, maxRecordLen-1)
	if err != nil {
		return nil, err
	}
	_, p, _, err := decodeRecord(b)
	return p, err
}
