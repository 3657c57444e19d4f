// Package backend wraps the bbolt file (<data-dir>/member/db) with batched
// commits, as etcd's backend does: writes go into an in-memory buffer, and
// a commit (one bbolt write transaction, two fsyncs) happens only when the
// batch is old enough, big enough, or forced. On flash that is the
// difference between an fsync per Raft batch and an fsync pair per
// BatchInterval. A commit runs in the background: the writer never waits
// for the disk, except for BatchLimit back-pressure (below).
//
// # When a batch commits
//
//   - BatchInterval (etcd's --backend-batch-interval, default 100 ms) after
//     the first write that is not yet handed to a commit. The timer is
//     armed by that write and disarmed when a commit takes the writes: an
//     idle backend has no timer and never touches the disk. The timer's
//     commit runs on the timer's goroutine.
//   - At BatchTx.End when BatchLimit writes (Put or Delete calls, etcd's
//     --backend-batch-limit, default 10000) are pending; 1 commits every
//     batch. End starts the commit on a goroutine of its own and returns;
//     it waits only if the previous commit is still running
//     (back-pressure: at most one commit in flight, and at most about
//     BatchLimit writes waiting behind it).
//   - On ForceCommit, Snapshot and Close, which return once everything
//     published before the call is in bbolt (they wait for a commit in
//     progress, then commit the rest and wait for that).
//
// A commit takes the pending writes ("freezes" the work buffer) with the
// batch locked, between batches, so it always holds whole batches, and
// the writer starts a fresh work buffer. The frozen buffer stays visible to
// readers (the committing buffer) while a single committing goroutine
// writes its entries into a bbolt write transaction, in key order per
// bucket (SeqBuckets with their pages filled to seqFillPercent), and
// commits it; only after Commit returns do readers stop seeing it. Only
// one commit runs at a time: a commit asked for while one runs waits for
// it. A batch with no writes is never committed.
//
// # Who calls it
//
//   - One writer at a time (core/mvcc's Apply, from the apply goroutine):
//     BeginBatch, then Put/Delete/Get/Range on the BatchTx, then End (or
//     Abort). Puts and Deletes go only to the in-memory work buffer; Get
//     and Range read the work buffer over the committing buffer over the
//     committed state. The batch holds no bbolt transaction between calls:
//     Get copies a committed value out of a short read transaction, Range
//     holds one for its iteration only. (A batch holding a read
//     transaction across calls could deadlock: a commit that grows bbolt's
//     memory map waits for every read transaction to end, and blocks new
//     ones meanwhile, so a reader holding the caller's lock while it
//     begins one would wait for the commit, the commit for the batch, and
//     the batch, wanting the caller's lock, for the reader.) So Get's
//     values are valid until End, but Range's keys and values only during
//     the iteration.
//   - The commit runs on its own goroutine (End's, the timer's, or the
//     caller of ForceCommit, Snapshot or Close), without the batch lock:
//     BeginBatch, Put, End go on meanwhile. Options.Freeze lets the writer
//     capture, at the moment a commit takes its writes, what that commit
//     will have made durable (core/mvcc's consistent index); its result
//     runs when the commit is on disk.
//   - Any number of readers, concurrently with the writer and with commits:
//     ReadTx. A read transaction is the last committed bbolt state (a bbolt
//     read transaction) with the committing buffer and the published, not
//     yet committed writes laid over it (etcd's txReadBuffer), so a read
//     right after a write is published sees it although it is not on
//     disk. Buffers are immutable once published (copy-on-write B-trees):
//     a reader loads them with one pointer load, before it begins the bbolt
//     transaction, so it either sees a commit's buffer or a bbolt state
//     that includes it. Readers never block the writer, and commits do not
//     block readers.
//   - Writes become visible to readers at BatchTx.Publish (or End).
//     core/mvcc publishes under its own lock together with its key index,
//     so that a reader pairs an index with exactly the writes it names.
//
// # Durability
//
// What is on disk is exactly the batches of the last successful commit and
// those before: a commit holds whole batches, and the writer's record of
// how far it got (core/mvcc's consistent index) is written in its batch,
// so it is in the same bbolt transaction as the writes it covers. A crash
// loses the writes not committed (those of a commit in progress too), and
// with them that record: after a restart the writer replays from the
// on-disk position, and nothing is lost that the Raft log still holds.
// What the writer may forget (Raft entries, WAL segments) must follow what
// a commit made durable, not what it applied since: that is what Freeze is
// for. A failed commit makes the backend failed: every later BeginBatch,
// ForceCommit and Snapshot returns the error (ErrFailed), and End returns
// it too, so the writer stops the process (fail-stop); readers keep
// working on what was published (the failed commit's buffer stays laid
// over bbolt).
//
// # Limits
//
// Buckets are flat (no nested buckets) and are created at Open
// (Options.Buckets); a write to another bucket fails the batch. Keys and
// values handed to Put must not be modified afterwards (the buffers hold
// them until they are committed). A long read transaction (a Snapshot
// being streamed) can delay a commit that has to grow the memory map,
// since bbolt remaps only when no read transaction is open, and new read
// transactions (the batch's Get too) wait for such a remap; InitialMmapSize
// makes that rare for small databases (and is kept small: 32-bit ARM has a
// 2 GB map cap). Defragmentation is not implemented yet.
package backend
