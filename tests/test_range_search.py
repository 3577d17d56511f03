"""compute_amax / search_ranges: the float64 reference against direct per-candidate
transcriptions of the definitions, the API's degenerate cases, and (gpu) the CUDA kernels
against the reference bin for bin on thousands of fresh random histograms in one call."""

import math

import numpy as np
import pytest

import trtcal
from trtcal.reference import range_search as ref

KINDS = ("smooth", "spiky", "sparse", "heavy", "one-bin", "bin0", "empty")


def random_hist(rng, kind, n, signed=False):
    if kind == "smooth":
        x = (
            np.abs(rng.standard_normal(rng.integers(1000, 200000)))
            if not signed
            else rng.standard_normal(50000)
        )
        c = np.histogram(x, n, range=((-1 if signed else 0) * x.max(), np.abs(x).max() + 1e-9))[0]
    elif kind == "heavy":
        x = rng.standard_t(rng.uniform(1.5, 4), rng.integers(1000, 100000))
        x = x if signed else np.abs(x)
        r = np.abs(x).max() + 1e-9
        c = np.histogram(x, n, range=(-r if signed else 0, r))[0]
    elif kind == "spiky":
        c = rng.poisson(2.0, n) * (rng.random(n) < 0.3)
        c[rng.integers(0, n, 5)] += rng.integers(1000, 10**7, 5)
    elif kind == "sparse":
        c = np.zeros(n, np.int64)
        c[rng.integers(0, n, rng.integers(1, 12))] = rng.integers(1, 1000, 1)
    elif kind == "one-bin":
        c = np.zeros(n, np.int64)
        c[rng.integers(1, n)] = rng.integers(1, 10**6)
    elif kind == "bin0":
        c = np.zeros(n, np.int64)
        c[n // 2 if signed else 0] = rng.integers(1, 10**6)
    else:
        c = np.zeros(n, np.int64)
    c = np.asarray(c, np.int64)
    r = float(rng.uniform(0.1, 50))
    edges = np.linspace(-r if signed else 0.0, r, n + 1)
    return c, edges


# -- direct transcriptions (slow loops, small histograms) ---------------------------------


def kl_direct(P, Q):
    p = P / P.sum()
    if Q.sum() == 0:
        return math.inf
    q = Q / Q.sum()
    s = 0.0
    for pj, qj in zip(p, q):
        if pj > 0:
            if qj == 0:
                return math.inf
            s += pj * math.log(pj / qj)
    return s


def proportional_direct(counts, cands, levels, zero_rule):
    b = counts.astype(np.int64).copy()
    if zero_rule:
        b[0] = b[1]
    out = []
    for i in cands:
        P = b[:i].astype(np.float64).copy()
        P[i - 1] += b[i:].sum()
        coarse = (np.arange(i) * levels) // i
        Q = np.zeros(i)
        for k in range(levels):
            sel = (coarse == k) & (b[:i] > 0)
            if sel.any():
                Q[sel] = b[:i][sel].sum() / sel.sum()
        out.append(kl_direct(P, Q) if b[:i].sum() > 0 else math.inf)
    return np.array(out)


def ort_direct(hist, cands, levels=128, eps=1e-4):
    n = hist.size
    z = n // 2
    out = []
    for i in cands:
        s, e = z - i, min(z + i + 1, n)
        sl = hist[s:e].copy()
        p = sl.copy()
        p[0] += hist[:s].sum()
        p[-1] += hist[e:].sum()
        nz = (p != 0).astype(np.int64)
        m = sl.size // levels
        qb = np.array([sl[k * m : (k + 1) * m].sum() for k in range(levels)])
        qb[-1] += sl[levels * m :].sum()
        q = np.zeros(p.size, np.int64)
        for k in range(levels):
            norm = nz[k * m : (k + 1) * m].sum()
            if norm:
                q[k * m : (k + 1) * m] = qb[k] // norm

        def smooth(v):
            zeros = v == 0
            nzr = v.size - zeros.sum()
            if nzr == 0:
                return None
            e1 = eps * float(zeros.sum()) / float(nzr)
            if e1 >= 1:
                return None
            return np.where(zeros, np.float32(eps), v.astype(np.float32) + np.float32(-e1)).astype(
                np.float64
            )

        ps, qs = smooth(p), smooth(q)
        out.append(math.inf if ps is None or qs is None else kl_direct(ps, qs))
    return np.array(out)


def mse_direct(counts, edges, amaxes, mb=127):
    c = (edges[:-1] + edges[1:]) * 0.5
    out = []
    for a in amaxes:
        q = np.clip(np.rint(c * (mb / a)), -mb, mb)
        out.append(float(((q * (a / mb) - c) ** 2 * counts).sum() / c.size))
    return np.array(out)


@pytest.mark.parametrize("kind", KINDS[:5])
def test_proportional_reference_matches_direct(rng, kind):
    n = int(rng.integers(130, 420))
    c, e = random_hist(rng, kind, n)
    for zero_rule, stop in ((True, n), (False, n - 1)):
        cands = np.arange(128, stop + 1)
        a = ref.entropy_proportional(c, cands, levels=128, zero_bin_rule=zero_rule)
        b = proportional_direct(c, cands, 128, zero_rule)
        assert np.array_equal(np.isinf(a), np.isinf(b))
        fin = np.isfinite(a)
        np.testing.assert_allclose(a[fin], b[fin], rtol=1e-9, atol=1e-12)
        for tie in ("first", "last"):
            assert ref.pick(a, tie) == ref.pick(b, tie)


@pytest.mark.parametrize("kind", ("smooth", "heavy", "spiky", "sparse"))
def test_onnxruntime_reference_matches_direct(rng, kind):
    n = 2 * int(rng.integers(70, 200)) + int(rng.integers(0, 2))
    c, _ = random_hist(rng, kind, n, signed=True)
    cands = np.arange(64, n // 2 + 1)
    a = ref.entropy_onnxruntime(c, cands)
    b = ort_direct(c, cands)
    assert np.array_equal(np.isinf(a), np.isinf(b))
    fin = np.isfinite(a)
    np.testing.assert_allclose(a[fin], b[fin], rtol=1e-9, atol=1e-12)
    assert ref.pick(a, "first") == ref.pick(b, "first")


@pytest.mark.parametrize("kind", ("smooth", "heavy", "spiky"))
def test_mse_reference_matches_direct(rng, kind):
    n = int(rng.integers(140, 500))
    c, e = random_hist(rng, kind, n)
    am = ref.mse_candidates(e, 128, 1, 1)
    np.testing.assert_allclose(ref.mse_curve(c, e, am), mse_direct(c, e, am), rtol=1e-12)
    fine = ref.mse_candidates(e, 128, 2, 3)
    assert fine[0] == am[0] and fine[-1] <= am[-1] + 1e-9 and fine.size >= 1.5 * (am.size - 1)


def test_percentile_index_is_searchsorted(rng):
    c, e = random_hist(rng, "heavy", 1001)
    for p in (50.0, 99.9, 99.99, 99.999, 100.0):
        assert ref.percentile_index(c, p / 100) == np.searchsorted(np.cumsum(c / c.sum()), p / 100)


def test_pick_tie_rules():
    v = np.array([3.0, 1.0, 1.0 + 1e-15, 2.0, 1.0])
    assert ref.pick(v, "first") == 1 and ref.pick(v, "last") == 4
    assert ref.pick(np.array([np.inf, np.inf]), "last") == 1
    assert ref.pick(np.array([1.0, 1.0 + 1e-6]), "last") == 0


# -- API ----------------------------------------------------------------------------------


def test_compute_amax_forms_agree(rng):
    x = rng.standard_t(3, 30001).astype(np.float32)
    col = trtcal.HistogramCollector(name="t")
    col.update(x)
    h = col.histogram()
    # a trtcal histogram is searched over its occupied bins (up to the bin of amax); a raw pair
    # is searched as given: the same search is the pair of that occupied prefix
    k = int(np.floor(h.amax * h.bins / h.range)) + 1
    pair = (h.counts[:k], h.edges[: k + 1])
    for m in ("entropy", "percentile", "mse", "minmax"):
        a = trtcal.compute_amax(col, m, device="cpu")
        assert a > 0
        assert trtcal.compute_amax(h, m, device="cpu") == a
        if m != "minmax":
            assert trtcal.compute_amax(pair, m, device="cpu") == a
    both = trtcal.compute_amax({"a": col, "b": pair}, ["entropy", "mse"], device="cpu")
    assert set(both) == {"entropy", "mse"} and set(both["mse"]) == {"a", "b"}


def test_details_give_bins_and_curves(rng):
    c, e = random_hist(rng, "heavy", 2048)
    res = trtcal.search_ranges({"t": (c, e)}, device="cpu")
    r = res.ranges["entropy"]["t"]
    assert r.status == "ok" and r.curve.size == r.candidates.size == 2048 - 128 + 1
    assert r.amax == e[r.bin] and r.thresholds[r.candidates.tolist().index(r.bin)] == r.amax
    assert res.ranges["mse"]["t"].curve.size == 2048 - 128
    assert res.by_tensor()["t"]["percentile"] == res["percentile"]["t"]


def test_caller_histogram_is_not_mutated(rng):
    c, e = random_hist(rng, "smooth", 2048)
    c[0] = 12345
    keep = c.copy()
    trtcal.compute_amax((c, e), "entropy", "pytorch_quantization", device="cpu")
    assert np.array_equal(c, keep)


def test_signed_histogram_folds_for_abs_flavors(rng):
    x = rng.laplace(size=40001).astype(np.float32)
    s = trtcal.HistogramCollector(2048, signed=True, name="s")
    s.update(x)
    a = trtcal.HistogramCollector(1024, name="a")
    a.update(x)
    for m in ("entropy", "percentile", "mse"):
        assert trtcal.compute_amax(s, m, device="cpu") == trtcal.compute_amax(a, m, device="cpu")


def test_onnxruntime_entropy_needs_signed(rng):
    c, e = random_hist(rng, "smooth", 2048)
    with pytest.raises(ValueError, match="signed histogram"):
        trtcal.compute_amax((c, e), "entropy", "onnxruntime", device="cpu")


def test_onnxruntime_single_candidate_at_128_bins(rng):
    c, e = random_hist(rng, "smooth", 128, signed=True)
    r = trtcal.search_ranges((c, e), "entropy", "onnxruntime", device="cpu").ranges["entropy"][
        "tensor"
    ]
    assert r.candidates.tolist() == [64] and r.amax == max(abs(e[0]), abs(e[128]))


@pytest.mark.parametrize("case", ["empty", "zeros", "nan", "few", "bin0"])
def test_degenerate_inputs_name_the_tensor(rng, case):
    n = 2048
    c = np.zeros(n)
    e = np.linspace(0, 1, n + 1)
    method = "entropy"
    if case == "nan":
        c[3] = np.nan
    elif case == "few":
        c = np.ones(100)
        e = np.linspace(0, 1, 101)
    elif case == "bin0":
        c[0] = 10
    if case == "zeros":
        col = trtcal.HistogramCollector(name="layer.7")
        col.update(np.zeros(33, np.float32))
        h = {"layer.7": col}
    else:
        h = {"layer.7": (c, e)}
    with pytest.raises(ValueError, match="layer.7"):
        trtcal.compute_amax(h, method, device="cpu")
    r = trtcal.compute_amax(h, method, device="cpu", on_degenerate="flag")
    assert math.isnan(r["layer.7"])
    st = trtcal.search_ranges(h, method, device="cpu").status()["layer.7"][method]
    assert (
        st
        == {
            "empty": "empty",
            "zeros": "all-zero",
            "nan": "nonfinite",
            "few": "too-few-bins",
            "bin0": "degenerate",
        }[case]
    )


def test_bad_arguments():
    c, e = np.ones(300), np.linspace(0, 1, 301)
    with pytest.raises(ValueError, match="flavor"):
        trtcal.compute_amax((c, e), "entropy", "scipy", device="cpu")
    with pytest.raises(TypeError, match="unknown parameter"):
        trtcal.compute_amax((c, e), "entropy", device="cpu", bins=3)
    with pytest.raises(ValueError, match="edges"):
        trtcal.compute_amax((c, e[:-1]), "entropy", device="cpu")
    with pytest.raises(ValueError, match="percentile"):
        trtcal.compute_amax((c, e), "percentile", device="cpu", percentile=101)


# -- GPU against the reference ------------------------------------------------------------


def _batch(rng, count, signed=False):
    out = {}
    for t in range(count):
        kind = KINDS[t % len(KINDS)]
        n = (
            int(rng.choice([128, 130, 257, 1000, 2048, 2048, 4096, 8192]))
            if not signed
            else int(2 * rng.integers(64, 2100))
        )
        out[f"t{t}.{kind}"] = random_hist(rng, kind, n, signed)
    return out


@pytest.mark.gpu
@pytest.mark.parametrize(
    "method,flavor",
    [
        ("entropy", "pytorch_quantization"),
        ("entropy", "tensorrt"),
        ("percentile", "pytorch_quantization"),
        ("mse", "pytorch_quantization"),
    ],
)
def test_gpu_equals_reference_bin_for_bin(rng, method, flavor):
    hists = _batch(rng, 2100)
    params = (
        {"percentile": float(rng.choice([99.9, 99.99, 99.999]))} if method == "percentile" else {}
    )
    if method == "mse":
        hists = dict(list(hists.items())[:700])
    g = trtcal.search_ranges(hists, method, flavor, device="cuda", **params).ranges[method]
    c = trtcal.search_ranges(hists, method, flavor, device="cpu", **params).ranges[method]
    bad = [n for n in hists if (g[n].status, g[n].bin) != (c[n].status, c[n].bin)]
    assert not bad, f"{len(bad)} differ, e.g. {bad[:5]}"
    for n in hists:
        if c[n].curve is not None and g[n].curve is not None:
            fin = np.isfinite(c[n].curve)
            assert np.array_equal(fin, np.isfinite(g[n].curve))
            np.testing.assert_allclose(g[n].curve[fin], c[n].curve[fin], rtol=1e-9, atol=1e-12)


@pytest.mark.gpu
@pytest.mark.parametrize("bins", [1909, 1935, 1961, 1962, 3990, 4040, 4094])
def test_gpu_shared_memory_edge(rng, bins):
    """Batches whose largest histogram puts a kernel's dynamic shared memory just under 48 KB:
    with its static shared memory the block passes 48 KB, which needs the opt-in. These
    launches failed with cudaErrorInvalidValue (seen intermittently in two-rank calibrations of
    ~1900-bin histograms) while only the dynamic part was tested against 48 KB."""
    hists = {
        f"t{t}.{KINDS[t % 4]}": random_hist(rng, KINDS[t % 4], n)
        for t, n in enumerate([bins, 128, 1000, bins])
    }
    signed = {
        f"s{t}.{KINDS[t % 4]}": random_hist(rng, KINDS[t % 4], n, True)
        for t, n in enumerate([2 * (bins // 2), 256, 2 * bins])
    }
    cases = [
        (hists, "entropy", "pytorch_quantization"),
        (hists, "mse", "pytorch_quantization"),
        (signed, "entropy", "onnxruntime"),
    ]
    for hs, method, flavor in cases:
        g = trtcal.search_ranges(hs, method, flavor, device="cuda").ranges[method]
        c = trtcal.search_ranges(hs, method, flavor, device="cpu").ranges[method]
        bad = [n for n in hs if (g[n].status, g[n].bin) != (c[n].status, c[n].bin)]
        assert not bad, (method, flavor, bad)


@pytest.mark.gpu
def test_gpu_onnxruntime_equals_reference(rng):
    hists = _batch(rng, 600, signed=True)
    for method in ("entropy", "percentile"):
        g = trtcal.search_ranges(hists, method, "onnxruntime", device="cuda").ranges[method]
        c = trtcal.search_ranges(hists, method, "onnxruntime", device="cpu").ranges[method]
        bad = [
            n
            for n in hists
            if (g[n].status, g[n].bin, g[n].amax) != (c[n].status, c[n].bin, c[n].amax)
            and not (math.isnan(g[n].amax) and math.isnan(c[n].amax))
        ]
        assert not bad, f"{method}: {len(bad)} differ, e.g. {bad[:5]}"


@pytest.mark.gpu
def test_gpu_mse_fine_grid_equals_reference(rng):
    hists = _batch(rng, 60)
    g = trtcal.search_ranges(hists, "mse", device="cuda", candidates_per_bin=4).ranges["mse"]
    c = trtcal.search_ranges(hists, "mse", device="cpu", candidates_per_bin=4).ranges["mse"]
    assert all((g[n].status, g[n].bin) == (c[n].status, c[n].bin) for n in hists)


@pytest.mark.gpu
def test_gpu_collectors_read_in_place(rng):
    cp = pytest.importorskip("cupy")
    cols = {}
    for t in range(40):
        x = cp.asarray(rng.standard_t(3, int(rng.integers(1000, 300000))).astype(np.float32))
        c = trtcal.HistogramCollector(int(rng.choice([256, 2048, 4096])), name=f"c{t}")
        c.update(x)
        cols[c.name] = c
    for m in ("entropy", "percentile", "mse", "minmax"):
        g = trtcal.compute_amax(cols, m, device="cuda")
        h = trtcal.compute_amax({n: c.histogram() for n, c in cols.items()}, m, device="cpu")
        assert g == h


SHAPES = [
    "auto",
    "threads=128,group=1,chunk=128",
    "group=32,chunk=3",
    "threads=96,group=8,chunk=1000",
    "group=2,chunk=1",
    "threads=32,group=16,chunk=5",
    "threads=512,group=16,chunk=40",
]


@pytest.mark.gpu
def test_gpu_launch_shapes_equal_reference(rng, monkeypatch):
    # every launch shape (threads per candidate, candidates per block, partial last rounds) gives
    # the reference's bins (explicit groups are clamped per method: entropy splits over warps);
    # "auto" covers the shapes the binding picks for 1, 5 and 120 tensors. The CPU oracle does
    # not depend on the shape: computed once per (set, method).
    hists = _batch(rng, 120)
    sets = (
        [hists]
        + [dict(list(hists.items())[k : k + 1]) for k in range(7)]
        + [dict(list(hists.items())[7:12])]
    )
    methods = (
        ("entropy", "pytorch_quantization"),
        ("entropy", "tensorrt"),
        ("mse", None),
        ("percentile", None),
    )
    oracle = {
        (i, m, f): trtcal.search_ranges(hs, m, f, device="cpu").ranges[m]
        for i, hs in enumerate(sets)
        for m, f in methods
    }
    signed = _batch(rng, 40, signed=True)
    signed_oracle = trtcal.search_ranges(signed, "entropy", "onnxruntime", device="cpu").ranges[
        "entropy"
    ]
    for shape in SHAPES:
        if shape == "auto":
            monkeypatch.delenv("TRTCAL_RANGE_SEARCH_SHAPE", raising=False)
        else:
            monkeypatch.setenv("TRTCAL_RANGE_SEARCH_SHAPE", shape)
        for i, hs in enumerate(sets):
            for m, f in methods:
                g = trtcal.search_ranges(hs, m, f, device="cuda").ranges[m]
                c = oracle[(i, m, f)]
                bad = [n for n in hs if (g[n].status, g[n].bin) != (c[n].status, c[n].bin)]
                assert not bad, f"{shape} {m}: {len(bad)} differ, e.g. {bad[:5]}"
        g = trtcal.search_ranges(signed, "entropy", "onnxruntime", device="cuda").ranges["entropy"]
        assert all(
            (g[n].status, g[n].bin) == (signed_oracle[n].status, signed_oracle[n].bin)
            for n in signed
        ), shape


@pytest.mark.gpu
def test_gpu_plan_is_relaunchable(rng):
    # launches leave the per-tensor counters at zero: the same plan gives the same answer again
    from trtcal.core._backend import require_cuda
    from trtcal.core.range_search import _GpuBatch, _items, _prepare, _spec

    hists = _batch(rng, 30)
    items, _ = _items(hists)
    s = _spec("entropy", None, {})
    jobs = [
        j
        for j in (_prepare(it, s) for it in items)
        if not isinstance(j, trtcal.core.range_search.TensorRange)
    ]
    ext = require_cuda("the relaunch test")
    stream = ext.PrivateStream(0)
    batch = _GpuBatch(jobs, s, 0, stream=stream.handle)
    first = None
    for _ in range(3):
        batch.launch(stream.handle)
        got = [(r.bin, r.status) for r in batch.results(stream.handle, with_curve=False)]
        first = first or got
        assert got == first
    cpu = trtcal.search_ranges(hists, "entropy", device="cpu").ranges["entropy"]
    assert [(cpu[j.item.name].bin, cpu[j.item.name].status) for j in jobs] == first
