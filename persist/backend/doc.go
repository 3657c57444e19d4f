// Package backend wraps the bbolt file (<data-dir>/member/db) with batched
// commits, as etcd's backend does: writes go into one long-lived bbolt write
// transaction, and a commit (two fsyncs) happens only when the batch is old
// enough, big enough, or forced. On flash that is the difference between an
// fsync per Raft batch and an fsync pair per BatchInterval.
//
// # When a batch commits
//
//   - BatchInterval (etcd's --backend-batch-interval, default 100 ms) after
//     the first write that is not yet on disk. The timer is armed by that
//     write and disarmed by the commit: an idle backend has no timer and
//     never touches the disk.
//   - At BatchTx.End when BatchLimit writes (Put or Delete calls, etcd's
//     --backend-batch-limit, default 10000) are pending; 1 commits every
//     batch.
//   - On ForceCommit, Snapshot and Close.
//
// A batch with no writes is never committed.
//
// # Who calls it
//
//   - One writer at a time (core/mvcc's Apply, from the apply goroutine):
//     BeginBatch, then Put/Delete/Get/Range on the BatchTx, then End (or
//     Abort). The timer commits on its own goroutine, taking the same lock,
//     so it never commits half of a writer's batch.
//   - Any number of readers, concurrently with the writer and with commits:
//     ReadTx. A read transaction is the last committed bbolt state (a bbolt
//     read transaction) with the published, not yet committed writes laid
//     over it (etcd's txReadBuffer), so a read right after a write is
//     published sees it although it is not on disk. Published buffers are
//     immutable (copy-on-write B-trees), so a reader takes one with a
//     pointer load and never blocks the writer; a commit does not block
//     readers either.
//   - Writes become visible to readers at BatchTx.Publish (or End).
//     core/mvcc publishes under its own lock together with its key index,
//     so that a reader pairs an index with exactly the writes it names.
//
// # Durability
//
// What is on disk is exactly the last committed batch. A crash loses the
// uncommitted writes, and with them whatever the writer stored in the same
// batch to say how far it got (core/mvcc's consistent index): so after a
// restart the writer replays from the on-disk position, and nothing is
// lost that the Raft log still holds. A failed commit makes the backend
// failed: every later BeginBatch, ForceCommit and Snapshot returns the
// error (ErrFailed), so the writer stops the process (fail-stop); readers
// keep working on what was published.
//
// # Limits
//
// Buckets are flat (no nested buckets) and are created at Open
// (Options.Buckets). Keys and values handed to Put must not be modified
// afterwards, as with bbolt. A long read transaction (a Snapshot being
// streamed) can delay a commit that has to grow the memory map, since
// bbolt remaps only when no read transaction is open; InitialMmapSize
// makes that rare for small databases (and is kept small: 32-bit ARM has a
// 2 GB map cap). Defragmentation is not implemented yet.
package backend
