#!/usr/bin/env bash
# Install what is missing, build a Release build in build/, and start the
# flagship service on its default config. Extra arguments go to the service,
# e.g. `scripts/run.sh -o shards.cpus=0-3 -o listen.port=8000`.
#
# FLAGSHIP picks the service (veloq-$FLAGSHIP with configs/$FLAGSHIP.ini);
# the default is the key-value service.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"

FLAGSHIP=${FLAGSHIP:-kv}
exec "build/apps/veloq-$FLAGSHIP" --config "configs/$FLAGSHIP.ini" "$@"
