"""Exact percentile of one array of any size: :func:`percentile`.

Device arrays use a radix select on order-preserving 32-bit keys (csrc/kernels/select.cu):
one histogram pass of the top 12 key bits over the whole array, one pass that compacts the
keys of the chosen bucket(s), then histogram passes over that (usually tiny) buffer for the
remaining bits. The result is the exact order statistic(s), interpolated exactly as
``numpy.percentile`` does in float64. Host arrays use ``numpy.percentile`` in float64.
``torch.quantile`` refuses inputs above 2^24 elements; this has no size limit.
"""

from __future__ import annotations

import math
from typing import Any, List, Sequence, Union

import numpy as np

from ._arrays import as_view
from ._backend import require_cuda

_INTERPOLATIONS = ("linear", "lower", "higher", "nearest", "midpoint")
_TOP_SHIFT = 20  # pass 1: key bits 31..20 (12 bits)


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
    """
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(f"trtcal: interpolation must be one of {_INTERPOLATIONS}, got {interpolation!r}")
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
        out = np.percentile(v, qs, method=interpolation)
    out = np.asarray(out, dtype=np.float64)
    return float(out[0]) if np.ndim(q) == 0 else out


def _check_nan(nan: int, policy: str, name: str) -> None:
    if nan and policy == "raise":
        raise ValueError(f"trtcal: tensor '{name}' has {nan} NaN values (pass nonfinite='ignore' to drop them)")


def key_to_float(key: int, use_abs: bool) -> float:
    """Inverse of the kernels' key map (select.h)."""
    if not use_abs:
        key = (key & 0x7FFFFFFF) if key & 0x80000000 else (~key & 0xFFFFFFFF)
    return float(np.array([key], dtype=np.uint32).view(np.float32)[0])


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
        self.hist = np.asarray(self.ext.select_histogram(view.ptr, view.dtype_code, 0, view.size, use_abs,
                                                         _TOP_SHIFT, 12, 32, 0, self.stream, self.dev),
                               dtype=np.int64)
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
        buf = ext.DeviceBuffer(max(4 * m, 4), self.dev)
        got = ext.select_compact(self.view.ptr, self.view.dtype_code, 0, self.view.size, self.abs,
                                 lo_b << _TOP_SHIFT, ((hi_b + 1) << _TOP_SHIFT) - 1, buf.ptr, self.stream, self.dev)
        if got != m:
            raise RuntimeError(f"trtcal: select compaction found {got} keys, expected {m}")
        base = int(self.cum[lo_b])
        return [key_to_float(self._select_in(buf.ptr, m, k - base), self.abs) for k in ranks]

    def _select_in(self, keys_ptr: int, m: int, k: int) -> int:
        """Key of rank k among the m keys at keys_ptr: 12 + 12 + 8 bits."""
        prefix, prefix_shift = 0, 32
        for shift, bits in ((20, 12), (8, 12), (0, 8)):
            h = np.asarray(self.ext.select_histogram(0, 0, keys_ptr, m, self.abs, shift, bits, prefix_shift, prefix,
                                                     self.stream, self.dev), dtype=np.int64)
            cum = np.cumsum(h)
            b = int(np.searchsorted(cum, k, side="right"))
            k -= int(cum[b - 1]) if b > 0 else 0
            prefix = (prefix << bits) | b if prefix_shift < 32 else b
            prefix_shift = shift
        return prefix


def _device_percentiles(view, qs: np.ndarray, use_abs: bool, interpolation: str, nonfinite: str,
                        name: str) -> np.ndarray:
    sel = _Selector(view, use_abs)
    _check_nan(sel.nan, nonfinite, name)
    n = view.size - sel.nan
    if n <= 0:
        raise ValueError(f"trtcal: tensor '{name}' has only NaN values")
    out = []
    for q in qs:
        vi = virtual_index(n, float(q))
        lo = int(math.floor(vi))
        hi = min(lo + 1, n - 1)
        g = vi - lo
        if interpolation == "lower":
            out.append(sel.values([lo])[0])
        elif interpolation == "higher":
            out.append(sel.values([int(math.ceil(vi))])[0])
        elif interpolation == "nearest":
            out.append(sel.values([int(np.around(vi))])[0])
        else:
            if interpolation == "midpoint":
                g = 0.0 if g == 0 else 0.5
            a, b = sel.values([lo, hi]) if hi != lo else sel.values([lo]) * 2
            out.append(lerp(a, b, g))
    return np.asarray(out)
