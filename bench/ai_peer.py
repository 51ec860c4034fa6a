"""The peer side of bench/ai_live.sh: what an integrator scripts without the node — ffmpeg
decodes the same push, samples 5 pictures a second scaled to 640×360 RGB, and Python
onnxruntime runs CenterFace on each (padded to 640×384, one thread). Runs until its input
ends; prints one JSON line: frames looked at, faces found per frame.

Usage: ai_peer.py MODEL THREADS < raw RGB 640×360 frames
"""

import json
import sys

import numpy as np
import onnxruntime as ort

model, threads = sys.argv[1], int(sys.argv[2])
options = ort.SessionOptions()
options.intra_op_num_threads = threads
options.inter_op_num_threads = 1
options.log_severity_level = 3
session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name
w, h = 640, 360
frames = faces = 0
while True:
    raw = sys.stdin.buffer.read(w * h * 3)
    if len(raw) < w * h * 3:
        break
    rgb = np.frombuffer(raw, dtype=np.uint8).reshape(h, w, 3)
    x = np.zeros((1, 3, 384, 640), dtype=np.float32)
    x[0, :, 12:372, :] = rgb.transpose(2, 0, 1)
    heatmap = session.run(None, {name: x})[0]
    faces += int((heatmap > 0.5).any())
    frames += 1
print(json.dumps({"frames": frames, "frames_with_faces": faces}))
