#!/usr/bin/env bash
# The node as a go-livepeer orchestrator on a local EVM, beside ffmpeg doing the same work in
# the same run: /segment latency (2 s 1080p30 -> 720p/480p/360p, p50/p99), the cost of payment
# validation, and concurrent gateway sessions (errors, p99, peak RSS). BENCH_SEGMENTS and
# BENCH_SESSIONS set the sizes; BENCH_SMOKE=1 checks the procedure on the debug build (the
# test suite runs it).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
export PATH="$PWD/target/pyenv/bin:$PATH"
if [ "${BENCH_SMOKE:-}" = 1 ]; then
  profile=()
else
  profile=(--release)
fi
# The whole workspace's features, as the suite's own build has them: with `-p` Cargo would
# rebuild a dozen crates for this package's narrower set, and the suite's next build undo it.
exec cargo test "${profile[@]}" --workspace --test bench_orchestrator -- --ignored --nocapture
