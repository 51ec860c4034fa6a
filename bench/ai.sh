#!/usr/bin/env bash
# Inference: the node's session against Python onnxruntime on the same model (CenterFace, the
# shipped face detector), input size (640×384) and thread count, in one run, alternating
# twice. The node's figure is `livepeer-edge detect` on a 1280×720 frame (scikit-image's
# astronaut inside it): the session's run alone, and the whole detection (letterbox,
# run, decoding, suppression) whose extra is the pipeline's overhead — and again on a 640×360
# frame, the size the live AI tap hands a 640×384 model (GStreamer scaled it already).
# Printed: medians, the ratio Python/node (goal ≥ 1.0) and the overhead in % of inference
# (goal ≤ 5 %).
# BENCH_SMOKE=1 checks the procedure in seconds on the debug build (the test suite runs it).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
if [ "${BENCH_SMOKE:-}" = 1 ]; then
  cargo build --workspace --all-targets
  BIN=target/debug; RUNS=3; ROUNDS=1
  echo "smoke run: the procedure works; these figures mean nothing"
else
  cargo build --release -p livepeer-edge --bin livepeer-edge
  BIN=target/release; RUNS="${BENCH_RUNS:-60}"; ROUNDS=2
fi
THREADS="${BENCH_THREADS:-1}"
PY=target/pyenv/bin/python
MODEL=target/models/centerface.onnx
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
"$PY" - "$WORK/frame.rgb" <<'PY'
import sys
import numpy as np
from skimage import data
frame = np.full((720, 1280, 3), 40, dtype=np.uint8)
frame[104:616, 384:896] = data.astronaut()
frame.tofile(sys.argv[1])
frame[::2, ::2].copy().tofile(sys.argv[1] + ".tap")
PY

node_run() { # image width height
  LPE_AI_INTRA_THREADS="$THREADS" "$BIN/livepeer-edge" detect --model "$MODEL" --kind centerface \
    --width 640 --height 384 --image "$1" --image-width "$2" --image-height "$3" --runs "$RUNS"
}
results=()
for _ in $(seq "$ROUNDS"); do
  results+=("$(node_run "$WORK/frame.rgb" 1280 720 | "$PY" -c 'import json,sys; d=json.load(sys.stdin); assert len(d["detections"]) == 1, d; print("node", d["inference_ms_p50"], d["total_ms_p50"])')")
  results+=("$(node_run "$WORK/frame.rgb.tap" 640 360 | "$PY" -c 'import json,sys; d=json.load(sys.stdin); assert len(d["detections"]) == 1, d; print("tap", d["inference_ms_p50"], d["total_ms_p50"])')")
  results+=("python $("$PY" bench/ai.py "$MODEL" 640 384 "$THREADS" "$RUNS" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["inference_ms_p50"])')")
done

"$PY" - "$THREADS" "$RUNS" "${results[@]}" <<'PY'
import sys
threads, runs = sys.argv[1], sys.argv[2]
node, total, python, tap, tap_total = [], [], [], [], []
for r in sys.argv[3:]:
    f = r.split()
    if f[0] == "node":
        node.append(float(f[1])); total.append(float(f[2]))
    elif f[0] == "tap":
        tap.append(float(f[1])); tap_total.append(float(f[2]))
    else:
        python.append(float(f[1]))
mean = lambda v: sum(v) / len(v)
n, t, p = mean(node), mean(total), mean(python)
print(f"== CenterFace 640x384, {threads} thread(s), medians of {runs} runs, alternating")
print(f"node session run:       {', '.join(f'{x:.2f}' for x in node)} ms")
print(f"python onnxruntime:     {', '.join(f'{x:.2f}' for x in python)} ms")
print(f"node whole detection:   {', '.join(f'{x:.2f}' for x in total)} ms (letterbox from 1280x720, run, decode, NMS)")
print(f"ratio python/node:      {p / n:.3f} (goal >= 1.0)")
print(f"pipeline overhead:      {(t - n) / n * 100:.1f} % of inference from 1280x720 (goal <= 5 %)")
tn, tt = mean(tap), mean(tap_total)
print(f"from the tap's 640x360: {', '.join(f'{x:.2f}' for x in tap)} ms run, {', '.join(f'{x:.2f}' for x in tap_total)} ms whole: {(tt - tn) / tn * 100:.1f} % overhead (goal <= 5 %)")
PY
