#!/usr/bin/env bash
# Lists (and then kills) every process whose environment carries EDGE_SUITE_RUN=<marker>:
# anything a test started and did not stop. Exits 1 when there was one.
set -uo pipefail
marker="EDGE_SUITE_RUN=$1"
found=0
for dir in /proc/[0-9]*; do
  pid="${dir#/proc/}"
  [ "$pid" = "$$" ] && continue
  if { tr '\0' '\n' <"$dir/environ"; } 2>/dev/null | grep -qxF "$marker"; then
    cmd="$({ tr '\0' ' ' <"$dir/cmdline"; } 2>/dev/null)"
    # This script's own pipeline inherits the marker too.
    case "$cmd" in *leftovers.sh*|tr\ *|grep\ *) continue ;; esac
    echo "left running by the tests: pid $pid: $cmd" >&2
    kill -KILL "$pid" 2>/dev/null
    found=1
  fi
done
exit "$found"
