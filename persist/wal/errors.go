package wal

import "errors"

var (
	// Create.
	ErrExist = errors.New("wal: directory already holds a WAL")

	// Open.
	ErrNotFound         = errors.New("wal: no WAL segment found")
	ErrCorrupt          = errors.New("wal: corrupt record")
	ErrMetadataMismatch = errors.New("wal: metadata mismatch")

	// Create and Open: another WAL value, in this process or another, holds the tail segment.
	ErrLocked = errors.New("wal: locked by another user")

	// Save and SaveSnapshot: refused before anything was written; the WAL still works.
	ErrInvalid = errors.New("wal: invalid entries or snapshot marker")

	// Save, SaveSnapshot and PurgeBefore.
	ErrFailed = errors.New("wal: refusing to write after an earlier write or sync error")
	ErrClosed = errors.New("wal: closed")
)
