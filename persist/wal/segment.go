package wal

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/edgekv/edgekv/persist/fsx"
)

const (
	segmentExt = ".wal"
	nextExt    = ".next" // a file prepared to become the next segment
	freeExt    = ".free" // a purged segment waiting to be recycled
	vlogExt    = ".vlog" // a purged segment kept for the values it holds
	tmpExt     = ".tmp"
	// segmentNameLen is len("%016x-%016x.wal").
	segmentNameLen = 16 + 1 + 16 + len(segmentExt)
	fileMode       = 0o600
	dirMode        = 0o700
)

type segment struct {
	seq   uint64 // sequence number, consecutive from the oldest kept segment
	index uint64 // raft index the log was to continue at when it was cut
	name  string
}

func segmentName(seq, index uint64) string {
	return fmt.Sprintf("%016x-%016x%s", seq, index, segmentExt)
}

// parseSegmentName parses exactly the names segmentName produces.
func parseSegmentName(name string) (segment, bool) {
	if len(name) != segmentNameLen || name[16] != '-' || !strings.HasSuffix(name, segmentExt) {
		return segment{}, false
	}
	seq, ok1 := parseHex16(name[:16])
	index, ok2 := parseHex16(name[17:33])
	if !ok1 || !ok2 {
		return segment{}, false
	}
	return segment{seq: seq, index: index, name: name}, true
}

// nextName names the file prepared to become segment seq.
func nextName(seq uint64) string { return fmt.Sprintf("%016x%s", seq, nextExt) }

// freeName names a purged segment in the free pool, after its sequence.
func freeName(seq uint64) string { return fmt.Sprintf("%016x%s", seq, freeExt) }

// vlogName names a value segment: a segment the log no longer needs, kept
// for the values it holds (its sequence).
func vlogName(seq uint64) string { return fmt.Sprintf("%016x%s", seq, vlogExt) }

func parseVlogName(name string) (uint64, bool) {
	if len(name) != 16+len(vlogExt) || !strings.HasSuffix(name, vlogExt) {
		return 0, false
	}
	return parseHex16(name[:16])
}

// parsePoolName parses the names of files in the free pool: prepared
// (.next) or purged (.free) ones.
func parsePoolName(name string) (seq uint64, next bool, ok bool) {
	for _, ext := range []string{nextExt, freeExt} {
		if len(name) == 16+len(ext) && strings.HasSuffix(name, ext) {
			seq, ok := parseHex16(name[:16])
			return seq, ext == nextExt, ok
		}
	}
	return 0, false, false
}

func parseHex16(s string) (uint64, bool) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return 0, false
		}
	}
	v, err := strconv.ParseUint(s, 16, 64)
	return v, err == nil
}

// listDir returns the segments in dir ordered by sequence, and the names
// of the files in the free pool. Other names are ignored.
func listDir(fsys fsx.FS, dir string) (segs []segment, pool []string, err error) {
	l, err := listFiles(fsys, dir)
	return l.segs, l.pool, err
}

// dirList is what a WAL directory holds.
type dirList struct {
	segs  []segment // the log, by sequence
	pool  []string  // names of the free pool's files
	vlogs []uint64  // value segments, by sequence
}

func listFiles(fsys fsx.FS, dir string) (dirList, error) {
	var l dirList
	des, err := fsys.ReadDir(dir)
	if err != nil {
		return l, err
	}
	for _, de := range des {
		if !de.Type().IsRegular() {
			continue
		}
		if s, ok := parseSegmentName(de.Name()); ok {
			l.segs = append(l.segs, s)
		} else if _, _, ok := parsePoolName(de.Name()); ok {
			l.pool = append(l.pool, de.Name())
		} else if seq, ok := parseVlogName(de.Name()); ok {
			l.vlogs = append(l.vlogs, seq)
		}
	}
	slices.SortFunc(l.segs, func(a, b segment) int { return cmp.Compare(a.seq, b.seq) })
	slices.Sort(l.vlogs)
	return l, nil
}

// readAt reads n bytes at off, fewer at the end of the file.
func readAt(f fsx.File, off int64, n int64) ([]byte, error) {
	b := make([]byte, n)
	m, err := f.ReadAt(b, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return b[:m], nil
}

// readSegment reads a segment file up to limit bytes (all of it if limit
// is negative or past its end).
func readSegment(fsys fsx.FS, path string, limit int64) ([]byte, error) {
	f, err := fsys.OpenFile(path, 0, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if limit < 0 || limit > fi.Size() {
		limit = fi.Size()
	}
	return readAt(f, 0, limit)
}

func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }

func join(dir, name string) string { return filepath.Join(dir, name) }
