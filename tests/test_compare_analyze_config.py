"""compare and analyze over one CalibrationConfig: a config object and keyword overrides, unknown
keywords refused, the CLI's shared flags; FP8 (--quant-dtype fp8) comparison and layer search,
and the per-layer INT8/FP8/FP16 choice on a real trained model (PP-OCR's direction classifier)."""

import os

import numpy as np
import pytest

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import outlier_model as om  # noqa: E402
import real_models as rm  # noqa: E402
from calib_models import QUIET  # noqa: E402

import trtcal  # noqa: E402
import trtcal.cli.analyze as cli_analyze  # noqa: E402
import trtcal.cli.compare as cli_compare  # noqa: E402
from trtcal.cli import main  # noqa: E402
from trtcal.evaluation.precision_choice import speed_order  # noqa: E402

NAME = "ppocr-cls"
FLOAT8E4M3FN = 17


def test_config_object_and_keyword_override_give_the_same_result(tmp_path, rng):
    model = om.build(rng, tmp_path / "m.onnx")
    x, xe = om.data(rng, 12), om.data(rng, 7)
    cfg = trtcal.CalibrationConfig(batch_size=4, max_samples=8, **QUIET)
    by_cfg = trtcal.compare(model, x, xe, config=cfg, methods="minmax,percentile:99.9", plots=False)
    by_kw = trtcal.compare(
        model,
        x,
        xe,
        methods="minmax,percentile:99.9",
        batch_size=4,
        max_samples=8,
        plots=False,
        **QUIET,
    )

    def rows(res):
        return [{k: v for k, v in r.items() if k != "search_seconds"} for r in res.rows()]

    assert rows(by_cfg) == rows(by_kw) and by_cfg.samples == 8
    # a keyword overrides the config's field; the config itself is unchanged (frozen)
    over = trtcal.compare(model, x, xe, config=cfg, methods="minmax", max_samples=5, plots=False)
    assert over.samples == 5 and cfg.max_samples == 8
    # compare's methods default to the config's method
    one = trtcal.compare(model, x, xe, config=cfg.replace(method="minmax"), plots=False)
    assert [m.label for m in one.methods] == ["minmax"]
    a_cfg = trtcal.analyze(
        model,
        x,
        xe,
        config=cfg.replace(method="minmax"),
        alternatives=None,
        threshold=0.99,
        cache=False,
        plots=False,
    )
    a_kw = trtcal.analyze(
        model,
        x,
        xe,
        method="minmax",
        alternatives=None,
        threshold=0.99,
        batch_size=4,
        max_samples=8,
        cache=False,
        plots=False,
        **QUIET,
    )
    assert a_cfg.to_dict() == a_kw.to_dict()


def test_unknown_keyword_is_a_type_error_before_any_work(tmp_path, rng):
    model = om.build(rng, tmp_path / "m.onnx")
    for fn in (trtcal.compare, trtcal.analyze):
        with pytest.raises(TypeError, match="'no_such_setting'"):
            fn(model, om.data(rng, 4), no_such_setting=1, **QUIET)
    with pytest.raises(TypeError, match="CalibrationConfig"):
        trtcal.compare(model, om.data(rng, 4), config={"batch_size": 4})
    with pytest.raises(ValueError, match="quant_dtype"):
        trtcal.compare(model, om.data(rng, 4), quant_dtype="int4", **QUIET)


def _captured(monkeypatch, module, argv):
    got = {}

    def fake(model, **kw):
        got.update(kw, model=model)
        raise RuntimeError("captured")

    monkeypatch.setattr(module, module.__name__.rsplit(".", 1)[1], fake)
    assert main(argv) == 1
    return got


def test_cli_shared_flags_mean_the_same_in_compare_and_analyze(monkeypatch, tmp_path, capsys):
    shared = [
        "m.onnx",
        "--data",
        "x.npy",
        "--eval-data",
        "e.npy",
        "--batch-size",
        "3",
        "--max-samples",
        "7",
        "--eval-samples",
        "5",
        "--quant-dtype",
        "fp8",
        "--task",
        "classify",
        "--evaluate",
        "onnxruntime",
        "--input-name",
        "inp",
        "--preprocess",
        '{"resize": 32}',
        "--score-threshold",
        "0.3",
        "-q",
    ]
    c = _captured(
        monkeypatch, cli_compare, ["compare"] + shared + ["--methods", "fp8-mse", "--no-plots"]
    )
    a = _captured(
        monkeypatch,
        cli_analyze,
        ["analyze"]
        + shared
        + ["--precisions", "int8,fp8,fp16", "--tolerance", "0.05", "--no-plots"],
    )
    capsys.readouterr()
    for got in (c, a):
        cfg = got["config"]
        assert (cfg.data, cfg.eval_data, cfg.batch_size, cfg.max_samples, cfg.eval_samples) == (
            "x.npy",
            "e.npy",
            3,
            7,
            5,
        )
        assert (cfg.quant_dtype, cfg.task, cfg.evaluate, cfg.input_name, cfg.score_threshold) == (
            "fp8",
            "classify",
            "onnxruntime",
            "inp",
            0.3,
        )
        assert cfg.preprocess is not None and cfg.preprocess.resize == 32 and cfg.progress is False
        assert got["plots"] is False
    assert c["methods"] == "fp8-mse" and c["precisions"] is None
    assert a["precisions"] == "int8,fp8,fp16" and a["tolerance"] == 0.05
    assert "alternatives" not in a  # the API's default (per quant_dtype) applies


def test_fp8_methods_refused_for_the_other_dtype(tmp_path, rng):
    model = om.build(rng, tmp_path / "m.onnx")
    x = om.data(rng, 4)
    with pytest.raises(ValueError, match="fp8"):
        trtcal.compare(model, x, methods="entropy", quant_dtype="fp8", **QUIET)
    with pytest.raises(ValueError, match="quant_dtype 'fp8'"):
        trtcal.compare(model, x, methods="fp8-mse", **QUIET)
    with pytest.raises(ValueError, match="precisions"):
        trtcal.analyze(model, x, precisions="int4", **QUIET)


def _real():
    if rm.model_path(NAME) is None or not rm.images_available():
        pytest.skip(rm.missing_reason(NAME))
    # few samples, Conv activations and 256 bins keep the FP8 searches fast on 2 CPU cores
    cfg = trtcal.CalibrationConfig(batch_size=8, bins=256, op_types=["Conv"], **QUIET)
    return rm.model_path(NAME), rm.inputs(NAME, 8, 0), rm.inputs(NAME, 8, 1), cfg


def _fp8_zero_points(model):
    import onnx

    m = model if hasattr(model, "graph") else onnx.load(model)
    inits = {i.name: i for i in m.graph.initializer}
    return [
        inits[n.input[2]].data_type
        for n in m.graph.node
        if n.op_type == "QuantizeLinear" and len(n.input) > 2 and n.input[2] in inits
    ]


def test_fp8_compare_on_a_real_classifier(tmp_path):
    path, x, xe, cfg = _real()
    res = trtcal.compare(
        path,
        x,
        xe,
        config=cfg,
        quant_dtype="fp8",
        methods="fp8-mse,minmax",
        per_layer=False,
        plots=False,
        out_dir=str(tmp_path),
    )
    assert res.quant_dtype == "fp8" and {m.label for m in res.ranked} == {"fp8-mse", "minmax"}
    assert any("FP8" in n for n in res.notes)
    zps = _fp8_zero_points(res.files["recommended_qdq"])
    assert FLOAT8E4M3FN in zps  # FP8 Q/DQ, the depthwise convolutions' inputs stay INT8
    for m in res.ranked:  # per head: the softmax's top-1 agreement and SQNR against FP32
        assert m.summary["top1_agreement"] >= 0.75, m.label
        assert m.summary["worst_head_sqnr_db"] > 8.0, m.label


def test_fp8_analyze_searches_the_fp8_model(tmp_path):
    path, x, xe, cfg = _real()
    res = trtcal.analyze(
        path,
        x,
        rm.inputs(NAME, 4, 1),
        config=cfg,
        quant_dtype="fp8",
        method="fp8-mse",
        alternatives="minmax",
        search_layers=1,
        max_float=1,
        cache=False,
        plots=False,
        out_dir=str(tmp_path),
    )
    assert res.quant_dtype == "fp8" and res.method in ("fp8-mse", "minmax")
    assert FLOAT8E4M3FN in _fp8_zero_points(res.model)
    assert FLOAT8E4M3FN in _fp8_zero_points(
        res.files["qdq"]
    )  # the written (FP16 remainder) model too
    single = res.candidates
    assert set(single) == {"fp8-mse", "minmax"} and "all FP8" in res.format_table()


def test_per_layer_precision_choice_on_a_real_classifier(tmp_path):
    import onnx

    path, x, xe, cfg = _real()
    out = str(tmp_path / "mixed.onnx")
    res = trtcal.analyze(
        path,
        x,
        rm.inputs(NAME, 4, 1),
        config=cfg,
        method="entropy",
        precisions="int8,fp8,fp16",
        plots=False,
        cache=False,
        out_qdq=out,
    )
    nodes = {n.name: n for n in onnx.load(path).graph.node}
    assert res.speed_source.startswith("table") or res.speed_source == "measured in TensorRT"
    assert res.precisions and set(res.precisions.values()) <= {"int8", "fp8", "fp16"}
    for d in res.layers:
        if (
            d.decision == "fp8"
        ):  # never FP8 where TensorRT has no FP8 kernel (depthwise convolutions)
            assert "fp8" in speed_order(nodes[d.name])
        assert d.detail, d.name
    assert any(not (d.decision == "fp8" or "fp8" in speed_order(nodes[d.name])) for d in res.layers)
    text = res.format_table()
    assert "precision" in text and "speed order" in text
    # the written model runs, and keeps top-1 on the held-out crops within the tolerance
    ev = rm.inputs(NAME, 8, 1)
    ref = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, ev)[0]
    got = ort.InferenceSession(out, providers=["CPUExecutionProvider"]).run(None, ev)[0]
    assert np.mean(ref.argmax(-1) == got.argmax(-1)) >= 0.75
    assert os.path.exists(out) and res.to_dict()["precisions"] == res.precisions
    no_fp8 = trtcal.analyze(
        path,
        x,
        rm.inputs(NAME, 4, 1),
        config=cfg,
        method="entropy",
        precisions="int8,fp16",
        plots=False,
        cache=False,
    )
    assert "fp8" not in no_fp8.precisions.values()


@pytest.mark.tensorrt
def test_precision_speed_order_measured_in_tensorrt():
    """With the tensorrt module the speed order is measured (each candidate built and timed)."""
    import onnx

    from trtcal.evaluation.precision_choice import tensorrt_speed_order

    path, x, xe, cfg = _real()
    res = trtcal.analyze(
        path,
        x,
        rm.inputs(NAME, 4, 1),
        config=cfg,
        method="entropy",
        precisions="int8,fp8,fp16",
        plots=False,
        cache=False,
    )
    assert res.speed_source == "measured in TensorRT"
    cal = trtcal.calibrate(
        path, x, method=["entropy", "fp8-mse"], config=cfg.replace(quant_dtype="int8")
    )
    nodes = {n.name: n for n in onnx.load(path).graph.node}
    convs = [n for n in nodes if nodes[n].op_type == "Conv"][:3]
    order = tensorrt_speed_order(
        path,
        cal.amax["entropy"],
        cal.amax["fp8-mse"],
        {k: v[:4] for k, v in x.items()},
        convs,
        repeats=3,
    )
    for n, o in order.items():
        assert sorted(o) == sorted(speed_order(nodes[n]))


def test_compare_measures_the_mixed_choice_beside_the_methods():
    path, x, xe, cfg = _real()
    res = trtcal.compare(
        path,
        x,
        rm.inputs(NAME, 4, 1),
        config=cfg,
        methods="entropy:tensorrt",
        precisions="int8,fp8,fp16",
        per_layer=False,
        plots=False,
    )
    assert {m.label for m in res.ranked} == {"entropy:tensorrt", "mixed"}
    mixed = res["mixed"]
    assert mixed.method == "model" and mixed.heads and mixed.summary["top1_agreement"] >= 0.75
    assert "mixed" not in res.tables
