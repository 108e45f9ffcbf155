#!/usr/bin/env bash
# Users build their own services on an installed veloq. Install this build into
# a scratch prefix, then build tests/integration/outoftree (an upper-casing echo
# service that includes only <veloq.h>) three ways, and check each one serves:
#   1. CMake: find_package(veloq) + veloq::veloq_static;
#   2. pkg-config, shared: `pkg-config --cflags --libs veloq`;
#   3. pkg-config, static: `pkg-config --static --libs veloq` with libveloq.a,
#      which proves Libs.private / Requires.private name every dependency.
set -euo pipefail

BUILD=${VQ_BUILD:-$(dirname "$0")/../../build}
SOURCE=${VQ_SOURCE:-$(dirname "$0")/../..}
SRC=$SOURCE/tests/integration/outoftree
TMP=$(mktemp -d "${TMPDIR:-/tmp}/veloq-install.XXXXXX")
PREFIX=$TMP/prefix
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	rm -rf "$TMP"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }

cmake --install "$BUILD" --prefix "$PREFIX" >"$TMP/install.log" ||
	{ cat "$TMP/install.log"; fail "cmake --install"; }
[[ -f $PREFIX/include/veloq.h ]] || fail "no include/veloq.h in the prefix"
libdir=$(dirname "$(find "$PREFIX" -name libveloq.a | head -n1)")
[[ -f $libdir/libveloq.a && -e $libdir/libveloq.so ]] || fail "libveloq.a/.so not installed"
[[ -f $libdir/pkgconfig/veloq.pc ]] || fail "veloq.pc not installed"
[[ -f $libdir/cmake/veloq/veloqConfig.cmake ]] || fail "veloqConfig.cmake not installed"

# The compiler flags of the build under test (the sanitizers, when it has them),
# so that what we link is what was built.
flags=$(sed -n 's/^CMAKE_C_FLAGS:STRING=//p' "$BUILD/CMakeCache.txt")
if grep -q '^VQ_SANITIZE:BOOL=ON' "$BUILD/CMakeCache.txt"; then
	flags+=" -fsanitize=address,undefined"
fi
if grep -q '^VQ_TSAN:BOOL=ON' "$BUILD/CMakeCache.txt"; then
	flags+=" -fsanitize=thread"
fi

# serve NAME BINARY: start it on a free port, check it upper-cases, stop it cleanly.
serve() {
	local name=$1 bin=$2 port out log=$TMP/$1.log pid rc
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	cat >"$TMP/svc.ini" <<-INI
	[shards]
	cpus = 0
	[listen]
	address = 127.0.0.1
	port = $port
	[buffers]
	count = 64
	provided = 32
	INI
	"$bin" --config "$TMP/svc.ini" 2>"$log" &
	pid=$!
	pids+=("$pid")
	for _ in $(seq 100); do
		grep -q "listening on" "$log" && break
		kill -0 "$pid" 2>/dev/null || { cat "$log"; fail "$name exited at start"; }
		sleep 0.1
	done
	grep -q "listening on" "$log" || { cat "$log"; fail "$name never listened"; }
	out=$(python3 - "$port" <<-'PY'
	import socket, sys
	s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
	msg = b"hello, veloq 123\n" * 1000
	s.sendall(msg)
	got = b""
	while len(got) < len(msg):
	    b = s.recv(65536)
	    if not b:
	        break
	    got += b
	print("ok" if got == msg.upper() else "mismatch: %r" % got[:64])
	PY
	)
	[[ $out == ok ]] || { cat "$log"; fail "$name: $out"; }
	kill -TERM "$pid"
	rc=0
	wait "$pid" || rc=$?
	if ((rc != 0)) || ! grep -q "stopped cleanly" "$log"; then
		cat "$log"
		fail "$name did not stop cleanly (rc $rc)"
	fi
	! grep -qi "leak" "$log" || { cat "$log"; fail "$name reported a leak"; }
	"$bin" --version | grep -q "veloq-upper-echo 1.0" || fail "$name --version"
	echo "ok: $name"
}

# 1. CMake package.
cmake -S "$SRC" -B "$TMP/cm" -DCMAKE_PREFIX_PATH="$PREFIX" -DCMAKE_C_FLAGS="$flags" \
	>"$TMP/cm.log" 2>&1 || { cat "$TMP/cm.log"; fail "configuring with find_package(veloq)"; }
cmake --build "$TMP/cm" >>"$TMP/cm.log" 2>&1 || { cat "$TMP/cm.log"; fail "building with CMake"; }
serve cmake "$TMP/cm/upper-echo"

# 2 and 3. pkg-config, from the installed prefix only.
export PKG_CONFIG_PATH=$libdir/pkgconfig
cc=${CC:-cc}
pkg-config --exists veloq || fail "pkg-config does not find veloq in $PKG_CONFIG_PATH"
[[ $(pkg-config --variable=libdir veloq) -ef $libdir ]] ||
	fail "veloq.pc points at $(pkg-config --variable=libdir veloq), not $libdir"
# shellcheck disable=SC2046,SC2086
$cc $flags -std=gnu11 -Wall -Wextra -Werror -o "$TMP/pc-shared" "$SRC/main.c" \
	$(pkg-config --cflags --libs veloq) -Wl,-rpath,"$libdir" || fail "pkg-config shared build"
# ldd's output in full first: with pipefail, grep -q quitting early can SIGPIPE ldd.
links_veloq() { local deps; deps=$(ldd "$1") && grep -q "libveloq.so" <<<"$deps"; }
links_veloq "$TMP/pc-shared" || fail "pc-shared is not linked to libveloq.so"
serve pkg-config-shared "$TMP/pc-shared"

static_libs=$(pkg-config --static --libs veloq)
static_libs=${static_libs/-lveloq/-Wl,-Bstatic -lveloq -Wl,-Bdynamic}
# shellcheck disable=SC2046,SC2086
$cc $flags -std=gnu11 -Wall -Wextra -Werror -o "$TMP/pc-static" "$SRC/main.c" \
	$(pkg-config --cflags veloq) $static_libs || fail "pkg-config --static build"
! links_veloq "$TMP/pc-static" || fail "pc-static links libveloq.so"
serve pkg-config-static "$TMP/pc-static"
echo "ok"
