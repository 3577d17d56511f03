"""A small conv net with one quantization-hostile layer, for the compare/analyze tests.

conv1 (3 -> 8) has one output channel about ``outlier`` times larger than the others (its
weights and bias are scaled); conv2 reads relu(conv1) with that channel's weights divided by
``4 * outlier``, so every channel matters about equally to the logits. A per-tensor INT8 range
that covers the outlier channel rounds the seven normal channels of conv2's input to zero:
conv2 is the layer that breaks INT8. conv1 and the classifier (Gemm) quantize well.
"""

import numpy as np

OUTLIER_INPUT = "r1"  # conv2's input activation


def build(rng, path=None, outlier=1000.0, size=9):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    c1 = (rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32)
    b1 = (rng.standard_normal(8) * 0.1).astype(np.float32)
    c1[0] *= outlier
    b1[0] = (abs(b1[0]) + 0.5) * outlier
    c2 = (rng.standard_normal((8, 8, 3, 3)) * 0.2).astype(np.float32)
    c2[:, 0] /= 4 * outlier
    wfc = (rng.standard_normal((8, 10)) * 0.5).astype(np.float32)
    bfc = (rng.standard_normal(10) * 0.05).astype(np.float32)
    inits = [
        numpy_helper.from_array(a, n)
        for a, n in ((c1, "w1"), (b1, "b1"), (c2, "w2"), (wfc, "wfc"), (bfc, "bfc"))
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "wfc", "bfc"], ["logits"], name="fc"),
    ]
    g = helper.make_graph(
        nodes,
        "outlier_net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    if path is not None:
        onnx.save(m, str(path))
    return m


def data(rng, n, size=9):
    return rng.standard_normal((n, 3, size, size)).astype(np.float32)


def activations(model, x, names):
    """FP32 values of ``names`` on ``x`` (ONNX Runtime, optimisations off)."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for n in names:
        if n not in have:
            m.graph.output.append(onnx.ValueInfoProto(name=n))
    return dict(zip(names, run(m, x, names)))


def run(model, x, names=None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = names or [o.name for o in s.get_outputs()]
    return s.run(names, {"x": x})


def clip_table(model, x):
    """Min-max ranges, except conv2's input clipped to the normal channels' max: the outlier
    channel saturates, the seven others keep their resolution."""
    names = ["x", "c1", "r1", "c2", "r2", "p", "f", "logits"]
    acts = activations(model, x, names)
    t = {n: float(np.abs(a).max()) for n, a in acts.items()}
    t[OUTLIER_INPUT] = float(np.abs(acts[OUTLIER_INPUT][:, 1:]).max())
    return t
