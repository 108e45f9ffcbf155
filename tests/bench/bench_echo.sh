#!/usr/bin/env bash
# bench_echo.sh - echo benchmark: veloq-echo against a hand-written io_uring floor and a plain
# epoll loop (throughput, latency percentiles, server CPU per message), then memory per idle
# connection for veloq-echo, nginx and memcached. One run, all servers side by side, each
# pinned to the same CPU, the load generator pinned to another. Prints markdown tables.
#
# Usage: tests/bench/bench_echo.sh        (from anywhere; build first, see docs/BENCHMARKS.md)
# Loads: CONNS connections each with 1 message of SIZE bytes in flight, then PIPELINE of them,
# then 1 message of BIG_SIZE bytes (larger than one receive buffer: echoed in several sends).
# Rounds are many and short, and rotate the servers: on a shared machine bursts of foreign load
# then hit every server alike, and rounds they spare are left to take medians over.
# Knobs (environment): SERVER_CPU=1 CLIENT_CPU=0 ROUNDS=15 SECS=1 CONNS=50 SIZE=64 PIPELINE=16
#   BIG_SIZE=32768
#   IDLE_CONNS=5000 IDLE_HOLD=8 BASE_PORT=17000 BUILD=<repo>/build VELOQ=<BUILD>/apps/veloq-echo
#   SKIP_VELOQ=1 (run without veloq-echo: its rows stay empty) MAX_SECS=420 (hard stop)
# Exit status: 0 on success, 1 if a server fails to start or dies, or the load generator fails.

set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build}
BENCH=${BENCH:-$BUILD/tests/bench}
VELOQ=${VELOQ:-$BUILD/apps/veloq-echo}
VELOQ_CONF=${VELOQ_CONF:-$ROOT/configs/echo.ini}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
ROUNDS=${ROUNDS:-15}
SECS=${SECS:-1}
CONNS=${CONNS:-50}
SIZE=${SIZE:-64}
BIG_SIZE=${BIG_SIZE:-32768}
PIPELINE=${PIPELINE:-16}
IDLE_CONNS=${IDLE_CONNS:-5000}
IDLE_HOLD=${IDLE_HOLD:-8}
BASE_PORT=${BASE_PORT:-17000}
SKIP_VELOQ=${SKIP_VELOQ:-0}
MAX_SECS=${MAX_SECS:-420}

# Bound the whole run, whatever hangs: re-run under timeout (--foreground keeps Ctrl-C working;
# the TERM it sends at the limit runs the cleanup trap below).
if [ -z "${BENCH_ECHO_TIMED:-}" ]; then
	BENCH_ECHO_TIMED=1 exec timeout --foreground -k 30 "$MAX_SECS" "$0" "$@"
fi

TMP=$(mktemp -d /tmp/bench_echo.XXXXXX)
PIDS=()			# every server we started, stopped on exit

die() {
	echo "bench_echo: $*" >&2
	exit 1
}

stop_pid() {
	local pid=$1 i
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	echo "bench_echo: pid $pid ignored SIGTERM for 5 s, killing it" >&2
	kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do
		stop_pid "$pid"
	done
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

for knob in SERVER_CPU CLIENT_CPU ROUNDS SECS CONNS SIZE BIG_SIZE PIPELINE IDLE_CONNS IDLE_HOLD \
	BASE_PORT; do
	[[ ${!knob} =~ ^[0-9]+$ ]] || die "$knob=${!knob}: a whole number is expected"
done
if [ "$ROUNDS" -lt 1 ] || [ "$SECS" -lt 1 ]; then
	die "ROUNDS and SECS must be at least 1"
fi

# 5000 idle connections need 5000 fds on both ends; registered buffers need locked memory.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
ulimit -l unlimited 2>/dev/null || true
[ "$(ulimit -n)" -gt $((IDLE_CONNS + 100)) ] || die "ulimit -n $(ulimit -n) < $IDLE_CONNS conns"

for b in echo_load uring_echo_floor epoll_echo; do
	[ -x "$BENCH/$b" ] || die "$BENCH/$b missing: build first (docs/BENCHMARKS.md)"
done
if [ "$SKIP_VELOQ" != 1 ]; then
	[ -x "$VELOQ" ] || die "$VELOQ missing (set SKIP_VELOQ=1 to run without it)"
fi

port_listening() {
	ss -Hltn "sport = :$1" | grep -q .
}

# start_server NAME PORT CMD... - start CMD pinned to SERVER_CPU, wait until it listens.
# Sets SERVER_PID. The log is $TMP/NAME.log.
start_server() {
	local name=$1 port=$2 i
	shift 2
	port_listening "$port" && die "port $port is already in use (set BASE_PORT)"
	taskset -c "$SERVER_CPU" "$@" >"$TMP/$name.log" 2>&1 &
	SERVER_PID=$!
	PIDS+=("$SERVER_PID")
	for ((i = 0; i < 100; i++)); do
		kill -0 "$SERVER_PID" 2>/dev/null || break
		if port_listening "$port"; then
			# veloq-echo logs it once every shard listens; the others have one socket.
			if [ "$name" != veloq ] || grep -q listening "$TMP/$name.log"; then
				return 0
			fi
		fi
		sleep 0.1
	done
	echo "bench_echo: $name failed to start on port $port: $*" >&2
	sed 's/^/    /' "$TMP/$name.log" >&2
	exit 1
}

alive() {
	kill -0 "$2" 2>/dev/null || die "$1 (pid $2) died; log: $(tail -5 "$TMP/$1.log")"
}

# utime+stime of a process, all threads, in clock ticks (comm may hold spaces: cut after ')').
proc_ticks() {
	sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

# Busy ticks of one CPU: user nice system irq softirq (not idle, iowait or steal).
cpu_ticks() {
	awk -v c="cpu$1" '$1 == c { print $2 + $3 + $4 + $7 + $8 }' /proc/stat
}

rss_kib() {
	awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

slab_kib() {
	awk '/^Slab:/ { print $2 }' /proc/meminfo
}

slab_caches() {		# "cache bytes-in-use" per slab cache, sorted, if readable (root)
	awk 'NR > 2 { print $1, $2 * $4 }' /proc/slabinfo 2>/dev/null | sort || true
}

field() {		# field KEY LINE -> value of KEY=value in LINE
	sed -n "s/.*[ :]$1=\([^ ]*\).*/\1/p" <<<"$2"
}

median() {		# median of the arguments (lower middle for an even count)
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

HZ=$(getconf CLK_TCK)
KERNEL=$(uname -r)
SERVERS=()
declare -A PID_OF RESULT

# --- throughput ---------------------------------------------------------------------------
echo "## bench_echo: kernel $KERNEL, $(nproc) CPUs, servers on CPU $SERVER_CPU," \
	"client on CPU $CLIENT_CPU, $ROUNDS rounds x $SECS s"

if [ "$SKIP_VELOQ" != 1 ]; then
	start_server veloq "$BASE_PORT" "$VELOQ" --config "$VELOQ_CONF" \
		-o "shards.cpus=$SERVER_CPU" -o "listen.port=$BASE_PORT"
	PID_OF[veloq]=$SERVER_PID
	SERVERS+=(veloq)
	# Which driver and features it runs with (auto may fall back to epoll): part of the result.
	sed 's/^/  veloq-echo: /' "$TMP/veloq.log"
fi
start_server floor $((BASE_PORT + 1)) "$BENCH/uring_echo_floor" $((BASE_PORT + 1))
PID_OF[floor]=$SERVER_PID
SERVERS+=(floor)
start_server epoll $((BASE_PORT + 2)) "$BENCH/epoll_echo" $((BASE_PORT + 2))
PID_OF[epoll]=$SERVER_PID
SERVERS+=(epoll)
declare -A PORT_OF=([veloq]=$BASE_PORT [floor]=$((BASE_PORT + 1)) [epoll]=$((BASE_PORT + 2)))
LOADS=(p1 pN big)
declare -A PIPE_OF=([p1]=1 [pN]=$PIPELINE [big]=1)
declare -A SIZE_OF=([p1]=$SIZE [pN]=$SIZE [big]=$BIG_SIZE)

# One round: load one server, take its CPU and the server core's busy time around the run.
run_round() {
	local srv=$1 load=$2 round=$3 pid=${PID_OF[$1]} t0 t1 c0 c1 out msgs note
	t0=$(proc_ticks "$pid")
	c0=$(cpu_ticks "$SERVER_CPU")
	out=$(timeout $((SECS + 30)) taskset -c "$CLIENT_CPU" "$BENCH/echo_load" \
		-p "${PORT_OF[$srv]}" -c "$CONNS" -s "${SIZE_OF[$load]}" \
		-P "${PIPE_OF[$load]}" -d "$SECS") ||
		die "echo_load against $srv failed (round $round, $load)"
	t1=$(proc_ticks "$pid")
	c1=$(cpu_ticks "$SERVER_CPU")
	alive "$srv" "$pid"
	msgs=$(field messages "$out")
	RESULT[$srv.$load.$round]="$(field msgs_per_sec "$out") $(field p50_us "$out")"
	RESULT[$srv.$load.$round]+=" $(field p99_us "$out") $(field p999_us "$out")"
	RESULT[$srv.$load.$round]+=" $(awk -v t=$((t1 - t0)) -v m="$msgs" -v hz="$HZ" \
		'BEGIN { printf "%.3f", t * 1e6 / hz / m }')"
	RESULT[$srv.$load.$round]+=" $(awk -v t=$((c1 - c0)) -v m="$msgs" -v hz="$HZ" \
		'BEGIN { printf "%.3f", t * 1e6 / hz / m }')"
	# On a quiet machine the server's own time is nearly all of its CPU's busy time; if
	# something else kept that CPU busy for over a tenth of the round, it competed with the
	# server (whose own CPU time stays meaningful; its throughput and latency do not).
	note=$(awk -v t=$((t1 - t0)) -v c=$((c1 - c0)) -v s="$SECS" -v hz="$HZ" \
		'BEGIN { if (c - t > s * hz / 10) print " NOISY" }')
	RESULT[$srv.$load.$round]+=" $([ -z "$note" ] && echo 0 || echo 1)"
	printf '  round %d %-5s %-3s %s cpu_us_per_msg=%s core_us_per_msg=%s%s\n' "$round" "$srv" \
		"$load" "$out" "$(cut -d' ' -f5 <<<"${RESULT[$srv.$load.$round]}")" \
		"$(cut -d' ' -f6 <<<"${RESULT[$srv.$load.$round]}")" "$note"
}

for ((r = 1; r <= ROUNDS; r++)); do
	# Rotate the order each round so no server always runs first (or right after another).
	n=${#SERVERS[@]}
	for load in "${LOADS[@]}"; do
		for ((k = 0; k < n; k++)); do
			run_round "${SERVERS[$(((k + r - 1) % n))]}" "$load" "$r"
		done
	done
done

# The rounds of server $1 under load $2 that no other process disturbed (ALL=1: every round).
clean_rounds() {
	local r
	for ((r = 1; r <= ROUNDS; r++)); do
		if [ "${ALL:-0}" = 1 ] || [ "$(cut -d' ' -f7 <<<"${RESULT[$1.$2.$r]}")" = 0 ]; then
			echo "$r"
		fi
	done
}

# Median of metric number $3 (1-based: rate p50 p99 p999 cpu core) over the clean rounds.
med() {
	local vals=() r
	for r in $(clean_rounds "$1" "$2"); do
		vals+=("$(cut -d' ' -f"$3" <<<"${RESULT[$1.$2.$r]}")")
	done
	median "${vals[@]}"
}

THROUGHPUT_TABLE=$TMP/throughput.md
NOISY=0
{
	echo "| server | load | msgs/s | p50 µs | p99 µs | p99.9 µs | server CPU µs/msg" \
		"| CPU $SERVER_CPU busy µs/msg | msgs/s vs floor | CPU/msg vs floor" \
		"| clean rounds |"
	echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	for load in "${LOADS[@]}"; do
		# Compare like with like: clean rounds only if every server has some, else all.
		ALL=0
		for srv in "${SERVERS[@]}"; do
			[ -n "$(clean_rounds "$srv" "$load")" ] || ALL=1
		done
		frate=$(med floor "$load" 1)
		fcpu=$(med floor "$load" 5)
		for srv in "${SERVERS[@]}"; do
			rate=$(med "$srv" "$load" 1)
			cpu=$(med "$srv" "$load" 5)
			printf '| %s | %d conns × %d B, %d in flight ' "$srv" "$CONNS" \
				"${SIZE_OF[$load]}" "${PIPE_OF[$load]}"
			printf '| %.0f | %s | %s | %s | %s | %s |' "$rate" \
				"$(med "$srv" "$load" 2)" "$(med "$srv" "$load" 3)" \
				"$(med "$srv" "$load" 4)" "$cpu" "$(med "$srv" "$load" 6)"
			awk -v a="$rate" -v b="$frate" -v c="$cpu" -v d="$fcpu" \
				'BEGIN { printf " %.3f | %.3f |", a / b, c / d }'
			nclean=$(ALL=0 clean_rounds "$srv" "$load" | wc -l)
			if [ $ALL = 1 ]; then
				echo " $nclean/$ROUNDS (used all) |"
			else
				echo " $nclean/$ROUNDS |"
			fi
			NOISY=$((NOISY + ROUNDS - nclean))
		done
	done
} >"$THROUGHPUT_TABLE"

for srv in "${SERVERS[@]}"; do
	stop_pid "${PID_OF[$srv]}"
done
if [ "$SKIP_VELOQ" != 1 ]; then
	wait "${PID_OF[veloq]}" && VELOQ_EXIT=0 || VELOQ_EXIT=$?
	echo "  veloq-echo exit status after SIGTERM: $VELOQ_EXIT"
fi

# --- memory per idle connection ------------------------------------------------------------
# measure_idle NAME PORT PID [MAIN_PID] - VmRSS of PID and kernel slab (whole machine, so both
# socket ends) before and while IDLE_CONNS connections are held open and silent. MAIN_PID is the
# process to check is still alive (nginx's master); it defaults to PID.
declare -A RSS0 RSS1 SLAB_PER_CONN
measure_idle() {
	local name=$1 port=$2 pid=$3 main=${4:-$3} slab0 slab1 prev rss i lpid
	sleep 0.5
	RSS0[$name]=$(rss_kib "$pid")
	slab0=$(slab_kib)
	slab_caches >"$TMP/slab0"
	timeout $((IDLE_HOLD + 60)) taskset -c "$CLIENT_CPU" "$BENCH/echo_load" -i \
		-p "$port" -c "$IDLE_CONNS" -d "$IDLE_HOLD" >"$TMP/idle.$name.out" 2>&1 &
	lpid=$!
	for ((i = 0; i < 300; i++)); do
		grep -q "connections open" "$TMP/idle.$name.out" && break
		kill -0 $lpid 2>/dev/null || break
		sleep 0.1
	done
	grep -q "connections open" "$TMP/idle.$name.out" ||
		die "idle connect to $name failed: $(cat "$TMP/idle.$name.out")"
	# The server accepts after the client's connect returns: wait until its RSS settles.
	prev=-1
	for ((i = 0; i < 20; i++)); do
		sleep 0.25
		rss=$(rss_kib "$pid")
		[ "$rss" = "$prev" ] && break
		prev=$rss
	done
	RSS1[$name]=$rss
	slab1=$(slab_kib)
	slab_caches >"$TMP/slab1"
	wait $lpid || die "idle hold against $name failed: $(cat "$TMP/idle.$name.out")"
	alive "$name" "$main"
	SLAB_PER_CONN[$name]=$(((slab1 - slab0) * 1024 / IDLE_CONNS))
	echo "  idle $name: VmRSS ${RSS0[$name]} -> $rss KiB, Slab $slab0 -> $slab1 KiB," \
		"$IDLE_CONNS conns"
	# Where the kernel memory went (machine-wide: both socket ends and anything else running).
	echo "  idle $name: slab caches that grew, bytes/conn:" \
		"$(join "$TMP/slab0" "$TMP/slab1" | awk -v n="$IDLE_CONNS" \
			'{ d = ($3 - $2) / n; if (d >= 32) printf "%s %.0f\n", $1, d }' |
			sort -k2 -nr | head -8 | paste -sd' ')"
}
idle_bytes() {		# RSS bytes per idle connection
	echo $(((RSS1[$1] - RSS0[$1]) * 1024 / IDLE_CONNS))
}

if [ "$SKIP_VELOQ" != 1 ]; then
	# Same connection budget as nginx and memcached get (the default is 4096 per shard).
	port=$((BASE_PORT + 10))
	start_server veloq $port "$VELOQ" --config "$VELOQ_CONF" \
		-o "shards.cpus=$SERVER_CPU" -o "listen.port=$port" \
		-o "limits.max_connections=$((IDLE_CONNS * 2))"
	measure_idle veloq $port "$SERVER_PID"
	stop_pid "$SERVER_PID"
fi

# nginx: a bare http server; an idle connection has sent no request yet.
nginx_conf() {		# nginx_conf PORT WORKER_CONNECTIONS DIR
	mkdir -p "$3/tmp"
	cat >"$3/nginx.conf" <<-EOF
		worker_processes 1;
		daemon off;
		pid $3/nginx.pid;
		error_log $3/error.log warn;
		worker_rlimit_nofile $(($2 + 100));
		events { worker_connections $2; use epoll; }
		http {
			access_log off;
			client_body_temp_path $3/tmp/body;
			proxy_temp_path $3/tmp/proxy;
			fastcgi_temp_path $3/tmp/fastcgi;
			uwsgi_temp_path $3/tmp/uwsgi;
			scgi_temp_path $3/tmp/scgi;
			client_header_timeout 600s;
			keepalive_timeout 600s;
			server { listen 127.0.0.1:$1; return 200 "ok\n"; }
		}
	EOF
}
nginx_worker() {	# the worker is the master's only child; wait for it to appear
	local i w
	for ((i = 0; i < 50; i++)); do
		w=$(pgrep -P "$1" | head -1) && [ -n "$w" ] && echo "$w" && return 0
		sleep 0.1
	done
	die "nginx (pid $1) has no worker"
}

port=$((BASE_PORT + 11))
NGINX_SLOTS=$((IDLE_CONNS * 2))
mkdir -p "$TMP/nginx"
nginx_conf $port $NGINX_SLOTS "$TMP/nginx"
start_server nginx $port nginx -p "$TMP/nginx/" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/error.log"
nginx_master=$SERVER_PID
measure_idle nginx $port "$(nginx_worker $nginx_master)" $nginx_master
stop_pid $nginx_master

# nginx allocates every connection slot up front, so the delta above misses that part; price a
# slot by comparing idle workers with $NGINX_SLOTS and with 512 slots.
port=$((BASE_PORT + 12))
mkdir -p "$TMP/nginx-small"
nginx_conf $port 512 "$TMP/nginx-small"
start_server nginx-small $port nginx -p "$TMP/nginx-small/" -c "$TMP/nginx-small/nginx.conf" \
	-e "$TMP/nginx-small/error.log"
small_rss=$(rss_kib "$(nginx_worker $SERVER_PID)")
stop_pid $SERVER_PID
NGINX_SLOT_BYTES=$(((RSS0[nginx] - small_rss) * 1024 / (NGINX_SLOTS - 512)))

port=$((BASE_PORT + 13))
start_server memcached $port memcached -t 1 -p $port -U 0 -c $((IDLE_CONNS * 2)) -l 127.0.0.1 \
	-u root
measure_idle memcached $port "$SERVER_PID"
stop_pid "$SERVER_PID"

# --- report --------------------------------------------------------------------------------
echo
echo "### Throughput and latency (medians of $ROUNDS rounds × $SECS s; kernel $KERNEL)"
echo
cat "$THROUGHPUT_TABLE"
if [ "$NOISY" -gt 0 ]; then
	echo
	echo "WARNING: in $NOISY of $((ROUNDS * ${#LOADS[@]} * ${#SERVERS[@]})) rounds" \
		"other processes kept CPU $SERVER_CPU busy for over 10% of the round. A load's"
	echo "medians use clean rounds only when every server has some; rows marked 'used all'"
	echo "include disturbed rounds: their msgs/s and latency are unreliable (the server's own"
	echo "CPU µs/msg much less so)."
fi
echo
echo "### Memory per idle connection ($IDLE_CONNS connections, held $IDLE_HOLD s)"
echo
echo "| server | VmRSS before KiB | VmRSS with conns KiB | RSS bytes/conn | vs nginx" \
	"| kernel slab bytes/conn (machine-wide, both ends) |"
echo "|---|---:|---:|---:|---:|---:|"
for name in veloq nginx memcached; do
	[ -n "${RSS1[$name]:-}" ] || continue
	printf '| %s | %d | %d | %d | %s | %d |\n' "$name" "${RSS0[$name]}" "${RSS1[$name]}" \
		"$(idle_bytes $name)" \
		"$(awk -v a="$(idle_bytes $name)" -v b="$(idle_bytes nginx)" \
			'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')" \
		"${SLAB_PER_CONN[$name]}"
done
echo
echo "nginx allocates its $NGINX_SLOTS worker_connections slots at start, so its RSS delta leaves"
echo "them out; priced separately (idle worker with $NGINX_SLOTS slots vs 512), a slot costs" \
	"$NGINX_SLOT_BYTES bytes."
