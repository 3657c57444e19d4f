// Package codec holds edgekv's shared CBOR modes: one deterministic encoder
// (RFC 8949 core deterministic encoding, so members that hold identical state
// produce identical bytes) and one bounded decoder (limits on nesting depth,
// array and map sizes, duplicate map keys rejected) so that bytes from disk or
// from a peer can never exhaust memory.
//
// Both modes are built once at package init and are safe for concurrent use
// from any goroutine. Every package that encodes internal bytes (the WAL, the
// peer transport, the backend, Raft entry payloads) goes through Marshal and
// Unmarshal here rather than building modes of its own.
package codec
