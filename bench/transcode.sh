#!/usr/bin/env bash
# Node vs ffmpeg transcode benchmark; see bench/transcode.py. BENCH_SECONDS=20 for a quick run.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
cargo build --release -p livepeer-edge
exec python3 bench/transcode.py
