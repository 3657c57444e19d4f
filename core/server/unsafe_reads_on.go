//go:build edgekv_unsafe_local_reads

package server

// unsafeLocalReads makes a DELIBERATELY BROKEN build: linearizable reads
// are served from the local state without a ReadIndex round, so a member
// that is behind (partitioned, paused, just restarted) answers stale data.
// It exists only so that the torture suite (tests/torture) can show that
// its linearizability checker catches the bug; the build tag is never set
// for a binary anyone runs.
const unsafeLocalReads = true
