#!/usr/bin/env bash
# Install what is missing, then build and run every test:
#   1. a Debug build in build/: every ctest label (unit, integration, ...);
#   2. an AddressSanitizer+UBSan build in build-asan/: the unit and integration tests;
#   3. scripts/tsan.sh, when it exists (the ThreadSanitizer run).
# Every step runs even when an earlier one failed; the exit status is non-zero if
# anything failed, and the last line reads "N passed, N failed" (tests, plus any
# build step that failed). Works without a terminal; JOBS overrides the -j2 default.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

JOBS=${JOBS:-2}
log_dir=$(mktemp -d "${TMPDIR:-/tmp}/veloq-test.XXXXXX")
trap 'rm -rf "$log_dir"' EXIT
passed=0 failed=0 skipped=0 started=$SECONDS
summary=()

# step NAME COMMAND...: run, show the output, keep it for counting.
step() {
	local name=$1 t0=$SECONDS rc
	shift
	echo "=== $name: $*"
	"$@" 2>&1 | tee "$log_dir/$name.log"
	rc=${PIPESTATUS[0]}
	summary+=("$(printf '%-28s %s (%ds)' "$name" "$([[ $rc == 0 ]] && echo ok || echo "FAILED rc=$rc")" $((SECONDS - t0)))")
	return "$rc"
}

# count NAME RC: add a ctest run's own "N tests failed out of M" line to the totals,
# or count the step as one failure when it never got that far.
count() {
	local log="$log_dir/$1.log" rc=$2 line total fail skip
	line=$(grep -E '[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n1)
	if [[ -n $line ]]; then
		fail=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$line")
		total=$(sed -E 's/.* failed out of ([0-9]+).*/\1/' <<<"$line")
		skip=$(grep -cE '^[[:space:]]*[0-9]+ - .*\((Skipped|Not Run)\)' "$log" || true)
		passed=$((passed + total - fail - skip))
		failed=$((failed + fail))
		skipped=$((skipped + skip))
		((rc == 0 || fail > 0)) || failed=$((failed + 1)) # ctest itself failed
	elif ((rc == 0)); then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
	fi
}

# build DIR NAME CMAKE-ARGS...: configure and build; a failure counts once.
build() {
	local dir=$1 name=$2
	shift 2
	if step "$name-configure" cmake -S . -B "$dir" "$@" &&
	   step "$name-build" cmake --build "$dir" -j"$JOBS"; then
		return 0
	fi
	failed=$((failed + 1))
	return 1
}

if ! step deps bash scripts/deps.sh; then
	echo "scripts/deps.sh failed: cannot build without the packages above" >&2
	echo "0 passed, 1 failed"
	exit 1
fi

# 1. Debug build, every test.
if build build debug -DCMAKE_BUILD_TYPE=Debug; then
	step debug-ctest ctest --test-dir build --output-on-failure -j"$JOBS"
	count debug-ctest $?
fi

# 2. AddressSanitizer + UBSan: leaks, overflows, use-after-free and undefined
#    behaviour abort the test that hits them.
if build build-asan asan -DCMAKE_BUILD_TYPE=Debug -DVQ_SANITIZE=ON -DVQ_BENCH=OFF; then
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		step asan-ctest ctest --test-dir build-asan --output-on-failure -j"$JOBS" \
		-L 'unit|integration'
	count asan-ctest $?
fi

# 3. ThreadSanitizer, owned by its own script.
if [[ -f scripts/tsan.sh ]]; then
	step tsan bash scripts/tsan.sh
	count tsan $?
fi

echo
echo "=== summary ($((SECONDS - started))s)"
printf '  %s\n' "${summary[@]}"
((skipped == 0)) || echo "  ($skipped tests skipped; the reasons are printed above)"
echo "$passed passed, $failed failed"
((failed == 0))
