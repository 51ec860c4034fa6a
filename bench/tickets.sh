#!/usr/bin/env bash
# Ticket validation (decode + hash + signature check + win test + nonce check) per second on
# one core, beside the bare ecrecover rate of libsecp256k1 (coincurve) in the same run.
# BENCH_SMOKE=1 checks the procedure in seconds on the debug build (the test suite runs it).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
PY=target/pyenv/bin/python

if [ "${BENCH_SMOKE:-}" = 1 ]; then
  cargo build --workspace --all-targets
  BIN=target/debug; N=50
  echo "smoke run: the procedure works; these figures mean nothing"
else
  cargo build --release -p lpe-pm --example validate_bench
  BIN=target/release; N="${BENCH_TICKETS:-20000}"
fi
node=$(taskset -c 0 "$BIN/examples/validate_bench" "$N")
bare=$(taskset -c 0 "$PY" bench/ecrecover.py "$N")
"$PY" - "$node" "$bare" <<'PY'
import json, sys
node, bare = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"full ticket validation (lpe-pm):   {node['per_second']:>10.0f} tickets/s")
print(f"bare ecrecover (libsecp256k1):     {bare['per_second']:>10.0f} recovers/s")
print(f"ratio:                             {node['per_second'] / bare['per_second']:>10.2f}  (goal >= 1.0)")
PY
