"""trtcal.analyze: finds the quantization-hostile layer, re-ranges or excludes it, caches
measurements."""

import json
import os

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import outlier_model as om  # noqa: E402

import trtcal  # noqa: E402
from trtcal.api.analyze import analyze  # noqa: E402
from trtcal.cli import main  # noqa: E402
from trtcal.evaluation.metrics import cosine_similarity  # noqa: E402

QUIET = dict(progress=False, log=lambda s: None)


def _qdq_inputs(model, node):
    """Inputs of ``node`` that come from a DequantizeLinear."""
    producer = {o: n for n in model.graph.node for o in n.output}
    n = next(n for n in model.graph.node if n.name == node)
    return [i for i in n.input if i in producer and producer[i].op_type == "DequantizeLinear"]


def test_finds_the_outlier_layer_and_keeps_it_in_float(tmp_path, rng):
    model = om.build(rng, tmp_path / "m.onnx")
    x, xe = om.data(rng, 23), om.data(rng, 15)
    res = analyze(
        str(tmp_path / "m.onnx"),
        x,
        xe,
        method="minmax",
        alternatives=None,
        threshold=0.99,
        batch_size=8,
        out_dir=str(tmp_path / "out"),
        **QUIET,
    )
    assert [d.name for d in res.layers] == ["conv1", "conv2", "fc"]  # graph order
    assert [d.op_type for d in res.layers] == ["Conv", "Conv", "Gemm"]
    dec = {d.name: d for d in res.layers}
    assert dec["conv2"].decision == "float" and dec["conv2"].similarity < 0.99
    assert dec["conv1"].decision == "int8" and dec["fc"].decision == "int8"
    assert dec["conv2"].tensors == ["r1"]
    assert res.float_layers == ["conv2"] and res.all_int8 < 0.99 <= res.final
    # fc was measured with conv2 in float (its effect removed): similarity back above threshold
    assert dec["fc"].similarity >= 0.99
    # the returned model: Q/DQ on conv1 and fc inputs, none on conv2's activation input
    assert _qdq_inputs(res.model, "conv1") and _qdq_inputs(res.model, "fc")
    assert "r1" in next(n for n in res.model.graph.node if n.name == "conv2").input
    # its similarity is what analyze reports
    ref = om.run(model, xe)[0]
    got = np.concatenate([om.run(res.model, xe[i : i + 8])[0] for i in range(0, len(xe), 8)])
    assert cosine_similarity(ref, got) == pytest.approx(res.final, rel=1e-9)
    assert "r1" not in res.table and "x" in res.table
    for key in ("qdq", "csv", "json", "table", "cache"):
        assert os.path.isfile(res.files[key]), key
    doc = json.load(open(res.files["json"]))
    assert doc["float_layers"] == ["conv2"]
    text = res.format_table()
    assert "conv2" in text and "float" in text


def test_rerun_with_another_threshold_uses_the_cache(tmp_path, rng):
    model = om.build(rng)
    x = om.data(rng, 17)
    out = str(tmp_path / "out")
    first = analyze(
        model,
        x,
        method="minmax",
        alternatives=None,
        threshold=0.99,
        batch_size=8,
        out_dir=out,
        plots=False,
        **QUIET,
    )
    assert first.measured >= 4
    # a lower threshold that keeps the same decisions: nothing is run again
    again = analyze(
        model,
        x,
        method="minmax",
        alternatives=None,
        threshold=0.9,
        batch_size=8,
        out_dir=out,
        plots=False,
        **QUIET,
    )
    assert again.measured == 0 and again.cached == first.measured + first.cached
    assert [d.similarity for d in again.layers] == [d.similarity for d in first.layers]
    assert again.float_layers == ["conv2"]
    # other evaluation data: the cache does not apply
    other = analyze(
        model,
        x,
        om.data(rng, 9),
        method="minmax",
        alternatives=None,
        batch_size=8,
        out_dir=out,
        plots=False,
        **QUIET,
    )
    assert other.measured >= 4
    # no cache
    none = analyze(
        model,
        x,
        method="minmax",
        alternatives=None,
        threshold=0.99,
        batch_size=8,
        cache=False,
        **QUIET,
    )
    assert none.measured == first.measured and none.files == {}


def test_mixed_quantization_before_mixed_precision(tmp_path, rng):
    model = om.build(rng)
    x = om.data(rng, 19)
    clip = om.clip_table(model, x)
    useless = {n: a * 2 for n, a in clip.items()}
    useless["r1"] = clip["r1"] * 1e4  # as bad as min-max for conv2's input
    alternatives = {"useless": useless, "clip": clip}
    # How hostile conv2 is depends on the drawn weights (all-INT8 similarity 0.5-0.91, clipped
    # 0.93-0.999 over 1700 seeds), so the threshold is set between the two measured similarities.
    probe = analyze(
        model, x, method="minmax", alternatives=alternatives, threshold=1.0, batch_size=8, **QUIET
    )
    p = {x.name: x for x in probe.layers}["conv2"]
    bad, good = max(p.similarity, p.tried["useless"]), p.tried["clip"]
    assert good > bad + 0.01, (p.similarity, p.tried)
    threshold = (bad + good) / 2
    res = analyze(
        model,
        x,
        method="minmax",
        alternatives=alternatives,
        threshold=threshold,
        batch_size=8,
        **QUIET,
    )
    d = {x.name: x for x in res.layers}["conv2"]
    assert d.decision == "int8-reranged" and d.method == "clip"
    assert set(d.tried) == {"useless", "clip"} and d.tried["useless"] < threshold <= d.tried["clip"]
    assert res.float_layers == [] and res.reranged_layers == {"conv2": "clip"}
    assert res.table["r1"] == pytest.approx(clip["r1"]) and res.table.method_of("r1") == "clip"
    assert _qdq_inputs(res.model, "conv2")
    assert res.final >= threshold


def test_sqnr_metric_and_argument_errors(rng):
    model = om.build(rng)
    x = om.data(rng, 9)
    res = analyze(
        model,
        x,
        method="minmax",
        alternatives=None,
        metric="sqnr_db",
        threshold=15.0,
        batch_size=9,
        **QUIET,
    )
    assert {d.name: d.decision for d in res.layers}["conv2"] == "float"
    assert res.metric == "sqnr_db" and res.final >= 15.0
    with pytest.raises(ValueError, match="metric"):
        analyze(model, x, metric="psnr", **QUIET)
    with pytest.raises(ValueError, match="cosine threshold"):
        analyze(model, x, threshold=20, **QUIET)


@pytest.mark.skipif(
    not hasattr(trtcal, "compute_amax"), reason="needs trtcal.compute_amax for the candidates"
)
def test_threshold_mode_with_entropy_and_method_alternatives(rng):
    model = om.build(rng)
    x = om.data(rng, 25)
    res = analyze(model, x, method="entropy", threshold=0.99, batch_size=8, **QUIET)
    assert res.method.startswith("entropy:") and not any("compute_amax" in n for n in res.notes)
    d = {x.name: x for x in res.layers}
    assert d["conv2"].decision != "int8" and d["conv1"].decision == "int8"
    assert d["conv2"].tried and "minmax" in d["conv2"].tried
    assert res.final >= 0.99


def test_default_task_search_beats_every_single_method_or_says_so(rng):
    """The defaults: every candidate all-INT8, the best is the bar; the searched model beats it by
    the task metric (top-1 agreement, then the logits' SQNR) or the best single one comes back."""
    from trtcal import tasks as tk

    model = om.build(rng)
    x, xe = om.data(rng, 24), om.data(rng, 16)
    lines = []
    res = analyze(model, x, xe, batch_size=8, progress=False, log=lines.append)
    assert res.metric == "task" and res.task.startswith("classify")
    assert (
        res.best_single in res.candidates and len(res.candidates) == 7
    )  # minmax, 2 entropy, 3 percentile, mse
    final = tk.TaskStats(tk.resolve_task({"logits": om.run(model, xe)[0]}))
    final.update({"logits": om.run(model, xe)[0]}, {"logits": om.run(res.model, xe)[0]})
    assert res.final == pytest.approx(final.metric)
    if res.beats_best_single:
        assert res.float_layers or res.reranged_layers
        assert "beats the best single method" in res.summary_text()
    else:
        assert not res.float_layers and not res.reranged_layers and res.method == res.best_single
        assert any("could not beat the best single method" in ln for ln in lines)
    assert "returned:" in res.format_table()
    with pytest.raises(ValueError, match="threshold"):
        analyze(model, x, metric="task", threshold=0.9, **QUIET)


def test_task_search_puts_the_hostile_layer_in_float_when_nothing_else_helps(rng):
    """min-max alone: conv2's input (an outlier channel) cannot be re-ranged, so float it is."""
    model = om.build(rng)
    x, xe = om.data(rng, 24), om.data(rng, 16)
    res = analyze(model, x, xe, method="minmax", alternatives=None, batch_size=8, **QUIET)
    assert res.best_single == "minmax" and res.beats_best_single
    assert res.float_layers == ["conv2"]
    assert res.final_text and "float" in res.format_table()


def test_cli(tmp_path, rng, capsys):
    om.build(rng, tmp_path / "m.onnx")
    np.save(tmp_path / "cal.npy", om.data(rng, 12))
    args = [
        "analyze",
        str(tmp_path / "m.onnx"),
        "--data",
        str(tmp_path / "cal.npy"),
        "--method",
        "minmax",
        "--alternatives",
        "none",
        "--out-dir",
        str(tmp_path / "out"),
        "--no-plots",
        "-q",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "conv2" in out and "float" in out
    assert os.path.isfile(tmp_path / "out" / "m.analyzed.qdq.onnx")
    assert main(args) == 0  # everything from the cache
    assert "measured 0 configuration(s)" in capsys.readouterr().out
    assert main(args + ["--threshold", "0.95"]) == 0  # the threshold mode
    assert "conv2" in capsys.readouterr().out


@pytest.mark.tensorrt
def test_finds_the_outlier_layer_in_tensorrt(tmp_path, rng):
    # the same search with every Q/DQ model built and run by TensorRT (strongly typed engines)
    om.build(rng, tmp_path / "m.onnx")
    x, xe = om.data(rng, 23), om.data(rng, 15)
    res = analyze(
        str(tmp_path / "m.onnx"),
        x,
        xe,
        method="minmax",
        alternatives=None,
        threshold=0.99,
        batch_size=8,
        evaluate="tensorrt",
        **QUIET,
    )
    assert res.float_layers == ["conv2"] and res.final >= 0.99


def test_explicit_tensorrt_evaluation_needs_tensorrt(rng):
    import importlib.util

    from trtcal.tensorrt._runtime import TensorRTUnavailableError

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here")
    model = om.build(rng)
    with pytest.raises(TensorRTUnavailableError):
        analyze(
            model,
            om.data(rng, 8),
            method="minmax",
            alternatives=None,
            batch_size=8,
            evaluate="tensorrt",
            cache=False,
            **QUIET,
        )


def test_rerun_with_other_statistics_discards_the_checkpoint(tmp_path, rng, capsys, monkeypatch):
    # the statistics checkpoint in --out-dir is a cache: other --data or --max-samples discard
    # it (one line) and collect again; --no-cache never reads it; calibrate's --resume advice is not
    # shown
    om.build(rng, tmp_path / "m.onnx")
    np.save(tmp_path / "a.npy", om.data(rng, 11))
    np.save(tmp_path / "b.npy", om.data(rng, 13))
    base = [
        "analyze",
        str(tmp_path / "m.onnx"),
        "--method",
        "minmax",
        "--alternatives",
        "none",
        "--out-dir",
        str(tmp_path / "out"),
        "--no-plots",
    ]

    def run(*extra):
        rc = main(base + list(extra))
        cap = capsys.readouterr()
        assert rc == 0, cap.err
        assert (
            "--resume" not in cap.err
            and "checkpoint kept at" not in cap.err
            and "Traceback" not in cap.err
        )
        return cap.err

    run("--data", str(tmp_path / "a.npy"))
    assert os.path.isfile(tmp_path / "out" / "m.trtcal-ckpt.npz")
    assert "resuming from" in run("--data", str(tmp_path / "a.npy"))  # same settings: reused
    for extra, changed in (
        (["--data", str(tmp_path / "b.npy")], "data"),
        (["--data", str(tmp_path / "b.npy"), "--max-samples", "7"], "max_samples"),
    ):
        err = run(*extra)
        lines = [ln for ln in err.splitlines() if "discarded" in ln]
        assert len(lines) == 1 and changed in lines[0] and "collecting again" in lines[0], err
        assert (
            err.count("trtcal: model inputs:") == 1
        )  # the refused attempt's lines are not repeated
    import trtcal.pipeline.checkpoint as ckpt

    def unread(*a, **k):
        raise AssertionError("--no-cache read the statistics checkpoint")

    monkeypatch.setattr(ckpt, "load", unread)
    err = run("--data", str(tmp_path / "a.npy"), "--no-cache")
    assert "discarded" not in err and "resuming" not in err


def test_metric_default_thresholds(tmp_path, rng, capsys):
    from trtcal.evaluation.sensitivity import DEFAULT_THRESHOLDS

    model = om.build(rng)
    x = om.data(rng, 9)
    lines = []
    res = analyze(
        model,
        x,
        method="minmax",
        alternatives=None,
        metric="sqnr_db",
        batch_size=9,
        progress=False,
        log=lines.append,
    )
    assert res.threshold == DEFAULT_THRESHOLDS["sqnr_db"] == 20.0
    assert {d.name: d.decision for d in res.layers} == {
        "conv1": "int8",
        "conv2": "float",
        "fc": "int8",
    }
    assert res.final >= 20.0 and "(threshold 20 dB)" in res.format_table()
    assert any("SQNR >= 20 dB" in ln and "default" in ln for ln in lines), lines
    lines.clear()
    res = analyze(
        model,
        x,
        method="minmax",
        alternatives=None,
        metric="cosine",
        batch_size=9,
        progress=False,
        log=lines.append,
    )
    assert res.threshold == 0.99 and any("cosine similarity >= 0.99" in ln for ln in lines)
    lines.clear()
    analyze(
        model,
        x,
        method="minmax",
        alternatives=None,
        metric="sqnr_db",
        threshold=12.5,
        batch_size=9,
        progress=False,
        log=lines.append,
    )
    assert any(">= 12.5 dB (given)" in ln for ln in lines)
    with pytest.raises(SystemExit):
        main(["analyze", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "cosine 0.99" in text and "sqnr_db 20 dB" in text


def test_method_all_is_refused_before_the_pass(tmp_path, rng, capsys, monkeypatch):
    import trtcal.pipeline.calibration_pass

    def refuse(*a, **k):
        raise AssertionError("the statistics pass ran before --method was checked")

    monkeypatch.setattr(trtcal.pipeline.calibration_pass, "statistics", refuse)
    om.build(rng, tmp_path / "m.onnx")
    np.save(tmp_path / "x.npy", om.data(rng, 5))
    for method in ("all", "minmax,mse"):
        rc = main(
            [
                "analyze",
                str(tmp_path / "m.onnx"),
                "--data",
                str(tmp_path / "x.npy"),
                "--method",
                method,
                "-q",
                "--out-dir",
                str(tmp_path / "out"),
            ]
        )
        err = capsys.readouterr().err
        assert (
            rc == 1 and "--method" in err and "one base method" in err and "Traceback" not in err
        ), err
    with pytest.raises(ValueError, match="one base method"):
        analyze(str(tmp_path / "m.onnx"), om.data(rng, 5), method="all", **QUIET)
