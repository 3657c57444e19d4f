#!/usr/bin/env bash
# Installs what the end-to-end tests need beyond Go: qemu-user for running
# the ARM binaries. Without root or apt-get it says so; the ARM test then
# skips locally (and fails under CI, where this must work).
set -uo pipefail
if command -v qemu-aarch64 >/dev/null && command -v qemu-arm >/dev/null; then
	exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
	echo "installing qemu-user for the ARM tests"
	apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user >/dev/null \
		|| echo "warning: could not install qemu-user"
else
	echo "note: qemu-user is missing and cannot be installed here (not root or no apt-get); ARM tests will skip"
fi
