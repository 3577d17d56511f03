"""The layered package's shared pieces: short public paths, one name matcher, one ordered-float
encoding, one TensorRT version parser, one progress bar, and the one CalibrationConfig."""

from __future__ import annotations

import importlib
import re

import numpy as np
import pytest

import trtcal
from trtcal.core import names, ordered_float
from trtcal.core.percentile import key_to_float
from trtcal.core.progress import Progress
from trtcal.formats import cache, trt_version
from trtcal.formats.table import CalibrationTable
from trtcal.pipeline.config import CalibrationConfig
from trtcal.pipeline.runners import TensorSelection


def test_short_paths_name_the_layered_modules():
    pytest.importorskip("onnx")
    import trtcal.formats.onnx.placement as layered
    import trtcal.onnx.placement as short

    assert short is layered and trtcal.onnx is importlib.import_module("trtcal.formats.onnx")
    assert trtcal.tensorrt is importlib.import_module("trtcal.formats.tensorrt")
    assert trtcal.reference is importlib.import_module("trtcal.core.reference")
    assert trtcal.tasks.TaskSpec is importlib.import_module("trtcal.evaluation.tasks").TaskSpec
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("trtcal.onnx.no_such_module")


def test_one_name_matcher_everywhere():
    all_names = [
        "conv1",
        "block/conv_a",
        "block/relu",
        "fc",
        "(Unnamed Layer* 4) [Constant]_output",
    ]
    assert names.match_names(all_names, "re:conv.*") == ["conv1", "block/conv_a"]
    assert names.match_names(all_names, "block/*") == ["block/conv_a", "block/relu"]
    assert names.match_names(all_names, re.compile(r"^fc$")) == ["fc"]
    assert names.match_names(all_names, ["fc", "re:^conv", "fc"]) == ["fc", "conv1"]
    # an exact name wins over its glob reading
    assert names.match_names(all_names, "(Unnamed Layer* 4) [Constant]_output") == [all_names[-1]]
    table = CalibrationTable({n: 1.0 for n in all_names})
    sel = TensorSelection(names=("re:conv.*",))
    assert table.select("re:conv.*") == [n for n in all_names if sel.matches_name(n)]
    assert names.matches("anything", None) and names.matches("x", [])
    with pytest.raises(ValueError, match="not a valid regular expression"):
        names.match_names(all_names, "re:(")


def test_one_ordered_float_encoding(rng):
    x = np.concatenate(
        [
            rng.standard_normal(1001).astype(np.float32) * 1e3,
            np.array([0.0, -0.0, np.inf, -np.inf, 1e-45, -1e-45], np.float32),
        ]
    )
    bits = x.view(np.uint32)
    codes = ordered_float.to_ordered(bits)
    assert np.array_equal(ordered_float.from_ordered(codes), bits)
    order = np.argsort(codes, kind="stable")
    assert np.all(np.diff(x[order].astype(np.float64)) >= 0)  # unsigned order == float order
    assert (
        ordered_float.decode(ordered_float.encode(x, 0xFFFFFFFF)).tolist()
        == x.astype(np.float64).tolist()
    )
    k = int(rng.integers(0, len(x)))
    assert key_to_float(int(codes[k]), use_abs=False) == float(x[k])
    assert np.isnan(ordered_float.decode(np.array([0, 0xFFFFFFFF], np.uint32))).all()


def test_one_tensorrt_version_parser():
    assert trt_version.parse_version("10.16") == (10, 16, 0)
    assert trt_version.parse_version("8.6.1.6") == (8, 6, 1)
    assert trt_version.parse_major("11.1.0") == 11
    with pytest.raises(ValueError, match="X.Y"):
        trt_version.parse_version("ten")
    assert cache.parse_version("10.16") == (10, 16, 0)
    with pytest.raises(ValueError, match="cache header"):
        cache.parse_version("8.12")  # parsed, but a cache header before 10 has one digit of minor


def test_progress_is_a_no_op_when_disabled():
    bar = Progress(False, 10, "x")
    bar.update(3)
    bar.move_to(7)
    bar.grow(5)
    bar.note("hello")
    bar.close()
    assert bar.pos == 7 and bar.bar is None


def test_config_is_one_object_with_checked_fields():
    cfg = CalibrationConfig(max_samples=8, method="minmax")
    assert (
        CalibrationConfig.of(cfg, batch_size=4).batch_size == 4 and cfg.batch_size is None
    )  # frozen
    with pytest.raises(TypeError, match="'batchsize'"):
        CalibrationConfig.of(cfg, batchsize=4)
    for bad, match in [
        (dict(quant_dtype="int4"), "quant_dtype"),
        (dict(batch_size=0), "batch_size"),
        (dict(max_samples=0), "max_samples"),
        (dict(high_precision="fp64"), "high_precision"),
        (dict(distributed=True, shard=(0, 2)), "not both"),
        (dict(checkpoint_every=0), "checkpoint"),
    ]:
        with pytest.raises(ValueError, match=match):
            CalibrationConfig(**bad)
    assert CalibrationConfig(tensors="re:conv").selection().names == ("re:conv",)
    assert trtcal.CalibrationConfig is CalibrationConfig


def test_calibrate_takes_the_config_and_keyword_overrides(tmp_path, rng):
    pytest.importorskip("onnxruntime")
    from trtcal.pipeline.demo import build_model

    path = str(tmp_path / "m.onnx")
    build_model(path, size=16, width=8)
    x = rng.standard_normal((12, 3, 16, 16)).astype(np.float32)
    quiet = dict(progress=False, log=lambda s: None)
    cfg = CalibrationConfig(data=x, method="minmax", batch_size=4, **quiet)
    a = trtcal.calibrate(path, config=cfg)
    b = trtcal.calibrate(path, x, method="minmax", batch_size=4, **quiet)
    c = trtcal.calibrate(
        path, config=cfg.replace(method="entropy"), method="minmax"
    )  # keywords win
    assert a.amax == b.amax == c.amax and a.samples == 12
    with pytest.raises(TypeError, match="unexpected keyword"):
        trtcal.calibrate(path, x, metod="minmax")
