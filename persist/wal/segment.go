package wal

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

const (
	segmentExt = ".wal"
	tmpExt     = ".tmp"
	// segmentNameLen is len("%016x-%016x.wal").
	segmentNameLen = 16 + 1 + 16 + len(segmentExt)
	fileMode       = 0o600
	dirMode        = 0o700
)

type segment struct {
	seq   uint64 // sequence number, consecutive from the oldest kept segment
	index uint64 // first raft index the segment was cut for
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
	if !isLowerHex(name[:16]) || !isLowerHex(name[17:33]) {
		return segment{}, false
	}
	seq, err1 := strconv.ParseUint(name[:16], 16, 64)
	index, err2 := strconv.ParseUint(name[17:33], 16, 64)
	if err1 != nil || err2 != nil {
		return segment{}, false
	}
	return segment{seq: seq, index: index, name: name}, true
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// listSegments returns the segments in dir ordered by sequence. Other names
// are ignored.
func listSegments(dir string) ([]segment, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var segs []segment
	for _, de := range des {
		if s, ok := parseSegmentName(de.Name()); ok && de.Type().IsRegular() {
			segs = append(segs, s)
		}
	}
	slices.SortFunc(segs, func(a, b segment) int {
		switch {
		case a.seq < b.seq:
			return -1
		case a.seq > b.seq:
			return 1
		}
		return 0
	})
	return segs, nil
}

// syncDir fsyncs a directory so that entries created or renamed in it are
// durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("wal: fsync directory %s: %w", dir, err)
	}
	return nil
}

// lockFile takes an exclusive, non-blocking flock on f. The lock is tied to
// the open file description and ends when f is closed.
func lockFile(f *os.File) error {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		switch err {
		case nil:
			return nil
		case unix.EINTR:
			continue
		case unix.EWOULDBLOCK:
			return fmt.Errorf("%w: %s", ErrLocked, f.Name())
		default:
			return fmt.Errorf("wal: lock %s: %w", f.Name(), err)
		}
	}
}

// removeStaleTemps removes segment files a crashed cut left behind under
// their temporary name. They were never renamed, so they hold nothing that
// was acknowledged.
func removeStaleTemps(dir string) ([]string, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, de := range des {
		base, ok := strings.CutSuffix(de.Name(), tmpExt)
		if !ok {
			continue
		}
		if _, ok := parseSegmentName(base); !ok {
			continue
		}
		if err := os.Remove(filepath.Join(dir, de.Name())); err != nil {
			return removed, err
		}
		removed = append(removed, de.Name())
	}
	return removed, nil
}
