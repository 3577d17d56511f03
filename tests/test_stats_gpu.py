"""GPU statistics kernels against the NumPy float64 reference: counts must match exactly."""

import numpy as np
import pytest
from test_stats_cpu import DISTS, draw

import trtcal
from trtcal import reference

pytestmark = pytest.mark.gpu
cp = pytest.importorskip("cupy") if trtcal.cuda_available() else None


def ref_state(batches, bins=2048, signed=False):
    s = reference.histogram_state_new(bins, signed)
    for b in batches:
        reference.histogram_state_update(s, b)
    return s


def assert_same_state(gpu, ref):
    np.testing.assert_array_equal(gpu["counts"], ref["counts"])
    for k in ("exponent", "amax", "min", "max", "finite", "nan", "posinf", "neginf"):
        assert gpu[k] == ref[k], (k, gpu[k], ref[k])


@pytest.mark.parametrize("dist", DISTS)
@pytest.mark.parametrize("n", [1, 37, 4099, 1000003])
@pytest.mark.parametrize("signed", [False, True])
def test_histogram_counts_equal_reference(rng, dist, n, signed):
    x = draw(rng, dist, n)
    h = trtcal.histogram(cp.asarray(x), signed=signed)
    r = trtcal.histogram(x, signed=signed)
    np.testing.assert_array_equal(h.counts, r.counts)
    assert (h.range, h.amax, h.total) == (r.range, r.amax, r.total)


@pytest.mark.parametrize("bins", [1, 2, 100, 1000, 2048, 4096, 12345 * 2, 65536, 1 << 20])
def test_bin_counts_and_paths(rng, bins):
    # 65536+ bins exceed the shared-memory budget: global-atomic path; odd counts: float64 path
    signed = bins % 2 == 0 and bins > 2
    x = draw(rng, "student_t", 300007)
    g = trtcal.HistogramCollector(bins, signed, device="cuda")
    g.update(cp.asarray(x))
    assert_same_state(g.state_dict(), ref_state([x], bins, signed))


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_streaming_equals_reference_every_dtype(rng, dtype):
    torch = pytest.importorskip("torch")
    tdt = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]
    batches = [
        torch.from_numpy(draw(rng, d, int(rng.integers(1, 200000)))).to("cuda", tdt)
        * float(10.0 ** rng.uniform(-3, 3))
        for d in DISTS * 2
    ]
    g = trtcal.HistogramCollector(device="cuda", name="t")
    for b in batches:
        g.update(b)  # bfloat16 goes through DLPack; others through the array interface
    host = [b.float().cpu().numpy() for b in batches]
    assert_same_state(g.state_dict(), ref_state(host))


def test_order_and_batch_size_independence(rng):
    x = draw(rng, "outliers", 2_000_003)
    states = []
    for _ in range(3):
        perm = rng.permutation(x.size)
        cuts = np.sort(
            rng.choice(np.arange(1, x.size), size=int(rng.integers(1, 50)), replace=False)
        )
        g = trtcal.HistogramCollector(device="cuda")
        for part in np.split(x[perm], cuts):
            g.update(cp.asarray(part))
        states.append(g.state_dict())
    for s in states[1:]:
        assert_same_state(s, states[0])
    assert_same_state(states[0], ref_state([x]))


def test_growth_many_doublings_and_zero_batches(rng):
    batches = [np.zeros(1000, np.float32)] + [
        draw(rng, "normal", 5000) * np.float32(10.0**k) for k in (-30, -5, 0, 4, 30)
    ]
    batches.insert(3, np.zeros(17, np.float32))
    for signed in (False, True):
        g = trtcal.HistogramCollector(2048, signed, device="cuda")
        for b in batches:
            g.update(cp.asarray(b))
        assert_same_state(g.state_dict(), ref_state(batches, 2048, signed))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_16bit_word_path_boundaries(rng, dtype):
    # float16 / bfloat16 |x| updates with a known range fold two values per 32-bit word; the
    # rare values (at/above the range, non-finite) of either half take the per-value fold.
    torch = pytest.importorskip("torch")
    tdt = getattr(torch, dtype)
    info = torch.finfo(tdt)
    exps = [-20, -14, -8, -1, 0, 3, 11, 15] + ([16, 40, 120] if dtype == "bfloat16" else [])
    for e in exps:
        scale = 2.0**e
        base = rng.standard_normal(4099) * scale / 8
        base[0] = scale * 0.75  # sets the range to 2^e
        tiny = np.array([info.tiny, info.tiny / 4, info.smallest_normal / 2**3, 0.0, -0.0])
        below = np.nextafter(np.float32(min(scale, float(info.max))), np.float32(0))
        mixed = np.concatenate([rng.standard_normal(3001) * scale / 4, tiny, [below, -below]])
        mixed = np.clip(mixed, -float(info.max), float(info.max))
        grow = mixed.copy()
        grow[rng.choice(grow.size, 7, replace=False)] = scale * rng.choice([1.0, 1.5, 2.0, 3.99], 7)
        bad = mixed.copy()
        bad[[5, 6, 100, 101, 102]] = [np.nan, np.inf, -np.inf, np.nan, scale / 2]
        batches = [
            torch.tensor(b, dtype=torch.float64).to(tdt).cuda() for b in (base, mixed, grow, bad)
        ]
        batches += [batches[1][1:], batches[2][3:-1], batches[3][7:-5]]  # unaligned heads and tails
        g = trtcal.HistogramCollector(device="cuda", name=f"{dtype} 2^{e}")
        host = []
        for b in batches:
            g.update(b)  # non-finite values are counted, never binned
            host.append(b.float().cpu().numpy())
        assert_same_state(g.state_dict(), ref_state(host))


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_one_rare_value_at_every_vector_position(rng, dtype):
    # Pass 1 tests each 16-byte vector once for rare values (non-finite, at or beyond the range)
    # and sends a vector holding one through the per-value fold: a rare value at any position,
    # the other values of its vector ordinary, must give the reference's state.
    torch = pytest.importorskip("torch")
    tdt = getattr(torch, dtype)
    per_vec = 16 // torch.tensor([], dtype=tdt).element_size()
    first = torch.tensor(rng.standard_normal(4096) * 0.5, dtype=tdt).cuda()
    first[0] = 3.0  # range [0, 4)
    for pos in range(per_vec):
        for rare in (float("nan"), float("inf"), float("-inf"), 4.0, -4.0, 6.5, -1000.0):
            x = torch.tensor(rng.standard_normal(64 * per_vec + 3) * 0.5, dtype=tdt).cuda()
            base = x.data_ptr() % 16 // x.element_size()
            head = (per_vec - base) % per_vec  # index of the first element of an aligned vector
            x[[head + v * per_vec + pos for v in (0, 5, 31)]] = rare
            g = trtcal.HistogramCollector(device="cuda", name=f"{dtype} {pos} {rare}")
            g.update(first)
            g.update(x)
            assert_same_state(
                g.state_dict(), ref_state([first.float().cpu().numpy(), x.float().cpu().numpy()])
            )


def test_denormals_and_extremes(rng):
    tiny = (rng.standard_normal(10001) * 1e-41).astype(np.float32)  # subnormal float32
    huge = np.array([3.0e38, -3.3e38, 1.0], np.float32)
    for signed in (False, True):
        for batches in ([tiny], [tiny, huge], [huge, tiny]):
            g = trtcal.HistogramCollector(2048, signed, device="cuda")
            for b in batches:
                g.update(cp.asarray(b))
            assert_same_state(g.state_dict(), ref_state(batches, 2048, signed))


def test_nonfinite_counted(rng):
    x = draw(rng, "normal", 100003)
    idx = rng.choice(x.size, 30, replace=False)
    x[idx[:10]] = np.nan
    x[idx[10:15]] = np.inf
    x[idx[15:]] = -np.inf
    g = trtcal.HistogramCollector(device="cuda")
    g.update(cp.asarray(x))
    s = g.state_dict()
    assert (s["nan"], s["posinf"], s["neginf"]) == (10, 5, 15)
    assert_same_state(s, ref_state([x]))
    with pytest.raises(ValueError, match="'acts'.*10 NaN"):
        trtcal.amax(cp.asarray(x), name="acts")


def test_misaligned_views(rng):
    x = draw(rng, "laplace", 100000)
    d = cp.asarray(x)
    for off in range(1, 5):
        h = trtcal.histogram(d[off:])
        np.testing.assert_array_equal(h.counts, trtcal.histogram(x[off:]).counts)
    d16 = cp.asarray(x.astype(np.float16))
    for off in (1, 3, 7):
        lo, hi = trtcal.minmax(d16[off:-off])
        assert (lo, hi) == (
            float(x.astype(np.float16)[off:-off].min()),
            float(x.astype(np.float16)[off:-off].max()),
        )


def test_fixed_range_on_gpu(rng):
    x = draw(rng, "student_t", 1000003)
    for signed in (False, True):
        for bins, R in ((2048, 4.0), (334 if signed else 333, 1.7), (1000, 123.456)):
            h = trtcal.histogram(cp.asarray(x), bins=bins, range=R, signed=signed)
            r = trtcal.histogram(x, bins=bins, range=R, signed=signed)
            np.testing.assert_array_equal(h.counts, r.counts)
            assert h.outside == r.outside


@pytest.mark.parametrize(
    "shape,axis",
    [
        ((32, 64, 28, 28), 1),
        ((32, 64, 28, 28), 0),
        ((7, 11, 13), -1),
        ((1000, 3), 1),
        ((3, 1000003), 0),
        ((5, 2, 600, 3), 2),
    ],
)
def test_minmax_per_channel(rng, shape, axis):
    x = draw(rng, "student_t", int(np.prod(shape))).reshape(shape)
    lo, hi = trtcal.minmax(cp.asarray(x), axis=axis)
    rlo, rhi = trtcal.minmax(x, axis=axis)
    np.testing.assert_array_equal(lo, rlo)
    np.testing.assert_array_equal(hi, rhi)


def test_minmax_channels_last_and_collector(rng):
    torch = pytest.importorskip("torch")
    x = torch.from_numpy(draw(rng, "laplace", 8 * 16 * 9 * 9).reshape(8, 16, 9, 9)).cuda()
    cl = x.to(memory_format=torch.channels_last)  # dense in another order: no copy needed
    np.testing.assert_array_equal(trtcal.amax(cl, axis=1), trtcal.amax(x.cpu().numpy(), axis=1))
    with pytest.raises(ValueError, match="not contiguous"):
        trtcal.amax(x[:, ::2], axis=1, name="sliced")
    c = trtcal.MinMaxCollector(axis=1, device="cuda", name="conv")
    host = []
    for _ in range(4):
        b = torch.from_numpy(draw(rng, "normal", 3 * 16 * 5 * 5).reshape(3, 16, 5, 5)).cuda()
        c.update(b)
        host.append(b.cpu().numpy())
    c.update(np.concatenate(host[:1]))  # a host batch goes through the staging buffer
    r = c.result()
    allx = np.concatenate(host)
    np.testing.assert_array_equal(r["max"], allx.max(axis=(0, 2, 3)))
    np.testing.assert_array_equal(r["amax"], np.abs(allx).max(axis=(0, 2, 3)))


def test_merge_state_round_trip_on_gpu(rng):
    xs = [draw(rng, "student_t", 50000) * np.float32(3.0**k) for k in range(6)]
    a, b = trtcal.HistogramCollector(device="cuda"), trtcal.HistogramCollector(device="cuda")
    for x in xs[:3]:
        a.update(cp.asarray(x))
    for x in xs[3:]:
        b.update(cp.asarray(x))
    a.merge(b)
    assert_same_state(a.state_dict(), ref_state(xs))
    # checkpoint on the GPU, resume on the GPU and on the CPU
    s = a.state_dict()
    g = trtcal.HistogramCollector.from_state_dict(s, device="cuda")
    c = trtcal.HistogramCollector.from_state_dict(s, device="cpu")
    extra = draw(rng, "outliers", 77777) * np.float32(1e4)
    g.update(cp.asarray(extra))
    c.update(extra)
    assert_same_state(g.state_dict(), c.state_dict())


def test_streams_are_the_callers(rng):
    x = draw(rng, "normal", 3_000_001)
    s = cp.cuda.Stream(non_blocking=True)
    with s:
        d = cp.asarray(x)
        g = trtcal.HistogramCollector(device="cuda")
        g.update(d)  # queued on s (CuPy's current stream)
        g.update(d * 2)
    assert_same_state(g.state_dict(), ref_state([x, x * 2]))
    # an explicit stream object and an int handle
    s2 = cp.cuda.Stream(non_blocking=True)
    g.update(d, stream=s2)
    g.update(d, stream=s2.ptr)
    assert g.state_dict()["finite"] == 4 * x.size


class _OnlyCAI:
    """Any object exposing __cuda_array_interface__ (as pycuda's GPUArray does)."""

    def __init__(self, arr):
        self._arr = arr
        self.__cuda_array_interface__ = arr.__cuda_array_interface__


def test_generic_array_interface(rng):
    x = draw(rng, "normal", 12345)
    d = cp.asarray(x)
    cp.cuda.get_current_stream().synchronize()
    np.testing.assert_array_equal(trtcal.histogram(_OnlyCAI(d)).counts, trtcal.histogram(x).counts)


def test_more_than_2_to_31_elements():
    n = (1 << 31) + 37
    base = cp.arange(1024, dtype=cp.float16)  # exact small integers
    x = cp.tile(base, n // 1024 + 1)[:n]
    h = trtcal.histogram(x)  # R = 1024, value v -> bin 2v
    full, rem = divmod(n, 1024)
    expect = np.zeros(2048, np.int64)
    expect[0::2] = full
    expect[0 : 2 * rem : 2] += 1
    np.testing.assert_array_equal(h.counts, expect)
    assert h.total == n
    assert trtcal.minmax(x) == (0.0, 1023.0)
    del x


# Bin counts whose sub-histograms (8, 4, 2 or 1 replicas) take just under 48 KB of dynamic
# shared memory: with the kernel's static shared memory a block passes 48 KB, which needs the
# opt-in (allow_dynamic_smem); testing the dynamic bytes alone made these launches fail.
EDGE_BINS = [49152 // (4 * r) - k for r in (8, 4, 2, 1) for k in (1, 9, 40)]


@pytest.mark.parametrize("bins", EDGE_BINS)
def test_shared_memory_edge_bins(rng, bins):
    x = draw(rng, "laplace", 200003)
    want = ref_state([x], bins)
    g = trtcal.HistogramCollector(bins, device="cuda")
    g.update(cp.asarray(x))
    assert_same_state(g.state_dict(), want)
    m = trtcal.HistogramCollector(bins, device="cuda")
    trtcal.core.collectors.update_many([(m, cp.asarray(x))])
    assert_same_state(m.state_dict(), want)


def test_update_many_equals_reference(rng):
    """Many tensors (mixed dtypes, sizes, bins, signed/abs) in three launches per batch."""
    torch = pytest.importorskip("torch")
    specs = []
    for _ in range(40):
        bins = int(rng.choice([2048, 1000, 128, 4096]))
        specs.append(
            (
                bins,
                bool(rng.integers(0, 2)) and bins % 2 == 0,
                rng.choice([torch.float32, torch.float16, torch.bfloat16]),
            )
        )
    cols = [
        trtcal.HistogramCollector(b, s, device="cuda", name=f"t{i}")
        for i, (b, s, _) in enumerate(specs)
    ]
    host = [[] for _ in specs]
    for batch in range(4):
        pairs = []
        for i, (_b, _s, dt) in enumerate(specs):
            n = int(rng.choice([0, 1, 37, 4099, 300007]))
            x = torch.from_numpy(draw(rng, DISTS[i % 4], max(n, 1))[:n]) * float(
                10.0 ** rng.uniform(-4, 4 + batch)
            )
            x = x.to("cuda", dt)
            pairs.append((cols[i], x))
            host[i].append(x.float().cpu().numpy())
        trtcal.core.collectors.update_many(pairs)
    for i, (b, s, _) in enumerate(specs):
        assert_same_state(cols[i].state_dict(), ref_state(host[i], b, s))


@pytest.mark.parametrize("k", [1, 2, 3])
def test_update_many_small_batches(rng, k):
    """A batch of one tensor (the single-tensor kernels) and batches of a few large tensors
    (split finer than 2^18 values per block so they span the GPU), with a range that grows."""
    cols = [trtcal.HistogramCollector(device="cuda") for _ in range(k)]
    host = [[] for _ in range(k)]
    for scale in (1.0, 1e3):
        pairs = []
        for i in range(k):
            x = draw(rng, DISTS[i % 4], int(rng.integers(1, 3_000_000))) * np.float32(scale)
            pairs.append((cols[i], cp.asarray(x)))
            host[i].append(x)
        trtcal.core.collectors.update_many(pairs)
    for i in range(k):
        assert_same_state(cols[i].state_dict(), ref_state(host[i]))


def test_update_many_orders_with_single_updates(rng):
    x = cp.asarray(draw(rng, "student_t", 100003))
    a = trtcal.HistogramCollector(device="cuda")
    b = trtcal.HistogramCollector(device="cuda")
    y, z = x * 3, x * 0.5
    cp.cuda.get_current_stream().synchronize()  # the data is ready; the state updates are not
    s2 = cp.cuda.Stream(non_blocking=True)
    a.update(x)  # default stream
    trtcal.core.collectors.update_many(
        [(a, y), (b, x)], stream=s2
    )  # another stream: must wait for the first
    a.update(z)  # back on the default stream: must wait for s2
    host = cp.asnumpy(x)
    assert_same_state(a.state_dict(), ref_state([host, host * 3, host * 0.5]))
    assert_same_state(b.state_dict(), ref_state([host]))
