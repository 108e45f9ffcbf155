#!/usr/bin/env bash
# Install the Debian packages veloq needs to build, test and benchmark, and
# nothing when they are all present: the check is dpkg-query (local, fast),
# and apt-get update runs only when something is missing. Works without a
# terminal (CI=true, cron, ssh -T). Packages other parts of the project need
# go in scripts/deps.txt, one per line (# comments allowed).
set -euo pipefail
cd "$(dirname "$0")/.."

core=(
	# build: gcc/make, cmake, pkg-config; clang and its runtimes for the fuzz and
	# sanitizer builds
	build-essential cmake pkg-config clang libclang-rt-14-dev
	# the libraries veloq links against, and the Check unit-test framework
	liburing-dev libnuma-dev libhwloc-dev hwloc check libinih-dev
	# the integration tests are Python
	python3
	# clients and peers for tests and benchmarks
	curl wrk memcached libmemcached-tools redis-tools nginx-light
	iproute2 util-linux systemd procps
)

extra=()
if [[ -f scripts/deps.txt ]]; then
	while IFS= read -r line || [[ -n $line ]]; do
		line=${line%%#*}
		for pkg in $line; do
			extra+=("$pkg")
		done
	done <scripts/deps.txt
fi

missing=()
for pkg in "${core[@]}" "${extra[@]}"; do
	status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)
	[[ $status == ii* ]] || missing+=("$pkg")
done
if ((${#missing[@]} == 0)); then
	echo "deps: all $((${#core[@]} + ${#extra[@]})) packages present"
	exit 0
fi

# De-duplicate while keeping order, for a readable log line.
declare -A seen=()
todo=()
for pkg in "${missing[@]}"; do
	[[ -n ${seen[$pkg]:-} ]] || todo+=("$pkg")
	seen[$pkg]=1
done
echo "deps: installing ${todo[*]}"

sudo=()
if ((EUID != 0)); then
	if command -v sudo >/dev/null; then
		sudo=(sudo -n)
	else
		echo "deps: missing packages (${todo[*]}) and not root; install them, or run as root" >&2
		exit 1
	fi
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${todo[@]}"
