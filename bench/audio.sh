#!/usr/bin/env bash
# What a stream's audio costs the node, in one run: the same 1080p30 H.264 push to the same
# stream (ladder 720p/480p/360p, as bench/transcode.sh), alternately without audio and with
# AAC (passed through into every rendition, and decoded once for the silence watch), twice
# each; node CPU over a window of each. Printed: CPU per window, the means, and audio's extra
# CPU in points and as a share of the video-only figure (goal ≤ 3 %).
# BENCH_SMOKE=1 checks the procedure in seconds on the debug build (the test suite runs it).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
if [ "${BENCH_SMOKE:-}" = 1 ]; then
  cargo build --workspace --all-targets
  BIN=target/debug; WINDOW=3; WARMUP=5; SIZE=640x360; ROUNDS=1
  LADDER='[{"name":"240p","height":240,"bitrate_kbps":300}]'
  echo "smoke run: the procedure works; these figures mean nothing"
else
  cargo build --release -p livepeer-edge --bin livepeer-edge
  BIN=target/release; WINDOW="${BENCH_SECONDS:-30}"; WARMUP=10; SIZE=1920x1080; ROUNDS=2
  LADDER='[{"name":"720p","height":720,"bitrate_kbps":3000},{"name":"480p","height":480,"bitrate_kbps":1200},{"name":"360p","height":360,"bitrate_kbps":700}]'
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

ffmpeg -hide_banner -loglevel error -y -f lavfi -i "testsrc2=size=$SIZE:rate=30" \
  -f lavfi -i "sine=frequency=440:sample_rate=48000" -t 30 \
  -c:v libx264 -preset veryfast -b:v 6M -g 60 -keyint_min 60 -sc_threshold 0 -pix_fmt yuv420p \
  -c:a aac -b:a 128k "$WORK/with-audio.mp4"
ffmpeg -hide_banner -loglevel error -y -i "$WORK/with-audio.mp4" -c copy -an "$WORK/video-only.mp4"

start_node node
TOKEN=$(setup_token "$HTTP" node)
read -r ID KEY < <(create_stream "$HTTP" "$TOKEN" \
  "{\"name\":\"bench\",\"source\":{\"kind\":\"rtmp\"},\"ladder\":$LADDER}")
HZ=$(getconf CLK_TCK)
state() { curl -fs -H "authorization: Bearer $TOKEN" "http://127.0.0.1:$HTTP/api/streams/$ID" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"]["state"])'; }

measure() { # clip → "ticks" over the window
  ffmpeg -hide_banner -loglevel error -re -stream_loop -1 -i "$WORK/$1" -c copy -f flv \
    "rtmp://127.0.0.1:$RTMP/live/$KEY" &
  local push=$!
  pids+=("$push")
  sleep "$WARMUP"
  [ "$(state)" = running ] || { echo "the stream is not running with $1" >&2; exit 1; }
  local t0 t1
  t0=$(ticks "$PID"); sleep "$WINDOW"; t1=$(ticks "$PID")
  kill "$push"; wait "$push" 2>/dev/null || true
  for _ in $(seq 50); do [ "$(state)" = waiting ] && break; sleep 0.2; done
  echo $((t1 - t0))
}

results=()
for _ in $(seq "$ROUNDS"); do
  results+=("video $(measure video-only.mp4)")
  results+=("audio $(measure with-audio.mp4)")
done

NAMES=$(python3 -c 'import json,sys; print("/".join(r["name"] for r in json.loads(sys.argv[1])))' "$LADDER")
python3 - "$HZ" "$WINDOW" "$SIZE" "$NAMES" "${results[@]}" <<'PY'
import sys
hz, window, size, names = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]
runs = [r.split() for r in sys.argv[5:]]
cpu = {"video": [], "audio": []}
print(f"== a {size} 30 fps push, ladder {names}: node CPU over {window:.0f} s windows, alternating")
for kind, ticks in runs:
    c = int(ticks) / hz / window * 100
    cpu[kind].append(c)
    print(f"{'video only' if kind == 'video' else 'with AAC  '}: {c:6.2f} % of a core")
v = sum(cpu["video"]) / len(cpu["video"])
a = sum(cpu["audio"]) / len(cpu["audio"])
print(f"means: video only {v:.2f} %, with audio {a:.2f} %")
print(f"audio's cost: {a - v:+.2f} points of a core, {(a - v) / v * 100:+.1f} % of the video-only CPU (goal <= 3 %)")
PY
