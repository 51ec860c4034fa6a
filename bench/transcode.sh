#!/usr/bin/env bash
# Node vs ffmpeg transcode benchmark; see bench/transcode.py. BENCH_SECONDS=20 for a quick run;
# BENCH_SMOKE=1 checks the procedure in seconds on the debug build (the test suite runs it).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
if [ "${BENCH_SMOKE:-}" = 1 ]; then
  cargo build --workspace --all-targets
  export BENCH_BINARY="$PWD/target/debug/livepeer-edge"
else
  cargo build --release -p livepeer-edge
fi
exec python3 bench/transcode.py
