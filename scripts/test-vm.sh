#!/usr/bin/env bash
# The full VM suite: the development image under QEMU/TCG for what takes minutes (an update
# installed, rebooted into and marked good; a foreign bundle refused). The default suite
# (scripts/test.sh) builds the image and boots it once. Stops everything it starts.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
export PATH="$PWD/target/pyenv/bin:$PATH"
export EDGE_SUITE_RUN="${EDGE_SUITE_RUN:-vm-$$-$(date +%s%N)}"
status=0
cargo test -p livepeer-edge --test image_vm -- --ignored || status=$?
./scripts/leftovers.sh "$EDGE_SUITE_RUN" || status=1
exit "$status"
