"""Exact percentile of one array of any size: :func:`percentile`.

Device arrays use a radix select on order-preserving 32-bit keys (csrc/kernels/select.cu).
Arrays of 2^16 values or more are read ONCE: a sample of up to 2^19 keys (up to 2^16 runs of 8
at hashed offsets, at most a quarter of the array) gives, on the device, a key interval that
holds the wanted ranks with near certainty (a 6-sigma margin on the sample ranks); one pass
counts the keys below the interval and compacts the keys inside it; the host then checks that
the wanted ranks did fall inside and resolves them on that small buffer. When they did not
(adversarial data, many NaNs, a buffer overflow), or for small arrays, the two-pass select runs:
one histogram pass of the top 12 key bits, one pass that compacts the keys of the chosen
bucket(s). Either way the result is the exact order statistic(s), interpolated exactly as
``numpy.percentile`` does in float64. Host arrays use ``numpy.percentile`` in float64.
``torch.quantile`` refuses inputs above 2^24 elements; this has no size limit.
"""

from __future__ import annotations

import math
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import numpy as np

from ._arrays import as_view
from ._backend import require_cuda
from .ordered_float import from_ordered

_INTERPOLATIONS = ("linear", "lower", "higher", "nearest", "midpoint")
_TOP_SHIFT = 20  # pass 1: key bits 31..20 (12 bits)
_BRACKET_MIN_N = 1 << 16  # smaller arrays take the two-pass select (one host wait per pass)
_SAMPLE_RUNS = 1 << 16  # sample: at most this many runs of 8 consecutive values (kSelectSampleRun)
_SAMPLE_SHIFT = 5  # and at most n >> 5 runs: a quarter of the array
_SAMPLE_SIGMAS = 6.0  # margin on the sample ranks, in standard deviations (select.h)
_GROUP_SPAN = 0.01  # wanted ranks within this fraction of n share one bracketed pass
_CAPACITY_SHIFT = 4  # the compaction buffer holds max(_MIN_CAPACITY, n >> 4) keys
_MIN_CAPACITY = 1 << 20
# how many times each path ran (tests look at it)
_path_counts = {"bracketed": 0, "two_pass": 0}


def percentile(
    x: Any,
    q: Union[float, Sequence[float]],
    abs: bool = True,  # noqa: A002 - the public spelling
    *,
    interpolation: str = "linear",
    nonfinite: str = "raise",
    stream: Any = None,
    name: str = "x",
) -> Union[float, np.ndarray]:
    """Exact q-th percentile of |x| (``abs=True``) or x, like ``numpy.percentile``.

    Parameters
    ----------
    x : array, any shape, float32 / float16 / bfloat16 (NumPy or device array)
    q : float or sequence of floats in [0, 100]
    abs : take |x| first (the calibration amax convention)
    interpolation : 'linear' (default, as NumPy and torch.quantile), 'lower', 'higher',
        'nearest', 'midpoint'
    nonfinite : 'raise' (ValueError naming the tensor when it holds NaN) or 'ignore'
        (NaNs are dropped). +-Inf are ordinary order statistics.

    Returns
    -------
    float, or a float64 array for a sequence q. Waits for the stream.

    A device array of 2^16 values or more is read once (a sampled bracket, checked exactly;
    docs/range-search.md); the compaction buffer it uses is kept per thread and device for
    the next call: up to n/4 bytes for the largest n seen.
    """
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(
            f"trtcal: interpolation must be one of {_INTERPOLATIONS}, got {interpolation!r}"
        )
    if nonfinite not in ("raise", "ignore"):
        raise ValueError(f"trtcal: nonfinite must be 'raise' or 'ignore', got {nonfinite!r}")
    qs = np.atleast_1d(np.asarray(q, dtype=np.float64))
    if qs.ndim != 1 or np.any(~np.isfinite(qs)) or np.any(qs < 0) or np.any(qs > 100):
        raise ValueError(f"trtcal: percentile q must be in [0, 100], got {q!r}")
    view = as_view(x, name, stream)
    if view.size == 0:
        raise ValueError(f"trtcal: tensor '{name}' is empty: it has no percentile")
    view.memory_order()
    if view.on_device:
        out = _device_percentiles(view, qs, abs, interpolation, nonfinite, name)
    else:
        v = np.asarray(view.host, dtype=np.float64).ravel()
        nan = int(np.isnan(v).sum())
        _check_nan(nan, nonfinite, name)
        v = v[~np.isnan(v)]
        if v.size == 0:
            raise ValueError(f"trtcal: tensor '{name}' has only NaN values")
        if abs:
            v = np.abs(v)
        out = np.percentile(v, qs, method=interpolation)  # type: ignore[call-overload]  # a str method
    out = np.asarray(out, dtype=np.float64)
    return float(out[0]) if np.ndim(q) == 0 else out


def _check_nan(nan: int, policy: str, name: str) -> None:
    if nan and policy == "raise":
        raise ValueError(
            f"trtcal: tensor '{name}' has {nan} NaN values (pass nonfinite='ignore' to drop them)"
        )


def key_to_float(key: int, use_abs: bool) -> float:
    """Inverse of the kernels' key map (select.h)."""
    bits = np.array([key], dtype=np.uint32)
    return float((bits if use_abs else from_ordered(bits)).view(np.float32)[0])


def virtual_index(n: int, q: float) -> float:
    """NumPy's 'linear' position of percentile q among n sorted values."""
    return (n - 1) * (q / 100.0)


def lerp(a: float, b: float, t: float) -> float:
    """numpy's _lerp in float64."""
    d = b - a
    return b - d * (1 - t) if t >= 0.5 else a + d * t


class _Selector:
    """Drives the select passes over one device array."""

    def __init__(self, view, use_abs: bool) -> None:
        self.ext = require_cuda("an exact percentile of a device array")
        self.view, self.abs = view, use_abs
        self.dev, self.stream = view.device, view.stream
        self.hist = np.asarray(
            self.ext.select_histogram(
                view.ptr,
                view.dtype_code,
                0,
                view.size,
                use_abs,
                _TOP_SHIFT,
                12,
                32,
                0,
                self.stream,
                self.dev,
            ),
            dtype=np.int64,
        )
        self.cum = np.concatenate(([0], np.cumsum(self.hist)))
        self.nan = int(self.hist[-1])  # NaN keys are 0xffffffff; no other key reaches bucket 4095
        self.buf = None
        self.buf_range = None

    def _bucket(self, k: int):
        b = int(np.searchsorted(self.cum, k, side="right") - 1)
        return b, k - int(self.cum[b])

    def values(self, ranks: List[int]) -> List[float]:
        """Exact values at 0-based ranks (ascending keys)."""
        buckets = [self._bucket(k) for k in ranks]
        lo_b = min(b for b, _ in buckets)
        hi_b = max(b for b, _ in buckets)
        m = int(self.cum[hi_b + 1] - self.cum[lo_b])
        ext = self.ext
        # the thread's cached compaction buffer (grown and kept): no allocation per call
        keys_ptr = ext.select_key_buffer(m, self.dev)
        got = ext.select_compact(
            self.view.ptr,
            self.view.dtype_code,
            0,
            self.view.size,
            self.abs,
            lo_b << _TOP_SHIFT,
            ((hi_b + 1) << _TOP_SHIFT) - 1,
            keys_ptr,
            self.stream,
            self.dev,
        )
        if got != m:
            raise RuntimeError(f"trtcal: select compaction found {got} keys, expected {m}")
        base = int(self.cum[lo_b])
        return [key_to_float(self._select_in(keys_ptr, m, k - base), self.abs) for k in ranks]

    def _select_in(self, keys_ptr: int, m: int, k: int) -> int:
        """Key of rank k among the m keys at keys_ptr: 12 + 12 + 8 bits."""
        return select_in(self.ext, keys_ptr, m, k, self.abs, self.stream, self.dev)[0]


def select_in(
    ext,
    keys_ptr: int,
    m: int,
    k: int,
    use_abs: bool,
    stream: int,
    dev: int,
    want_next: bool = False,
) -> Tuple[int, Optional[int]]:
    """Key of rank k among the m keys at keys_ptr (12 + 12 + 8 bits, one histogram pass each)
    and, with ``want_next``, the key of rank k + 1 when the last pass already shows it
    (else None)."""
    prefix, prefix_shift = 0, 32
    h = cum = np.zeros(0, np.int64)
    for shift, bits in ((20, 12), (8, 12), (0, 8)):
        h = np.asarray(
            ext.select_histogram(
                0, 0, keys_ptr, m, use_abs, shift, bits, prefix_shift, prefix, stream, dev
            ),
            dtype=np.int64,
        )
        cum = np.cumsum(h)
        b = int(np.searchsorted(cum, k, side="right"))
        k -= int(cum[b - 1]) if b > 0 else 0
        prefix = (prefix << bits) | b if prefix_shift < 32 else b
        prefix_shift = shift
    nxt = None
    if want_next:
        b = prefix & 0xFF
        if k + 1 < int(h[b]):
            nxt = prefix
        else:
            above = np.flatnonzero(h[b + 1 :])
            if above.size:
                nxt = (prefix & ~0xFF) | (b + 1 + int(above[0]))
    return prefix, nxt


def _ranks(
    n: int, q: float, interpolation: str
) -> Tuple[List[int], Callable[[List[float]], float]]:
    """The 0-based ranks (ascending) that percentile q of n values needs, and how to combine
    their values, as numpy.percentile does."""
    vi = virtual_index(n, float(q))
    lo = int(math.floor(vi))
    if interpolation == "lower":
        return [lo], lambda v: v[0]
    if interpolation == "higher":
        return [int(math.ceil(vi))], lambda v: v[0]
    if interpolation == "nearest":
        return [int(np.around(vi))], lambda v: v[0]
    g = vi - lo
    if interpolation == "midpoint":
        g = 0.0 if g == 0 else 0.5
    hi = min(lo + 1, n - 1)
    return [lo, hi], lambda v: lerp(v[0], v[1], g)


def _bracketed(
    view, qs: np.ndarray, use_abs: bool, interpolation: str, nonfinite: str, name: str
) -> List[Optional[float]]:
    """Percentiles by one bracketed pass per group of nearby ranks; None where the wanted
    ranks fell outside the bracket (the caller runs the two-pass select for those)."""
    ext = require_cuda("an exact percentile of a device array")
    size = view.size
    capacity = min(size, max(_MIN_CAPACITY, size >> _CAPACITY_SHIFT))
    runs = max(1, min(_SAMPLE_RUNS, size >> _SAMPLE_SHIFT))
    # (index, ranks, combine) of each q, ranks as if there were no NaN, grouped by nearness
    plans = sorted(
        ((i,) + _ranks(size, q, interpolation) for i, q in enumerate(qs)), key=lambda p: p[1]
    )
    groups: List[list] = []
    for plan in plans:
        if (
            groups
            and max(plan[1]) - groups[-1][0][1][0] <= _GROUP_SPAN * size
            and len(groups[-1]) < 32
        ):
            groups[-1].append(plan)
        else:
            groups.append([plan])
    out: List[Optional[float]] = [None] * len(qs)
    for group in groups:
        wanted = sorted({r for _, ranks, _ in group for r in ranks})
        t_lo, t_hi = wanted[0] / size, min(1.0, (wanted[-1] + 1) / size)
        below, equal, inside, nan, lo, _hi, keys_ptr, found = ext.select_bracket(
            view.ptr,
            view.dtype_code,
            size,
            use_abs,
            runs,
            t_lo,
            t_hi,
            _SAMPLE_SIGMAS,
            capacity,
            wanted,
            view.stream,
            view.device,
        )
        _path_counts["bracketed"] += 1
        _check_nan(nan, nonfinite, name)
        n = size - nan
        if n <= 0:
            raise ValueError(f"trtcal: tensor '{name}' has only NaN values")
        if nan == 0:  # the ranks asked for are the ranks wanted: resolved on the device
            key_of = {r: (k if status == 0 else None) for r, (status, k) in zip(wanted, found)}
            for i, ranks, combine in group:
                found_keys = [key_of[r] for r in ranks]
                if all(k is not None for k in found_keys):
                    out[i] = combine([key_to_float(int(k), use_abs) for k in found_keys])  # type: ignore[arg-type]
            continue
        # NaNs dropped: the ranks among the n non-NaN keys differ from those asked for;
        # resolve them on the compacted buffer from the host
        stored = inside if inside <= capacity else -1  # -1: the buffer overflowed

        def key_at(
            r: int,
            want_next: bool,
            below: int = below,
            equal: int = equal,
            lo: Optional[int] = lo,
            stored: int = stored,
            keys_ptr: int = keys_ptr,
        ) -> Tuple[Optional[int], Optional[int]]:
            if r < below:
                return None, None
            if r < below + equal:
                return lo, (lo if r + 1 < below + equal else None)
            j = r - below - equal
            if j >= stored:
                return None, None
            return select_in(ext, keys_ptr, stored, j, use_abs, view.stream, view.device, want_next)

        for i, _, _ in group:
            ranks, combine = _ranks(n, qs[i], interpolation)
            keys: List[Optional[int]] = []
            nxt: Optional[int] = None
            for j, r in enumerate(ranks):
                if j == 1 and r == ranks[0]:
                    keys.append(keys[0])  # the top rank: lo == hi
                elif j == 1 and nxt is not None:
                    keys.append(nxt)  # rank + 1, seen by the last select pass
                else:
                    k, nxt = key_at(r, want_next=len(ranks) > 1)
                    keys.append(k)
            if all(k is not None for k in keys):
                out[i] = combine([key_to_float(int(k), use_abs) for k in keys])  # type: ignore[arg-type]
    return out


def _device_percentiles(
    view, qs: np.ndarray, use_abs: bool, interpolation: str, nonfinite: str, name: str
) -> np.ndarray:
    out: List[Optional[float]] = [None] * len(qs)
    if view.size >= _BRACKET_MIN_N:
        out = _bracketed(view, qs, use_abs, interpolation, nonfinite, name)
    if all(v is not None for v in out):
        return np.asarray(out, dtype=np.float64)
    sel = _Selector(view, use_abs)
    _path_counts["two_pass"] += 1
    _check_nan(sel.nan, nonfinite, name)
    n = view.size - sel.nan
    if n <= 0:
        raise ValueError(f"trtcal: tensor '{name}' has only NaN values")
    for i, q in enumerate(qs):
        if out[i] is None:
            ranks, combine = _ranks(n, q, interpolation)
            out[i] = combine(sel.values(ranks))
    return np.asarray(out, dtype=np.float64)
