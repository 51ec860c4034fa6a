#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit and integration tests (real GStreamer
# pipelines, SQLite files, ffmpeg publishers, an RTSP server, a local EVM, Mosquitto, headless
# Chromium), then checks that no process the tests started outlived them.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
export EDGE_DEPS_READY=1
export PATH="$PWD/target/pyenv/bin:$PATH"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

# Every process started from here on inherits this marker; none may be left running.
export EDGE_SUITE_RUN="suite-$$-$(date +%s%N)"
status=0
# Every test binary runs even when one fails: one failure must not hide another.
cargo test --workspace --no-fail-fast || status=$?
# Every benchmark in its smoke mode, so none can rot.
for bench in bench/transcode.sh bench/control.sh bench/tickets.sh bench/orchestrator.sh bench/gateway.sh bench/recording.sh bench/webrtc.sh bench/llhls.sh bench/audio.sh bench/ai.sh bench/ai_live.sh; do
  echo "== $bench (smoke)"
  BENCH_SMOKE=1 "$bench" || { echo "$bench failed" >&2; status=1; }
done
# The Yocto layer, as far as it can be checked without a build host.
./scripts/test-yocto.sh || status=1
./scripts/leftovers.sh "$EDGE_SUITE_RUN" || status=1
exit "$status"
