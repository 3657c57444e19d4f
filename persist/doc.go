// Package persist groups what edgekv writes to disk: wal (the segmented
// write-ahead log), and, in later work, snap (Raft snapshot files), backend
// (the bbolt wrapper with batched commits) and fsx (the file-system interface
// with a power-loss simulator for tests). Nothing under persist imports
// core/server or core/rpc.
package persist
