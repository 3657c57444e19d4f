#!/usr/bin/env bash
# Runs every fuzz target of the root module for the given time each.
#
# Go's fuzzing coordinator can end a run with "context deadline exceeded"
# when a worker is slow to answer at the end of -fuzztime on a loaded machine
# (no input failed: a failing input is always written to testdata/fuzz and
# named). Such a run is retried once; any other failure fails at once.
set -uo pipefail
cd "$(dirname "$0")/.."
t=${1:-10s}
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //'); do
		for try in 1 2; do
			echo "fuzz: $pkg $f ($t)"
			out=$(go test "$pkg" -run '^$' -fuzz "^$f\$" -fuzztime "$t" 2>&1)
			rc=$?
			echo "$out" | tail -3
			[ $rc = 0 ] && break
			if [ $try = 1 ] && grep -q 'context deadline exceeded' <<<"$out" && ! grep -q 'Failing input written' <<<"$out"; then
				echo "fuzz: $f: coordinator timed out with no failing input; retrying once"
				continue
			fi
			echo "$out"
			exit 1
		done
	done
done
