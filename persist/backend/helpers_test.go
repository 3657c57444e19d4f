package backend

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var (
	bucketA = []byte("a")
	bucketB = []byte("b")
)

type tbWriter struct{ t testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(bytes.TrimSpace(p)))
	return len(p), nil
}

// openTest opens a backend in a temporary directory with a manual clock
// and, unless opts says otherwise, a batch limit that is never reached.
func openTest(t testing.TB, opts Options) (*Backend, *ManualClock) {
	t.Helper()
	return openTestAt(t, filepath.Join(t.TempDir(), "db"), opts)
}

func openTestAt(t testing.TB, path string, opts Options) (*Backend, *ManualClock) {
	t.Helper()
	clock, _ := opts.Clock.(*ManualClock)
	if clock == nil {
		clock = NewManualClock(time.Unix(0, 0))
		opts.Clock = clock
	}
	if opts.BatchLimit == 0 {
		opts.BatchLimit = 1 << 30
	}
	if opts.Buckets == nil {
		opts.Buckets = [][]byte{bucketA, bucketB}
	}
	opts.Logger = slog.New(slog.NewTextHandler(tbWriter{t}, nil))
	b, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b, clock
}

// write runs one batch of puts (value != "") and deletes (value == "")
// of keys in bucketA.
func write(t testing.TB, b *Backend, kvs ...string) {
	t.Helper()
	tx, err := b.BeginBatch()
	if err != nil {
		t.Fatalf("BeginBatch: %v", err)
	}
	for i := 0; i < len(kvs); i += 2 {
		if kvs[i+1] == "" {
			err = tx.Delete(bucketA, []byte(kvs[i]))
		} else {
			err = tx.Put(bucketA, []byte(kvs[i]), []byte(kvs[i+1]))
		}
		if err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	if err := tx.End(); err != nil {
		t.Fatalf("End: %v", err)
	}
}

// dump reads bucket [from, to) through a new read transaction as
// "k=v" strings.
func dump(t testing.TB, b *Backend, bucket []byte, from, to string) []string {
	t.Helper()
	tx, err := b.ReadTx()
	if err != nil {
		t.Fatalf("ReadTx: %v", err)
	}
	defer tx.Done()
	return dumpTx(tx, bucket, from, to)
}

func dumpTx(tx *ReadTx, bucket []byte, from, to string) []string {
	out := []string{}
	for k, v := range tx.Range(bucket, bytesOrNil(from), bytesOrNil(to)) {
		out = append(out, string(k)+"="+string(v))
	}
	return out
}

func bytesOrNil(s string) []byte {
	if s == "" {
		return nil
	}
	return []byte(s)
}

// crashImage copies the database file as it is on disk: bbolt writes it
// only when it commits, and syncs it then, so the copy is what a power cut
// now would leave.
func crashImage(t testing.TB, b *Backend) string {
	t.Helper()
	raw, err := os.ReadFile(b.path)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "crashed.db")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// waitCommit waits for the commit in progress, if any (End starts one in
// the background once BatchLimit writes are pending).
func waitCommit(b *Backend) {
	b.wmu.Lock()
	b.waitInflightLocked()
	b.wmu.Unlock()
}
