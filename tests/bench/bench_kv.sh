#!/usr/bin/env bash
# veloq-kv against Debian's memcached, side by side, at equal cores.
#   1 shard on CPU 0 vs `memcached -t 1` pinned to CPU 0 (client on CPU 1);
#   2 shards on CPUs 0-1 vs `memcached -t 2` on CPUs 0-1 (client unpinned).
# Loads (tests/bench/kv_load.c, closed loop per connection, 90% get / 10% set over
# 10000 preloaded keys): 16 connections x 1 request, value 32 B and 4 KiB;
# 16 x 16 pipelined; 16 x 1 multi-get of 10 keys.
# Each cell runs RUNS times for SECS seconds; the run with the median throughput
# is reported (throughput, p50/p99 latency, server CPU µs per request over the
# measured window from /proc/PID/stat).
# Usage: tests/bench/bench_kv.sh [build dir, default build-bench] > results.md
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:-$SRC/build-bench}
SECS=${SECS:-3}
RUNS=${RUNS:-3}
PORT=${PORT:-23411}

cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DVQ_BENCH=ON -DVQ_TESTS=OFF >/dev/null
cmake --build "$BUILD" -j2 --target veloq-kv kv_load >/dev/null
LOAD=$BUILD/tests/bench/kv_load
KV=$BUILD/apps/veloq-kv
command -v memcached >/dev/null || { echo "memcached not installed (apt-get install memcached)" >&2; exit 1; }

server_pid=
start_server() { # kind threads port
	local kind=$1 n=$2 port=$3 cpus
	cpus=$([ "$n" = 1 ] && echo 0 || echo 0-$((n - 1)))
	if [ "$kind" = veloq-kv ]; then
		"$KV" --config "$SRC/configs/kv.ini" -o listen.port="$port" -o shards.cpus="$cpus" \
			-o kv.memory=512M -o log.level=warning &
	else
		taskset -c "$cpus" memcached -u root -U 0 -p "$port" -t "$n" -m 1024 -c 4096 &
	fi
	server_pid=$!
	sleep 0.5
}
stop_server() {
	kill "$server_pid" 2>/dev/null || true
	wait "$server_pid" 2>/dev/null || true
}

run_cell() { # kind threads label load-args...
	local kind=$1 n=$2 label=$3; shift 3
	local pin=() results=()
	[ "$n" = 1 ] && pin=(-C 1)
	for r in $(seq "$RUNS"); do
		PORT=$((PORT + 1))
		start_server "$kind" "$n" "$PORT"
		results+=("$("$LOAD" -p "$PORT" -t "$SECS" -P "$server_pid" "${pin[@]}" "$@")")
		stop_server
	done
	# median by throughput
	local med
	med=$(printf '%s\n' "${results[@]}" | sort -t= -k4 -n | awk -v m=$(((RUNS + 1) / 2)) 'NR==m')
	local rps p50 p99 cpu
	rps=$(sed -E 's/.* rps=([0-9]+).*/\1/' <<<"$med")
	p50=$(sed -E 's/.* p50_us=([0-9]+).*/\1/' <<<"$med")
	p99=$(sed -E 's/.* p99_us=([0-9]+).*/\1/' <<<"$med")
	cpu=$(sed -E 's/.* cpu_us_per_req=([0-9.]+).*/\1/' <<<"$med")
	echo "| $label | $kind | $rps | $p50 | $p99 | $cpu |"
	echo "$kind $label: $med" >&2
}

echo "| load | server | req/s | p50 µs | p99 µs | server CPU µs/req |"
echo "|---|---|---:|---:|---:|---:|"
for n in 1 2; do
	for kind in memcached veloq-kv; do
		run_cell $kind $n "$n core(s), 16 conn, 32 B" -c 16 -d 1 -v 32
		run_cell $kind $n "$n core(s), 16 conn, 4 KiB" -c 16 -d 1 -v 4096
		run_cell $kind $n "$n core(s), 16 conn x 16 pipelined, 32 B" -c 16 -d 16 -v 32
		run_cell $kind $n "$n core(s), 16 conn, get of 10 keys, 32 B" -c 16 -d 1 -v 32 -m 10
	done
done
