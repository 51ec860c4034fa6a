#!/usr/bin/env bash
# The gateway's point: the CPU a node spends on a 1080p30 RTMP stream whose 720p/480p/360p
# ladder an orchestrator node transcodes (offload), beside the CPU the same node spends
# encoding that ladder itself, in one run on a local EVM. BENCH_SECONDS sets the measured
# time per mode; BENCH_SMOKE=1 checks the procedure on the debug build with a small stream
# (the test suite runs it).
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
exec cargo test "${profile[@]}" --workspace --test bench_gateway -- --ignored --nocapture
