"""trtcal.percentile: exact, as numpy.percentile (float64) on |x| or x; radix select on the GPU."""

import numpy as np
import pytest

import trtcal
from trtcal.percentile import key_to_float


@pytest.mark.parametrize("interp", ["linear", "lower", "higher", "nearest", "midpoint"])
def test_host_matches_numpy(rng, interp):
    x = rng.standard_t(2.5, 10007).astype(np.float32)
    for use_abs in (True, False):
        v = np.abs(x.astype(np.float64)) if use_abs else x.astype(np.float64)
        for q in (0.0, 12.5, 50.0, 99.9, 99.99, 100.0):
            assert trtcal.percentile(x, q, use_abs, interpolation=interp) == np.percentile(v, q, method=interp)
    got = trtcal.percentile(x, [1.0, 99.0], interpolation=interp)
    assert got.shape == (2,)


def test_nan_policy(rng):
    x = rng.standard_normal(101).astype(np.float32)
    x[7] = np.nan
    with pytest.raises(ValueError, match="'acts'.*NaN"):
        trtcal.percentile(x, 99, name="acts")
    assert trtcal.percentile(x, 99, nonfinite="ignore") == np.percentile(np.abs(np.delete(x, 7)).astype(np.float64), 99)
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
    kinds = [rng.standard_t(3, n), rng.standard_normal(n) * 1e-3, np.round(rng.standard_normal(n) * 4)]
    for x in kinds:
        x = x.astype(np.float32)
        d = cp.asarray(x)
        for use_abs in (True, False):
            v = np.abs(x.astype(np.float64)) if use_abs else x.astype(np.float64)
            for q in (0.0, 50.0, 99.9, 99.99, 99.999, 100.0, float(rng.uniform(0, 100))):
                for interp in ("linear", "lower", "higher", "nearest", "midpoint"):
                    assert trtcal.percentile(d, q, use_abs, interpolation=interp) == \
                        np.percentile(v, q, method=interp), (n, q, use_abs, interp)


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
