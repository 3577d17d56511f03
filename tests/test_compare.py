"""trtcal.compare: one statistics pass, every method's Q/DQ model measured against FP32, ranked."""

import json
import os

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import outlier_model as om  # noqa: E402

import trtcal  # noqa: E402
from trtcal.api.compare import compare  # noqa: E402
from trtcal.cli import main  # noqa: E402
from trtcal.evaluation.comparison import parse_methods  # noqa: E402
from trtcal.evaluation.metrics import ErrorStats  # noqa: E402

QUIET = dict(progress=False, log=lambda s: None)
HAS_RANGE_SEARCH = hasattr(trtcal, "compute_amax")
needs_range_search = pytest.mark.skipif(
    not HAS_RANGE_SEARCH,
    reason="needs trtcal.compute_amax (branch rangesearch, "
    "not merged yet): only min-max ranges exist without it",
)


def _oracle(model, table, x, bs=8):
    """Output and r1 (conv2's input) SQNR of the Q/DQ model built from ``table``, measured
    directly (in batches of ``bs``, as compare runs them: float32 results can depend on the
    batch shape)."""
    qm = trtcal.onnx.quantize(model, {n: a for n, a in table.items() if a > 0}, missing="skip")
    dq = [
        n.output[0]
        for n in qm.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0].startswith("r1_quant")
    ]
    out, layer = ErrorStats("logits", classes_axis=1), ErrorStats("r1")
    for i in range(0, len(x), bs):
        ref = om.activations(model, x[i : i + bs], ["logits", om.OUTLIER_INPUT])
        got = om.activations(qm, x[i : i + bs], ["logits"] + dq)
        out.update(ref["logits"], got["logits"])
        layer.update(ref["r1"], got[dq[0]])
    return out, layer


def test_parse_methods():
    labels = [v.label for v in parse_methods("all")]
    assert labels[0] == "minmax" and "mse" in labels
    assert {"percentile:99.9", "percentile:99.99", "percentile:99.999"} <= set(labels)
    assert "entropy:pytorch_quantization" in labels and "entropy:tensorrt" in labels
    assert [v.label for v in parse_methods("percentile:99.95,minmax,minmax")] == [
        "percentile:99.95",
        "minmax",
    ]
    assert [v.label for v in parse_methods(["entropy:onnxruntime"])] == ["entropy:onnxruntime"]
    for bad, msg in (
        ("kl", "unknown method"),
        ("percentile:abc", "number"),
        ("percentile:101", r"\(0, 100\]"),
        ("", "no methods"),
    ):
        with pytest.raises(ValueError, match=msg):
            parse_methods(bad)


def test_ranking_matches_measured_errors(tmp_path, rng):
    model = om.build(rng, tmp_path / "m.onnx")
    x, xe = om.data(rng, 27), om.data(rng, 19)  # calibration and held-out evaluation sets
    clip = om.clip_table(model, x)
    half = {n: a / 2 for n, a in clip.items()}  # everything clipped hard: worse than clip
    res = compare(
        str(tmp_path / "m.onnx"),
        x,
        xe,
        methods="all",
        tables={"clip": clip, "half": half},
        batch_size=8,
        **QUIET,
    )
    ok = res.ranked
    labels = [m.label for m in ok]
    assert {"minmax", "clip", "half"} <= set(labels)
    assert not res.eval_on_calibration_data and res.eval_samples == 19 and res.samples == 27
    # every ranked method's numbers are what a direct measurement of its Q/DQ model gives
    oracle, task_key = {}, {}
    for m in ok:
        out, layer = _oracle(model, m.amax, xe)
        s = m.outputs["logits"]
        assert s["sqnr_db"] == pytest.approx(out.sqnr_db, rel=1e-9, abs=1e-9), m.label
        assert s["cosine"] == pytest.approx(out.cosine, rel=1e-9, abs=1e-12), m.label
        assert s["max_abs_error"] == pytest.approx(out.max_abs, rel=1e-9), m.label
        assert s["top1_agreement"] == out.top1, m.label
        assert m.layers["r1"] == pytest.approx(layer.sqnr_db, rel=1e-9, abs=1e-9), m.label
        oracle[m.label] = out.sqnr_db
        task_key[m.label] = (out.top1, out.sqnr_db)  # a classifier: top-1 agreement, then SQNR
    # ranked by the task metric (top-1 agreement of the logits), then the measured SQNR
    assert labels == sorted(labels, key=lambda lb: tuple(-v for v in task_key[lb]))
    assert [m.rank for m in ok] == list(range(1, len(ok) + 1))
    # the outlier channel: min-max ranges crush conv2's input, clipping it keeps the model
    assert oracle["clip"] > oracle["minmax"] + 10
    assert res.recommended == labels[0] and res.recommended != "minmax"
    assert (
        res["minmax"].search_seconds is not None and res["minmax"].quantized == 4
    )  # x, r1, r2 (pool), f


def test_outputs_written(tmp_path, rng):
    model = om.build(rng, tmp_path / "m.onnx")
    x = om.data(rng, 21)
    res = compare(
        model,
        x,
        methods="minmax,percentile:99.99",
        tables={"clip": om.clip_table(model, x)},
        batch_size=5,
        out_dir=str(tmp_path / "out"),
        **QUIET,
    )
    assert res.eval_on_calibration_data and any("calibration data" in n for n in res.notes)
    for key in ("csv", "json", "layers_csv", "recommended_table", "recommended_qdq"):
        assert os.path.isfile(res.files[key]), key
    doc = json.load(open(res.files["json"]))
    assert doc["recommended"] == res.recommended == "clip"
    assert [m["method"] for m in doc["methods"]][: len(res.ranked)] == [m.label for m in res.ranked]
    table = trtcal.CalibrationTable.from_json(res.files["recommended_table"])
    assert table["r1"] == pytest.approx(res["clip"].amax["r1"])
    import onnx

    qm = onnx.load(res.files["recommended_qdq"])
    assert sum(n.op_type == "QuantizeLinear" for n in qm.graph.node) >= 3
    text = res.format_table()
    assert "recommended: clip" in text and "minmax" in text
    if HAS_RANGE_SEARCH:
        assert res["percentile:99.99"].ok
    else:
        assert "compute_amax" in res["percentile:99.99"].error and "not run" in text
    pytest.importorskip("matplotlib")
    assert (
        os.path.getsize(res.files["plot_outputs"]) > 0
        and os.path.getsize(res.files["plot_layers"]) > 0
    )


def test_reuses_a_calibration_result(tmp_path, rng):
    model = om.build(rng)
    x = om.data(rng, 16)
    cal = trtcal.calibrate(model, x, method="minmax", batch_size=8, **QUIET)
    res = compare(model, None, x, methods="minmax", calibration=cal, per_layer=False, **QUIET)
    assert res["minmax"].amax == cal.amax["minmax"] and res["minmax"].layers == {}
    with pytest.raises(ValueError, match="calibration data"):
        compare(model, None, x, **QUIET)


@needs_range_search
def test_every_method_on_the_hostile_model(tmp_path, rng):
    model = om.build(rng)
    x, xe = om.data(rng, 33), om.data(rng, 17)
    res = compare(model, x, xe, methods="all,entropy:onnxruntime", batch_size=8, **QUIET)
    labels = {m.label for m in res.ranked}
    assert {
        "minmax",
        "mse",
        "percentile:99.9",
        "percentile:99.99",
        "percentile:99.999",
        "entropy:pytorch_quantization",
        "entropy:tensorrt",
    } <= labels
    assert not res["entropy:onnxruntime"].ok and "signed" in res["entropy:onnxruntime"].error
    keys = []
    for m in res.ranked:
        out, _ = _oracle(model, m.amax, xe)
        assert m.summary["sqnr_db"] == pytest.approx(out.sqnr_db, rel=1e-9, abs=1e-9), m.label
        assert m.search_seconds is not None and m.search_seconds >= 0
        keys.append((out.top1, out.sqnr_db))  # a classifier: ranked by top-1 agreement, then SQNR
    assert keys == sorted(keys, reverse=True)


def test_cli(tmp_path, rng, capsys):
    model = om.build(rng, tmp_path / "m.onnx")
    np.save(tmp_path / "cal.npy", om.data(rng, 12))
    np.save(tmp_path / "eval.npy", om.data(rng, 7))
    table = trtcal.CalibrationTable(om.clip_table(model, om.data(rng, 12)))
    table.to_json(str(tmp_path / "clip.json"))
    rc = main(
        [
            "compare",
            str(tmp_path / "m.onnx"),
            "--data",
            str(tmp_path / "cal.npy"),
            "--eval-data",
            str(tmp_path / "eval.npy"),
            "--methods",
            "minmax",
            "--table",
            f"clip={tmp_path / 'clip.json'}",
            "--out-dir",
            str(tmp_path / "out"),
            "--no-plots",
            "-q",
        ]
    )
    out = capsys.readouterr().out
    # the recommendation is the first of the ranking (top-1 agreement, then SQNR); on this random
    # model's near-tied logits, top-1 agreement can prefer minmax even though clip is far closer
    first = next(ln.split()[1] for ln in out.splitlines() if ln.startswith("1  "))
    assert rc == 0 and first in ("clip", "minmax") and f"recommended: {first}" in out
    assert os.path.isfile(tmp_path / "out" / "comparison.csv")
    rc = main(
        [
            "compare",
            str(tmp_path / "m.onnx"),
            "--data",
            str(tmp_path / "cal.npy"),
            "--methods",
            "kl",
            "-q",
        ]
    )
    assert rc == 1 and "unknown method" in capsys.readouterr().err


def test_evaluation_backend_choice(tmp_path, rng):
    # 'auto' evaluates in ONNX Runtime where TensorRT is absent, and says so; an explicit
    # 'tensorrt' without TensorRT is a clear error, not a silent fallback
    import importlib.util

    from trtcal.tensorrt._runtime import TensorRTUnavailableError

    om.build(rng, tmp_path / "m.onnx")
    x = om.data(rng, 16)
    if importlib.util.find_spec("tensorrt") is None:
        res = compare(
            str(tmp_path / "m.onnx"), x, methods="minmax", batch_size=8, evaluate="auto", **QUIET
        )
        assert "Q/DQ models evaluated in ONNX Runtime" in res.notes
        with pytest.raises(TensorRTUnavailableError, match="TensorRT"):
            compare(
                str(tmp_path / "m.onnx"),
                x,
                methods="minmax",
                batch_size=8,
                evaluate="tensorrt",
                **QUIET,
            )
    with pytest.raises(ValueError, match="evaluate"):
        compare(
            str(tmp_path / "m.onnx"), x, methods="minmax", batch_size=8, evaluate="trt", **QUIET
        )


@pytest.mark.tensorrt
@needs_range_search
def test_compare_in_tensorrt_ranks_like_measured(tmp_path, rng):
    # the Q/DQ models built and run by TensorRT itself (strongly typed engines): clipping the
    # outlier channel must beat min-max there too, as it does by > 10 dB in ONNX Runtime
    model = om.build(rng, tmp_path / "m.onnx")
    x, xe = om.data(rng, 27), om.data(rng, 19)
    res = compare(
        str(tmp_path / "m.onnx"),
        x,
        xe,
        methods="minmax",
        tables={"clip": om.clip_table(model, x)},
        batch_size=8,
        evaluate="tensorrt",
        **QUIET,
    )
    assert "Q/DQ models evaluated in TensorRT" in res.notes
    assert [m.label for m in res.ranked] == ["clip", "minmax"]
    assert res["clip"].summary["sqnr_db"] > res["minmax"].summary["sqnr_db"] + 10
    assert all(m.layers for m in res.ranked)  # per-layer SQNR from the engine's exposed tensors


def test_cli_names_missing_tensorrt_without_a_traceback(tmp_path, rng, capsys):
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here")
    om.build(rng, tmp_path / "m.onnx")
    np.save(tmp_path / "x.npy", om.data(rng, 8))
    rc = main(
        [
            "compare",
            str(tmp_path / "m.onnx"),
            "--data",
            str(tmp_path / "x.npy"),
            "--methods",
            "minmax",
            "--evaluate",
            "tensorrt",
            "-q",
            "--out-dir",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err
    assert (
        rc == 1
        and "trtcal: error:" in err
        and "tensorrt Python module" in err
        and "Traceback" not in err
    )


@pytest.fixture
def no_pass(monkeypatch):
    """Fails the test if the statistics pass starts: the errors below must come before it."""
    import trtcal.pipeline.calibration_pass

    def refuse(*a, **k):
        raise AssertionError("the statistics pass ran before the settings were checked")

    monkeypatch.setattr(trtcal.pipeline.calibration_pass, "statistics", refuse)


def test_cli_runner_tensorrt_without_tensorrt_is_a_clean_error_before_the_pass(
    tmp_path, rng, capsys, no_pass
):
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here")
    om.build(rng, tmp_path / "m.onnx")
    np.save(tmp_path / "x.npy", om.data(rng, 8))
    for cmd in ("compare", "analyze"):
        rc = main(
            [
                cmd,
                str(tmp_path / "m.onnx"),
                "--data",
                str(tmp_path / "x.npy"),
                "--runner",
                "tensorrt",
                "-q",
                "--out-dir",
                str(tmp_path / cmd),
            ]
        )
        err = capsys.readouterr().err
        assert rc == 1 and "Traceback" not in err, err
        assert err.startswith("trtcal: error:") and "trtcal: trtcal:" not in err
        assert "--runner tensorrt" in err and "tensorrt Python module" in err


def test_cli_eval_settings_checked_before_the_pass(tmp_path, rng, capsys, no_pass):
    om.build(rng, tmp_path / "m.onnx")
    np.save(tmp_path / "x.npy", om.data(rng, 6))
    base = [
        "compare",
        str(tmp_path / "m.onnx"),
        "--data",
        str(tmp_path / "x.npy"),
        "--methods",
        "minmax",
        "-q",
        "--out-dir",
        str(tmp_path / "out"),
    ]
    missing = str(tmp_path / f"nonexist{rng.integers(1 << 30)}")
    cases = [
        (["--eval-data", missing], ["--eval-data", "not found", missing]),
        (["--eval-data", str(tmp_path / "m.onnx")], ["--eval-data", "cannot read"]),
        (["--eval-samples", "-5"], ["--eval-samples", "-5"]),
        (["--eval-samples", "0"], ["--eval-samples"]),
        (["--batch-size", "0"], ["--batch-size"]),
        (["--batch-size", str(-int(rng.integers(1, 99)))], ["--batch-size"]),
    ]
    for extra, want in cases:
        assert main(base + extra) == 1, extra
        err = capsys.readouterr().err
        assert "Traceback" not in err and "calibration data" not in err, err
        assert all(w in err for w in want), (extra, err)
    with pytest.raises(ValueError, match="eval_samples"):
        compare(str(tmp_path / "m.onnx"), om.data(rng, 4), eval_samples=0, **QUIET)


def test_description_names_both_evaluation_backends(capsys):
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "runs each Q/DQ model in ONNX Runtime" not in text
    assert "TensorRT or ONNX Runtime" in text and "--evaluate" in text


def test_ranks_by_the_task_metric_on_a_real_classifier():
    """ppocr-cls: methods are ranked by top-1 agreement first (the worst head's SQNR breaks ties):
    a method with higher top-1 agreement always ranks above one with a higher SQNR but lower
    top-1."""
    import real_models as rm

    path = rm.model_path("ppocr-cls")
    if path is None:
        pytest.skip(rm.missing_reason("ppocr-cls"))
    x, xe = rm.inputs("ppocr-cls", 32, 0), rm.inputs("ppocr-cls", 16, 1)
    res = compare(
        path, x, xe, batch_size=16, per_layer=False, plots=False, progress=False, log=lambda s: None
    )
    ranked = res.ranked
    assert len(ranked) == 7 and res.task.startswith("classify")
    keys = [(m.summary["top1_agreement"], m.summary["worst_head_sqnr_db"]) for m in ranked]
    assert keys == sorted(keys, reverse=True)
    best_top1 = max(k[0] for k in keys)
    assert (
        ranked[0].summary["top1_agreement"]
        == best_top1
        == res[res.recommended].summary["top1_agreement"]
    )
    text = res.format_table()
    assert "top-1 agreement" in text and "ranked by top-1 agreement of the worst head" in text
    assert all(m.heads and m.heads[0]["kind"] == "probs" for m in ranked)


def test_accuracy_rows_per_head_for_a_report(rng):
    """evaluation.accuracy_rows: the per-head rows of one quantized model (or table) vs FP32."""
    from trtcal.evaluation.measure import accuracy_rows

    model = om.build(rng)
    x, xe = om.data(rng, 16), om.data(rng, 11)
    clip = om.clip_table(model, x)
    rows = accuracy_rows(model, clip, xe, batch_size=4)
    head, task = rows[0], rows[-1]
    assert head["kind"] == "logits" and task["head"] == "task" and task["task"] == "classify"
    qm = trtcal.onnx.quantize(model, clip, missing="skip")
    ref, got = (
        om.run(model, xe)[0],
        np.concatenate([om.run(qm, xe[i : i + 4])[0] for i in range(0, 11, 4)]),
    )
    direct = ErrorStats("logits", classes_axis=1).update(ref, got)
    assert head["sqnr_db"] == pytest.approx(direct.sqnr_db, rel=1e-6)
    assert head["top1_agreement"] == direct.top1 == task["metric"] and task["samples"] == 11
    assert accuracy_rows(model, qm, xe, batch_size=4)[0]["sqnr_db"] == pytest.approx(
        head["sqnr_db"]
    )
