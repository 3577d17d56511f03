"""Explicit Q/DQ from a calibration table: small ONNX models (conv, residual, matmul/gemm,
attention-like matmul, conv-transpose) are calibrated on FP32 activations from ONNX Runtime,
quantized, checked for placement and scales, and run in ONNX Runtime against FP32."""

import json
import math

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import trtcal  # noqa: E402
from trtcal import CalibrationTable  # noqa: E402
from trtcal.onnx import quantize  # noqa: E402

OPSET = 17


# ------------------------------------------------------------------ model builders


def _model(nodes, inputs, outputs, inits, opset=OPSET):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def _out(name, rank):
    return helper.make_tensor_value_info(
        name, TensorProto.FLOAT, [f"{name}_d{i}" for i in range(rank)]
    )


def _w(rng, name, shape, scale=0.3):
    return numpy_helper.from_array((rng.laplace(size=shape) * scale).astype(np.float32), name)


def conv_model(rng):
    """x -> Conv(3->8, 3x3) -> Relu -> Conv(8->5, 3x3, pad 1) -> y"""
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node(
            "Conv", ["r1", "w2"], ["y"], name="conv2", kernel_shape=[3, 3], pads=[1, 1, 1, 1]
        ),
    ]
    inits = [
        _w(rng, "w1", (8, 3, 3, 3)),
        _w(rng, "b1", (8,), 0.1),
        _w(rng, "w2", (5, 8, 3, 3), 0.2),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 13, 11])],
        [_out("y", 4)],
        inits,
    )


def residual_model(rng):
    """x -> Conv a -> Relu r -> Conv b ; Add(b, r) -> Relu -> y  (ResNet basic block)"""
    nodes = [
        helper.make_node(
            "Conv", ["x", "wa"], ["a"], name="conv_a", kernel_shape=[3, 3], pads=[1, 1, 1, 1]
        ),
        helper.make_node("Relu", ["a"], ["r"], name="relu_a"),
        helper.make_node(
            "Conv", ["r", "wb", "bb"], ["b"], name="conv_b", kernel_shape=[3, 3], pads=[1, 1, 1, 1]
        ),
        helper.make_node("Add", ["b", "r"], ["s"], name="residual_add"),
        helper.make_node("Relu", ["s"], ["y"], name="relu_out"),
    ]
    inits = [
        _w(rng, "wa", (6, 4, 3, 3)),
        _w(rng, "wb", (6, 6, 3, 3), 0.15),
        _w(rng, "bb", (6,), 0.1),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 9, 7])],
        [_out("y", 4)],
        inits,
    )


def matmul_model(rng):
    """x[N,24] -> Gemm(W[17,24], transB) -> Relu -> MatMul(W2[17,9]) -> Add(bias) -> y; and a
    second output through an attention-like MatMul of two activations."""
    nodes = [
        helper.make_node("Gemm", ["x", "wg", "bg"], ["g"], name="gemm", transB=1),
        helper.make_node("Relu", ["g"], ["h"], name="relu"),
        helper.make_node("MatMul", ["h", "wm"], ["mm"], name="matmul"),
        helper.make_node("Add", ["mm", "bm"], ["y"], name="bias_add"),
        helper.make_node("Transpose", ["h"], ["ht"], name="transpose", perm=[1, 0]),
        helper.make_node("MatMul", ["ht", "h"], ["z"], name="act_matmul"),
    ]
    inits = [
        _w(rng, "wg", (17, 24), 0.2),
        _w(rng, "bg", (17,), 0.1),
        _w(rng, "wm", (17, 9), 0.25),
        _w(rng, "bm", (9,), 0.1),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 24])],
        [_out("y", 2), _out("z", 2)],
        inits,
    )


def convtranspose_model(rng):
    nodes = [
        helper.make_node(
            "ConvTranspose", ["x", "wt"], ["y"], name="deconv", kernel_shape=[2, 2], strides=[2, 2]
        )
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6, 5, 7])],
        [_out("y", 4)],
        [_w(rng, "wt", (6, 3, 2, 2))],
    )


def _data(rng, model, n):
    shape = [d.dim_value or n for d in model.graph.input[0].type.tensor_type.shape.dim]
    return rng.standard_t(5, size=shape).astype(np.float32)


# ------------------------------------------------------------------ running


def _run(model, x, outputs=None):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(
        zip([o.name for o in sess.get_outputs()], sess.run(outputs, {model.graph.input[0].name: x}))
    )


def calibrate(model, x):
    """max-calibration of every node output on FP32 ONNX Runtime activations (trtcal.amax)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    have = {o.name for o in probe.graph.output}
    for n in probe.graph.node:
        for o in n.output:
            if o not in have:
                probe.graph.output.append(helper.make_tensor_value_info(o, TensorProto.FLOAT, None))
    acts = _run(probe, x)
    acts[model.graph.input[0].name] = x
    return CalibrationTable({k: trtcal.amax(v, name=k) for k, v in acts.items()}, method="max")


def _nodes(model, op):
    return [n for n in model.graph.node if n.op_type == op]


def _producer(model, name):
    return next((n for n in model.graph.node if name in n.output), None)


def _init(model, name):
    return numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == name))


def _qdq_source(model, tensor):
    """(source tensor, scale, zero point, axis) of the Q->DQ chain that produces ``tensor``."""
    dq = _producer(model, tensor)
    assert dq is not None and dq.op_type == "DequantizeLinear", f"{tensor} is not produced by a DQ"
    q = _producer(model, dq.input[0])
    assert q.op_type == "QuantizeLinear" and list(q.input[1:]) == list(dq.input[1:])
    axis = {a.name: a.i for a in dq.attribute}.get("axis")
    return q.input[0], _init(model, dq.input[1]), _init(model, dq.input[2]), axis


def _rel_err(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _rms_err(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _assert_close(q, m, x, rms=0.06, peak=0.08):
    """INT8 Q/DQ output vs FP32 on data the ranges cover: a few percent of the output, or a few
    times the input's own INT8 rounding noise where one extreme value sets a coarse step (16
    Student-t(5) samples, max-calibrated: x once reached 45 against an rms of 1.4, and the output
    error 8%). Over 600 seeds of every test here the output error stayed <= 2.5x (rms) and
    <= 3.4x (peak) that noise."""
    noise = float(
        np.abs(x).max() / 127 / np.sqrt(12) / np.sqrt(np.mean(np.square(x, dtype=np.float64)))
    )
    rms, peak = max(rms, 4 * noise), max(peak, 6 * noise)
    ref, got = _run(m, x), _run(q, x)
    for k in ref:
        assert _rms_err(got[k], ref[k]) < rms, k
        assert _rel_err(got[k], ref[k]) < peak, k
        assert not np.array_equal(got[k], ref[k]), f"{k}: output identical to FP32: not quantized?"


# ------------------------------------------------------------------ tests


def _check_io_kept(q, m):
    assert [(i.name, i.type) for i in q.graph.input] == [(i.name, i.type) for i in m.graph.input]
    assert [(o.name, o.type) for o in q.graph.output] == [(o.name, o.type) for o in m.graph.output]
    onnx.checker.check_model(q, full_check=True)


def test_conv_model_placement_scales_and_accuracy(rng):
    m = conv_model(rng)
    x = _data(rng, m, 16)
    table = calibrate(m, x)
    q, rep = quantize(m, table, return_report=True)
    _check_io_kept(q, m)
    assert rep.path.startswith("explicit Q/DQ") and rep.opset == OPSET
    meta = {p.key: json.loads(p.value) for p in q.metadata_props}
    assert (
        meta["trtcal.quantize"]["path"] == rep.path and meta["trtcal.quantize"]["activations"] == 2
    )
    conv1, conv2 = _nodes(q, "Conv")
    for conv, act, w in ((conv1, "x", "w1"), (conv2, "r1", "w2")):
        src, scale, zp, axis = _qdq_source(q, conv.input[0])
        assert src == act and axis is None and scale.dtype == np.float32 and scale.shape == ()
        assert scale == np.float32(table[act] / 127) and zp.dtype == np.int8 and zp == 0
        src, scale, zp, axis = _qdq_source(q, conv.input[1])
        w_arr = _init(m, w)
        assert src == w and axis == 0 and scale.shape == (w_arr.shape[0],)
        np.testing.assert_array_equal(
            scale, (np.abs(w_arr).reshape(w_arr.shape[0], -1).max(1) / 127).astype(np.float32)
        )
        assert np.all(zp == 0) and zp.dtype == np.int8
    assert conv1.input[2] == "b1"  # bias stays float
    _assert_close(q, m, x)
    # held-out data from the same distribution (may exceed the ranges). 256 samples, not 8: with
    # Student-t(5) inputs one clipped extreme dominated the error of 8 samples and crossed the bound
    # in 0.25% of seeds (seed 4210463823: an input of 37 against a range of 10.7); over 2000 seeds
    # the error of 256 samples stays <= 0.19
    fresh = _data(rng, m, 256)
    assert _rms_err(_run(q, fresh)["y"], _run(m, fresh)["y"]) < 0.25
    # the scales matter: ranges 20x too wide give a much worse model
    wide = CalibrationTable({k: v * 20 for k, v in table.items()})
    err_wide = _rms_err(_run(quantize(m, wide), x)["y"], _run(m, x)["y"])
    assert err_wide > 3 * _rms_err(_run(q, x)["y"], _run(m, x)["y"])


def test_residual_add_quantizes_the_skip_branch_only(rng):
    m = residual_model(rng)
    x = _data(rng, m, 16)
    table = calibrate(m, x)
    q, rep = quantize(m, table, return_report=True)
    _check_io_kept(q, m)
    add = _nodes(q, "Add")[0]
    assert add.input[0] == "b"  # conv output: left to fuse
    src, scale, _, _ = _qdq_source(q, add.input[1])
    assert src == "r" and scale == np.float32(table["r"] / 127)
    conv_b = next(n for n in q.graph.node if n.name == "conv_b")
    assert conv_b.input[0] == add.input[1]  # one Q/DQ pair shared by both consumers of r
    assert len(_nodes(q, "QuantizeLinear")) == 4  # x, r, wa, wb
    assert "residual_add" in rep.quantized_nodes
    _assert_close(q, m, x)
    # without residual Q/DQ the add stays float
    q2 = quantize(m, table, residual_add=False)
    assert _nodes(q2, "Add")[0].input[:] == ["b", "r"]


def test_gemm_and_matmul_axes_and_activation_matmul(rng):
    m = matmul_model(rng)
    x = _data(rng, m, 64)
    table = calibrate(m, x)
    q, rep = quantize(m, table, return_report=True)
    _check_io_kept(q, m)
    gemm = _nodes(q, "Gemm")[0]
    assert _qdq_source(q, gemm.input[0])[0] == "x"
    src, scale, _, axis = _qdq_source(q, gemm.input[1])
    assert src == "wg" and axis == 0 and scale.shape == (17,)  # transB=1 -> axis 0
    assert gemm.input[2] == "bg"
    mm = next(n for n in q.graph.node if n.name == "matmul")
    src, scale, _, axis = _qdq_source(q, mm.input[1])
    assert src == "wm" and axis == 1 and scale.shape == (9,)  # MatMul: last dim
    np.testing.assert_array_equal(scale, (np.abs(_init(m, "wm")).max(0) / 127).astype(np.float32))
    act = next(n for n in q.graph.node if n.name == "act_matmul")
    assert _qdq_source(q, act.input[0])[0] == "ht" and _qdq_source(q, act.input[1])[0] == "h"
    assert _nodes(q, "Add")[0].input[1] == "bm"  # bias add: not a residual add
    assert rep.weights == {"wg": (0, 17), "wm": (1, 9)}
    _assert_close(q, m, x)


def test_gemm_without_transb_uses_axis_1(rng):
    nodes = [helper.make_node("Gemm", ["x", "w"], ["y"], name="gemm")]
    m = _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 10])],
        [_out("y", 2)],
        [_w(rng, "w", (10, 7))],
    )
    x = _data(rng, m, 5)
    q = quantize(m, calibrate(m, x))
    _, scale, _, axis = _qdq_source(q, _nodes(q, "Gemm")[0].input[1])
    assert axis == 1 and scale.shape == (7,)
    _assert_close(q, m, x)


def test_convtranspose_axis_1(rng):
    m = convtranspose_model(rng)
    x = _data(rng, m, 4)
    q = quantize(m, calibrate(m, x))
    _, scale, _, axis = _qdq_source(q, _nodes(q, "ConvTranspose")[0].input[1])
    assert axis == 1 and scale.shape == (3,)
    _assert_close(q, m, x)


def test_exclusions_and_per_tensor_weights(rng):
    m = residual_model(rng)
    table = calibrate(m, _data(rng, m, 8))
    q, rep = quantize(m, table, exclude_nodes=["conv_a"], return_report=True)
    conv_a = next(n for n in q.graph.node if n.name == "conv_a")
    assert list(conv_a.input) == ["x", "wa"] and rep.skipped == {"conv_a": "excluded"}
    q = quantize(m, table, exclude_op_types=["Add"])
    assert list(_nodes(q, "Add")[0].input) == ["b", "r"]
    q = quantize(m, table, op_types=["Conv"], quantize_weights=False)
    assert len(_nodes(q, "QuantizeLinear")) == 2
    q = quantize(m, table, per_channel=False)
    _, scale, _, axis = _qdq_source(q, _nodes(q, "Conv")[0].input[1])
    assert (
        axis is None
        and scale.shape == ()
        and scale == np.float32(np.abs(_init(m, "wa")).max() / 127)
    )
    with pytest.raises(ValueError, match="matches no node"):
        quantize(m, table, exclude_nodes="nope*")
    with pytest.raises(ValueError, match="Softmax"):
        quantize(m, table, op_types=["Conv", "Softmax"])


def test_opset_is_raised_to_13_and_selectable(rng):
    m = conv_model(rng)
    x = _data(rng, m, 4)
    table = calibrate(m, x)
    m11 = _model(
        list(m.graph.node),
        list(m.graph.input),
        list(m.graph.output),
        list(m.graph.initializer),
        opset=11,
    )
    q, rep = quantize(m11, table, return_report=True)
    assert rep.opset == 13 and q.opset_import[0].version == 13
    q = quantize(m, table, opset=19)
    assert q.opset_import[0].version == 19
    _assert_close(q, m, x)
    with pytest.raises(ValueError, match="opset 10 is too old"):
        quantize(m, table, opset=10)


def test_zero_or_nonfinite_amax_raises_naming_the_tensor(rng):
    m = conv_model(rng)
    table = calibrate(m, _data(rng, m, 4))
    for bad in (0.0, math.inf):
        t = table.copy()
        t["r1"] = bad
        with pytest.raises(ValueError, match="tensor 'r1' has amax") as e:
            quantize(m, t)
        assert "positive finite" in str(e.value)


def test_missing_activation_error_or_skip(rng):
    m = conv_model(rng)
    table = calibrate(m, _data(rng, m, 4))
    del table["r1"]
    with pytest.raises(KeyError, match="'r1'.*conv2"):
        quantize(m, table)
    q, rep = quantize(m, table, missing="skip", return_report=True)
    assert rep.missing == ["r1"] and _nodes(q, "Conv")[1].input[0] == "r1"
    assert "c1" in rep.unused  # table names no Q/DQ uses


def test_zero_weight_channel_gets_positive_scale_and_nonfinite_weight_raises(rng):
    m = conv_model(rng)
    w1 = _init(m, "w1").copy()
    w1[2] = 0
    m.graph.initializer[0].CopyFrom(numpy_helper.from_array(w1, "w1"))
    x = _data(rng, m, 4)
    table = calibrate(m, x)
    q, rep = quantize(m, table, return_report=True)
    _, scale, _, _ = _qdq_source(q, _nodes(q, "Conv")[0].input[1])
    assert np.all(scale > 0) and rep.zero_weight_channels == {"w1": 1}
    _assert_close(q, m, x)
    w1[0, 0, 0, 0] = np.nan
    m.graph.initializer[0].CopyFrom(numpy_helper.from_array(w1, "w1"))
    with pytest.raises(ValueError, match="'w1'"):
        quantize(m, table)


def test_input_model_untouched_and_already_quantized_nodes_skipped(rng, tmp_path):
    m = conv_model(rng)
    before = m.SerializeToString()
    table = calibrate(m, _data(rng, m, 4))
    q = quantize(m, table, output=tmp_path / "q.onnx")
    assert m.SerializeToString() == before
    assert (tmp_path / "q.onnx").exists()
    q2, rep = quantize(q, table, return_report=True)
    assert len(_nodes(q2, "QuantizeLinear")) == len(_nodes(q, "QuantizeLinear"))
    assert (
        all(r == "already has Q/DQ inputs" for r in rep.skipped.values()) and len(rep.skipped) == 2
    )
    q3 = quantize(str(tmp_path / "q.onnx"), table)  # paths work too
    assert len(q3.graph.node) == len(q.graph.node)


def test_tensor_names_with_colons_and_spaces(rng):
    nodes = [
        helper.make_node("Conv", ["input:0", "w"], ["conv out:0"], name="c", kernel_shape=[1, 1]),
        helper.make_node("Relu", ["conv out:0"], ["y"], name="r"),
    ]
    m = _model(
        nodes,
        [helper.make_tensor_value_info("input:0", TensorProto.FLOAT, ["N", 3, 5, 5])],
        [_out("y", 4)],
        [_w(rng, "w", (4, 3, 1, 1))],
    )
    x = _data(rng, m, 2)
    q = quantize(m, calibrate(m, x))
    assert _qdq_source(q, _nodes(q, "Conv")[0].input[0])[0] == "input:0"
    _assert_close(q, m, x)
