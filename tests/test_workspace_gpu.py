"""The one-shot calls' cached workspace (csrc/bindings/workspace.h): results stay exact when it
grows, when calls come from several threads on their own streams, and repeated calls take no
more device memory."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import trtcal
from trtcal import reference

pytestmark = pytest.mark.gpu


def _cp():
    return pytest.importorskip("cupy")


def test_growing_sizes_stay_exact(rng):
    cp = _cp()
    for n in (1, 7, 1000, 65_537, 1_000_003, 31):
        x = (rng.standard_t(3, n) * 10).astype(np.float32)
        d = cp.asarray(x)
        assert trtcal.amax(d) == float(np.abs(x).max())
        lo, hi = trtcal.minmax(d)
        assert (lo, hi) == (float(x.min()), float(x.max()))
        h = trtcal.histogram(d, 2048)
        want = trtcal.histogram(x, 2048)
        np.testing.assert_array_equal(h.counts, want.counts)
        assert h.range == want.range
    x = rng.standard_normal((5, 37, 11)).astype(np.float32)
    lo, hi = trtcal.minmax(cp.asarray(x), axis=1)
    rlo, rhi, *_ = reference.minmax_channels(x, 1)
    np.testing.assert_array_equal(lo, rlo)
    np.testing.assert_array_equal(hi, rhi)


def test_threads_on_their_own_streams(rng):
    cp = _cp()
    xs = [(rng.standard_t(3, 200_000 + 1000 * i) * (i + 1)).astype(np.float32) for i in range(4)]
    want = [float(np.abs(x).max()) for x in xs]
    errors = []

    def work(i):
        try:
            with cp.cuda.Stream(non_blocking=True):
                d = cp.asarray(xs[i])
                for _ in range(50):
                    got = trtcal.amax(d)
                    if got != want[i]:
                        errors.append((i, got, want[i]))
                        return
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append((i, repr(exc)))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]


def test_repeated_calls_take_no_more_memory(rng):
    cp = _cp()
    d = cp.asarray(rng.standard_normal(1 << 20).astype(np.float32))
    for _ in range(3):  # warm: the workspace has its size
        trtcal.amax(d)
        trtcal.histogram(d)
    cp.cuda.runtime.deviceSynchronize()
    free0 = cp.cuda.runtime.memGetInfo()[0]
    for _ in range(200):
        trtcal.amax(d)
        trtcal.histogram(d)
    cp.cuda.runtime.deviceSynchronize()
    assert cp.cuda.runtime.memGetInfo()[0] == free0


def test_whole_tensor_result_state_resets_between_calls(rng):
    """The whole-tensor one-shot's kernel resets its own state: non-finite counts and extremes of
    one call never leak into the next (float32, float16; different sizes and streams)."""
    cp = _cp()
    for dtype in (np.float32, np.float16):
        x = (rng.standard_t(3, 300_001) * 5).astype(dtype)
        bad = x.copy()
        bad[[3, 77, 1000]] = [np.nan, np.inf, -np.inf]
        bad[5] = 6e4 if dtype == np.float16 else 1e30  # a larger finite extreme
        with pytest.raises(ValueError, match="1 NaN, 1 \\+Inf, 1 -Inf"):
            trtcal.amax(cp.asarray(bad))
        finite = bad[np.isfinite(bad)]
        assert trtcal.amax(cp.asarray(bad), nonfinite="ignore") == float(np.abs(finite).max())
        with cp.cuda.Stream(non_blocking=True):
            assert trtcal.amax(cp.asarray(x)) == float(np.abs(x).max())  # no NaN counted, no 1e30
        small = x[:9]
        assert trtcal.minmax(cp.asarray(small)) == (float(small.min()), float(small.max()))


def test_repeated_percentiles_take_no_more_memory(rng, monkeypatch):
    import sys

    cp = _cp()
    mod = sys.modules["trtcal.core.percentile"]
    x = rng.standard_normal((1 << 20) + 3).astype(np.float32)
    d = cp.asarray(x)
    want = np.percentile(np.abs(x.astype(np.float64)), 99.99)
    for two_pass in (False, True):
        if two_pass:
            monkeypatch.setattr(mod, "_BRACKET_MIN_N", 1 << 40)
        for _ in range(2):
            assert trtcal.percentile(d, 99.99) == want
        cp.cuda.runtime.deviceSynchronize()
        free0 = cp.cuda.runtime.memGetInfo()[0]
        for _ in range(20):
            assert trtcal.percentile(d, 99.99) == want
        cp.cuda.runtime.deviceSynchronize()
        assert cp.cuda.runtime.memGetInfo()[0] == free0, two_pass
