#!/bin/sh
# ThreadSanitizer build of the tests where threads meet: the message rings (lock-
# free and cross-thread, so every ordering must be one TSan can see: C11 atomics),
# shards started and stopped from a test thread, config snapshots, user ops.
# Usage: scripts/tsan.sh [build-dir]   (default: build-tsan next to this repo's root)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-"$root/build-tsan"}

cmake -S "$root" -B "$build" -DVQ_TSAN=ON -DVQ_BENCH=OFF -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build "$build" -j2 --target test_msg test_shard test_cfgpub test_ops
# halt_on_error: a race is a failure, not a warning. The scale divides the message
# counts: TSan runs ~10x slower, and the interleavings, not the volume, are the point.
# io_uring's memory is shared with the kernel, which TSan cannot see; our
# synchronisation never relies on it (only on the ring-index atomics).
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ${TSAN_OPTIONS:-}" \
VQ_MSG_TEST_SCALE=${VQ_MSG_TEST_SCALE:-4} \
	"$build/tests/unit/test_msg"
for t in test_shard test_cfgpub test_ops; do
	TSAN_OPTIONS="halt_on_error=1 ${TSAN_OPTIONS:-}" "$build/tests/unit/$t"
done
