"""ONNX Runtime's runner keeps a batch's activations under its memory budget by splitting the
batch into sub-batches, and the result does not depend on the split (the histograms are
batch-independent): same histograms, same amax for every method."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import real_models  # noqa: E402
from calib_models import QUIET, cnn_model  # noqa: E402
from calib_models import heavy_tailed_images as _data  # noqa: E402

from trtcal import calibrate  # noqa: E402
from trtcal.pipeline.runners import OrtRunner  # noqa: E402

METHODS = ["minmax", "entropy", "percentile", "mse"]


def _assert_same(a, b):
    assert a.amax == b.amax
    assert a.histograms.keys() == b.histograms.keys()
    for n, h in a.histograms.items():
        np.testing.assert_array_equal(h.counts, b.histograms[n].counts, err_msg=n)
        assert (h.range, h.amax) == (b.histograms[n].range, b.histograms[n].amax), n


def test_sub_batches_fit_the_budget(tmp_path, rng):
    model = cnn_model(tmp_path / "m.onnx")
    r = OrtRunner(model, max_memory=1)  # 1 byte: the smallest sub-batch, 2 samples
    x = {r.specs[0].name: _data(rng, 7)}
    assert [(sl.start, sl.stop) for sl, _ in r.run_parts(x)] == [(0, 2), (2, 4), (4, 7)]
    per = r.bytes_per_sample
    assert per > 0
    parts = list(OrtRunner(model, max_memory=3.5 * per).run_parts(x))
    assert [(sl.start, sl.stop) for sl, _ in parts] == [(0, 2), (2, 5), (5, 7)]
    assert all(sum(v.nbytes for v in a.values()) <= 3.5 * per for _, a in parts)
    whole = list(OrtRunner(model, max_memory=0).run_parts(x))
    assert len(whole) == 1 and all(v.shape[0] == 7 for v in whole[0][1].values())


@pytest.mark.parametrize("budget", [1, 2e4, 1e5])
def test_result_is_the_same_for_any_split(tmp_path, rng, budget):
    model = cnn_model(tmp_path / "m.onnx")
    x = _data(rng, 23)
    whole = calibrate(model, x, method=METHODS, batch_size=16, max_memory=0, **QUIET)
    split = calibrate(model, x, method=METHODS, batch_size=16, max_memory=budget, **QUIET)
    _assert_same(whole, split)


@pytest.mark.skipif(
    real_models.model_path("ppocr-det") is None, reason=real_models.missing_reason("ppocr-det")
)
def test_real_text_detector_is_the_same_split():
    model = real_models.model_path("ppocr-det")
    x = next(iter(real_models.inputs("ppocr-det", 8, seed=0).values()))
    x = np.ascontiguousarray(x[:, :, :64, :64])
    # the histograms decide every method's range: one method is enough here
    whole = calibrate(model, x, method="minmax", batch_size=8, max_memory=0, **QUIET)
    per = OrtRunner(model, max_memory=1)
    list(per.run_parts({per.specs[0].name: x}))
    for rows in (2, 5):  # sub-batches 2+2+2+2 and 2+6
        split = calibrate(
            model, x, method="minmax", batch_size=8, max_memory=rows * per.bytes_per_sample, **QUIET
        )
        _assert_same(whole, split)
