#!/usr/bin/env bash
# bench_drivers.sh - veloq-echo under io.driver=uring and io.driver=epoll, side by side: same
# binary, same config, same CPU, same load generator (echo_load), rounds rotated so neither
# driver always runs first. Prints a markdown table of medians: messages/s, p50/p99 latency and
# server CPU per message, per connection count and pipeline depth.
#
# Usage: tests/bench/bench_drivers.sh   (build with -DVQ_BENCH=ON first)
# Knobs: SERVER_CPU=1 CLIENT_CPU=0 ROUNDS=3 SECS=3 CONNS_LIST="1 10 100 500" PIPES="1 16"
#   SIZE=64 BASE_PORT=17100 BUILD=<repo>/build MAX_SECS=600 (hard stop)
#   A="uring:io.driver=uring" B="epoll:io.driver=epoll" - the two variants compared, as
#   NAME:override,override,...; e.g. B="bundle:io.driver=uring,io.recv_bundle=yes".
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build}
LOAD=${LOAD:-$BUILD/tests/bench/echo_load}
VELOQ=${VELOQ:-$BUILD/apps/veloq-echo}
CONF=${CONF:-$ROOT/configs/echo.ini}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-3}
CONNS_LIST=${CONNS_LIST:-1 10 100 500}
PIPES=${PIPES:-1 16}
SIZE=${SIZE:-64}
BASE_PORT=${BASE_PORT:-17100}
MAX_SECS=${MAX_SECS:-600}

if [ -z "${BENCH_DRIVERS_TIMED:-}" ]; then
	BENCH_DRIVERS_TIMED=1 exec timeout --foreground -k 30 "$MAX_SECS" "$0" "$@"
fi
[ -x "$LOAD" ] || { echo "bench_drivers: $LOAD missing: build with -DVQ_BENCH=ON" >&2; exit 1; }
[ -x "$VELOQ" ] || { echo "bench_drivers: $VELOQ missing" >&2; exit 1; }
ulimit -n 65536 2>/dev/null || true
ulimit -l unlimited 2>/dev/null || true

TMP=$(mktemp -d /tmp/bench_drivers.XXXXXX)
declare -A PID PORT RES
cleanup() {
	for d in "${!PID[@]}"; do kill -TERM "${PID[$d]}" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT

A=${A:-uring:io.driver=uring}
B=${B:-epoll:io.driver=epoll}
DRIVERS=("${A%%:*}" "${B%%:*}")
declare -A OVR=([${A%%:*}]=${A#*:} [${B%%:*}]=${B#*:})
i=0
for d in "${DRIVERS[@]}"; do
	PORT[$d]=$((BASE_PORT + i))
	i=$((i + 1))
	args=() envs=()
	IFS=, read -ra kv <<<"${OVR[$d]}"
	for o in "${kv[@]}"; do
		# section.key=value is a config override; NAME=value (no dot) an environment variable
		if [[ ${o%%=*} == *.* ]]; then args+=(-o "$o"); else envs+=("$o"); fi
	done
	env "${envs[@]}" taskset -c "$SERVER_CPU" "$VELOQ" --config "$CONF" -o "shards.cpus=$SERVER_CPU" \
		-o "listen.port=${PORT[$d]}" "${args[@]}" -o log.level=notice \
		>"$TMP/$d.log" 2>&1 &
	PID[$d]=$!
	for ((k = 0; k < 100; k++)); do
		grep -q listening "$TMP/$d.log" && break
		sleep 0.1
	done
	grep -q listening "$TMP/$d.log" || { cat "$TMP/$d.log" >&2; exit 1; }
done

ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
field() { sed -n "s/.*[ :]$1=\([^ ]*\).*/\1/p" <<<"$2"; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
HZ=$(getconf CLK_TCK)

echo "## bench_drivers: kernel $(uname -r), $(nproc) CPUs, server CPU $SERVER_CPU," \
	"client CPU $CLIENT_CPU, $ROUNDS rounds x $SECS s, $SIZE-byte messages;" \
	"$A vs $B"
for ((r = 1; r <= ROUNDS; r++)); do
	for c in $CONNS_LIST; do
		for p in $PIPES; do
			order=("${DRIVERS[@]}")
			((r % 2 == 0)) && order=("${DRIVERS[1]}" "${DRIVERS[0]}")
			for d in "${order[@]}"; do
				t0=$(ticks "${PID[$d]}")
				out=$(taskset -c "$CLIENT_CPU" "$LOAD" -p "${PORT[$d]}" -c "$c" \
					-s "$SIZE" -P "$p" -d "$SECS")
				t1=$(ticks "${PID[$d]}")
				m=$(field messages "$out")
				cpu=$(awk -v t=$((t1 - t0)) -v m="$m" -v hz="$HZ" \
					'BEGIN { printf "%.3f", t * 1e6 / hz / m }')
				RES[$d.$c.$p.$r]="$(field msgs_per_sec "$out") $(field p50_us "$out") $(field p99_us "$out") $cpu"
				echo "  round $r $d conns=$c pipeline=$p: $out cpu_us_per_msg=$cpu"
			done
		done
	done
done

med() {		# med DRIVER CONNS PIPE COLUMN
	local v=() r
	for ((r = 1; r <= ROUNDS; r++)); do v+=("$(cut -d' ' -f"$4" <<<"${RES[$1.$2.$3.$r]}")"); done
	median "${v[@]}"
}
echo
a=${DRIVERS[0]} b=${DRIVERS[1]}
echo "| conns | pipeline | $a msg/s | $b msg/s | $a/$b | $a p50/p99 us |" \
	"$b p50/p99 us | $a CPU us/msg | $b CPU us/msg |"
echo "|---|---|---|---|---|---|---|---|---|"
for c in $CONNS_LIST; do
	for p in $PIPES; do
		ur=$(med "$a" "$c" "$p" 1)
		ep=$(med "$b" "$c" "$p" 1)
		printf '| %s | %s | %.0f | %.0f | %.2f | %s / %s | %s / %s | %s | %s |\n' "$c" "$p" \
			"$ur" "$ep" "$(awk -v a="$ur" -v b="$ep" 'BEGIN { print a / b }')" \
			"$(med "$a" "$c" "$p" 2)" "$(med "$a" "$c" "$p" 3)" \
			"$(med "$b" "$c" "$p" 2)" "$(med "$b" "$c" "$p" 3)" \
			"$(med "$a" "$c" "$p" 4)" "$(med "$b" "$c" "$p" 4)"
	done
done
for d in "${DRIVERS[@]}"; do
	kill -TERM "${PID[$d]}"
	wait "${PID[$d]}" || { echo "bench_drivers: $d exited unclean" >&2; cat "$TMP/$d.log" >&2; }
	grep -q "stopped cleanly" "$TMP/$d.log" || { echo "$d: no clean stop" >&2; cat "$TMP/$d.log" >&2; }
	unset "PID[$d]"
done
