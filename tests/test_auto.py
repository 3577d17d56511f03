"""method='auto' (the default): one statistics pass, every method measured on held-out samples by
the task metric, per-tensor refinements, and the outputs are the chosen ranges'. Also the
saturation warnings, which must tell the truth."""

import json
import os

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import outlier_model as om  # noqa: E402
import real_models as rm  # noqa: E402
from calib_models import QUIET, save_graph  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from trtcal import calibrate
from trtcal import tasks as tk  # noqa: E402
from trtcal.api.compare import compare  # noqa: E402
from trtcal.cli import main  # noqa: E402
from trtcal.evaluation import auto
from trtcal.pipeline import outputs  # noqa: E402


def test_auto_is_the_default_and_its_files_are_the_ones_written(tmp_path, rng):
    model = om.build(rng, tmp_path / "m.onnx")
    x = om.data(rng, 40)
    said = []
    res = calibrate(
        str(tmp_path / "m.onnx"),
        x,
        batch_size=8,
        out_table=str(tmp_path / "t.json"),
        out_qdq=str(tmp_path / "q.onnx"),
        progress=False,
        log=said.append,
    )
    assert list(res.amax) == ["auto"] and res.auto is not None
    # held out: the last 16 of 40 samples are judged on and were not in the statistics
    assert res.samples == 24 and "held out of the statistics pass" in res.auto.eval
    alone = calibrate(model, x[:24], method="minmax", batch_size=8, **QUIET)
    assert {n: h.counts.tolist() for n, h in alone.histograms.items()} == {
        n: h.counts.tolist() for n, h in res.histograms.items()
    }
    # the outputs are the chosen ranges', with no method suffix, and the trtexec line points to them
    assert res.files == {
        "table.auto": str(tmp_path / "t.json"),
        "qdq.auto": str(tmp_path / "q.onnx"),
    }
    assert any(str(tmp_path / "q.onnx") in s for s in res.next_steps)
    prov = json.load(open(tmp_path / "t.json"))["provenance"]
    assert prov["method"] == "auto" and prov["extra"]["auto"]["chosen"] == res.auto.method
    assert set(prov["extra"]["auto"]["candidates"]) == set(auto.CANDIDATES) - {"entropy"} | {
        "entropy:pytorch_quantization",
        "entropy:tensorrt",
    }
    # why: every candidate's score and the choice are printed
    assert any(s.startswith("trtcal: auto: best single method:") for s in said)
    assert any(s.startswith("trtcal: auto: chose ") for s in said)
    # the choice is the best measured (within one sample, then by the worst head's SQNR)
    scores = res.auto.scores
    best = max(v["metric"] for v in scores.values())
    assert res.auto.final["metric"] >= best - 1 / 16 - 1e-12
    assert res.auto.runs <= auto.N_CANDIDATES + auto.DEFAULT_REFINEMENTS


def test_auto_with_eval_data_keeps_every_calibration_sample(rng):
    model = om.build(rng)
    x, xe = om.data(rng, 20), om.data(rng, 8)
    res = calibrate(
        model, x, eval_data=xe, batch_size=4, params={"auto": {"refinements": 2}}, **QUIET
    )
    assert (
        res.samples == 20
        and res.auto.eval.startswith("held-out data")
        and "(8 samples)" in res.auto.eval
    )
    assert res.auto.runs <= auto.N_CANDIDATES + 2
    # too few samples to hold some out: judged on the calibration data, and it says so
    small = calibrate(model, x[:10], batch_size=5, params={"auto": {"refinements": 0}}, **QUIET)
    assert small.samples == 10 and "calibration data itself" in small.auto.eval
    assert small.auto.runs == auto.N_CANDIDATES


def test_auto_refuses_what_it_cannot_do(rng):
    model = om.build(rng)
    x = om.data(rng, 8)
    with pytest.raises(ValueError, match="flavor"):
        calibrate(model, x, flavor="tensorrt", **QUIET)
    with pytest.raises(ValueError, match="give it alone"):
        calibrate(model, x, method=["auto", "entropy"], **QUIET)
    with pytest.raises(ValueError, match="task"):
        calibrate(model, x, task="track", **QUIET)
    with pytest.raises(ValueError, match="output-slices"):
        calibrate(model, x, output_slices="logits:1:0-x=scores", **QUIET)
    with pytest.raises(ValueError, match="params\\['auto'\\]"):
        calibrate(model, x, params={"auto": {"budget": 3}}, **QUIET)


def test_cli_default_is_auto(tmp_path, rng, capsys):
    om.build(rng, tmp_path / "m.onnx")
    np.save(tmp_path / "x.npy", om.data(rng, 36))
    rc = main(
        [
            "calibrate",
            str(tmp_path / "m.onnx"),
            "--data",
            str(tmp_path / "x.npy"),
            "--batch-size",
            "4",
            "--out-qdq",
            str(tmp_path / "q.onnx"),
            "--auto-refinements",
            "1",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "trtcal: auto: chose" in err and "judges the methods on the last 16" in err
    assert f"--onnx={tmp_path / 'q.onnx'}" in err and os.path.isfile(tmp_path / "q.onnx")


def test_head_tensors_are_the_inputs_of_the_last_weighted_layers(rng):
    model = om.build(rng)
    assert auto.head_tensors(model, ["x", "r1", "f"]) == ["f"]


# ----------------------------------------------------------------------------- saturation warnings


def test_a_value_equal_to_amax_is_not_saturated():
    from trtcal import HistogramCollector

    x = np.array([0.25, 0.5, 1.0, 1.0, 1.0, 1.0], np.float32)  # the max sits exactly on a bin edge
    c = HistogramCollector(8, device="cpu")
    c.update(x)
    h = c.histogram()
    assert outputs.clipped_fraction(h, float(h.amax)) == 0.0
    assert outputs.clipped_fraction(h, 2 * float(h.amax)) == 0.0
    assert outputs.clipped_fraction(h, 0.5 * float(h.amax)) > 0.5  # the four 1.0s are beyond 0.5


def test_shape_and_integer_tensors_are_not_flagged(tmp_path):
    # x -> Shape -> Cast(float) -> Div (shape arithmetic); x -> Floor (integer-valued);
    # x -> Relu (data)
    two = numpy_helper.from_array(np.array([2.0], np.float32), "two")
    nodes = [
        helper.make_node("Shape", ["x"], ["shp"]),
        helper.make_node("Cast", ["shp"], ["shp_f"], to=TensorProto.FLOAT),
        helper.make_node("Div", ["shp_f", "two"], ["half"]),
        helper.make_node("Floor", ["x"], ["fl"]),
        helper.make_node("Mul", ["fl", "two"], ["fl2"]),
        helper.make_node("Relu", ["x"], ["r"]),
    ]
    path = save_graph(
        str(tmp_path / "s.onnx"),
        nodes,
        [("x", ["N", 8])],
        [("half", [2]), ("fl2", ["N", 8]), ("r", ["N", 8])],
        [two],
    )
    ex = outputs.unflaggable(path)
    assert ex["shp_f"] == "shape" and ex["half"] == "shape"
    assert ex["fl"] == "integer-valued" and ex["fl2"] == "integer-valued"
    assert "r" not in ex
    clipped = {"entropy": {"half": 1.0, "fl2": 0.4, "r": 0.05, "ok": 0.001}}
    (line,) = outputs.saturation_warnings(clipped, ex)
    assert "'r' (5.0%)" in line and "half" not in line and "fl2" not in line and "'ok'" not in line
    assert (
        "ranked by saturated share (no evaluation data" in line and "2 shape/integer-valued" in line
    )
    effects = {"entropy": {"r2": {"metric": 0.0, "sqnr_db": 3.0, "text": "x"}}}
    (line,) = outputs.saturation_warnings({"entropy": {"r": 0.5, "r2": 0.02}}, {}, effects)
    assert line.index("'r2'") < line.index("'r'") and "measured effect" in line


# ----------------------------------------------------------------------------- real models


@pytest.mark.skipif(rm.model_path("ppocr-cls") is None, reason=rm.missing_reason("ppocr-cls"))
def test_real_classifier_auto_no_worse_than_the_best_single_method():
    path = rm.model_path("ppocr-cls")
    x, xe = rm.inputs("ppocr-cls", 32, 0), rm.inputs("ppocr-cls", 16, 1)
    res = calibrate(
        path, x, eval_data=xe, batch_size=16, params={"auto": {"refinements": 2}}, **QUIET
    )
    cmp = compare(
        path,
        x,
        xe,
        calibration=res,
        per_layer=False,
        plots=False,
        progress=False,
        log=lambda s: None,
        tables={"auto": res.amax["auto"]},
    )
    single = {m.label: m.stats for m in cmp.ranked if m.label != "auto"}
    best = single[tk.best_of(single)]
    got = cmp["auto"].stats
    assert got.metric >= best.metric - got.unit - 1e-12  # no worse by more than one sample's top-1
    if got.metric <= best.metric:
        assert got.worst_sqnr >= best.worst_sqnr - 0.5


@pytest.mark.skipif(
    rm.model_path("yolov8n-nudenet") is None, reason=rm.missing_reason("yolov8n-nudenet")
)
def test_real_detector_shape_arithmetic_is_not_flagged():
    """YOLOv8's head computes anchors from the feature maps' shapes (Shape, Gather, Cast, Mul):
    those float tensors must not raise saturation warnings; no data tensor is exempt."""
    import onnx

    path = rm.model_path("yolov8n-nudenet")
    m = onnx.load(path)
    ex = outputs.unflaggable(path)
    data_ops = {"Conv", "Sigmoid", "Softmax", "MaxPool", "Resize"}
    data = {o for n in m.graph.node if n.op_type in data_ops for o in n.output} | {"output0"}
    shape = {t for t, r in ex.items() if r == "shape"}
    assert any(
        n.op_type == "Concat" and n.output[0] in shape for n in m.graph.node
    )  # shape Concats
    assert not data & set(ex)


@pytest.mark.skipif(
    rm.model_path("yolov8n-nudenet") is None, reason=rm.missing_reason("yolov8n-nudenet")
)
def test_real_detector_auto_no_worse_than_the_best_single_method():
    """YOLOv8n: auto's detections kept and class-score SQNR against every single method's, on
    the same held-out images (few of them, to stay fast)."""
    path = rm.model_path("yolov8n-nudenet")
    x, xe = rm.inputs("yolov8n-nudenet", 16, 0), rm.inputs("yolov8n-nudenet", 8, 1)
    auto_params = {"auto": {"refinements": 2, "score_threshold": 0.1}}
    res = calibrate(path, x, eval_data=xe, batch_size=8, params=auto_params, **QUIET)
    cmp = compare(
        path,
        x,
        xe,
        calibration=res,
        per_layer=False,
        plots=False,
        progress=False,
        log=lambda s: None,
        tables={"auto": res.amax["auto"]},
        score_threshold=0.1,
        batch_size=8,
    )
    assert cmp.task.startswith("detect")
    single = {m.label: m.stats for m in cmp.ranked if m.label != "auto"}
    best = single[tk.best_of(single)]
    got = cmp["auto"].stats
    assert not tk.better(best, got)  # no single method is to be chosen over auto
    assert got.metric >= best.metric - got.unit - 1e-12
