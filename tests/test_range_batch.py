"""The vectorised compute_amax for many GPU collectors (python/trtcal/core/_range_batch.py) builds
the same descriptors as the general path and turns the kernels' indices into the same amax,
bit for bit. Checked here on CPU collectors' states (the host work is the same); on a GPU,
tests/test_range_search.py::test_gpu_collectors_read_in_place runs it end to end."""

from __future__ import annotations

import numpy as np
import pytest

import trtcal
from trtcal.core import _range_batch as rb
from trtcal.core.range_search import TensorRange, _finish, _items, _plan_arrays, _prepare, _spec

SPECS = [
    ("entropy", "pytorch_quantization", {}),
    ("entropy", "tensorrt", {}),
    ("percentile", "pytorch_quantization", {"percentile": 99.9}),
    ("percentile", "pytorch_quantization", {"percentile": 99.999}),
    ("mse", "pytorch_quantization", {}),
    ("entropy", "pytorch_quantization", {"stride": 3}),
    ("mse", "pytorch_quantization", {"start_bin": 37, "stride": 2}),
]


def _collectors(rng, count):
    cols = {}
    for t in range(count):
        bins = int(rng.choice([256, 1000, 2048, 4096]))
        c = trtcal.HistogramCollector(bins, device="cpu", name=f"t{t}")
        scale = float(np.exp(rng.uniform(-12, 12)))
        for _ in range(int(rng.integers(1, 4))):
            x = rng.standard_t(float(rng.choice([2, 3, 30])), int(rng.integers(300, 5000))) * scale
            c.update(x.astype(np.float32))
        cols[c.name] = c
    return cols


def _batch(cols):
    states = [c.state_dict() for c in cols.values()]
    return rb.Batch(
        list(cols),
        np.array([c.bins for c in cols.values()]),
        np.array([s["exponent"] for s in states]),
        np.array([s["amax"] for s in states], np.float32),
        np.arange(len(cols), dtype=np.uint64) * 1000 + 8,
    )


@pytest.mark.parametrize("method,flavor,params", SPECS)
def test_descriptors_and_amax_equal_the_general_path(rng, method, flavor, params):
    cols = _collectors(rng, 60)
    b = _batch(cols)
    s = _spec(method, flavor, params)
    items, _ = _items({n: c.histogram() for n, c in cols.items()})
    jobs = [_prepare(it, s) for it in items]
    arrays = rb.plan(b, s)
    if any(isinstance(j, TensorRange) for j in jobs):
        assert arrays is None  # a tensor with too few bins: the general path answers
        return
    assert arrays is not None
    ref = _plan_arrays(jobs, s)
    np.testing.assert_array_equal(arrays["nbins"], ref.nbins)
    np.testing.assert_array_equal(arrays["linspace"], ref.linspace)
    np.testing.assert_array_equal(arrays["targets"], ref.targets)
    np.testing.assert_array_equal(arrays["cands"], ref.cands)
    # every candidate index the kernel could return gives the general path's amax
    for _ in range(5):
        if method == "percentile":
            idx = rng.integers(0, b.k + 1)
        else:
            idx = rng.integers(0, arrays["cands"][2::3])
        got = rb.amax_from(b, s, idx)
        want = np.array([_finish(j, s, int(i), -1, None, "cpu").amax for j, i in zip(jobs, idx)])
        ok = np.isfinite(want)
        np.testing.assert_array_equal(got[ok], want[ok])
        # a degenerate choice (amax 0): not a usable scale here either, so the caller falls back
        assert not (np.isfinite(got[~ok]) & (got[~ok] > 0)).any()


def test_minmax_amax_is_the_collectors(rng):
    cols = _collectors(rng, 20)
    b = _batch(cols)
    want = trtcal.compute_amax(cols, "minmax", device="cpu")
    assert dict(zip(b.names, b.amax.tolist())) == want


def test_uncovered_cases_take_the_general_path(rng):
    cols = _collectors(rng, 3)
    # CPU collectors, a non-mapping, an uncovered flavor: None
    assert rb.batch_of_collectors(cols, None, None) is None
    assert rb.batch_of_collectors(list(cols.values()), None, None) is None
    assert rb.compute_amax_collectors(cols, ["entropy"], "onnxruntime", None, None, {}) is None
    assert (
        rb.compute_amax_collectors(cols, ["mse"], None, None, None, {"candidates_per_bin": 4})
        is None
    )
