package codec

import (
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// Decoding limits. A single value may not nest deeper than MaxNestedLevels
// nor hold arrays or maps larger than MaxArrayElements / MaxMapPairs. Byte
// strings are bounded by the size of the input the caller hands in, which
// every caller bounds first (WAL record length, peer frame length).
const (
	MaxNestedLevels  = 16
	MaxArrayElements = 1 << 20
	MaxMapPairs      = 1 << 16
)

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	encMode, err = cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(fmt.Sprintf("codec: building encoder: %v", err))
	}
	decMode, err = cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		MaxNestedLevels:   MaxNestedLevels,
		MaxArrayElements:  MaxArrayElements,
		MaxMapPairs:       MaxMapPairs,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
	}.DecMode()
	if err != nil {
		panic(fmt.Sprintf("codec: building decoder: %v", err))
	}
}

// Marshal encodes v deterministically.
func Marshal(v any) ([]byte, error) { return encMode.Marshal(v) }

// Unmarshal decodes exactly one CBOR value from data into v, applying the
// package limits. Trailing bytes after the value are an error.
func Unmarshal(data []byte, v any) error { return decMode.Unmarshal(data, v) }
