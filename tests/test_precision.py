"""The high-precision remainder of a Q/DQ model (trtcal.onnx.precision): everything not quantized
cast to FP16 or BF16, graph inputs/outputs kept, tensors whose calibrated range the type cannot
hold kept in FP32 and named.

Runners: FP16 models run in ONNX Runtime's CPU provider with basic graph optimizations (its
extended Q/DQ fusions, QLinearConv/QLinearConcat, take float32 scales only); BF16 models run in
``onnx.reference`` (ONNX Runtime 1.32's CPU provider has no bfloat16 QuantizeLinear kernel)."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402
from test_placement import (  # noqa: E402
    _run,
    _x,
    attention_model,
    calibrate,
    concat_model,
    residual_silu_model,
)

from trtcal.onnx import precision, quantize  # noqa: E402


def run_ort_basic(model, feeds):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


def _types(model):
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    g = inferred.graph
    return {
        v.name: v.type.tensor_type.elem_type
        for v in list(g.value_info) + list(g.output) + list(g.input)
    }


def _node_out_type(model, types, name):
    node = next(n for n in model.graph.node if n.name == name)
    return types[node.output[0]]


def _rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize(
    "build,shape", [(residual_silu_model, (4, 4, 8, 8)), (concat_model, (4, 3, 6, 6))]
)
def test_fp16_remainder_types_io_and_accuracy(rng, build, shape):
    m = build(rng)
    feeds = _x(rng, *shape)
    table = calibrate(m, feeds)
    q32 = quantize(m, table)
    q16, rep = quantize(m, table, high_precision="fp16", return_report=True)
    assert q16.opset_import[0].version == 19 and rep.high_precision == "fp16"
    types = _types(q16)
    # graph inputs and outputs keep float32; every computation in between is float16
    assert [types[i.name] for i in q16.graph.input] == [TensorProto.FLOAT]
    assert all(
        o.type.tensor_type.elem_type == m.graph.output[i].type.tensor_type.elem_type
        for i, o in enumerate(q16.graph.output)
    )
    for n in q16.graph.node:
        if (
            n.op_type in ("Conv", "Sigmoid", "Mul", "Add", "Concat", "DequantizeLinear")
            and m.graph.node[0].op_type
            and n.name != "shape_concat"
        ):  # int64 shape arithmetic stays
            assert types[n.output[0]] == TensorProto.FLOAT16, n.name
    inits = {t.name: t for t in q16.graph.initializer}
    scales = [inits[n.input[1]] for n in q16.graph.node if n.op_type == "DequantizeLinear"]
    assert scales and all(t.data_type == TensorProto.FLOAT16 for t in scales)
    assert rep.precision.low_nodes > 0 and not rep.precision.kept_fp32
    ref, got32, got16 = _run(m, feeds), _run(q32, feeds), run_ort_basic(q16, feeds)
    for k, r in ref.items():
        if not np.issubdtype(r.dtype, np.floating):
            continue
        assert got16[k].dtype == np.float32
        # FP16 adds rounding of ~2^-11 per op to the INT8 error: within 0.02 of the FP32 remainder
        assert _rel(got16[k], r) < _rel(got32[k], r) + 0.02, k


def test_fp16_keeps_out_of_range_tensors_in_fp32_and_names_them(rng):
    m = residual_silu_model(rng)
    feeds = _x(rng, 3, 4, 8, 8)
    table = calibrate(m, feeds)
    table["sb_sig"] = 1.0  # in range
    table["b"] = 1e5  # beyond FP16's 65504: conv_b's output, read by sb_sigmoid and sb_mul
    table["sa_sig"] = 1e-6  # below FP16's smallest normal
    q, rep = quantize(m, table, high_precision="fp16", return_report=True)
    kept = rep.precision.kept_fp32
    assert (
        set(kept) >= {"b", "sa_sig"}
        and "65504" in kept["b"]
        and "smallest normal" in kept["sa_sig"]
    )
    types = _types(q)
    for node in ("conv_b", "sb_sigmoid", "sb_mul"):  # producer and consumers of b
        assert node in rep.precision.fp32_nodes, node
    assert _node_out_type(q, types, "conv_b") == TensorProto.FLOAT
    assert _node_out_type(q, types, "conv_a") == TensorProto.FLOAT16
    text = "\n".join(rep.placement_lines())
    assert "tensor b stays fp32: amax 100000 exceeds fp16's largest value" in text
    run_ort_basic(q, feeds)  # the Casts make a valid model


def test_range_problems_smallest_and_bf16(rng):
    probs = precision.range_problems(
        {"a": 7e4, "b": 1.0, "c": float("inf")}, "fp16", smallest={"b": 1e-9}
    )
    assert set(probs) == {"a", "b", "c"} and "flushes to zero" in probs["b"]
    assert precision.range_problems({"a": 7e4, "b": 1e-30}, "bf16") == {}
    assert precision.range_problems({"a": 7e4}, "fp32") == {}
    with pytest.raises(ValueError, match="fp32, fp16, bf16"):
        precision.check_dtype("int4")


def test_keep_io_types_false_declares_fp16_io(rng):
    m = residual_silu_model(rng)
    feeds = _x(rng, 2, 4, 8, 8)
    q = quantize(m, calibrate(m, feeds), high_precision="fp16", keep_io_types=False)
    assert q.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT16
    assert q.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT16
    out = run_ort_basic(q, {"x": feeds["x"].astype(np.float16)})
    assert out["y"].dtype == np.float16


def test_bf16_remainder_runs_in_onnx_reference(rng):
    m = attention_model(rng)
    feeds = {"x": rng.standard_normal((2, 7, 8)).astype(np.float32)}
    table = calibrate(m, feeds)
    q, rep = quantize(m, table, high_precision="bf16", return_report=True)
    assert q.opset_import[0].version == 22  # bfloat16 Conv/pooling kernels exist from opset 22
    types = _types(q)
    assert _node_out_type(q, types, "qk") == TensorProto.BFLOAT16
    assert _node_out_type(q, types, "softmax") == TensorProto.BFLOAT16
    ref = _run(m, feeds)["y"]
    got = ReferenceEvaluator(q).run(None, feeds)[0]
    got32 = _run(quantize(m, table), feeds)["y"]
    assert got.dtype == np.float32
    # bfloat16 keeps 8 bits of mantissa: its rounding is of the order of INT8's
    assert _rel(got, ref) < 2 * _rel(got32, ref) + 0.05


def test_cast_remainder_needs_opset_19_and_fp32_is_a_no_op(rng):
    m = residual_silu_model(rng)
    with pytest.raises(ValueError, match="opset >= 19"):
        precision.cast_remainder(m, "fp16")
    same, rep = precision.cast_remainder(m, "fp32")
    assert same is m and rep.low_nodes == 0
    with pytest.raises(ValueError, match="opset >= 19"):
        quantize(m, calibrate(m, _x(rng, 2, 4, 8, 8)), high_precision="fp16", opset=17)


def test_resize_scales_stay_float32_and_large_constants_stay_fp32(rng):
    from onnx import numpy_helper

    nodes = [
        helper.make_node("Resize", ["x", "", "scales"], ["u"], name="resize", mode="nearest"),
        helper.make_node("Mul", ["u", "big"], ["y"], name="mul_big"),
        helper.make_node("Relu", ["u"], ["z"], name="relu"),
    ]
    m = helper.make_model(
        helper.make_graph(
            nodes,
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 3])],
            [
                helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 6, 6]),
                helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 2, 6, 6]),
            ],
            initializer=[
                numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
                numpy_helper.from_array(np.full((1,), 1e6, np.float32), "big"),
            ],
        ),
        opset_imports=[helper.make_opsetid("", 19)],
    )
    q, rep = precision.cast_remainder(m, "fp16")
    resize = next(n for n in q.graph.node if n.op_type == "Resize")
    scales = next(t for t in q.graph.initializer if t.name == resize.input[2])
    assert scales.data_type == TensorProto.FLOAT
    assert "mul_big" in rep.fp32_nodes and "beyond fp16's range" in rep.fp32_nodes["mul_big"]
    x = rng.standard_normal((1, 2, 3, 3)).astype(np.float32)
    out = run_ort_basic(q, {"x": x})
    # the product (up to 2.4e6) is finite: computed in fp32, from an input rounded at most to fp16
    np.testing.assert_allclose(out["y"], np.repeat(np.repeat(x, 2, 2), 2, 3) * 1e6, rtol=1e-3)
    assert np.all(np.isfinite(out["y"]))


def test_tiny_weight_scales_are_rounded_up_not_cast(rng):
    from onnx import numpy_helper

    m = residual_silu_model(rng)
    w = numpy_helper.to_array(m.graph.initializer[0]).copy()
    w[1] *= 1e-7  # a near-zero output channel: scale ~1e-9, below FP16's smallest subnormal (6e-8)
    w[2] *= 2e-3  # scale ~5e-6: an FP16 subnormal
    m.graph.initializer[0].CopyFrom(numpy_helper.from_array(w, m.graph.initializer[0].name))
    feeds = _x(rng, 3, 4, 8, 8)
    q, rep = quantize(m, calibrate(m, feeds), high_precision="fp16", return_report=True)
    assert rep.precision.widened_scales  # named in the report
    prod = {o: n for n in q.graph.node for o in n.output}
    for n in q.graph.node:
        if n.op_type == "Conv":  # every DQ feeds its Conv directly, in FP16: no Cast between
            for i in n.input[:2]:
                assert prod[i].op_type == "DequantizeLinear", (n.name, prod[i].op_type)
    inits = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}
    for n in q.graph.node:
        if n.op_type == "DequantizeLinear":
            s = inits[n.input[1]]
            assert s.dtype == np.float16 and np.all(s > 0)
    ref, got = _run(m, feeds)["y"], run_ort_basic(q, feeds)["y"]
    assert _rel(got, ref) < 0.1
