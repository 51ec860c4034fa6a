"""Small ONNX graphs whose outputs are known, for the detector tests, and the test photo.

Writes into DIR: yolov8.onnx, yolov5.onnx, yolox.onnx (one output each, [1, 4+C, N] or
[1, N, 5+C], the same four boxes in each layout's own encoding, for a 320×320 input), and
models that must be refused: two_outputs.onnx, gray_input.onnx; ball.onnx, a real detector
of one class in the v8 layout: the box around the pixels whose red is above 0.8 (a white ball
on black, as GStreamer's `videotestsrc pattern=ball` draws it), score 1 when there are any;
astronaut.rgb (scikit-image's 512×512 photo, packed RGB).

Each graph's output is its constant plus 0 × the sum of its input, so the input is consumed.
"""

import math
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

out = sys.argv[1]
W = H = 320
# In model input pixels: (class, score, cx, cy, w, h). B overlaps A (suppressed), D is below
# any sensible threshold.
A = (0, 0.9, 100.0, 120.0, 40.0, 80.0)
B = (0, 0.6, 104.0, 122.0, 40.0, 80.0)
C = (1, 0.8, 200.0, 200.0, 60.0, 30.0)
D = (1, 0.1, 50.0, 250.0, 20.0, 20.0)
CELLS = sum((W // s) * (H // s) for s in (8, 16, 32))  # 2100


def graph(name, value, inputs=((1, 3, H, W),), outputs=1):
    ins = [helper.make_tensor_value_info(f"images{i or ''}", TensorProto.FLOAT, list(s)) for i, s in enumerate(inputs)]
    nodes = [
        helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(value.astype(np.float32))),
        helper.make_node("ReduceSum", ["images"], ["s"], keepdims=0),
        helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(np.array(0, dtype=np.float32))),
        helper.make_node("Mul", ["s", "zero"], ["z"]),
    ]
    outs = []
    for o in range(outputs):
        nodes.append(helper.make_node("Add", ["c", "z"], [f"output{o}"]))
        outs.append(helper.make_tensor_value_info(f"output{o}", TensorProto.FLOAT, list(value.shape)))
    g = helper.make_graph(nodes, name, ins, outs)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, f"{out}/{name}.onnx")


# v8 / v11: [1, 4 + 2, N], channels first, no objectness.
v8 = np.zeros((1, 6, CELLS))
for i, (cls, score, cx, cy, w, h) in enumerate((A, B, C, D)):
    v8[0, :4, i * 7] = (cx, cy, w, h)
    v8[0, 4 + cls, i * 7] = score
graph("yolov8", v8)

# v5: [1, 3 × cells, 5 + 2], decoded boxes, objectness × class probability.
v5 = np.zeros((1, 3 * CELLS, 7))
for i, (cls, score, cx, cy, w, h) in enumerate((A, B, C, D)):
    v5[0, 100 + i * 11, :5] = (cx, cy, w, h, score)
    v5[0, 100 + i * 11, 5 + cls] = 1.0
graph("yolov5", v5)

# YOLOX: [1, cells, 5 + 2], raw: (offset in the cell, log size) per stride.
x = np.zeros((1, CELLS, 7))
def put(box, stride, gx, gy):
    cls, score, cx, cy, w, h = box
    base = sum((W // s) * (H // s) for s in (8, 16, 32) if s < stride)
    row = base + gy * (W // stride) + gx
    x[0, row, :5] = (cx / stride - gx, cy / stride - gy, math.log(w / stride), math.log(h / stride), score)
    x[0, row, 5 + cls] = 1.0
put(A, 8, 12, 15)
put(B, 8, 13, 15)
put(C, 16, 12, 12)
put(D, 32, 1, 7)
graph("yolox", x)

graph("two_outputs", v8, outputs=2)
graph("gray_input", v8, inputs=((1, 1, H, W),))

def ball_detector():
    """[1, 3, 320, 320] (0–1 RGB) → [1, 5, 16]: the bright pixels' box, repeated 16 times."""
    n = helper.make_node
    big = -(2**62)
    nodes = [
        n("Constant", [], ["threshold"], value=numpy_helper.from_array(np.array(0.8, dtype=np.float32))),
        n("Constant", [], ["one"], value=numpy_helper.from_array(np.array(1.0, dtype=np.float32))),
        n("Constant", [], ["half"], value=numpy_helper.from_array(np.array(0.5, dtype=np.float32))),
        n("Constant", [], ["last"], value=numpy_helper.from_array(np.array(W - 1, dtype=np.float32))),
        n("Constant", [], ["r_starts"], value=numpy_helper.from_array(np.array([0], dtype=np.int64))),
        n("Constant", [], ["r_ends"], value=numpy_helper.from_array(np.array([1], dtype=np.int64))),
        n("Constant", [], ["r_axes"], value=numpy_helper.from_array(np.array([1], dtype=np.int64))),
        n("Slice", ["images", "r_starts", "r_ends", "r_axes"], ["red"]),
        n("Greater", ["red", "threshold"], ["bright"]),
        n("Cast", ["bright"], ["mask"], to=TensorProto.FLOAT),
        n("Constant", [], ["rev_starts"], value=numpy_helper.from_array(np.array([-1], dtype=np.int64))),
        n("Constant", [], ["rev_ends"], value=numpy_helper.from_array(np.array([big], dtype=np.int64))),
        n("Constant", [], ["rev_axes"], value=numpy_helper.from_array(np.array([2], dtype=np.int64))),
        n("Constant", [], ["rev_steps"], value=numpy_helper.from_array(np.array([-1], dtype=np.int64))),
        n("ReduceMax", ["mask"], ["any"], keepdims=1, axes=[2, 3]),
        n("Reshape", ["any", "shape3"], ["score"]),
        n("Constant", [], ["shape3"], value=numpy_helper.from_array(np.array([1, 1, 1], dtype=np.int64))),
        n("Constant", [], ["repeats"], value=numpy_helper.from_array(np.array([1, 1, 16], dtype=np.int64))),
    ]
    coords = []
    for axis, name in ((2, "x"), (3, "y")):
        # Columns (x: reduce the rows) or rows (y: reduce the columns) that hold a bright pixel.
        nodes += [
            n("ReduceMax", ["mask"], [f"{name}_line4"], keepdims=0, axes=[axis]),
            n("Reshape", [f"{name}_line4", "line_shape"], [f"{name}_line"]),
            n("ArgMax", [f"{name}_line"], [f"{name}_first_i"], axis=2, keepdims=1),
            n("Slice", [f"{name}_line", "rev_starts", "rev_ends", "rev_axes", "rev_steps"], [f"{name}_rev"]),
            n("ArgMax", [f"{name}_rev"], [f"{name}_back_i"], axis=2, keepdims=1),
            n("Cast", [f"{name}_first_i"], [f"{name}1"], to=TensorProto.FLOAT),
            n("Cast", [f"{name}_back_i"], [f"{name}_back"], to=TensorProto.FLOAT),
            n("Sub", ["last", f"{name}_back"], [f"{name}2"]),
            n("Sub", [f"{name}2", f"{name}1"], [f"{name}_span"]),
            n("Add", [f"{name}_span", "one"], [f"{name}_size"]),
            n("Add", [f"{name}1", f"{name}2"], [f"{name}_sum"]),
            n("Add", [f"{name}_sum", "one"], [f"{name}_sum1"]),
            n("Mul", [f"{name}_sum1", "half"], [f"{name}_centre"]),
        ]
        coords.append(name)
    nodes.append(n("Constant", [], ["line_shape"], value=numpy_helper.from_array(np.array([1, 1, W], dtype=np.int64))))
    nodes += [
        n("Concat", ["x_centre", "y_centre", "x_size", "y_size", "score"], ["box"], axis=1),
        n("Tile", ["box", "repeats"], ["output0"]),
    ]
    # Constants first: a graph's nodes are in topological order.
    nodes.sort(key=lambda nd: nd.op_type != "Constant")
    g = helper.make_graph(
        nodes,
        "ball",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, H, W])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 5, 16])],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, f"{out}/ball.onnx")


ball_detector()

from skimage import data  # noqa: E402

data.astronaut().astype(np.uint8).tofile(f"{out}/astronaut.rgb")
