#!/usr/bin/env bash
# The VM suite: the development image built and booted under QEMU/TCG — the box set up and
# its hardware, camera and watchdog driven; an update installed, rebooted into and marked
# good; a version whose node cannot start rolled back; a foreign bundle refused; power cut
# during writes and payments (VM_POWER_CUTS times, default 20), the store checked after each
# boot and every acknowledged winning ticket redeemed on a local chain. Each
# takes minutes of emulation, so the default suite (scripts/test.sh) runs only the image's
# first boot and setup. One VM at a time: two would share two cores. Stops everything it
# starts.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
export EDGE_DEPS_READY=1
export PATH="$PWD/target/pyenv/bin:$PATH"
export EDGE_SUITE_RUN="${EDGE_SUITE_RUN:-vm-$$-$(date +%s%N)}"
status=0
cargo test -p livepeer-edge --test image_vm -- --ignored --test-threads=1 --nocapture || status=$?
./scripts/leftovers.sh "$EDGE_SUITE_RUN" || status=1
exit "$status"
