#!/usr/bin/env bash
# What a WebRTC (WHEP) viewer costs the node, in one run: a 720p30 push (pre-encoded, sent
# with -c copy) to a stream with a 360p rendition; the node's CPU over a window with no
# viewer, then with N viewers in headless Chromium (each sent the 360p encode as it is made,
# and the stream's sound as one shared Opus encode). Printed: CPU per window and per viewer.
# BENCH_SMOKE=1 checks the procedure in seconds on the debug build (the test suite runs it).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
if [ "${BENCH_SMOKE:-}" = 1 ]; then
  cargo build --workspace --all-targets
  BIN=target/debug; VIEWERS=2; WINDOW=4; WARMUP=4
  echo "smoke run: the procedure works; these figures mean nothing"
else
  cargo build --release -p livepeer-edge --bin livepeer-edge
  BIN=target/release; VIEWERS="${BENCH_VIEWERS:-10}"; WINDOW="${BENCH_SECONDS:-30}"; WARMUP=8
fi
WORK="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
source bench/lib.sh

ffmpeg -hide_banner -loglevel error -y -f lavfi -i "testsrc2=size=1280x720:rate=30" \
  -f lavfi -i "sine=frequency=440:sample_rate=48000" -t 30 \
  -c:v libx264 -preset veryfast -b:v 3M -g 60 -keyint_min 60 -sc_threshold 0 -pix_fmt yuv420p \
  -c:a aac -b:a 128k "$WORK/clip.mp4"

start_node node
TOKEN=$(setup_token "$HTTP" node)
read -r ID KEY < <(create_stream "$HTTP" "$TOKEN" \
  '{"name":"bench","source":{"kind":"rtmp"},"ladder":[{"name":"source","bitrate_kbps":3000},{"name":"360p","height":360,"bitrate_kbps":800}]}')
ffmpeg -hide_banner -loglevel error -re -stream_loop -1 -i "$WORK/clip.mp4" -c copy -f flv \
  "rtmp://127.0.0.1:$RTMP/live/$KEY" &
pids+=($!)
HZ=$(getconf CLK_TCK)
sleep "$WARMUP"
t0=$(ticks "$PID"); sleep "$WINDOW"; t1=$(ticks "$PID")

(cd web-ui && BASE_URL="http://127.0.0.1:$HTTP" AUTHORIZATION="Bearer $TOKEN" STREAM="$ID" \
  VIEWERS="$VIEWERS" HOLD=$((WINDOW + 6)) exec node tests/viewers.mjs) > "$WORK/viewers.out" 2>&1 &
pids+=($!)
for _ in $(seq 300); do grep -q '^ready' "$WORK/viewers.out" && break; sleep 0.1; done
grep -q '^ready' "$WORK/viewers.out" || { echo "the viewers never played" >&2; exit 1; }
sleep 2
v0=$(ticks "$PID"); sleep "$WINDOW"; v1=$(ticks "$PID")

python3 - "$HZ" "$WINDOW" "$VIEWERS" "$t0" "$t1" "$v0" "$v1" <<'PY'
import sys
hz, window, n = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
t0, t1, v0, v1 = map(int, sys.argv[4:8])
idle = (t1 - t0) / hz / window * 100
watched = (v1 - v0) / hz / window * 100
print(f"== WebRTC viewers of a 720p30 stream (360p sent), node CPU over {window:.0f} s")
print(f"no viewer:          {idle:6.2f} % of a core")
print(f"{n:2d} viewers:         {watched:6.2f} % of a core")
print(f"per viewer:         {(watched - idle) / n:6.2f} % of a core (no encode per viewer)")
PY
