package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/edgekv/edgekv/core/codec"
)

func encodeSnapshotForTest(index, term uint64) ([]byte, error) {
	return codec.Marshal(snapshotRec{Index: index, Term: term})
}

func TestRecord_DecodeReadsWhatAppendWrote(t *testing.T) {
	for _, payload := range [][]byte{nil, {0}, bytes.Repeat([]byte{0xab}, 1000)} {
		b := appendRecord(nil, recEntries, payload)
		b = append(b, 0xff) // trailing bytes are not part of it
		typ, p, n, err := decodeRecord(b)
		if err != nil || typ != recEntries || !bytes.Equal(p, payload) || n != len(b)-1 {
			t.Fatalf("decode: typ %d payload %x n %d err %v", typ, p, n, err)
		}
	}
}

func TestRecord_DecodeRejectsBadRecords(t *testing.T) {
	good := appendRecord(nil, recHardState, []byte{1, 2, 3})
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
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, _, err := decodeRecord(tt.b); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}
