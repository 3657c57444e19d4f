//go:build !edgekv_unsafe_local_reads

package server

// unsafeLocalReads is false in every real build. See unsafe_reads_on.go.
const unsafeLocalReads = false
