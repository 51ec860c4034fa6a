"""The Python side of bench/ai.sh: onnxruntime's own session on the same model, input size and
thread count as the node's, timed the same way (median of the session's run over RUNS runs
after one warm-up). Prints one JSON line.

Usage: ai.py MODEL WIDTH HEIGHT THREADS RUNS
"""

import json
import sys
import time

import numpy as np
import onnxruntime as ort

model, width, height, threads, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
options = ort.SessionOptions()
options.intra_op_num_threads = threads
options.inter_op_num_threads = 1
options.log_severity_level = 3
session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name
x = (np.random.default_rng(1).random((1, 3, height, width), dtype=np.float32) * 255).astype(np.float32)
session.run(None, {name: x})
times = []
for _ in range(runs):
    t = time.perf_counter()
    session.run(None, {name: x})
    times.append((time.perf_counter() - t) * 1000)
times.sort()
print(json.dumps({"inference_ms_p50": times[len(times) // 2], "threads": threads, "runs": runs}))
