// Package persist groups what edgekv writes to disk, each in its own
// package: wal (the segmented write-ahead log), snap (Raft snapshot files
// and received backends), backend (the bbolt wrapper with batched commits),
// and fsx (the small file-system interface the WAL writes through, with a
// power-loss simulator for tests). Nothing under persist imports core/server
// or core/rpc.
package persist
