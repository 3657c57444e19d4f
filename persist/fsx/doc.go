// Package fsx is the small file-system interface that everything under
// persist/ writes through, so that durability can be tested: OS is the real
// file system (Linux system calls), CrashFS an in-memory one that simulates
// power loss, FaultFS a wrapper of any FS whose syncs (and writes) fail
// when a test says so, and PowerFS a wrapper of the real one that can undo
// what was not synced, for power loss in a running process.
//
// # Contract
//
// FS and File mirror the os package, plus what a storage engine needs and
// os does not give: File.Datasync (fdatasync(2)), File.Allocate
// (fallocate(2): reserve blocks and set the size, so later writes inside
// the file need no size update), File.Lock (an exclusive, non-blocking
// flock(2), ErrLocked if held) and FS.SyncDir (fsync(2) of a directory, which
// makes the creates, renames and removes done in it durable).
//
// What is durable after a call returns, on both implementations:
//
//   - File.Datasync and File.Sync: every write, Truncate and Allocate done
//     on the file before the call (data and size). They differ only in
//     timestamps, which CrashFS does not model; use Datasync.
//   - FS.SyncDir(dir): every create, rename, remove and mkdir of an entry of
//     dir done before the call. Nothing else makes a name durable: a file
//     whose data was synced but whose directory was not can vanish.
//   - Nothing else. A failed sync makes nothing durable, and (as on Linux,
//     where the kernel marks the pages clean after reporting the error) the
//     changes it covered are never made durable by a later sync either: the
//     only safe reaction is to stop (fail-stop).
//
// Rename must keep both names in one directory; CrashFS refuses others.
// Values are safe for concurrent use; a File is used by one goroutine at a
// time (its Read and Write offset is shared state).
//
// # Crash model of CrashFS
//
// CrashFS keeps, per file, its durable contents and the list of changes
// since the last successful sync, in order; per directory, its durable
// entries and the list of entry changes since its last sync. At Crash (power
// loss), for every file and every directory independently:
//
//   - a prefix of its unsynced changes survives, of random length from none
//     to all, in the order they were made (journaled file systems commit
//     metadata in order; writeback of one file's pages is modelled the same
//     way);
//   - if the first change that does not survive whole is a write, a prefix
//     of it may survive: the write is cut into pieces at 512-byte
//     (SectorSize) file offsets, and the first k pieces (0 <= k < pieces)
//     reach the disk. A sector is never half written. Later sectors of a
//     torn write never survive without the earlier ones: CrashFS does not
//     model reordered sector writes within one write, nor a write that
//     survives while an earlier unsynced one is lost.
//
// Then every open File of the crashed "process" becomes unusable
// (ErrCrashed), locks are released, and reads see exactly the durable state.
//
// A test chooses when power fails with CrashAfter(n): the n-th mutating
// operation from then on (write, truncate, allocate, sync, create, rename,
// remove, mkdir) is in flight when power fails. It and every later
// operation return ErrCrashed; the in-flight one counts as an unsynced
// change (a write in flight may be torn, a sync in flight makes nothing
// durable). The test then calls Crash to compute what survived and goes on
// with the same CrashFS as the rebooted machine. All randomness comes from
// the seed given to NewCrashFS, so a run is reproducible when one goroutine
// drives it.
//
// FailSync and FailWrite make the n-th sync or write fail with a given
// error, to prove that callers stop.
//
// # FaultFS
//
// FaultFS wraps any FS (the real one, in a running member) and passes every
// call through until FailSyncs(err): from then on every Datasync, Sync and
// SyncDir returns err (e.g. syscall.EIO) in an *fs.PathError naming the
// file, without reaching the wrapped file system; FailWrites does the same
// for Write and WriteAt, which then write nothing. Nil heals either. It
// implements DirectFS by opening through the wrapped file system's
// OpenDirect and wrapping the File it returns (ErrDirectUnsupported if the
// wrapped one has no direct I/O), so a WAL over FaultFS over OS still
// writes with O_DIRECT, and its direct files fail the same way. It does
// not model the page cache dropping what a failed sync covered; nothing
// may go on after the first error anyway. edgekv built with the tag
// edgekv_faults puts its WAL on one with EDGEKV_FAULT_DISK=1 and fails
// every sync with EIO on SIGUSR2 (cmd/edgekv/faults_on.go), for the
// torture suite's disk-fault scenario.
//
// # PowerFS
//
// PowerFS wraps the real file system (it needs inode numbers) and records
// every unsynced change made through it with what it overwrote: before a
// write it reads the bytes there, before a truncation those cut off, and a
// file removed or replaced by a rename waits in a backup directory until
// its directory is synced. A successful Datasync or Sync forgets the file's
// changes made before it, a SyncDir the directory's. PowerOff waits for the
// calls in progress and then applies CrashFS's crash model to the real
// files: each file and directory keeps a random prefix of its unsynced
// changes, the first write not kept may be torn at a SectorSize boundary,
// and everything after is undone, newest first; from then on every call
// fails with ErrCrashed. Arm makes the next sync that has something to make
// durable power off instead (and lose at least one of those changes), so a
// test catches a member between a write and its sync. Only what goes
// through the PowerFS is undone: other files keep everything they wrote,
// as if the disk had written it all before the power failed. edgekv built
// with the tag edgekv_faults puts its WAL on one with EDGEKV_FAULT_POWER=1
// and powers off (then kills itself) on SIGPWR, for the torture suite's
// power-loss scenario.
package fsx
