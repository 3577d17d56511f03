"""trtcal.percentile: exact, as numpy.percentile (float64) on |x| or x; radix select on the GPU."""

import numpy as np
import pytest

import trtcal
from trtcal.core.percentile import key_to_float


@pytest.mark.parametrize("interp", ["linear", "lower", "higher", "nearest", "midpoint"])
def test_host_matches_numpy(rng, interp):
    x = rng.standard_t(2.5, 10007).astype(np.float32)
    for use_abs in (True, False):
        v = np.abs(x.astype(np.float64)) if use_abs else x.astype(np.float64)
        for q in (0.0, 12.5, 50.0, 99.9, 99.99, 100.0):
            assert trtcal.percentile(x, q, use_abs, interpolation=interp) == np.percentile(
                v, q, method=interp
            )
    got = trtcal.percentile(x, [1.0, 99.0], interpolation=interp)
    assert got.shape == (2,)


def test_nan_policy(rng):
    x = rng.standard_normal(101).astype(np.float32)
    x[7] = np.nan
    with pytest.raises(ValueError, match="'acts'.*NaN"):
        trtcal.percentile(x, 99, name="acts")
    assert trtcal.percentile(x, 99, nonfinite="ignore") == np.percentile(
        np.abs(np.delete(x, 7)).astype(np.float64), 99
    )
    with pytest.raises(ValueError, match="empty"):
        trtcal.percentile(np.zeros(0, np.float32), 50)
    with pytest.raises(ValueError, match="q must be"):
        trtcal.percentile(x, 101)


def test_key_inverse():
    for f in (0.0, -0.0, 1.5, -3.25, np.inf, -np.inf, 1e-45):
        u = int(np.array([f], np.float32).view(np.uint32)[0])
        o = (~u & 0xFFFFFFFF) if u & 0x80000000 else (u | 0x80000000)
        assert key_to_float(o, False) == np.float32(f)
        assert key_to_float(u & 0x7FFFFFFF, True) == abs(np.float32(f))


@pytest.mark.gpu
@pytest.mark.parametrize("n", [1, 2, 31, 1000003, 3 * (1 << 22) + 17])
def test_gpu_exact(rng, n):
    cp = pytest.importorskip("cupy")
    kinds = [
        rng.standard_t(3, n),
        rng.standard_normal(n) * 1e-3,
        np.round(rng.standard_normal(n) * 4),
    ]
    for x in kinds:
        x = x.astype(np.float32)
        d = cp.asarray(x)
        for use_abs in (True, False):
            v = np.abs(x.astype(np.float64)) if use_abs else x.astype(np.float64)
            for q in (0.0, 50.0, 99.9, 99.99, 99.999, 100.0, float(rng.uniform(0, 100))):
                for interp in ("linear", "lower", "higher", "nearest", "midpoint"):
                    assert trtcal.percentile(d, q, use_abs, interpolation=interp) == np.percentile(
                        v, q, method=interp
                    ), (n, q, use_abs, interp)


@pytest.mark.gpu
def test_gpu_half_types_and_nan(rng):
    cp = pytest.importorskip("cupy")
    x = rng.laplace(size=100001).astype(np.float16)
    x[::1000] = np.nan
    d = cp.asarray(x)
    with pytest.raises(ValueError, match="NaN"):
        trtcal.percentile(d, 99.9)
    v = np.abs(x[~np.isnan(x)].astype(np.float64))
    assert trtcal.percentile(d, 99.9, nonfinite="ignore") == np.percentile(v, 99.9)


@pytest.mark.gpu
@pytest.mark.slow
def test_gpu_beyond_torch_quantile_limit(rng):
    cp = pytest.importorskip("cupy")
    n = (1 << 26) + 5
    d = cp.random.standard_normal(n, dtype=cp.float32)
    x = cp.asnumpy(d).astype(np.float64)
    assert trtcal.percentile(d, 99.99) == np.percentile(np.abs(x), 99.99)


@pytest.mark.gpu
def test_gpu_two_pass_and_bracket_agree_at_2_20(rng, monkeypatch):
    """2^20 values take the bracketed pass (a sample of n/4 keys); the two-pass select, forced,
    compacts into the thread's cached buffer: both equal numpy.percentile."""
    cp = pytest.importorskip("cupy")
    import sys

    mod = sys.modules["trtcal.core.percentile"]
    n = (1 << 20) + int(rng.integers(1, 999))
    x = rng.standard_t(3, n).astype(np.float32)
    d = cp.asarray(x)
    qs = [0.0, 50.0, 99.9, 99.99, 100.0, float(rng.uniform(0, 100))]
    want = np.percentile(np.abs(x.astype(np.float64)), qs)
    before = dict(mod._path_counts)
    assert np.array_equal(trtcal.percentile(d, qs), want)
    assert mod._path_counts["bracketed"] > before["bracketed"]
    assert mod._path_counts["two_pass"] == before["two_pass"]
    monkeypatch.setattr(mod, "_BRACKET_MIN_N", 1 << 40)
    for _ in range(2):  # the second call reuses the buffer
        assert np.array_equal(trtcal.percentile(d, qs), want)
    assert mod._path_counts["two_pass"] == before["two_pass"] + 2


# The bracketed one-pass select (arrays >= 2^22 values): a sample brackets the wanted ranks,
# one pass counts below and compacts inside, the host checks and falls back when they missed.
_ALL_Q = [0.0, 0.5, 50.0, 99.0, 99.9, 99.99, 99.999, 100.0]


def _bracket_inputs(rng, n):
    x = rng.standard_normal(n).astype(np.float32)
    yield "normal", x
    yield "student-t(2.5)", rng.standard_t(2.5, n).astype(np.float32)
    yield "relu (half zeros)", np.maximum(x, 0)
    yield "rounded (heavy duplicates)", np.round(x * 4)
    spiky = x.copy()
    spiky[::2048] *= 100  # a period that a regular stride would hit always or never
    yield "every 2048th x100", spiky
    yield "float16 laplace", rng.laplace(size=n).astype(np.float16)
    nan = x.copy()
    nan[rng.random(n) < 0.3] = np.nan  # 30% NaN: the sample ranks count non-NaN values only
    yield "30% NaN", nan


@pytest.mark.gpu
def test_gpu_bracketed_select_is_exact(rng):
    cp = pytest.importorskip("cupy")
    import sys

    mod = sys.modules["trtcal.core.percentile"]
    n = (1 << 22) + int(rng.integers(1, 5000))
    qs = _ALL_Q + [float(rng.uniform(0, 100))]
    for label, x in _bracket_inputs(rng, n):
        d = cp.asarray(x)
        for use_abs in (True, False):
            v = x.astype(np.float64)
            v = v[~np.isnan(v)]
            v = np.abs(v) if use_abs else v
            for interp in ("linear", "lower", "higher", "nearest", "midpoint"):
                want = np.percentile(v, qs, method=interp)
                before = dict(mod._path_counts)
                got = trtcal.percentile(d, qs, use_abs, interpolation=interp, nonfinite="ignore")
                assert np.array_equal(got, want), (label, use_abs, interp, got, want)
                assert mod._path_counts["bracketed"] > before["bracketed"], label
                # one q at a time too (its own bracket)
                for q, w in zip(qs[3:6], want[3:6]):
                    before = dict(mod._path_counts)
                    assert (
                        trtcal.percentile(d, q, use_abs, interpolation=interp, nonfinite="ignore")
                        == w
                    ), (label, use_abs, interp, q)
                    if label in ("normal", "student-t(2.5)", "float16 laplace"):
                        # calibration percentiles of ordinary data never need the two-pass select
                        assert mod._path_counts["two_pass"] == before["two_pass"], (
                            label,
                            use_abs,
                            q,
                        )


@pytest.mark.gpu
def test_gpu_bracketed_select_falls_back_exactly(rng, monkeypatch):
    cp = pytest.importorskip("cupy")
    import sys

    mod = sys.modules["trtcal.core.percentile"]
    n = (1 << 22) + 3
    x = rng.standard_t(3, n).astype(np.float32)
    d = cp.asarray(x)
    v = np.abs(x.astype(np.float64))
    want = np.percentile(v, [50.0, 99.99])
    # a compaction buffer of 16 keys overflows: every rank falls back to the two-pass select
    monkeypatch.setattr(mod, "_MIN_CAPACITY", 16)
    monkeypatch.setattr(mod, "_CAPACITY_SHIFT", 40)
    before = dict(mod._path_counts)
    assert np.array_equal(trtcal.percentile(d, [50.0, 99.99]), want)
    assert mod._path_counts["two_pass"] == before["two_pass"] + 1
    monkeypatch.undo()
    # no margin at all: the bracket misses some ranks; the results stay exact either way
    monkeypatch.setattr(mod, "_SAMPLE_SIGMAS", 0.0)
    for q in (1.0, 50.0, 99.0, 99.9, 99.99):
        assert trtcal.percentile(d, q) == np.percentile(v, q), q
    # NaN still raises by default on the bracketed path, naming the tensor
    x[12345] = np.nan
    with pytest.raises(ValueError, match="'acts' has 1 NaN"):
        trtcal.percentile(cp.asarray(x), 99.9, name="acts")
