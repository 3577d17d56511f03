"""The exact percentile's host-side logic (python/trtcal/core/percentile.py) on the CPU: grouping of
nearby ranks, the checks that the wanted ranks fell inside the sampled bracket, the NaN path,
the rank + 1 shortcut and the two-pass fallback, driven through a NumPy model of the select
kernels whose contract csrc/kernels/select.h states. The kernels themselves are checked on
the GPU (test_percentile.py); this pins the decisions around them in CI, where no GPU is."""

import math

import numpy as np
import pytest

from trtcal.core import percentile as P

NAN_KEY = 0xFFFFFFFF


def keys_of(x: np.ndarray, use_abs: bool) -> np.ndarray:
    """select.h's key map: unsigned order = order of |x| or x, NaN above all."""
    u = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    k = (u & 0x7FFFFFFF) if use_abs else np.where(u & 0x80000000, (~u) & 0xFFFFFFFF, u | 0x80000000)
    return np.where(np.isnan(x), NAN_KEY, k).astype(np.uint64)


class KernelModel:
    """select_histogram / select_compact / select_bracket as select.h defines them (the
    sample's offsets come from a generator here instead of the kernel's hash)."""

    def __init__(self, rng):
        self.rng = rng
        self.mem = {}
        self.brackets = []

    def put(self, x: np.ndarray) -> int:
        ptr = 0x1000 * (len(self.mem) + 1)
        self.mem[ptr] = x
        return ptr

    def select_histogram(
        self, x, dtype, keys, n, use_abs, shift, bits, prefix_shift, prefix, stream, dev
    ):
        k = self.mem[keys][:n] if keys else keys_of(self.mem[x], use_abs)
        if prefix_shift < 32:
            k = k[(k >> prefix_shift) == prefix]
        return np.bincount(((k >> shift) & ((1 << bits) - 1)).astype(np.int64), minlength=1 << bits)

    def select_compact(self, x, dtype, keys, n, use_abs, lo, hi, out, stream, dev):
        k = keys_of(self.mem[x], use_abs)
        self.mem[out] = k[(k >= lo) & (k <= hi)]
        return int(self.mem[out].size)

    def select_key_buffer(self, count, dev):
        """The thread's cached compaction buffer (select_compact fills it)."""
        self.key_buffers = getattr(self, "key_buffers", 0) + 1
        return self.put(np.zeros(0, np.uint64))

    def select_bracket(
        self, x, dtype, n, use_abs, runs, t_lo, t_hi, sigmas, capacity, ranks, stream, dev
    ):
        k = keys_of(self.mem[x], use_abs)
        run = 8
        slice_ = n // runs
        starts = np.arange(runs) * slice_ + self.rng.integers(0, slice_ - run + 1, runs)
        sample = k[(starts[:, None] + np.arange(run)).ravel()]
        h16 = np.bincount((sample >> 16).astype(np.int64), minlength=65536)
        cum = np.cumsum(h16)
        m = float(cum[-1] - h16[0xFFFF])

        def margin(q):
            return sigmas * math.sqrt(m * q * (1 - q) * run) + 4 * run

        r_lo, r_hi = math.floor(t_lo * m - margin(t_lo)), math.ceil(t_hi * m + margin(t_hi))
        bucket = lambda r: int(np.searchsorted(cum, r, side="right"))  # noqa: E731
        lo = 0 if r_lo <= 0 else bucket(r_lo) << 16
        hi = NAN_KEY if r_hi >= m else (bucket(r_hi) << 16) | 0xFFFF
        nan = int((k == NAN_KEY).sum())
        below, equal = int((k < lo).sum()), int((k == lo).sum())
        inside = k[(k > lo) & (k <= hi) & (k != NAN_KEY)]
        kept = self.put(inside[:capacity])
        found = []
        for r in ranks:  # select_resolve: status 0 and the key, or 1 outside the bracket
            if (
                r < below
                or r >= below + equal + inside.size
                or (r >= below + equal and inside.size > capacity)
            ):
                found.append((1, lo))
            elif r < below + equal:
                found.append((0, lo))
            else:
                found.append((0, int(np.sort(inside)[r - below - equal])))
        self.brackets.append((lo, hi, below, equal, inside.size))
        return below, equal, int(inside.size), nan, lo, hi, kept, found


class View:
    def __init__(self, model: KernelModel, x: np.ndarray):
        self.ptr, self.size, self.dtype_code, self.stream, self.device = (
            model.put(x),
            x.size,
            0,
            0,
            0,
        )
        self.on_device = True


@pytest.fixture
def model(rng, monkeypatch):
    m = KernelModel(rng)
    monkeypatch.setattr(P, "require_cuda", lambda what: m)
    monkeypatch.setattr(P, "_SAMPLE_RUNS", 1 << 12)  # a smaller sample for 2^16-value arrays
    monkeypatch.setattr(P, "_MIN_CAPACITY", 1 << 12)
    monkeypatch.setattr(P, "_BRACKET_MIN_N", 1 << 15)
    return m


def _inputs(rng, n):
    x = rng.standard_normal(n).astype(np.float32)
    yield "normal", x
    yield "student-t", rng.standard_t(2.5, n).astype(np.float32)
    yield "relu", np.maximum(x, 0)
    yield "rounded", np.round(x * 4)
    nan = x.copy()
    nan[rng.random(n) < 0.3] = np.nan
    yield "30% NaN", nan


@pytest.mark.parametrize("interp", ["linear", "lower", "higher", "nearest", "midpoint"])
def test_bracketed_driver_is_exact(rng, model, interp):
    n = (1 << 16) + int(rng.integers(1, 999))
    qs = np.array([0.0, 0.5, 50.0, 99.0, 99.9, 99.99, 100.0, float(rng.uniform(0, 100))])
    for label, x in _inputs(rng, n):
        for use_abs in (True, False):
            v = x[~np.isnan(x)].astype(np.float64)
            v = np.abs(v) if use_abs else v
            before = P._path_counts["bracketed"]
            got = P._device_percentiles(View(model, x), qs, use_abs, interp, "ignore", "x")
            np.testing.assert_array_equal(
                got, np.percentile(v, qs, method=interp), err_msg=f"{label} {use_abs}"
            )
            assert P._path_counts["bracketed"] > before


def test_ordinary_data_needs_one_pass_per_group(rng, model):
    n = (1 << 16) + 5
    x = rng.standard_normal(n).astype(np.float32)
    before = dict(P._path_counts)
    P._device_percentiles(
        View(model, x), np.array([99.9, 99.99, 99.999]), True, "linear", "raise", "x"
    )
    assert (
        P._path_counts["bracketed"] == before["bracketed"] + 1
    )  # three q within 1% of n: one bracket
    assert P._path_counts["two_pass"] == before["two_pass"]
    P._device_percentiles(View(model, x), np.array([1.0, 50.0, 99.0]), True, "linear", "raise", "x")
    assert P._path_counts["bracketed"] == before["bracketed"] + 4  # far apart: one each


def test_misses_fall_back_exactly(rng, model, monkeypatch):
    n = (1 << 16) + 3
    x = rng.standard_t(3, n).astype(np.float32)
    v = np.abs(x.astype(np.float64))
    monkeypatch.setattr(P, "_SAMPLE_SIGMAS", 0.0)  # no margin: brackets miss
    monkeypatch.setattr(P, "_MIN_CAPACITY", 8)
    monkeypatch.setattr(P, "_CAPACITY_SHIFT", 40)  # 8 keys: the buffer overflows
    before = P._path_counts["two_pass"]
    qs = np.array([10.0, 50.0, 99.0, 99.99])
    np.testing.assert_array_equal(
        P._device_percentiles(View(model, x), qs, True, "linear", "raise", "x"),
        np.percentile(v, qs),
    )
    assert P._path_counts["two_pass"] > before


def test_nan_raises_naming_the_tensor(rng, model):
    x = rng.standard_normal((1 << 16) + 1).astype(np.float32)
    x[77] = np.nan
    with pytest.raises(ValueError, match="'acts' has 1 NaN"):
        P._device_percentiles(View(model, x), np.array([99.9]), True, "linear", "raise", "acts")
    x[:] = np.nan
    with pytest.raises(ValueError, match="'acts' has only NaN"):
        P._device_percentiles(View(model, x), np.array([99.9]), True, "linear", "ignore", "acts")
