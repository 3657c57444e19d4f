#!/usr/bin/env bash
# CPU per operation of a 3-member cluster: starts BINARY (edgekv, or an etcd
# binary such as tests/.cache/bin/etcd-host-*) on 127.0.0.1 ports 41379..43380
# with fresh data dirs, runs `edgekv bench LOAD ARGS...` against all three
# members, and prints throughput, p50 and p99, and per operation the
# members' CPU time (utime+stime from /proc, summed) and their peer
# traffic: bytes sent (etcd_network_peer_sent_bytes_total, both servers),
# and for edgekv the frames and Raft messages.
#
#   bench/cpu-per-op.sh bin/edgekv put --clients 256 --conns 16 --total 30000 --val-size 256 --key-space 100000
#
# Run it alternately for edgekv and etcd and compare; one run means little on
# a shared machine. GOGC for the members: SERVER_GOGC (default 100).
# SYNC_DELAY_MS=20 runs every member under strace with each fsync and
# fdatasync delayed that long, as make bench's emulated SD card.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "$1"); shift
BENCH=${EDGEKV_BENCH:-bin/edgekv}
DIR=$(mktemp -d)
CLUSTER="a=http://127.0.0.1:41380,b=http://127.0.0.1:42380,c=http://127.0.0.1:43380"
pids=()
wrap=()
if [ -n "${SYNC_DELAY_MS:-}" ]; then
	d=$((SYNC_DELAY_MS * 1000))
	wrap=(strace --seccomp-bpf -f -qq -o /dev/null -e trace=fdatasync,fsync,sigaltstack -e "inject=fdatasync:delay_enter=$d" -e "inject=fsync:delay_enter=$d")
fi
members=()
# Under strace, the members (its children) first: strace outlives a SIGTERM.
cleanup() {
	for p in "${pids[@]}"; do pkill -P "$p" 2>/dev/null || true; done
	kill "${pids[@]}" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$DIR"
}
trap cleanup EXIT
for m in a:41 b:42 c:43; do
	n=${m%%:*} p=${m##*:}
	GOGC=${SERVER_GOGC:-100} "${wrap[@]}" "$BIN" --name "$n" --data-dir "$DIR/$n" \
		--listen-client-urls "http://127.0.0.1:${p}379" --advertise-client-urls "http://127.0.0.1:${p}379" \
		--listen-peer-urls "http://127.0.0.1:${p}380" --initial-advertise-peer-urls "http://127.0.0.1:${p}380" \
		--initial-cluster "$CLUSTER" --initial-cluster-state new --initial-cluster-token cpu-per-op >"$DIR/$n.log" 2>&1 &
	pids+=($!)
done
for _ in $(seq 1 100); do
	ok=0
	for p in 41 42 43; do curl -sf -m 2 "http://127.0.0.1:${p}379/health" | grep -q '"health":"true"' && ok=$((ok + 1)); done
	[ "$ok" = 3 ] && break
	sleep 0.3
done
[ "$ok" = 3 ] || { echo "cluster not healthy; logs in $DIR" >&2; exit 1; }
# Under strace the members are its children.
for p in "${pids[@]}"; do
	if [ ${#wrap[@]} -gt 0 ]; then members+=("$(pgrep -P "$p")"); else members+=("$p"); fi
done
ticks() { local t=0; for p in "${members[@]}"; do t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo "$t"; }
# Peer traffic of the three members: bytes (etcd's metric, both servers),
# frames and messages (edgekv's own; 0 for etcd).
peer() {
	for p in 41 42 43; do curl -sf -m 2 "http://127.0.0.1:${p}379/metrics" || true; done | awk '
		/^etcd_network_peer_sent_bytes_total/ { b += $NF }
		/^edgekv_network_peer_sent_frames_total/ { f += $NF }
		/^edgekv_network_peer_sent_messages_total/ { m += $NF }
		END { printf "%d %d %d", b, f, m }'
}
t0=$(ticks) p0=$(peer)
"$BENCH" bench "$@" --endpoints 127.0.0.1:41379,127.0.0.1:42379,127.0.0.1:43379 --output json >"$DIR/out.json"
t1=$(ticks) p1=$(peer)
python3 - "$DIR/out.json" "$t0" "$t1" "$(getconf CLK_TCK)" $p0 $p1 <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
cpu_s = (int(sys.argv[3]) - int(sys.argv[2])) / int(sys.argv[4])
n = max(d["count"], 1)
b, f, m = (int(sys.argv[8 + i]) - int(sys.argv[5 + i]) for i in range(3))
extra = ", %.0f peer bytes" % (b / n)
if f:
    extra += ", %.2f peer frames and %.2f messages" % (f / n, m / n)
print("%s: %.0f ops/s, p50 %.2f ms, p99 %.2f ms, %d errors, members' CPU %.0f µs%s per op"
      % (d["load"], d["throughput"], d["latency_ms"]["p50"], d["latency_ms"]["p99"], d["errors"], cpu_s * 1e6 / n, extra))
PY
