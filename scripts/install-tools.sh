#!/usr/bin/env bash
# Installs what the end-to-end tests and benchmarks need beyond Go, when it
# is missing and we may (root and apt-get): by default qemu-user, for running
# the ARM binaries, and iproute2 and iptables, for the torture suite's network
# faults (members in network namespaces); `install-tools.sh strace` installs
# Debian's strace, which the benchmarks use to count and to delay syncs.
# Without root or apt-get it says so; the ARM test and the network scenarios
# then skip locally (and fail under CI, where this must work), and the
# benchmarks leave out what needs strace.
set -uo pipefail
[ $# -gt 0 ] || set -- qemu-user iproute2 iptables
updated=
for pkg in "$@"; do
	case $pkg in
	qemu-user) cmds=(qemu-aarch64 qemu-arm) why="the ARM tests will skip" ;;
	strace) cmds=(strace) why="the benchmarks will not count or delay syncs" ;;
	iproute2) cmds=(ip) why="the torture suite's network scenarios will skip" ;;
	iptables) cmds=(iptables iptables-restore) why="the torture suite's network scenarios will skip" ;;
	*) echo "install-tools.sh: unknown tool $pkg (qemu-user, strace, iproute2, iptables)" >&2; exit 2 ;;
	esac
	missing=
	for c in "${cmds[@]}"; do command -v "$c" >/dev/null || missing=1; done
	[ -n "$missing" ] || continue
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		echo "installing $pkg"
		{ [ -n "$updated" ] || apt-get update -qq >/dev/null; } && updated=1 \
			&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null \
			|| echo "warning: could not install $pkg"
	else
		echo "note: $pkg is missing and cannot be installed here (not root or no apt-get); $why"
	fi
done
exit 0
