"""Small models and data shared by the end-to-end calibration tests."""

import numpy as np

QUIET = dict(progress=False, log=lambda s: None)


def cnn_model(path, seed=3):
    """The demo's CNN at 12x12, width 6: Conv, Relu, a residual Add, pooling, Gemm."""
    from trtcal.pipeline.demo import build_model

    build_model(str(path), seed=seed, size=12, width=6)
    return str(path)


def heavy_tailed_images(rng, n):
    """Student-t inputs with a few outliers, (n, 3, 12, 12) float32."""
    x = rng.standard_t(3, size=(n, 3, 12, 12)).astype(np.float32)
    x.reshape(-1)[rng.integers(0, x.size, size=3)] *= 40
    return x


def save_graph(path, nodes, inputs, outputs, initializers=()):
    """An opset-17 model of ``nodes``; inputs/outputs as (name, shape) float tensors, or
    ValueInfoProto as they are."""
    import onnx
    from onnx import TensorProto, helper

    def vi(v):
        return (
            v
            if isinstance(v, onnx.ValueInfoProto)
            else helper.make_tensor_value_info(v[0], TensorProto.FLOAT, v[1])
        )

    g = helper.make_graph(
        nodes, "g", [vi(i) for i in inputs], [vi(o) for o in outputs], list(initializers)
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return str(path)
