#!/usr/bin/env bash
# What low-latency HLS costs the node, in one run: two nodes take the same 1080p30 H.264 + AAC
# push (pre-encoded, sent with -c copy) to a stream passed through with a 360p rendition;
# node A with LL-HLS off (hls.part_milliseconds = 0), node B with it on (0.5 s parts, two
# renditions packaged). Beside them, ffmpeg -c copy writes the same push as fragmented-MP4
# HLS (the nearest thing to the extra work: demux, mux, write). Printed: CPU of each, the
# node's cost of LL-HLS (B - A), the ratio to ffmpeg, and how long a blocked playlist
# request for the next part waited (p50/p90 over the window: the part's age when served).
# BENCH_SMOKE=1 checks the procedure in seconds on the debug build (the test suite runs it).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
if [ "${BENCH_SMOKE:-}" = 1 ]; then
  cargo build --workspace --all-targets
  BIN=target/debug; WINDOW=4; WARMUP=6; SIZE=640x360
  echo "smoke run: the procedure works; these figures mean nothing"
else
  cargo build --release -p livepeer-edge --bin livepeer-edge
  BIN=target/release; WINDOW="${BENCH_SECONDS:-30}"; WARMUP=10; SIZE=1920x1080
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
  -c:a aac -b:a 128k "$WORK/clip.mp4"

LADDER='[{"name":"source","bitrate_kbps":6000},{"name":"360p","height":360,"bitrate_kbps":800}]'
stream() { # http token → "id key"
  create_stream "$1" "$2" "{\"name\":\"bench\",\"source\":{\"kind\":\"rtmp\"},\"ladder\":$LADDER}"
}
push() { # url
  ffmpeg -hide_banner -loglevel error -re -stream_loop -1 -i "$WORK/clip.mp4" -c copy -f flv "$1" &
  pids+=($!)
}

LPE_HLS_PART_MILLISECONDS=0 start_node a; A_HTTP=$HTTP; A_RTMP=$RTMP; A_PID=$PID
LPE_HLS_PART_MILLISECONDS=500 start_node b; B_HTTP=$HTTP; B_RTMP=$RTMP; B_PID=$PID
A_TOKEN=$(setup_token "$A_HTTP" a); B_TOKEN=$(setup_token "$B_HTTP" b)
read -r _ A_KEY < <(stream "$A_HTTP" "$A_TOKEN")
read -r B_ID B_KEY < <(stream "$B_HTTP" "$B_TOKEN")
push "rtmp://127.0.0.1:$A_RTMP/live/$A_KEY"
push "rtmp://127.0.0.1:$B_RTMP/live/$B_KEY"
mkdir -p "$WORK/ffmpeg"
ffmpeg -hide_banner -loglevel error -re -stream_loop -1 -i "$WORK/clip.mp4" -c copy \
  -f hls -hls_time 2 -hls_list_size 6 -hls_flags delete_segments -hls_segment_type fmp4 \
  "$WORK/ffmpeg/index.m3u8" &
F_PID=$!; pids+=("$F_PID")

sleep "$WARMUP"
MEDIA="http://127.0.0.1:$B_HTTP/llhls/$B_ID/source/index.m3u8"
curl -fs "$MEDIA" | grep -q '#EXT-X-PART:' || { echo "node B serves no LL-HLS parts" >&2; exit 1; }
HZ=$(getconf CLK_TCK)
a0=$(ticks "$A_PID"); b0=$(ticks "$B_PID"); f0=$(ticks "$F_PID")
# Meanwhile, a client that always asks for the hinted part with blocking reload.
python3 - "$MEDIA" "$WINDOW" > "$WORK/waits" <<'PY' &
import re, sys, time, urllib.request
media, window = sys.argv[1], float(sys.argv[2])
end = time.time() + window
while time.time() < end:
    text = urllib.request.urlopen(media, timeout=10).read().decode()
    m = re.search(r'PRELOAD-HINT:TYPE=PART,URI="(\d+)\.(\d+)\.mp4"', text)
    t = time.time()
    urllib.request.urlopen(f"{media}?_HLS_msn={m[1]}&_HLS_part={m[2]}", timeout=10).read()
    print(f"{(time.time() - t) * 1000:.0f}")
PY
W_PID=$!
sleep "$WINDOW"
a1=$(ticks "$A_PID"); b1=$(ticks "$B_PID"); f1=$(ticks "$F_PID")
wait "$W_PID"
python3 - "$HZ" "$WINDOW" "$a0" "$a1" "$b0" "$b1" "$f0" "$f1" "$SIZE" "$WORK/waits" <<'PY'
import sys
hz, window = int(sys.argv[1]), float(sys.argv[2])
a0, a1, b0, b1, f0, f1 = map(int, sys.argv[3:9])
size = sys.argv[9]
waits = sorted(int(l) for l in open(sys.argv[10]) if l.strip())
cpu = lambda t0, t1: (t1 - t0) / hz / window * 100
a, b, f = cpu(a0, a1), cpu(b0, b1), cpu(f0, f1)
print(f"== LL-HLS of a {size} 30 fps H.264 + AAC push passed through, with a 360p rendition, {window:.0f} s")
print(f"node A, LL-HLS off:          {a:6.2f} % of a core")
print(f"node B, LL-HLS on (2 rend.): {b:6.2f} % of a core")
print(f"node's cost of LL-HLS:       {b - a:6.2f} % of a core (B - A)")
print(f"ffmpeg -c copy fMP4 HLS:     {f:6.2f} % of a core (one rendition: demux + mux + write)")
if f > 0:
    print(f"ratio node extra / ffmpeg:   {(b - a) / f:6.2f}")
if waits:
    at = lambda q: waits[min(len(waits) - 1, int(q * len(waits)))]
    print(f"blocked reloads: {len(waits)}, held p50 {at(0.5)} ms, p90 {at(0.9)} ms (a part is 500 ms)")
PY
