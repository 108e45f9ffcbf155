#!/usr/bin/env bash
# veloq-kv against Debian's memcached, side by side, at equal cores.
#   1 shard on CPU 0 vs `memcached -t 1` pinned to CPU 0 (client on CPU 1);
#   2 shards on CPUs 0-1 vs `memcached -t 2` on CPUs 0-1 (client unpinned).
# Loads (tests/bench/kv_load.c, closed loop per connection, 90% get / 10% set over
# 10000 preloaded keys): 16 connections x 1 request, value 32 B and 4 KiB;
# 16 x 16 pipelined; 16 x 1 multi-get of 10 keys, and 16 x 8 of them; many
# clients, 1000 connections x 4 pipelined with 4 KiB values; and a fixed
# offered load of 80 000 requests/s (kv_load -r), where CPU per request
# compares at equal work. With 2 cores veloq-kv also runs with shards.pin=node
# and io.msg_poll_us=0, the settings for CPUs shared with other busy processes
# (here: the client).
# Each cell runs RUNS rounds of SECS seconds, memcached and veloq-kv alternating
# so both share the same background load; the median of each figure is reported
# (throughput, p50/p99 latency, server CPU µs per request over the measured
# window from /proc/PID/stat). Ratios are veloq-kv / memcached.
# Usage: [SECS=2] [RUNS=5] [ONLY=regex of "N core: load"] [KV_OPTS="-o key=value ..."] \
#        tests/bench/bench_kv.sh [build dir, default build-bench] > results.md
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:-$SRC/build-bench}
SECS=${SECS:-3}
RUNS=${RUNS:-3}
PORT=${PORT:-23411}

cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DVQ_BENCH=ON -DVQ_TESTS=OFF >/dev/null
cmake --build "$BUILD" -j2 --target veloq-kv kv_load >/dev/null
LOAD=$BUILD/tests/bench/kv_load
# The 1000-connection cell, and veloq-kv checks max_connections x shards fit.
ulimit -n 16384 2>/dev/null || ulimit -n "$(ulimit -Hn)"
KV=$BUILD/apps/veloq-kv
command -v memcached >/dev/null || { echo "memcached not installed (apt-get install memcached)" >&2; exit 1; }

server_pid=
start_server() { # kind threads port
	local kind=$1 n=$2 port=$3 cpus
	cpus=$([ "$n" = 1 ] && echo 0 || echo 0-$((n - 1)))
	case $kind in
	veloq-kv*)
		local extra=()
		# shellcheck disable=SC2206 # KV_OPTS: more -o options, split on spaces
		extra=(${KV_OPTS:-})
		# pin=node: the shards may leave a CPU the unpinned client is busy on.
		[ "$kind" = veloq-kv/node ] && extra+=(-o shards.pin=node -o io.msg_poll_us=0)
		"$KV" --config "$SRC/configs/kv.ini" -o listen.port="$port" -o shards.cpus="$cpus" \
			-o kv.memory=512M -o log.level=warning "${extra[@]}" &
		;;
	memcached)
		taskset -c "$cpus" memcached -u root -U 0 -p "$port" -t "$n" -m 1024 -c 4096 &
		;;
	esac
	server_pid=$!
	sleep 0.5
}
stop_server() {
	kill "$server_pid" 2>/dev/null || true
	wait "$server_pid" 2>/dev/null || true
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
field() { sed -E "s/.* $1=([0-9.]+).*/\1/"; }

# One load at one core count: RUNS rounds, each running every server kind in turn,
# so all see the same background; the median of each figure is reported.
# 1 core: memcached, veloq-kv. 2 cores: also veloq-kv with shards.pin=node.
run_pair() { # threads label load-args...
	local n=$1 label=$2; shift 2
	[[ "$n core: $label" =~ ${ONLY:-.} ]] || return 0
	local pin=() kinds=(memcached veloq-kv) kind line
	declare -A out=()
	[ "$n" = 1 ] && pin=(-C 1)
	[ "$n" = 1 ] || kinds+=(veloq-kv/node)
	for r in $(seq "$RUNS"); do
		for kind in "${kinds[@]}"; do
			PORT=$((PORT + 1))
			start_server "$kind" "$n" "$PORT"
			line=$("$LOAD" -p "$PORT" -t "$SECS" -P "$server_pid" "${pin[@]}" "$@")
			stop_server
			echo "$kind $n $label: $line" >&2
			out[$kind]+="$line"$'\n'
		done
	done
	local rm cm rps p50 p99 cpu
	for kind in "${kinds[@]}"; do
		rps=$(printf '%s' "${out[$kind]}" | field rps | median)
		p50=$(printf '%s' "${out[$kind]}" | field p50_us | median)
		p99=$(printf '%s' "${out[$kind]}" | field p99_us | median)
		cpu=$(printf '%s' "${out[$kind]}" | field cpu_us_per_req | median)
		if [ "$kind" = memcached ]; then
			rm=$rps cm=$cpu
			echo "| $n | $label | $kind | $rps | $p50 | $p99 | $cpu | | |"
		else
			echo "| $n | $label | ${kind/\/node/ (pin=node)} | $rps | $p50 | $p99 | $cpu | $(awk -v a="$rps" -v b="$rm" 'BEGIN{printf "%.2f", a/b}') | $(awk -v a="$cpu" -v b="$cm" 'BEGIN{printf "%.2f", a/b}') |"
		fi
	done
}

echo "| cores | load | server | req/s | p50 µs | p99 µs | server CPU µs/req | req/s ratio | CPU ratio |"
echo "|---:|---|---|---:|---:|---:|---:|---:|---:|"
for n in 1 2; do
	run_pair $n "16 conn, 32 B" -c 16 -d 1 -v 32
	run_pair $n "16 conn, 4 KiB" -c 16 -d 1 -v 4096
	run_pair $n "16 conn x 16 pipelined, 32 B" -c 16 -d 16 -v 32
	run_pair $n "16 conn, get of 10 keys, 32 B" -c 16 -d 1 -v 32 -m 10
	run_pair $n "16 conn x 8 pipelined, get of 10 keys, 32 B" -c 16 -d 8 -v 32 -m 10
	run_pair $n "1000 conn x 4 pipelined, 4 KiB" -c 1000 -d 4 -v 4096
	run_pair $n "offered 80000/s, 64 conn x 2, 32 B" -c 64 -d 2 -v 32 -r 80000
done
