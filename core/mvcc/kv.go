package mvcc

import (
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/edgekv/edgekv/core/codec"
)

// storedKV is the value of a "key" bucket entry, encoded as a CBOR array in
// field order. A tombstone holds only Key and ModRev.
type storedKV struct {
	_         struct{} `cbor:",toarray"`
	Key       []byte
	CreateRev int64
	ModRev    int64
	Version   int64
	Value     []byte
	Lease     int64
}

// storedKVPtr is a storedKV whose value lives elsewhere (in a WAL
// segment): Value is null and the trailing Ptr says where.
type storedKVPtr struct {
	_         struct{} `cbor:",toarray"`
	Key       []byte
	CreateRev int64
	ModRev    int64
	Version   int64
	Value     []byte
	Lease     int64
	Ptr       valuePtr
}

// valuePtr locates a value: Len bytes at offset Off of WAL segment Seq,
// whose CRC-32C (Castagnoli) is CRC.
type valuePtr struct {
	_   struct{} `cbor:",toarray"`
	Seq uint64
	Off int64
	Len int64
	CRC uint32
}

// CBOR heads of the two record shapes: arrays of 6 and of 7 items.
const (
	headInline  = 0x86
	headPointer = 0x87
)

// isPointerRecord tells a pointer record from an inline one by its first
// byte, without decoding.
func isPointerRecord(b []byte) bool { return len(b) > 0 && b[0] == headPointer }

func encodeKV(kv *mvccpb.KeyValue) ([]byte, error) {
	s := storedKV{
		Key:       kv.Key,
		CreateRev: kv.CreateRevision,
		ModRev:    kv.ModRevision,
		Version:   kv.Version,
		Value:     kv.Value,
		Lease:     kv.Lease,
	}
	// Empty and nil encode differently in CBOR; normalise so that every
	// member stores identical bytes whatever its decoder produced.
	if len(s.Value) == 0 {
		s.Value = nil
	}
	b, err := codec.Marshal(&s)
	if err != nil {
		return nil, fmt.Errorf("mvcc: encoding key value: %w", err)
	}
	return b, nil
}

// encodePointerKV encodes kv with its value replaced by p.
func encodePointerKV(kv *mvccpb.KeyValue, p valuePtr) ([]byte, error) {
	s := storedKVPtr{
		Key:       kv.Key,
		CreateRev: kv.CreateRevision,
		ModRev:    kv.ModRevision,
		Version:   kv.Version,
		Lease:     kv.Lease,
		Ptr:       p,
	}
	b, err := codec.Marshal(&s)
	if err != nil {
		return nil, fmt.Errorf("mvcc: encoding key value: %w", err)
	}
	return b, nil
}

var errBadPointer = errors.New("bad value pointer")

// decodeKV decodes a stored record. For a pointer record the value is nil
// and ptr says where it is; the caller resolves it (view.resolve).
func decodeKV(b []byte) (kv *mvccpb.KeyValue, ptr *valuePtr, err error) {
	if isPointerRecord(b) {
		var s storedKVPtr
		if err := codec.Unmarshal(b, &s); err != nil {
			return nil, nil, fmt.Errorf("mvcc: decoding key value: %w", err)
		}
		if s.Value != nil || s.Ptr.Len <= 0 || s.Ptr.Off < 0 {
			return nil, nil, fmt.Errorf("mvcc: decoding key value: %w: %+v with value %q", errBadPointer, s.Ptr, s.Value)
		}
		return &mvccpb.KeyValue{
			Key:            s.Key,
			CreateRevision: s.CreateRev,
			ModRevision:    s.ModRev,
			Version:        s.Version,
			Lease:          s.Lease,
		}, &s.Ptr, nil
	}
	var s storedKV
	if err := codec.Unmarshal(b, &s); err != nil {
		return nil, nil, fmt.Errorf("mvcc: decoding key value: %w", err)
	}
	return &mvccpb.KeyValue{
		Key:            s.Key,
		CreateRevision: s.CreateRev,
		ModRevision:    s.ModRev,
		Version:        s.Version,
		Value:          s.Value,
		Lease:          s.Lease,
	}, nil, nil
}

// decodePointer returns the pointer of a pointer record, nil for an inline
// one.
func decodePointer(b []byte) (*valuePtr, error) {
	if !isPointerRecord(b) {
		return nil, nil
	}
	_, p, err := decodeKV(b)
	return p, err
}
