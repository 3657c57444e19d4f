package backend

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestSnapshot_CopyToRewritesValuesIntoACompactCopy(t *testing.T) {
	b, _ := openTest(t, Options{})
	var kvs []string
	for i := range 3000 { // more than one copy transaction
		kvs = append(kvs, fmt.Sprintf("k%05d", i), strings.Repeat("v", 10000))
	}
	write(t, b, kvs...)
	write(t, b, "k00001", "") // a delete
	snap, err := b.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	n := 0
	for range snap.Range(bucketA, nil, nil) {
		n++
	}
	if n != 2999 {
		t.Fatalf("Range saw %d keys", n)
	}
	path := filepath.Join(t.TempDir(), "copy.db")
	err = snap.CopyTo(path, func(bucket, k, v []byte) ([]byte, error) {
		return []byte(fmt.Sprintf("%s/%s:%d", bucket, k, len(v))), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := openTestAt(t, path, Options{})
	want := []string{"k00000=a/k00000:10000", "k00002=a/k00002:10000"}
	if d := dump(t, got, bucketA, "", "k00003"); !reflect.DeepEqual(d, want) {
		t.Fatalf("copy holds %v, want %v", d, want)
	}
	if d := dump(t, got, bucketA, "", ""); len(d) != 2999 {
		t.Fatalf("copy holds %d keys", len(d))
	}

	// An error from transform stops the copy and removes the file.
	failed := filepath.Join(t.TempDir(), "failed.db")
	errStop := errors.New("stop")
	err = snap.CopyTo(failed, func(_, k, v []byte) ([]byte, error) {
		if string(k) == "k00100" {
			return nil, errStop
		}
		return v, nil
	})
	if !errors.Is(err, errStop) {
		t.Fatalf("CopyTo: %v", err)
	}
	if _, err := os.Stat(failed); !os.IsNotExist(err) {
		t.Fatalf("a failed copy left its file: %v", err)
	}
}
