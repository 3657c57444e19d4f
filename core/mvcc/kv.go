package mvcc

import (
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

func decodeKV(b []byte) (*mvccpb.KeyValue, error) {
	var s storedKV
	if err := codec.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("mvcc: decoding key value: %w", err)
	}
	return &mvccpb.KeyValue{
		Key:            s.Key,
		CreateRevision: s.CreateRev,
		ModRevision:    s.ModRev,
		Version:        s.Version,
		Value:          s.Value,
		Lease:          s.Lease,
	}, nil
}
