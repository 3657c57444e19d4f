package wal

import (
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/edgekv/edgekv/persist/fsx"
)

// preparer gets the next segment file ready before the cut that needs it:
// a file of the free pool (a purged segment, whose blocks are already
// written) or else a new one preallocated to the segment size, with the
// metadata header for its sequence written and synced, named
// "<seq>.next". The cut then only renames it and syncs the directory.
//
// One preparation runs at a time, started by the WAL (under its mutex)
// after Create, Open and every cut, in a goroutine unless inline. The pool
// is shared with PurgeBefore and guarded by mu.
type preparer struct {
	fs     fsx.FS
	dir    string
	size   int64
	header func(seq uint64) []byte
	inline bool
	stats  *prepStats

	mu   sync.Mutex
	pool []string // names of recyclable files, oldest purge first

	done chan struct{} // closed when the running preparation ends; nil if none
	res  prepared      // its result, valid once done is closed
}

type prepStats struct {
	created, recycled, syncs, bytes, writes atomic.Uint64
}

type prepared struct {
	seq  uint64
	f    fsx.File // open, locked, header synced
	name string
	err  error
}

// start begins preparing segment seq. The caller holds the WAL mutex and
// has collected the previous result.
func (p *preparer) start(seq uint64) {
	done := make(chan struct{})
	p.done = done
	run := func() {
		p.res = p.prepare(seq)
		close(done)
	}
	if p.inline {
		run()
	} else {
		go run()
	}
}

// take waits for segment seq to be ready and hands it over.
func (p *preparer) take(seq uint64) (prepared, error) {
	for {
		if p.done == nil {
			p.start(seq)
		}
		<-p.done
		res := p.res
		p.done, p.res = nil, prepared{}
		if res.err != nil {
			return res, res.err
		}
		if res.seq == seq {
			return res, nil
		}
		// Prepared for another sequence (not expected): recycle it.
		res.f.Close()
		p.addFree(res.name)
	}
}

// close waits for a running preparation and closes what it made; the file
// stays in the directory, and the next Open pools it.
func (p *preparer) close() error {
	if p.done == nil {
		return nil
	}
	<-p.done
	res := p.res
	p.done, p.res = nil, prepared{}
	if res.f != nil {
		return res.f.Close()
	}
	return nil
}

func (p *preparer) addFree(names ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pool = append(p.pool, names...)
}

// trim removes names beyond max from the pool and returns them, for the
// caller to delete.
func (p *preparer) trim(max int) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.pool) <= max {
		return nil
	}
	extra := slices.Clone(p.pool[max:])
	p.pool = p.pool[:max]
	return extra
}

// pick takes a file from the pool, preferring one already named want.
func (p *preparer) pick(want string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	i := slices.Index(p.pool, want)
	if i < 0 {
		if len(p.pool) == 0 {
			return ""
		}
		i = 0
	}
	name := p.pool[i]
	p.pool = slices.Delete(p.pool, i, i+1)
	return name
}

// prepare makes "<seq>.next": header written and synced, size at least the
// segment size. The name itself is made durable by the cut's directory
// sync; a crash before that leaves a pool file that Open pools again.
func (p *preparer) prepare(seq uint64) (res prepared) {
	res.seq = seq
	want := nextName(seq)
	from := p.pick(want)
	var (
		f    fsx.File
		err  error
		grew bool
	)
	fail := func(err error) prepared {
		if f != nil {
			f.Close()
		}
		res.err = err
		return res
	}
	if from != "" {
		if f, err = p.fs.OpenFile(join(p.dir, from), os.O_RDWR, 0); err != nil {
			return fail(fmt.Errorf("wal: open %s: %w", from, err))
		}
		fi, err := f.Stat()
		if err != nil {
			return fail(fmt.Errorf("wal: stat %s: %w", from, err))
		}
		if fi.Size() < p.size {
			if err := f.Allocate(p.size); err != nil {
				return fail(fmt.Errorf("wal: preallocate %s: %w", from, err))
			}
			grew = true
		}
		p.stats.recycled.Add(1)
	} else {
		if f, err = p.fs.OpenFile(join(p.dir, want), os.O_RDWR|os.O_CREATE|os.O_EXCL, fileMode); err != nil {
			return fail(fmt.Errorf("wal: create %s: %w", want, err))
		}
		if err := f.Allocate(p.size); err != nil {
			return fail(fmt.Errorf("wal: preallocate %s: %w", want, err))
		}
		grew = true
		p.stats.created.Add(1)
	}
	if err := f.Lock(); err != nil {
		return fail(fmt.Errorf("%w: %s: %w", ErrLocked, want, err))
	}
	hdr := p.header(seq)
	n, err := f.WriteAt(hdr, 0)
	p.stats.writes.Add(1)
	p.stats.bytes.Add(uint64(n))
	if err != nil {
		return fail(fmt.Errorf("wal: write header of %s: %w", want, err))
	}
	// A new size must be durable too: fsync, not fdatasync.
	if grew {
		err = f.Sync()
	} else {
		err = f.Datasync()
	}
	p.stats.syncs.Add(1)
	if err != nil {
		return fail(fmt.Errorf("wal: sync %s: %w", want, err))
	}
	if from != "" && from != want {
		if err := p.fs.Rename(join(p.dir, from), join(p.dir, want)); err != nil {
			return fail(fmt.Errorf("wal: rename %s to %s: %w", from, want, err))
		}
	}
	res.f, res.name = f, want
	return res
}
