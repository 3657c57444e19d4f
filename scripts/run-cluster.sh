#!/usr/bin/env bash
# Starts a 3-member edgekv cluster on 127.0.0.1 in the foreground, with the
# ports of etcd's Procfile. Data lives in .run/ and survives a restart.
# Ctrl-C stops all three members.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${EDGEKV_BIN:-bin/edgekv}
mkdir -p .run
CLUSTER="infra1=http://127.0.0.1:12380,infra2=http://127.0.0.1:22380,infra3=http://127.0.0.1:32380"
pids=()
cleanup() {
	trap - INT TERM EXIT
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait
}
trap cleanup INT TERM EXIT
start() {
	local name=$1 client=$2 peer=$3
	"$BIN" --name "$name" --data-dir ".run/$name.etcd" \
		--listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
		--listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
		--initial-cluster-token etcd-cluster-1 --initial-cluster "$CLUSTER" --initial-cluster-state new \
		2>&1 | sed -u "s/^/$name | /" &
	pids+=($!)
}
start infra1 2379 12380
start infra2 22379 22380
start infra3 32379 32380
echo "edgekv: 3 members up; try: etcdctl --endpoints=127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379 member list"
wait -n || true
