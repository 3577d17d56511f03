"""Outputs through the range-search and table APIs: every method from one pass, the cache, the
JSON table with provenance, the Q/DQ model. Skipped while those APIs are not in this build."""

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

import onnx  # noqa: E402

from trtcal import calibrate
from trtcal.pipeline.demo import DEMO_PREPROCESS, build_model, write_images  # noqa: E402

QUIET = dict(progress=False, log=lambda s: None)


@pytest.fixture
def model(tmp_path):
    p = str(tmp_path / "cnn.onnx")
    build_model(p, size=16, width=8)
    return p


def test_all_methods_from_one_pass(model, rng):
    x = rng.standard_t(3, size=(20, 3, 16, 16)).astype(np.float32)
    res = calibrate(model, x, method="all", batch_size=6, **QUIET)
    assert set(res.amax) == {"entropy", "percentile", "mse", "minmax"}
    assert res.batches == 4  # one inference pass whatever the methods
    for m in ("entropy", "percentile", "mse"):
        for n, v in res.amax[m].items():
            h = res.histograms[n]
            assert 0 < v <= res.amax["minmax"][n] + h.range / h.bins, (
                m,
                n,
            )  # at most one bin above


def test_cache_and_table_with_provenance(tmp_path):
    pytest.importorskip("PIL")
    import trtcal

    model = str(tmp_path / "cnn32.onnx")
    build_model(model, size=32, width=8)  # the demo preprocessing crops 32x32
    imgs = write_images(str(tmp_path / "imgs"), n=10)
    res = calibrate(
        model,
        imgs,
        method="entropy",
        preprocess=DEMO_PREPROCESS,
        out_cache=str(tmp_path / "c.cache"),
        out_table=str(tmp_path / "t.json"),
        tensorrt_version="10.3",
        **QUIET,
    )
    lines = (tmp_path / "c.cache").read_text().splitlines()
    assert lines[0] == "TRT-100300-EntropyCalibration2"
    assert any(line.startswith("relu1: ") for line in lines[1:])
    table = trtcal.CalibrationTable.from_json(str(tmp_path / "t.json"))
    assert table.provenance.num_samples == 10 and table.provenance.method == "entropy"
    assert table.provenance.extra["preprocess"]["crop"] == 32
    assert any("--calib=" in s for s in res.next_steps)


def test_qdq_model(model, rng, tmp_path):
    x = rng.laplace(size=(8, 3, 16, 16)).astype(np.float32)
    res = calibrate(model, x, out_qdq=str(tmp_path / "q.onnx"), tensorrt_version="11.1", **QUIET)
    q = onnx.load(str(tmp_path / "q.onnx"))
    assert any(n.op_type == "QuantizeLinear" for n in q.graph.node)
    assert any("--stronglyTyped" in s for s in res.next_steps)
