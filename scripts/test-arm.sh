#!/usr/bin/env bash
# Runs the given packages' tests for linux/arm64 and linux/arm (GOARM=7)
# under qemu-user, in -short mode (the crash simulation runs fewer points
# under emulation). Without qemu it skips, except under CI, where it fails.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=0
for q in qemu-aarch64 qemu-arm; do command -v "$q" >/dev/null || missing=1; done
if [ "$missing" = 1 ]; then
	if [ -n "${CI:-}" ]; then echo "qemu-user is missing under CI" >&2; exit 1; fi
	echo "skipping ARM unit tests: qemu-user is not installed (make tools)"
	exit 0
fi
echo "== linux/arm64 under qemu-aarch64"
CGO_ENABLED=0 GOOS=linux GOARCH=arm64 go test -short -count=1 -exec qemu-aarch64 "$@"
echo "== linux/arm GOARM=7 under qemu-arm"
CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=7 go test -short -count=1 -exec qemu-arm "$@"
