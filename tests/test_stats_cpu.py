"""Statistics on the CPU path (the NumPy float64 reference) against independent oracles."""

import numpy as np
import pytest

import trtcal
from trtcal import reference

DISTS = ["normal", "student_t", "laplace", "outliers"]


def draw(rng, dist, n, dtype=np.float32):
    if dist == "normal":
        x = rng.normal(0, rng.uniform(0.01, 10), n)
    elif dist == "student_t":
        x = rng.standard_t(3, n) * rng.uniform(0.1, 5)
    elif dist == "laplace":
        x = rng.laplace(0, rng.uniform(0.1, 3), n)
    else:
        x = rng.normal(0, 1, n)
        k = max(1, n // 1000)
        x[rng.integers(0, n, k)] *= rng.uniform(50, 5000)
    return x.astype(dtype)


def pow2_above(a):
    return 2.0 ** np.frexp(a)[1]


@pytest.mark.parametrize("dist", DISTS)
@pytest.mark.parametrize("n", [1, 37, 1000003])
def test_abs_histogram_matches_numpy_histogram(rng, dist, n):
    x = draw(rng, dist, n)
    h = trtcal.histogram(x)
    amax = float(np.abs(x).max())
    if amax == 0:
        assert h.status == "all-zero"
        return
    R = pow2_above(amax)
    assert h.range == R and amax < R
    expect, _ = np.histogram(np.abs(x.astype(np.float64)), bins=2048, range=(0, R))
    np.testing.assert_array_equal(h.counts, expect)
    assert h.total == n and h.amax == amax


@pytest.mark.parametrize("bins", [2048, 1000, 128, 2])
def test_signed_histogram_matches_numpy_histogram(rng, bins):
    x = draw(rng, "student_t", 50001)
    h = trtcal.histogram(x, bins=bins, signed=True)
    R = pow2_above(float(np.abs(x).max()))
    expect, _ = np.histogram(x.astype(np.float64), bins=bins, range=(-R, R))
    np.testing.assert_array_equal(h.counts, expect)
    np.testing.assert_array_equal(h.edges, np.linspace(-R, R, bins + 1))


def test_collector_is_independent_of_batch_order_and_size(rng):
    x = draw(rng, "outliers", 200003) * np.float32(rng.uniform(0.001, 1000))
    one = trtcal.HistogramCollector(2048, name="act")
    one.update(x)
    for _ in range(3):
        perm = rng.permutation(x.size)
        cuts = np.sort(rng.choice(np.arange(1, x.size), size=rng.integers(1, 40), replace=False))
        c = trtcal.HistogramCollector(2048, name="act")
        for part in np.split(x[perm], cuts):
            c.update(part)
        a, b = c.state_dict(), one.state_dict()
        np.testing.assert_array_equal(a["counts"], b["counts"])
        assert a["exponent"] == b["exponent"] and a["amax"] == b["amax"]
        assert (a["min"], a["max"], a["finite"]) == (b["min"], b["max"], b["finite"])


def test_growth_merges_bins_exactly(rng):
    # a tiny first batch fixes a small range; later batches grow it by many doublings
    batches = [draw(rng, "normal", 1000) * np.float32(10.0**k) for k in (-6, -2, 0, 3, 7)]
    c = trtcal.HistogramCollector(1000, signed=True)  # non power-of-two bins
    for b in batches:
        c.update(b)
    allx = np.concatenate(batches)
    direct = trtcal.histogram(allx, bins=1000, signed=True)
    np.testing.assert_array_equal(c.histogram().counts, direct.counts)


def test_merge_and_state_round_trip(rng):
    x = draw(rng, "laplace", 100000)
    parts = np.array_split(x, 5)
    a, b = trtcal.HistogramCollector(name="t"), trtcal.HistogramCollector(name="t")
    for p in parts[:2]:
        a.update(p * 3)
    for p in parts[2:]:
        b.update(p)
    a.merge(b)
    ref = trtcal.HistogramCollector(name="t")
    for p in parts[:2]:
        ref.update(p * 3)
    for p in parts[2:]:
        ref.update(p)
    np.testing.assert_array_equal(a.histogram().counts, ref.histogram().counts)
    assert a.batches == 5
    restored = trtcal.HistogramCollector.from_state_dict(a.state_dict())
    restored.update(parts[0])
    a.update(parts[0])
    np.testing.assert_array_equal(restored.histogram().counts, a.histogram().counts)


def test_nonfinite_are_counted_never_binned(rng):
    x = draw(rng, "normal", 1001)
    x[[3, 5]] = np.nan
    x[7] = np.inf
    x[[11, 13, 17]] = -np.inf
    h = trtcal.histogram(x)
    assert (h.nan, h.posinf, h.neginf) == (2, 1, 3)
    assert h.total == 1001 - 6
    with pytest.raises(ValueError, match=r"'acts'.*2 NaN, 1 \+Inf, 3 -Inf"):
        trtcal.amax(x, name="acts")
    assert trtcal.amax(x, nonfinite="ignore") == np.abs(x[np.isfinite(x)]).max()


def test_degenerate_tensors_are_named():
    z = np.zeros(100, np.float32)
    h = trtcal.histogram(z, name="zeros")
    assert h.status == "all-zero" and h.range is None and h.counts[0] == 100
    with pytest.raises(ValueError, match="'zeros'.*all its finite values are zero"):
        _ = h.edges
    with pytest.raises(ValueError, match="'e' is empty"):
        trtcal.histogram(np.zeros(0, np.float32), name="e")
    with pytest.raises(ValueError, match="'e' is empty"):
        trtcal.amax(np.zeros((0, 3), np.float32), name="e")
    nan = np.full(10, np.nan, np.float32)
    assert trtcal.histogram(nan).status == "no-finite"
    with pytest.raises(ValueError, match="'n' has no finite values"):
        trtcal.amax(nan, nonfinite="ignore", name="n")
    # signed all-zero: zero bin is the centre
    hs = trtcal.histogram(z, bins=8, signed=True)
    assert hs.counts[4] == 100


def test_wrong_dtype_and_layout_are_refused(rng):
    with pytest.raises(
        TypeError, match="'w' has dtype float64; accepted: float32, float16, bfloat16"
    ):
        trtcal.histogram(np.zeros(4), name="w")
    with pytest.raises(TypeError, match="int32"):
        trtcal.amax(np.zeros(4, np.int32))
    x = draw(rng, "normal", 64 * 30).reshape(64, 30)
    # a transpose is dense in another axis order: accepted, same counts
    np.testing.assert_array_equal(trtcal.histogram(x.T).counts, trtcal.histogram(x).counts)
    with pytest.raises(ValueError, match="not contiguous"):
        trtcal.histogram(x[:, ::2], name="strided")
    with pytest.raises(ValueError, match="even number of bins"):
        trtcal.histogram(x, bins=7, signed=True)
    with pytest.raises(ValueError, match="bins"):
        trtcal.HistogramCollector(0)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_dtypes(rng, dtype):
    if dtype == "bfloat16":
        ml = pytest.importorskip("ml_dtypes")
        dt = ml.bfloat16
    else:
        dt = np.float16
    x = draw(rng, "student_t", 30011).astype(dt)
    h = trtcal.histogram(x)
    v = np.abs(x.astype(np.float64))
    expect, _ = np.histogram(v, bins=2048, range=(0, pow2_above(v.max())))
    np.testing.assert_array_equal(h.counts, expect)


def test_fixed_range_histogram_last_bin_closed(rng):
    x = np.array([0.0, 0.5, 1.0, 1.5, 2.0, -2.0, 2.5], np.float32)
    h = trtcal.histogram(x, bins=4, range=2.0)
    np.testing.assert_array_equal(h.counts, [1, 1, 1, 3])  # |x| = 2 goes to the last bin
    assert h.outside == 1
    hs = trtcal.histogram(x, bins=4, range=2.0, signed=True)
    np.testing.assert_array_equal(hs.counts, [1, 0, 2, 3])
    y = draw(rng, "normal", 9999)
    hf = trtcal.histogram(y, bins=333, range=1.7)
    expect, _ = np.histogram(np.abs(y.astype(np.float64)), bins=333, range=(0, 1.7))
    # numpy's edge handling and floor(v * bins / R) may differ only at exact bin edges
    assert abs(int(hf.counts.sum()) + hf.outside - y.size) == 0
    assert np.abs(hf.counts - expect).sum() <= 2


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_minmax_per_channel(rng, axis):
    x = draw(rng, "laplace", 5 * 7 * 11 * 3).reshape(5, 7, 11, 3)
    lo, hi = trtcal.minmax(x, axis=axis)
    other = tuple(a for a in range(4) if a != axis % 4)
    np.testing.assert_array_equal(lo, x.min(axis=other))
    np.testing.assert_array_equal(hi, x.max(axis=other))
    np.testing.assert_array_equal(trtcal.amax(x, axis=axis), np.abs(x).max(axis=other))
    with pytest.raises(ValueError, match="axis 4 is out of range"):
        trtcal.amax(x, axis=4)


def test_minmax_collector_streams_and_merges(rng):
    xs = [draw(rng, "normal", 4 * 6 * 9).reshape(4, 6, 9) for _ in range(5)]
    c = trtcal.MinMaxCollector(axis=1, name="conv1")
    for x in xs[:3]:
        c.update(x)
    d = trtcal.MinMaxCollector(axis=1, name="conv1")
    for x in xs[3:]:
        d.update(x)
    c.merge(d)
    allx = np.concatenate(xs, axis=0)
    r = c.result()
    np.testing.assert_array_equal(r["min"], allx.min(axis=(0, 2)))
    np.testing.assert_array_equal(r["amax"], np.abs(allx).max(axis=(0, 2)))
    again = trtcal.MinMaxCollector.from_state_dict(c.state_dict())
    np.testing.assert_array_equal(again.result()["max"], r["max"])
    with pytest.raises(ValueError, match="has 5 channels along axis 1, earlier batches had 6"):
        c.update(np.zeros((2, 5, 3), np.float32))


def test_malformed_state_is_refused():
    with pytest.raises(ValueError, match="not a trtcal.HistogramCollector state"):
        trtcal.HistogramCollector.from_state_dict({"format": "x"})
    s = trtcal.HistogramCollector(8).state_dict()
    s["counts"] = np.zeros(7, np.int64)
    with pytest.raises(ValueError, match="malformed counts"):
        trtcal.HistogramCollector.from_state_dict(s)


def test_gpu_only_call_without_cuda_says_how(monkeypatch):
    from trtcal.core import _backend

    monkeypatch.setattr(_backend, "_ext", None)
    with pytest.raises(trtcal.CUDAUnavailableError, match="nvcc"):
        _backend.require_cuda("a test")


def test_rebin_reference_is_exact(rng):
    counts = rng.integers(0, 2**40, 2048)
    for signed in (False, True):
        for m in (1, 3, 11, 12, 70):
            out = reference.rebin(counts, signed, m)
            assert out.sum() == counts.sum()
        c = 1024 if signed else 0
        k = np.arange(2048) - c
        expect = np.zeros(2048, np.int64)
        np.add.at(expect, c + np.floor_divide(k, 8), counts)
        np.testing.assert_array_equal(reference.rebin(counts, signed, 3), expect)
