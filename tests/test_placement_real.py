"""Placement and precision remainder on real trained models (tests/real_models.py): the Q/DQ
model trtcal writes runs in ONNX Runtime with an FP32 and an FP16 remainder, and matches the float
model per output head within the bounds below (8 calibration crops, seed 0, max ranges; 8
held-out crops, seed 1). FP16-remainder models run with ONNX Runtime's basic graph optimizations
(its CPU Q/DQ fusions take float32 scales only).

Bounds: measured values (2026-12-03, benchmarks/bench_placement.py uses 16+16 crops) with margin:
YOLOv8n boxes rel-RMS 0.03-0.04, class-score max error ~0.2, 70-80% of FP32 detections kept;
PP-OCR det text-mask IoU ~0.7; PP-OCR cls top-1 agreement 1.0."""

import collections

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
import real_models  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

import trtcal  # noqa: E402
from trtcal.onnx import quantize  # noqa: E402


def _skip(name):
    if real_models.model_path(name) is None or not real_models.images_available():
        pytest.skip(real_models.missing_reason(name))


def _session(model, basic=False):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if basic:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _run(model, feeds, basic=False):
    sess = _session(model, basic)
    outs = [
        sess.run(None, {k: v[i : i + 4] for k, v in feeds.items()})
        for i in range(0, len(next(iter(feeds.values()))), 4)
    ]
    return [np.concatenate([o[j] for o in outs]) for j in range(len(outs[0]))]


def _table(model, feeds):
    """max ranges of every float activation on ONNX Runtime FP32."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    inferred = onnx.shape_inference.infer_shapes(probe)
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    have = {o.name for o in probe.graph.output}
    names = [
        o
        for n in probe.graph.node
        if n.op_type != "Constant"
        for o in n.output
        if o and o not in have and types.get(o) == TensorProto.FLOAT
    ]
    probe.graph.output.extend(
        helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in names
    )
    sess = _session(probe)
    out_names = [o.name for o in sess.get_outputs()]
    amax = collections.defaultdict(float)
    for i in range(0, len(next(iter(feeds.values()))), 4):
        for k, v in zip(out_names, sess.run(None, {k: v[i : i + 4] for k, v in feeds.items()})):
            if v.dtype == np.float32 and v.size:
                amax[k] = max(amax[k], float(np.abs(v).max()))
    for k, v in feeds.items():
        amax[k] = float(np.abs(v).max())
    return trtcal.CalibrationTable({k: a for k, a in amax.items() if a > 0})


def _models(name):
    _skip(name)
    m = onnx.load(real_models.model_path(name))
    table = _table(m, real_models.inputs(name, 8, 0))
    held = real_models.inputs(name, 8, 1)
    ref = _run(m, held)[0].astype(np.float64)
    out = {}
    for hp in ("fp32", "fp16"):
        q, rep = quantize(m, table, missing="skip", high_precision=hp, return_report=True)
        out[hp] = (q, rep, _run(q, held, basic=hp != "fp32")[0].astype(np.float64))
    return m, table, ref, out


def _dq_consumers(model):
    cons = collections.defaultdict(list)
    for n in model.graph.node:
        for i in n.input:
            cons[i].append(n)
    c = collections.Counter()
    for n in model.graph.node:
        if n.op_type == "DequantizeLinear":
            c.update(k.op_type for k in cons[n.output[0]])
    return c


def _rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_yolov8n_placement_and_accuracy_per_head():
    m, table, ref, out = _models("yolov8n-nudenet")
    q32, rep, got32 = out["fp32"]
    counts = _dq_consumers(q32)
    # TensorRT's rules on YOLOv8n: 64 convs (input + weight), the 6 C2f bottleneck residual adds
    # (skip branch only), SPPF's 3 MaxPools, the 2 neck Resizes, and every input of the Concats
    # that feed convolutions; nothing inside SiLU, nothing in front of the head's Sigmoid
    assert (
        counts["Conv"] == 128
        and counts["Add"] == 6
        and counts["MaxPool"] == 3
        and counts["Resize"] == 2
    )
    assert counts["Concat"] >= 17 and counts["Sigmoid"] == 0 and counts["Mul"] == 0
    assert rep.shared_scales and all(len(g) >= 3 for g in rep.shared_scales)
    keep_r = ref[:, 4:].max(1) > 0.25
    assert keep_r.sum() >= 10
    for hp, (_q, _, got) in out.items():
        boxes, scores = _rel(got[:, :4], ref[:, :4]), float(np.abs(got[:, 4:] - ref[:, 4:]).max())
        kept = keep_r & (got[:, 4:].max(1) > 0.25) & (got[:, 4:].argmax(1) == ref[:, 4:].argmax(1))
        assert boxes < 0.08, (hp, boxes)
        assert scores < 0.45, (hp, scores)
        assert kept.sum() >= 0.5 * keep_r.sum(), (hp, int(kept.sum()), int(keep_r.sum()))
    # FP16 remainder: within a little of the FP32 remainder, half the size
    assert _rel(out["fp16"][2][:, :4], ref[:, :4]) < _rel(got32[:, :4], ref[:, :4]) + 0.02
    assert len(out["fp16"][0].SerializeToString()) < 0.6 * len(q32.SerializeToString())


def test_ppocr_det_text_mask():
    _, _, ref, out = _models("ppocr-det")
    for hp, (q, _rep, got) in out.items():
        assert (
            _dq_consumers(q)["GlobalAveragePool"] == 10
        )  # SE blocks: pool between quantized convs
        mr, mg = ref > 0.3, got > 0.3
        iou = float((mr & mg).sum() / max((mr | mg).sum(), 1))
        assert mr.sum() > 100 and iou > 0.5, (hp, iou)


def test_ppocr_cls_top1():
    _, _, ref, out = _models("ppocr-cls")
    for hp, (_q, _rep, got) in out.items():
        agree = float((got.argmax(-1) == ref.argmax(-1)).mean())
        assert agree >= 0.75, (hp, agree)
        assert np.abs(got - ref).max() < 0.5


def test_calibrate_cli_writes_fp16_qdq_and_placement_report(tmp_path):
    _skip("ppocr-cls")
    from trtcal.cli import main

    data = real_models.save_npy("ppocr-cls", 4, 0, str(tmp_path / "data"))
    out, rep = tmp_path / "cls.qdq.onnx", tmp_path / "placement.txt"
    rc = main(
        [
            "calibrate",
            real_models.model_path("ppocr-cls"),
            "--data",
            data,
            "--method",
            "minmax",
            "--out-qdq",
            str(out),
            "--placement-report",
            str(rep),
            "-q",
        ]
    )
    assert rc == 0
    q = onnx.load(str(out))
    assert q.opset_import[0].version >= 19
    assert any(t.data_type == TensorProto.FLOAT16 for t in q.graph.initializer)
    assert q.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    text = rep.read_text()
    assert (
        "## quantized" in text and "## left in float" in text and "## high precision: fp16" in text
    )
    x = real_models.inputs("ppocr-cls", 4, 1)
    got = _run(q, x, basic=True)[0]
    assert got.shape == (4, 2) and np.all(np.isfinite(got))
