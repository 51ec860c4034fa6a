#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit and integration tests (real GStreamer
# pipelines, SQLite files, ffmpeg publishers, an in-test RTSP server).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
export PATH="$PWD/target/pyenv/bin:$PATH"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
