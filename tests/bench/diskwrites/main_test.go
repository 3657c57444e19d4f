package main

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"testing"
)

// TestDiskwrites_SmallRunPrintsTheComparison runs the program as make
// bench-disk does, with a small load: both clusters start, take every put,
// and the table comes out. It checks the program works, not the numbers.
func TestDiskwrites_SmallRunPrintsTheComparison(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster of edgekv and one of etcd")
	}
	if os.Getenv("EDGEKV_SKIP_E2E") != "" {
		t.Skip("EDGEKV_SKIP_E2E is set")
	}
	var out, log bytes.Buffer
	err := run(context.Background(), []string{"--total", "500", "--rounds", "1", "--dir", t.TempDir()}, &out, &log)
	t.Logf("program log:\n%s", log.String())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	t.Logf("output:\n%s", out.String())
	for _, want := range []string{
		`(?m)^\| metric \| edgekv \| etcd \| ratio \|$`,
		`(?m)^\| committed puts \| 500 \| 500 \| 1\.00 \|$`,
		`(?m)^\| failed puts \| 0 \| 0 \| - \|$`,
		`(?m)^\| bytes written per put per member \| [1-9][0-9]* \| [1-9][0-9]* \| [0-9.]+ \|$`,
		`(?m)^\| fsync\+fdatasync per put per member \| ([0-9.]+|n/a) \| [0-9.]+ \| ([0-9.]+|-) \|$`,
		`(?m)^\| 1 \| edgekv \|`,
		`(?m)^\| 1 \| etcd \|`,
	} {
		if !regexp.MustCompile(want).MatchString(out.String()) {
			t.Errorf("output has no line matching %s", want)
		}
	}
}

func TestDiskwrites_RejectsAKeySpaceLargerThanTheKeys(t *testing.T) {
	var out, log bytes.Buffer
	err := run(context.Background(), []string{"--key-size", "4", "--key-space", "100000"}, &out, &log)
	if err == nil {
		t.Fatal("want an error for 100000 keys in 4 digits")
	}
}
