#!/usr/bin/env bash
# Ticket validation (decode + hash + signature check + win test + nonce check) per second on
# one core, beside the bare ecrecover rate of libsecp256k1 (coincurve) in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
PY=target/pyenv/bin/python

cargo build --release -p lpe-pm --example validate_bench
N="${BENCH_TICKETS:-20000}"
node=$(taskset -c 0 target/release/examples/validate_bench "$N")
bare=$(taskset -c 0 "$PY" bench/ecrecover.py "$N")
"$PY" - "$node" "$bare" <<'PY'
import json, sys
node, bare = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"full ticket validation (lpe-pm):   {node['per_second']:>10.0f} tickets/s")
print(f"bare ecrecover (libsecp256k1):     {bare['per_second']:>10.0f} recovers/s")
print(f"ratio:                             {node['per_second'] / bare['per_second']:>10.2f}  (goal >= 1.0)")
PY
