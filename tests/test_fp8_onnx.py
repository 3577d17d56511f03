"""FP8 (E4M3FN) Q/DQ export: initializers, the INT8 -> FP8 conversion and its placement report on
a small graph, and ONNX Runtime (CPU) accuracy of FP8 models of real trained models against the
float model, per output head."""

import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import trtcal
import trtcal.fp8
from trtcal.onnx.fp8 import convert_to_fp8, fp8_qdq_initializers
from trtcal.reference import fp8 as ref

sys.path.insert(0, str(Path(__file__).parent))
import real_models
from onnx import TensorProto, helper, numpy_helper


def session(model):
    """ONNX Runtime CPU at the basic optimization level: its extended level rewrites FP8 Q/DQ
    graphs into something less exact (seen with onnxruntime 1.32; docs/fp8.md)."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    data = model if isinstance(model, str) else model.SerializeToString()
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def test_initializers(rng):
    amax = rng.uniform(0.1, 10, 7)
    s, zp = fp8_qdq_initializers("w", amax)
    assert s.name == "w_scale" and zp.name == "w_zero_point"
    assert zp.data_type == TensorProto.FLOAT8E4M3FN and list(zp.dims) == [7]
    np.testing.assert_array_equal(numpy_helper.to_array(s), (amax / 448.0).astype(np.float32))
    assert not np.any(numpy_helper.to_array(zp).astype(np.float32))
    s, zp = fp8_qdq_initializers("a", 3.5, dtype=np.float16)
    assert numpy_helper.to_array(s).dtype == np.float16 and list(zp.dims) == []
    for bad in (0.0, -1.0, np.inf, np.nan):
        with pytest.raises(ValueError, match="positive finite"):
            fp8_qdq_initializers("x", bad)


def small_model(rng):
    """x -> Conv 3x3 (8->16) -> Relu -> depthwise Conv (group 16) -> Relu -> Flatten -> MatMul ->
    Add(residual of the MatMul output with itself through Relu)."""
    def init(name, *shape):
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="dwconv", group=16, pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Flatten", ["r2"], ["f"], name="flatten"),
        helper.make_node("MatMul", ["f", "w3"], ["m"], name="matmul"),
        helper.make_node("Relu", ["m"], ["rm"], name="relu3"),
        helper.make_node("Add", ["m", "rm"], ["y"], name="add"),
    ]
    g = helper.make_graph(nodes, "small", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8, 6, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 10])],
                          [init("w1", 16, 8, 3, 3), init("b1", 16), init("w2", 16, 1, 3, 3), init("w3", 576, 10)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m


def _table(model, x):
    """Activation amax from a float run (every node output)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    names = [o for n in m.graph.node for o in n.output]
    m.graph.output.extend([helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names
                           if n not in {o.name for o in m.graph.output}])
    outs = session(m).run(None, {"x": x})
    got = dict(zip([o.name for o in m.graph.output], outs))
    got["x"] = x
    return {n: float(np.abs(v).max()) for n, v in got.items()}


def test_conversion_report_and_types(rng):
    model = small_model(rng)
    x = rng.standard_normal((2, 8, 6, 6)).astype(np.float32)
    table = _table(model, x)
    q = trtcal.onnx.quantize(model, table)
    f8, rep = convert_to_fp8(q, {"x": table["x"] * 0.9}, return_report=True)
    onnx.checker.check_model(f8)
    assert rep.opset >= 19
    assert "dwconv" in rep.int8_nodes and "4524" in rep.int8_nodes["dwconv"]
    assert {"conv", "matmul"} <= set(rep.fp8_nodes)
    assert rep.activations["x"] == pytest.approx(table["x"] * 0.9)
    inits = {t.name: t for t in f8.graph.initializer}
    kinds = {}
    for n in f8.graph.node:
        if n.op_type == "QuantizeLinear":
            kinds[n.input[0]] = inits[n.input[2]].data_type
    assert kinds["r1"] == TensorProto.INT8 and kinds["w2"] == TensorProto.INT8  # the depthwise conv's
    assert kinds["x"] == TensorProto.FLOAT8E4M3FN and kinds["w1"] == TensorProto.FLOAT8E4M3FN
    # the FP8 weight scale is max|w| / 448 per output channel
    w1 = numpy_helper.to_array(inits["w1"])
    qn = next(n for n in f8.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "w1")
    np.testing.assert_array_equal(numpy_helper.to_array(inits[qn.input[1]]),
                                  (np.abs(w1).reshape(16, -1).max(axis=1) / 448.0).astype(np.float32))
    y = session(model).run(None, {"x": x})[0]
    yq = session(f8).run(None, {"x": x})[0]
    assert 10 * np.log10((y ** 2).sum() / ((y - yq) ** 2).sum()) > 20
    # float fallback: the depthwise conv's pairs are gone, the rest is FP8
    f2, rep2 = convert_to_fp8(q, fallback="float", return_report=True)
    assert "dwconv" in rep2.float_nodes and not rep2.int8_nodes
    assert not any(inits2.data_type == TensorProto.INT8 for inits2 in f2.graph.initializer)
    session(f2).run(None, {"x": x})


def test_fp8_qdq_matches_numpy_simulation(rng):
    """One FP8 Q/DQ pair in ONNX Runtime equals the reference's E4M3 rounding."""
    x = (rng.standard_t(3, (5, 7)) * 2).astype(np.float32)
    s, zp = fp8_qdq_initializers("t", 2.5)
    g = helper.make_graph([helper.make_node("QuantizeLinear", ["x", "t_scale", "t_zero_point"], ["q"]),
                           helper.make_node("DequantizeLinear", ["q", "t_scale", "t_zero_point"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, 7])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [5, 7])], [s, zp])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)])
    m.ir_version = 9
    sc = np.float32(2.5 / 448.0)
    want = (ref.round_e4m3((x / sc).astype(np.float32)) * sc).astype(np.float32)
    np.testing.assert_array_equal(session(m).run(None, {"x": x})[0], want)


def test_bad_inputs(tmp_path, rng):
    with pytest.raises(ValueError, match="no INT8"):
        convert_to_fp8(small_model(rng))
    with pytest.raises(FileNotFoundError, match="model not found: .*nope.onnx"):
        convert_to_fp8(str(tmp_path / "nope.onnx"))
    with pytest.raises(ValueError, match="fallback"):
        convert_to_fp8(small_model(rng), fallback="fp16")


# -- real trained models --------------------------------------------------------------------

OPS = ["Conv", "Gemm", "MatMul", "Add"]


def _calibrate(name, n=8):
    path = real_models.model_path(name)
    res = trtcal.calibrate(path, real_models.inputs(name, n, 0), method=["minmax"], batch_size=4,
                           progress=False, log=lambda s: None, checkpoint=None, op_types=OPS)
    return path, res.amax["minmax"], res.histograms


def _heads(name, y, yq):
    """Per-head accuracy of a quantized output against the float one."""
    def sqnr(a, b):
        return float(10 * np.log10((a.astype(np.float64) ** 2).sum() / max(((a - b) ** 2).sum(), 1e-30)))
    if name == "yolov8n-nudenet":
        keep = y[:, 4:, :].max(axis=1) > 0.25  # anchors with a detection in the float model
        kq = yq[:, 4:, :].max(axis=1) > 0.25
        bx = y[:, :4, :].transpose(0, 2, 1)[keep]
        bq = yq[:, :4, :].transpose(0, 2, 1)[keep]
        return {"boxes_sqnr": sqnr(bx, bq), "scores_sqnr": sqnr(y[:, 4:], yq[:, 4:]),
                "kept_agree": float((keep & kq).sum() / max((keep | kq).sum(), 1))}
    return {"top1": float(np.mean(y.argmax(-1) == yq.argmax(-1))), "sqnr": sqnr(y, yq)}


@pytest.mark.parametrize("name,floor", [
    ("yolov8n-nudenet", {"boxes_sqnr": 30.0, "scores_sqnr": 2.0, "kept_agree": 0.35}),  # INT8 minmax: 41, 6.8, 0.70
    ("ppocr-cls", {"top1": 0.75}),
    ("ppocr-rec", {"top1": 0.8}),
])
def test_real_model_fp8_accuracy(name, floor):
    if real_models.model_path(name) is None or not real_models.images_available():
        pytest.skip(real_models.missing_reason(name))
    path, amax, hists = _calibrate(name)
    f8amax = trtcal.fp8.fp8_amax(hists, "mse", on_degenerate="flag")
    q = trtcal.onnx.quantize(path, amax, missing="skip")
    f8, rep = convert_to_fp8(q, {n: a for n, a in f8amax.items() if np.isfinite(a)}, return_report=True)
    assert rep.fp8_nodes and not rep.rescaled
    if name != "yolov8n-nudenet":  # the PP-OCR models have depthwise convolutions: they stay INT8
        assert any("depthwise" in why for why in rep.int8_nodes.values())
    ev = real_models.inputs(name, 8, 1)
    y = session(path).run(None, ev)[0]
    got = _heads(name, y, session(f8).run(None, ev)[0])
    print(name, got)
    for k, v in floor.items():
        assert got[k] >= v, (k, got)


# -- trtcal calibrate --quant-dtype fp8 -----------------------------------------------------


def test_cli_quant_dtype_fp8_on_a_real_model(tmp_path, capsys):
    name = "ppocr-cls"
    if real_models.model_path(name) is None or not real_models.images_available():
        pytest.skip(real_models.missing_reason(name))
    from trtcal.cli import main

    data = real_models.save_npy(name, 8, 0, str(tmp_path / "calib"))
    out = tmp_path / "cls.fp8.onnx"
    assert main(["calibrate", real_models.model_path(name), "--data", data, "--quant-dtype", "fp8", "--batch-size",
                 "4", "--op-types", "Conv,Gemm,MatMul,Add", "--out-qdq", str(out), "--out-table",
                 str(tmp_path / "t.json"), "--checkpoint", str(tmp_path / "ck.npz"), "-q"]) == 0
    m = onnx.load(str(out))
    inits = {t.name: t for t in m.graph.initializer}
    zps = [inits[n.input[2]].data_type for n in m.graph.node if n.op_type == "QuantizeLinear"]
    assert TensorProto.FLOAT8E4M3FN in zps and TensorProto.INT8 in zps  # depthwise convs stay INT8
    assert any(o.version >= 19 for o in m.opset_import if o.domain in ("", "ai.onnx"))
    ev = real_models.inputs(name, 8, 1)
    y = session(real_models.model_path(name)).run(None, ev)[0]
    assert _heads(name, y, session(str(out)).run(None, ev)[0])["top1"] >= 0.75


def test_cli_quant_dtype_fp8_errors(tmp_path, capsys):
    from trtcal.cli import main

    assert main(["calibrate", "m.onnx", "--data", "x.npy", "--quant-dtype", "fp8", "--out-cache", "c.cache"]) == 1
    assert "no calibration cache" in capsys.readouterr().err
    assert main(["calibrate", "m.onnx", "--data", "x.npy", "--quant-dtype", "fp8", "--method", "entropy"]) == 1
    assert "fp8-mse" in capsys.readouterr().err
