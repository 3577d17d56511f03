"""Per-layer FP8 / INT8 / FP16 choice (trtcal.precision_choice) on a real trained model with a task
metric: PP-OCR's text-direction classifier, top-1 agreement and output SQNR on held-out crops."""

import sys
from pathlib import Path

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

import trtcal
import trtcal.fp8
from trtcal.precision_choice import choose_precisions, ort_scorer, speed_order

sys.path.insert(0, str(Path(__file__).parent))
import real_models

NAME = "ppocr-cls"


@pytest.fixture(scope="module")
def setup():
    if real_models.model_path(NAME) is None or not real_models.images_available():
        pytest.skip(real_models.missing_reason(NAME))
    path = real_models.model_path(NAME)
    res = trtcal.calibrate(
        path,
        real_models.inputs(NAME, 8, 0),
        method=["entropy"],
        batch_size=4,
        progress=False,
        log=lambda s: None,
        checkpoint=None,
        op_types=["Conv", "Gemm", "MatMul", "Add"],
    )
    f8 = trtcal.fp8.fp8_amax(res.histograms, "mse", on_degenerate="flag")
    ev = real_models.inputs(NAME, 16, 1)
    ref = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, ev)[0]
    return path, res.amax["entropy"], {n: a for n, a in f8.items() if np.isfinite(a)}, ev, ref


def test_choice_by_sqnr_beats_uniform_precisions(setup):
    path, int8, fp8, ev, ref = setup
    import onnx

    m = onnx.load(path)
    convs = [n.name for n in m.graph.node if n.op_type == "Conv"][:14]  # a subset keeps CI fast
    ch = choose_precisions(
        path,
        int8,
        fp8,
        ort_scorer(ev, ref, "sqnr"),
        min_layer_score=35.0,
        min_score=15.0,
        layers=convs,
    )
    assert set(ch.choices) == set(convs)
    nodes = {n.name: n for n in m.graph.node}
    for name, p in ch.choices.items():
        assert p in speed_order(nodes[name])  # never FP8 for a depthwise conv
        if p == "fp8":
            assert next((a.i for a in nodes[name].attribute if a.name == "group"), 1) == 1
    assert ch.score >= 15.0 or all(p == "fp16" for p in ch.choices.values())
    assert ch.score >= min(ch.all_int8, ch.all_fp8)
    assert all(set(v) <= {"fp8", "int8"} for v in ch.layer_scores.values())


def test_choice_by_top1(setup):
    path, int8, fp8, ev, ref = setup
    import onnx

    convs = [n.name for n in onnx.load(path).graph.node if n.op_type == "Conv"][-6:]
    ch = choose_precisions(
        path, int8, fp8, ort_scorer(ev, ref, "top1"), tolerance=0.0, layers=convs
    )
    assert ch.float_score == 1.0
    # the other layers keep the default (FP8 where TensorRT allows it): the choice can only help
    assert ch.score >= ch.all_fp8
    assert sum(ch.counts().values()) == len(convs)
    assert set(ch.reverted) <= set(convs)


def test_bad_arguments(setup):
    path, int8, fp8, ev, ref = setup
    with pytest.raises(ValueError, match="not quantized layers"):
        choose_precisions(path, int8, fp8, lambda m: 0.0, layers=["nope"])
    with pytest.raises(ValueError, match="metric"):
        ort_scorer(ev, ref, "map")
