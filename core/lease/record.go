package lease

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/edgekv/edgekv/core/codec"
)

// Record is a lease as the "lease" bucket stores it: what every member
// agrees on. The expiry is not in it: only the leader has one, and a new
// leader derives it from TTL or RemainingTTL (see Lessor.Promote).
type Record struct {
	_   struct{} `cbor:",toarray"`
	ID  int64
	TTL int64 // granted TTL in seconds, after raising it to the minimum
	// RemainingTTL is the remaining TTL in seconds at the last checkpoint;
	// 0 means none since the grant or the last renewal.
	RemainingTTL int64
}

// errBadRecord wraps every reason DecodeEntry refuses a record.
var errBadRecord = errors.New("lease: bad record")

// Key is the bucket key of lease id: its 8-byte big-endian two's
// complement, so that keys sort as the IDs' unsigned values.
func Key(id int64) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, uint64(id))
	return k
}

// EncodeRecord encodes r as the bucket value (deterministic CBOR).
func EncodeRecord(r Record) ([]byte, error) {
	if err := r.validate(); err != nil {
		return nil, err
	}
	return codec.Marshal(r)
}

// DecodeEntry decodes one entry of the "lease" bucket, checking that the
// key names the record's lease and that the record is one Grant or
// Checkpoint could have written. The bytes come from disk or from a
// snapshot received from another member: nothing in them is trusted.
func DecodeEntry(k, v []byte) (Record, error) {
	if len(k) != 8 {
		return Record{}, fmt.Errorf("%w: key of %d bytes, want 8", errBadRecord, len(k))
	}
	var r Record
	if err := codec.Unmarshal(v, &r); err != nil {
		return Record{}, fmt.Errorf("%w: %x: %w", errBadRecord, k, err)
	}
	if id := int64(binary.BigEndian.Uint64(k)); id != r.ID {
		return Record{}, fmt.Errorf("%w: key %x holds lease %x", errBadRecord, k, r.ID)
	}
	if err := r.validate(); err != nil {
		return Record{}, err
	}
	return r, nil
}

func (r Record) validate() error {
	switch {
	case r.ID == 0:
		return fmt.Errorf("%w: lease ID 0", errBadRecord)
	case r.TTL < 1 || r.TTL > MaxLeaseTTL:
		return fmt.Errorf("%w: lease %x has TTL %d", errBadRecord, r.ID, r.TTL)
	case r.RemainingTTL < 0 || r.RemainingTTL > r.TTL:
		return fmt.Errorf("%w: lease %x has remaining TTL %d of %d", errBadRecord, r.ID, r.RemainingTTL, r.TTL)
	}
	return nil
}
