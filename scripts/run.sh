#!/usr/bin/env bash
# Runs the node with embedded defaults: SQLite in ./data, HTTP on 127.0.0.1:8080, RTMP on
# :1935, a test-pattern stream when no camera is found, the best working encoder (x264 when
# there is no hardware encoder). Extra arguments go to `livepeer-edge run`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
cargo build --release -p livepeer-edge
exec ./target/release/livepeer-edge run "$@"
