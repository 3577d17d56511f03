"""`trtcal migrate`: a TensorRT calibration cache (or a trtcal JSON table) -> a TensorRT 11 Q/DQ
model with the same ranges; cache names mapped to ONNX tensor names, unmatched names reported."""

import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from test_placement import _x, calibrate, concat_model, residual_silu_model  # noqa: E402
from test_precision import run_ort_basic  # noqa: E402

from trtcal import CalibrationTable  # noqa: E402
from trtcal.cli import main  # noqa: E402
from trtcal.cli.migrate import map_names, migrate  # noqa: E402
from trtcal.onnx import quantize  # noqa: E402


def _dq_scales(model):
    """{quantized source tensor: scale} of the activation Q/DQ pairs (per tensor)."""
    from onnx import numpy_helper

    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    prod = {o: n for n in model.graph.node for o in n.output}
    out = {}
    for n in model.graph.node:
        if n.op_type == "QuantizeLinear" and n.input[0] not in inits:
            src = n.input[0]
            p = prod.get(src)
            if p is not None and p.op_type == "Cast":  # a float16 remainder may cast in front
                src = p.input[0]
            out[src] = float(inits[n.input[1]])
    return out


def test_map_names_exact_variants_unnamed_and_ambiguous():
    onnx_names = [
        "images",
        "/model.0/conv/Conv_output_0",
        "input:0",
        "feat",
        "feat_1",
        "c",
        "c_1:0",
        "a",
    ]
    cache = [
        "images",
        "/model.0/conv/Conv_output_0 [Convolution]_output",
        "input",
        "(Unnamed Layer* 12) [Shuffle]_output",
        "feat_1",
        "b_output",
        "a_output",
        "c_1",
    ]
    nm = map_names(cache, onnx_names)
    assert nm.mapping["images"] == "images" and nm.how["images"] == "exact"
    assert (
        nm.mapping["/model.0/conv/Conv_output_0 [Convolution]_output"]
        == "/model.0/conv/Conv_output_0"
    )
    assert nm.mapping["input"] == "input:0" and "':0' added" in nm.how["input"]
    assert nm.mapping["feat_1"] == "feat_1"  # exact wins over the '_N' variant
    assert "created itself" in nm.unmatched["(Unnamed Layer* 12) [Shuffle]_output"]
    assert "no ONNX tensor" in nm.unmatched["b_output"]
    assert nm.mapping["a_output"] == "a" and "'_output' removed" in nm.how["a_output"]
    assert nm.ambiguous["c_1"] == ["c", "c_1:0"] and "ambiguous" in nm.unmatched["c_1"]


def test_cache_to_qdq_keeps_the_cache_scales(rng, tmp_path):
    m = concat_model(rng)
    feeds = _x(rng, 4, 3, 6, 6)
    table = calibrate(m, feeds)
    cache = tmp_path / "model.cache"
    table.to_cache(str(cache), tensorrt_version="10.3")
    cached = CalibrationTable.from_cache(str(cache))  # amax = float32 scale * 127
    mp = tmp_path / "model.onnx"
    onnx.save(m, str(mp))
    out = tmp_path / "model.qdq.onnx"
    s = migrate(str(mp), str(cache), str(out), high_precision="fp32")
    assert s["mapped"] == len(table) and not s["unmatched_cache"] and not s["unmatched_onnx"]
    q = onnx.load(str(out))
    direct = quantize(m, cached)  # the same ranges through the Python API
    assert _dq_scales(q) == _dq_scales(direct)
    scales = _dq_scales(q)
    assert scales["x"] == pytest.approx(cached["x"] / 127, rel=1e-7)
    # Concat inputs share the widest range, as TensorRT needs
    assert (
        scales["a"]
        == scales["b"]
        == pytest.approx(max(cached[t] for t in ("a", "b", "cat")) / 127, rel=1e-7)
    )


def test_cli_migrate_renamed_and_unmatched_names_fp16(rng, tmp_path, capsys):
    m = residual_silu_model(rng)
    feeds = _x(rng, 3, 4, 8, 8)
    table = calibrate(m, feeds)
    # a cache as TensorRT writes it: a layer-type suffix on one name, an internal layer, a
    # stale name
    entries = {
        ("b [Convolution]_output" if k == "b" else k): v for k, v in table.items() if k != "s"
    }
    entries["(Unnamed Layer* 7) [Shuffle]_output"] = 1.0
    entries["old_tensor"] = 2.0
    src = tmp_path / "t.json"
    CalibrationTable(entries).to_json(str(src))
    mp, out, rep = tmp_path / "m.onnx", tmp_path / "m.qdq.onnx", tmp_path / "placement.txt"
    onnx.save(m, str(mp))
    rc = main(
        [
            "migrate",
            str(mp),
            str(src),
            "--out-qdq",
            str(out),
            "--placement-report",
            str(rep),
            "--json",
        ]
    )
    assert rc == 0
    cap = capsys.readouterr()
    s = json.loads(cap.out[: cap.out.rindex("}") + 1])
    assert s["renamed"] == {
        "b [Convolution]_output": ["b", "layer-type suffix ' [Type]_output' removed"]
    }
    assert set(s["unmatched_cache"]) == {"(Unnamed Layer* 7) [Shuffle]_output", "old_tensor"}
    assert s["unmatched_onnx"] == [
        "s"
    ]  # the residual skip branch and conv_b input: no range in the cache
    assert s["high_precision"] == "fp16"
    assert "--stronglyTyped" in cap.out and "--int8 --fp16" in cap.out and "--calib" not in cap.out
    q = onnx.load(str(out))
    assert q.opset_import[0].version == 19
    assert q.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    ref = run_ort_basic(m, feeds)["y"]
    got = run_ort_basic(q, feeds)["y"]
    assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < 0.08
    assert (
        "## left in float" in rep.read_text()
        and "s: not in the calibration table" in rep.read_text()
    )


def test_cli_migrate_errors_are_one_line(tmp_path, capsys, rng):
    m = residual_silu_model(rng)
    mp = tmp_path / "m.onnx"
    onnx.save(m, str(mp))
    assert (
        main(
            ["migrate", str(tmp_path / "none.onnx"), str(mp), "--out-qdq", str(tmp_path / "o.onnx")]
        )
        == 1
    )
    assert "no such model" in capsys.readouterr().err
    assert (
        main(
            [
                "migrate",
                str(mp),
                str(tmp_path / "none.cache"),
                "--out-qdq",
                str(tmp_path / "o.onnx"),
            ]
        )
        == 1
    )
    assert "no such file" in capsys.readouterr().err
    assert main(["migrate", str(mp), str(mp), "--out-qdq", str(mp)]) == 1
    assert "overwrite an input" in capsys.readouterr().err


def test_migrate_real_yolov8n_cache_gives_the_direct_qdq_model(tmp_path):
    import real_models
    from test_placement_real import _run, _table

    name = "yolov8n-nudenet"
    if real_models.model_path(name) is None or not real_models.images_available():
        pytest.skip(real_models.missing_reason(name))
    m = onnx.load(real_models.model_path(name))
    table = _table(m, real_models.inputs(name, 4, 0))
    cache = tmp_path / "yolo.cache"
    table.to_cache(str(cache), tensorrt_version="10.3")
    out = tmp_path / "yolo.qdq.onnx"
    s = migrate(real_models.model_path(name), str(cache), str(out))
    assert s["mapped"] == s["entries"] and not s["unmatched_cache"] and not s["unmatched_onnx"]
    q = onnx.load(str(out))
    direct = quantize(m, CalibrationTable.from_cache(str(cache)), high_precision="fp16")
    assert _dq_scales(q) == _dq_scales(direct)
    x = real_models.inputs(name, 4, 1)
    ref, got = _run(m, x)[0], _run(q, x, basic=True)[0]
    assert np.linalg.norm(got[:, :4] - ref[:, :4]) / np.linalg.norm(ref[:, :4]) < 0.08  # boxes
