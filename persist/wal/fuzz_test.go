package wal

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"os"
	"testing"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/edgekv/edgekv/persist/fsx"
)

// fuzzRecs frames records for segment 0.
func fuzzRecs(recs ...rec) []byte { return appendRecs(nil, crcSeed(0), recs) }

func fuzzEntries(es []*raftpb.Entry) rec {
	recs, _, _ := entryRecs(nil, nil, es, maxRecordLen-1)
	return recs[0]
}

func fuzzHardState(term, vote, commit uint64) rec {
	p, _ := encodeHardState(hardState(term, vote, commit))
	return rec{typ: recHardState, payload: p}
}

func fuzzSnapshot(index, term uint64) rec {
	p, _ := encodeSnapshot(SnapshotMarker{Index: index, Term: term})
	return rec{typ: recSnapshot, payload: p}
}

func FuzzDecodeRecord(f *testing.F) {
	md, _ := encodeMetadata(testMD)
	link, _ := encodeLink(4096)
	good := fuzzRecs(fuzzHardState(3, 2, 1))
	f.Add(uint64(0), good)
	f.Add(uint64(0), fuzzRecs(fuzzEntries(ents(1, 1, 3))))
	f.Add(uint64(0), fuzzRecs(rec{typ: recMetadata, payload: md}))
	f.Add(uint64(0), fuzzRecs(fuzzSnapshot(7, 2)))
	f.Add(uint64(0), fuzzRecs(rec{typ: recLink, payload: link}))
	f.Add(uint64(0), finishWrite(nil, crcSeed(0), 3))
	f.Add(uint64(1), good) // written for segment 0
	f.Add(uint64(0), good[:len(good)-1])
	f.Add(uint64(0), []byte{})
	f.Add(uint64(0), make([]byte, 16))
	f.Add(uint64(0), []byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, seq uint64, b []byte) {
		seed := crcSeed(seq)
		typ, payload, n, err := decodeRecord(b, seed)
		if err != nil {
			return
		}
		if n < minRecordSize || n > len(b) {
			t.Fatalf("n = %d for %d bytes", n, len(b))
		}
		if again := appendRecord(nil, seed, typ, payload); !bytes.Equal(again, b[:n]) {
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
		case recLink:
			decodeLink(payload)
		}
	})
}

// FuzzOpen writes the fuzz bytes as the body of the only segment, after a
// valid metadata record. Open must not panic; if it succeeds, the WAL must
// take a Save and open again to the same state plus the new entry.
func FuzzOpen(f *testing.F) {
	seed := crcSeed(0)
	body := fuzzRecs(fuzzEntries(ents(1, 1, 3)), fuzzHardState(3, 2, 1))
	f.Add(finishWrite(slices0(body), seed, 0))
	f.Add(fuzzRecs(fuzzEntries(ents(1, 1, 3)), fuzzEntries(ents(2, 2, 2))))
	f.Add(fuzzRecs(fuzzEntries(ents(1, 1, 3)), fuzzSnapshot(2, 1)))
	f.Add(body[:len(body)-3])
	f.Add(append(body[:len(body)-3], make([]byte, 40)...))
	f.Add(append(slices0(body), 0, 0, 0, 0, 1))
	f.Add(append(finishWrite(slices0(body), seed, 0), bytes.Repeat([]byte("stale"), 300)...))
	f.Add([]byte{})
	md, _ := encodeMetadata(testMD)
	head := appendRecord(nil, seed, recMetadata, md)
	lg := slog.New(slog.NewTextHandler(io.Discard, nil))
	f.Fuzz(func(t *testing.T, body []byte) {
		fsys := fsx.NewCrashFS(1)
		o := Options{FS: fsys, Logger: lg, SegmentSize: 1 << 20, inlinePrepare: true}
		if err := fsys.MkdirAll("/wal", 0o700); err != nil {
			t.Fatal(err)
		}
		file, err := fsys.OpenFile("/wal/"+segmentName(0, 0), os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		file.WriteAt(append(slices0(head), body...), 0)
		file.Close()
		w, st, err := OpenWithOptions("/wal", o)
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
		w2, st2, err := OpenWithOptions("/wal", o)
		if err != nil {
			t.Fatalf("reopen after Save: %v", err)
		}
		defer w2.Close()
		checkEntries(t, st2.Entries, append(st.Entries, add))
		checkHardState(t, st2.HardState, st.HardState)
	})
}

func slices0(b []byte) []byte { return append([]byte(nil), b...) }

// FuzzReplay frames the fuzz bytes into CRC-valid records, so that the
// fuzzer reaches the payload decoders and the replay rules, which a CRC
// would otherwise hide. Input: repeated [type, length, payload...]; what is
// left after the last whole chunk is appended raw. The replayer must not
// panic, and what it accepts must be a consecutive log.
func FuzzReplay(f *testing.F) {
	md, _ := encodeMetadata(testMD)
	chunk := func(r rec) []byte { return append([]byte{r.typ, byte(len(r.payload))}, r.payload...) }
	link, _ := encodeLink(512)
	f.Add(bytes.Join([][]byte{chunk(fuzzEntries(ents(1, 1, 3))), chunk(fuzzEntries(ents(2, 2, 2))), chunk(fuzzHardState(3, 2, 1))}, nil))
	f.Add(bytes.Join([][]byte{chunk(fuzzEntries(ents(1, 1, 3))), chunk(fuzzSnapshot(2, 1)), chunk(fuzzEntries(ents(2, 9, 9)))}, nil))
	f.Add(bytes.Join([][]byte{chunk(fuzzEntries(ents(1, 1, 3))), chunk(rec{typ: recMetadata, payload: md}), {0, 0, 0}}, nil))
	f.Add(bytes.Join([][]byte{chunk(rec{typ: recLink, payload: link}), chunk(rec{typ: recPad, payload: make([]byte, 20)}), chunk(fuzzHardState(1, 1, 1))}, nil))
	f.Fuzz(func(t *testing.T, in []byte) {
		seed := crcSeed(0)
		data := appendRecord(nil, seed, recMetadata, md)
		for len(in) >= 2 && int(in[1]) <= len(in)-2 {
			typ, n := in[0], int(in[1])
			data = appendRecord(data, seed, typ, in[2:2+n])
			in = in[2+n:]
		}
		data = append(data, in...)
		var r replayer
		res, err := r.replaySegment("fuzz.wal", 0, data, -1, true)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("replay failed without ErrCorrupt: %v", err)
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
