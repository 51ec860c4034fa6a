#!/usr/bin/env bash
# Detection on a live stream, in one run: a 1080p30 push with a face (scikit-image's astronaut,
# twice its size) to a stream with one encoded 360p rendition, measured three ways, each a
# window of node CPU (the node and its detector processes):
#   plain     — no detection;
#   detect    — CenterFace as the stream's object model at 5 fps (one inference thread);
#   privacy   — privacy mode alone (the face detector at 5 fps, every picture through the gate);
# and the peer beside it: ffmpeg decoding the same clip at 5 pictures a second into Python
# onnxruntime running CenterFace on one thread (bench/ai_peer.py). Printed: the CPU share of
# detection (detect − plain), the node's and the peer's CPU for decode + detection and their
# ratio, the end-to-end detection latency p50/p99 (picture at the tee → events published),
# and privacy mode's delay (in ms and frames at 30 fps) and coverage (pictures covered vs
# blanked).
# BENCH_SMOKE=1 checks the procedure in seconds on the debug build (the test suite runs it).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
if [ "${BENCH_SMOKE:-}" = 1 ]; then
  cargo build --workspace --all-targets
  BIN=target/debug; WINDOW=4; WARMUP=6; SCALE=1; W=640; H=360
  echo "smoke run: the procedure works; these figures mean nothing"
else
  cargo build --release -p livepeer-edge --bin livepeer-edge
  BIN=target/release; WINDOW="${BENCH_SECONDS:-30}"; WARMUP=10; SCALE=2; W=1920; H=1080
fi
PY=target/pyenv/bin/python
MODEL=target/models/centerface.onnx
WORK="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
source bench/lib.sh
export LPE_AI_INTRA_THREADS=1

"$PY" -c 'import sys; from skimage import data, io; io.imsave(sys.argv[1], data.astronaut())' "$WORK/face.png"
SIDE=$((512 * SCALE))
[ "$SIDE" -gt "$H" ] && SIDE=$H
ffmpeg -hide_banner -loglevel error -y -loop 1 -framerate 30 -i "$WORK/face.png" -t 40 \
  -vf "scale=$SIDE:$SIDE,pad=$W:$H:(ow-iw)/2:(oh-ih)/2:gray,noise=alls=8:allf=t" \
  -c:v libx264 -preset veryfast -b:v 6M -g 60 -keyint_min 60 -sc_threshold 0 -pix_fmt yuv420p \
  "$WORK/clip.mp4"

start_node node
TOKEN=$(setup_token "$HTTP" node)
LADDER='[{"name":"360p","height":360,"bitrate_kbps":700}]'
read -r ID KEY < <(create_stream "$HTTP" "$TOKEN" \
  "{\"name\":\"bench\",\"source\":{\"kind\":\"rtmp\"},\"ladder\":$LADDER}")
HZ=$(getconf CLK_TCK)
api() { curl -fs -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' "$@"; }
view() { api "http://127.0.0.1:$HTTP/api/streams/$ID"; }
# CPU ticks of the node and its children (the detector processes) that are alive now.
family_ticks() {
  local sum=0 p
  for p in "$PID" $(pgrep -P "$PID" || true); do sum=$((sum + $(ticks "$p" 2>/dev/null || echo 0))); done
  echo "$sum"
}

measure() { # name patch → "name ticks view-json"
  api -X PATCH -d "$2" "http://127.0.0.1:$HTTP/api/streams/$ID" >/dev/null
  ffmpeg -hide_banner -loglevel error -re -stream_loop -1 -i "$WORK/clip.mp4" -c copy -f flv \
    "rtmp://127.0.0.1:$RTMP/live/$KEY" &
  local push=$!
  pids+=("$push")
  sleep "$WARMUP"
  [ "$(view | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"]["state"])')" = running ] \
    || { echo "the stream is not running ($1)" >&2; exit 1; }
  # Children are sampled at both ends: a detector started in the window would skew it.
  local t0 t1
  t0=$(family_ticks); sleep "$WINDOW"; t1=$(family_ticks)
  local v; v=$(view | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin).get("analysis")))')
  kill "$push"; wait "$push" 2>/dev/null || true
  sleep 2
  echo "$1 $((t1 - t0)) $v"
}

peer() {
  local t0 t1
  ffmpeg -hide_banner -loglevel error -re -i "$WORK/clip.mp4" -t $((WARMUP + WINDOW)) \
    -vf "fps=5,scale=640:360" -f rawvideo -pix_fmt rgb24 - 2>/dev/null \
    | "$PY" bench/ai_peer.py "$MODEL" 1 > "$WORK/peer.json" &
  local pipeline=$!
  pids+=("$pipeline")
  sleep "$WARMUP"
  local procs; procs=$(pgrep -f "ai_peer.py|fps=5,scale=640:360" | tr '\n' ' ')
  t0=0; for p in $procs; do t0=$((t0 + $(ticks "$p" 2>/dev/null || echo 0))); done
  sleep "$WINDOW"
  t1=0; for p in $procs; do t1=$((t1 + $(ticks "$p" 2>/dev/null || echo 0))); done
  wait "$pipeline" 2>/dev/null || true
  echo "peer $((t1 - t0)) $(cat "$WORK/peer.json")"
}

results=()
results+=("$(measure plain '{"ai":{"model":null},"privacy":{"blur_faces":false}}')")
results+=("$(measure detect '{"ai":{"model":"centerface","fps":5,"min_duration_ms":400},"privacy":{"blur_faces":false}}')")
results+=("$(measure privacy '{"ai":{"model":null,"fps":5},"privacy":{"blur_faces":true}}')")
results+=("$(peer)")

"$PY" - "$HZ" "$WINDOW" "${W}x$H" "${results[@]}" <<'PY'
import json, sys
hz, window, size = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
runs = {}
for r in sys.argv[4:]:
    name, ticks, doc = r.split(" ", 2)
    runs[name] = (int(ticks) / hz / window * 100, json.loads(doc))
cpu = {k: v[0] for k, v in runs.items()}
detect = runs["detect"][1]["objects"]
privacy = runs["privacy"][1]["privacy"]
faces = runs["privacy"][1]["faces"]
assert detect["frames"] > 0 and detect["state"] == "running", detect
assert privacy["covered"] > 0, privacy
print(f"== a {size} 30 fps push with a face, one 360p rendition; CPU of the node and its detector processes over {window:.0f} s")
print(f"no detection:           {cpu['plain']:6.2f} % of a core")
print(f"CenterFace at 5 fps:    {cpu['detect']:6.2f} % ({detect['fps']:.1f} fps looked at, {detect['dropped']} dropped, inference {detect['inference_ms']:.1f} ms)")
print(f"privacy mode:           {cpu['privacy']:6.2f} % (faces at {faces['fps']:.1f} fps)")
print(f"peer (ffmpeg + python): {cpu['peer']:6.2f} % (decode at 5 fps + CenterFace, {runs['peer'][1]['frames']} frames)")
share = cpu['detect'] - cpu['plain']
print(f"detection's CPU share:  {share:+.2f} points of a core (detect - plain)")
print(f"peer / node detection:  {cpu['peer'] / share:.2f} (the peer's decode + detection vs the node's added detection)")
print(f"detection latency:      p50 {detect['latency_ms_p50']:.0f} ms, p99 {detect['latency_ms_p99']:.0f} ms (picture at the tee -> events published)")
total = privacy['covered'] + privacy['blanked']
print(f"privacy delay:          {privacy['delay_ms']:.0f} ms mean = {privacy['delay_ms'] / (1000 / 30):.1f} frames at 30 fps; faces covered in the very picture they were found in (0 frames of blur lag)")
print(f"privacy coverage:       {privacy['covered']} of {total} pictures covered, {privacy['blanked']} blanked")
PY
