#!/usr/bin/env bash
# What recording costs, in one run. The same 1080p30 H.264 + AAC push (a pre-encoded clip
# sent with -c copy, so the pushers encode nothing) goes at once to:
#  - node A: one passthrough stream, not recorded;
#  - node B: the same stream, recorded (fragmented MP4, 10 s files);
#  - ffmpeg as Frigate records a camera: -c copy into 10 s MP4 segments.
# Printed: each process's CPU over the window, the node's extra CPU for recording (B - A),
# that beside ffmpeg's, and the disk write rate of both against the input's bitrate.
# BENCH_SMOKE=1 checks the procedure in seconds on the debug build (the test suite runs it).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
if [ "${BENCH_SMOKE:-}" = 1 ]; then
  # What the test suite built already (a single package would build its own feature set).
  cargo build --workspace --all-targets
  BIN=target/debug; SIZE=640x360; WINDOW=6; WARMUP=4
  echo "smoke run: the procedure works; these figures mean nothing"
else
  cargo build --release -p livepeer-edge --bin livepeer-edge
  BIN=target/release; SIZE=1920x1080; WINDOW="${BENCH_SECONDS:-60}"; WARMUP=8
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
dir_bytes() { du -sb "$1" 2>/dev/null | cut -f1; }

ffmpeg -hide_banner -loglevel error -y -f lavfi -i "testsrc2=size=$SIZE:rate=30" \
  -f lavfi -i "sine=frequency=440:sample_rate=48000" -t 30 \
  -c:v libx264 -preset veryfast -b:v 6M -g 60 -keyint_min 60 -sc_threshold 0 -pix_fmt yuv420p \
  -c:a aac -b:a 128k "$WORK/clip.mp4"

stream() { # http token recording-mode → stream key
  create_stream "$1" "$2" "{\"name\":\"bench\",\"source\":{\"kind\":\"rtmp\"},\"ladder\":[{\"name\":\"source\",\"bitrate_kbps\":6000}],\"recording\":{\"mode\":\"$3\"}}" | cut -d' ' -f2
}
push() { # url
  ffmpeg -hide_banner -loglevel error -re -stream_loop -1 -i "$WORK/clip.mp4" -c copy -f flv "$1" &
  pids+=($!)
}

start_node a; A_HTTP=$HTTP; A_RTMP=$RTMP; A_PID=$PID
start_node b; B_HTTP=$HTTP; B_RTMP=$RTMP; B_PID=$PID
A_TOKEN=$(setup_token "$A_HTTP" a); B_TOKEN=$(setup_token "$B_HTTP" b)
push "rtmp://127.0.0.1:$A_RTMP/live/$(stream "$A_HTTP" "$A_TOKEN" off)"
push "rtmp://127.0.0.1:$B_RTMP/live/$(stream "$B_HTTP" "$B_TOKEN" continuous)"
mkdir -p "$WORK/ffmpeg"
ffmpeg -hide_banner -loglevel error -re -stream_loop -1 -i "$WORK/clip.mp4" -c copy \
  -f segment -segment_time 10 -segment_format mp4 -reset_timestamps 1 -strftime 1 \
  "$WORK/ffmpeg/%Y%m%d%H%M%S.mp4" &
F_PID=$!; pids+=("$F_PID")

sleep "$WARMUP"
HZ=$(getconf CLK_TCK)
a0=$(ticks "$A_PID"); b0=$(ticks "$B_PID"); f0=$(ticks "$F_PID")
rb0=$(dir_bytes "$WORK/b/recordings"); rf0=$(dir_bytes "$WORK/ffmpeg")
sleep "$WINDOW"
a1=$(ticks "$A_PID"); b1=$(ticks "$B_PID"); f1=$(ticks "$F_PID")
rb1=$(dir_bytes "$WORK/b/recordings"); rf1=$(dir_bytes "$WORK/ffmpeg")
files=$(find "$WORK/b/recordings" -name '*-*.mp4' | wc -l)
[ "$files" -gt 0 ] || [ "${BENCH_SMOKE:-}" = 1 ] || { echo "node B recorded nothing" >&2; exit 1; }
[ "$rb1" -gt "$rb0" ] || { echo "node B wrote nothing to its recordings" >&2; exit 1; }
kbps_in=$(ffprobe -v error -show_entries format=bit_rate -of csv=p=0 "$WORK/clip.mp4")

python3 - "$HZ" "$WINDOW" "$a0" "$a1" "$b0" "$b1" "$f0" "$f1" "$rb0" "$rb1" "$rf0" "$rf1" "$kbps_in" "$SIZE" <<'PY'
import sys
hz, window = int(sys.argv[1]), float(sys.argv[2])
a0, a1, b0, b1, f0, f1, rb0, rb1, rf0, rf1, bps_in = map(int, sys.argv[3:14])
size = sys.argv[14]
cpu = lambda t0, t1: (t1 - t0) / hz / window * 100
a, b, f = cpu(a0, a1), cpu(b0, b1), cpu(f0, f1)
print(f"== recording a {size} 30 fps H.264 + AAC push ({bps_in / 1e6:.2f} Mbit/s) for {window:.0f} s")
print(f"node A, not recording:       {a:6.2f} % of a core")
print(f"node B, recording:           {b:6.2f} % of a core")
print(f"node's cost of recording:    {b - a:6.2f} % of a core (B - A)")
print(f"ffmpeg -c copy segmenter:    {f:6.2f} % of a core (demux + mux + write)")
if f > 0:
    print(f"ratio node extra / ffmpeg:   {(b - a) / f:6.2f}")
wb, wf = (rb1 - rb0) / window, (rf1 - rf0) / window
print(f"disk write: node {wb * 8 / 1e6:.2f} Mbit/s, ffmpeg {wf * 8 / 1e6:.2f} Mbit/s, input {bps_in / 1e6:.2f} Mbit/s")
PY
