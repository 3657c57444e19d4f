package main

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"testing"
)

// TestWatchers_SmallRunPrintsTheComparison runs the program as make
// bench-watch does, small: every event reaches every watcher on both
// servers, and the tables come out. It checks the program, not the numbers.
func TestWatchers_SmallRunPrintsTheComparison(t *testing.T) {
	if testing.Short() {
		t.Skip("starts clusters of edgekv and of etcd")
	}
	if os.Getenv("EDGEKV_SKIP_E2E") != "" {
		t.Skip("EDGEKV_SKIP_E2E is set")
	}
	var out, log bytes.Buffer
	err := run(context.Background(), []string{"--rounds", "1", "--watchers", "1,20", "--puts", "5",
		"--rate", "50", "--slow-watchers", "2", "--slow-puts", "20", "--dir", t.TempDir()}, &out, &log)
	t.Logf("program log:\n%s", log.String())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	t.Logf("output:\n%s", out.String())
	for _, want := range []string{
		`(?m)^\| 1 \| put-to-event p50 \(ms\) \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \|$`,
		`(?m)^\| 20 \| events not delivered \| 0 \| 0 \| - \|$`,
		`(?m)^\| put p99 with slow watchers \(ms\) \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \|$`,
	} {
		if !regexp.MustCompile(want).MatchString(out.String()) {
			t.Errorf("output has no line matching %s", want)
		}
	}
}

func TestWatchers_RejectsABadCount(t *testing.T) {
	var out, log bytes.Buffer
	if err := run(context.Background(), []string{"--watchers", "1,x"}, &out, &log); err == nil {
		t.Fatal("want an error for watcher count x")
	}
}
