package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

func TestRecord_DecodeReadsWhatAppendWrote(t *testing.T) {
	seed := crcSeed(3)
	for _, payload := range [][]byte{nil, {0}, bytes.Repeat([]byte{0xab}, 1000)} {
		b := appendRecord(nil, seed, recEntries, payload)
		b = append(b, 0xff) // trailing bytes are not part of it
		typ, p, n, err := decodeRecord(b, seed)
		if err != nil || typ != recEntries || !bytes.Equal(p, payload) || n != len(b)-1 {
			t.Fatalf("decode: typ %d payload %x n %d err %v", typ, p, n, err)
		}
	}
}

func TestRecord_DecodeRejectsBadRecords(t *testing.T) {
	seed := crcSeed(3)
	good := appendRecord(nil, seed, recHardState, []byte{1, 2, 3})
	huge := binary.LittleEndian.AppendUint32(nil, maxRecordLen+1)
	huge = append(huge, 0, 0, 0, 0, 1)
	flip := func(i int) []byte { b := bytes.Clone(good); b[i] ^= 1; return b }
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, errShortHeader},
		{"short header", good[:7], errShortHeader},
		{"zero length", make([]byte, 20), errZeroLength},
		{"length over limit", huge, errTooLong},
		{"cut short", good[:len(good)-1], errShortRecord},
		{"flipped crc", flip(4), errCRC},
		{"flipped type", flip(8), errCRC},
		{"flipped payload", flip(10), errCRC},
		{"written for another segment", appendRecord(nil, crcSeed(2), recHardState, []byte{1, 2, 3}), errCRC},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, _, err := decodeRecord(tt.b, seed); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestRecord_StaleRecordsOfEverySegmentFailTheCRC(t *testing.T) {
	// The seed makes the CRCs of one payload differ between any two
	// sequence numbers (below 2^32): a stale record never checks out.
	p := []byte{0x83, 1, 2, 3}
	for seq := uint64(0); seq < 2000; seq++ {
		b := appendRecord(nil, crcSeed(seq), recEntries, p)
		for _, other := range []uint64{seq + 1, seq + 2, seq + 1000, seq + 1<<31} {
			if _, _, _, err := decodeRecord(b, crcSeed(other)); !errors.Is(err, errCRC) {
				t.Fatalf("record of segment %d valid in segment %d: %v", seq, other, err)
			}
		}
	}
}

func TestRecord_WritesEndOnASectorWithATerminator(t *testing.T) {
	seed := crcSeed(1)
	for base := int64(0); base < 2*sectorSize; base += 7 {
		for n := 0; n < 2*sectorSize; n += 13 {
			b := finishWrite(make([]byte, n), seed, base)
			end := base + int64(len(b)) - terminatorSize
			if end%sectorSize != 0 || !allZero(b[len(b)-terminatorSize:]) {
				t.Fatalf("base %d, %d bytes: ends at %d", base, n, end)
			}
			if int64(len(b)) != writeLen(base, int64(n)) {
				t.Fatalf("writeLen(%d, %d) = %d, wrote %d", base, n, writeLen(base, int64(n)), len(b))
			}
			if pad := b[n : len(b)-terminatorSize]; len(pad) > 0 {
				if typ, _, m, err := decodeRecord(pad, seed); err != nil || typ != recPad || m != len(pad) {
					t.Fatalf("base %d, %d bytes: padding is not one pad record: %v", base, n, err)
				}
			}
		}
	}
}
