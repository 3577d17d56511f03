"""Statistics references (float64). Same rules as csrc/kernels/histogram.h and minmax.h."""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Tuple

import numpy as np

State = Dict[str, Any]


def histogram_state_new(bins: int, signed: bool) -> State:
    """An empty streaming-histogram state (the layout ``HistogramCollector.state_dict`` uses)."""
    return {
        "bins": int(bins),
        "signed": bool(signed),
        "exponent": None,
        "amax": 0.0,
        "min": None,
        "max": None,
        "finite": 0,
        "nan": 0,
        "posinf": 0,
        "neginf": 0,
        "counts": np.zeros(int(bins), dtype=np.int64),
    }


def _half(bins: int, signed: bool) -> int:
    return bins // 2 if signed else bins


def range_exponent(amax: float) -> int:
    """Smallest e with amax < 2^e (amax > 0)."""
    return math.frexp(amax)[1]


def bin_index(v: np.ndarray, bins: int, signed: bool, exponent: Optional[int]) -> np.ndarray:
    """Bins of finite values (float32 or float64) on the grid R = 2^exponent (zero bin when None).

    The bin is floor(|v| * h / R) (signed: h + floor(v * h / R)), h = bins or bins/2. The
    product is exact in float64 for h <= 2^24 and, when h / R is a power of two representable
    in float32, exact in float32 too; both give the same bins as the CUDA kernels.
    """
    h = _half(bins, signed)
    if exponent is None:
        return np.full(v.shape, h if signed else 0, dtype=np.int64)
    k = (h.bit_length() - 1) - exponent
    if v.dtype == np.float32 and h & (h - 1) == 0 and -149 <= k <= 127:
        t = (v if signed else np.abs(v)) * np.float32(math.ldexp(1.0, k))
    else:
        scale = math.ldexp(float(h), -exponent)
        t = np.asarray(v, dtype=np.float64) * scale
        if not signed:
            t = np.abs(t)
    if not signed:
        return t.astype(np.int64)  # t >= 0: truncation is floor
    idx = np.floor(t).astype(np.int64)
    if t.dtype == np.float32:
        idx[(t == 0) & (v < 0)] = -1  # product underflowed to -0
    return h + idx


def rebin(counts: np.ndarray, signed: bool, m: int) -> np.ndarray:
    """Counts after the range grows by 2^m: old bin i goes to new bin c + floor((i - c) / 2^m),
    c = bins/2 (signed) or 0. Exact (int64 sums)."""
    counts = np.asarray(counts, dtype=np.int64)
    if m == 0:
        return counts.copy()
    bins = counts.size
    c = bins // 2 if signed else 0
    new = c + ((np.arange(bins, dtype=np.int64) - c) >> min(m, 62))  # non-decreasing
    starts = np.flatnonzero(np.r_[True, new[1:] != new[:-1]])
    out = np.zeros(bins, dtype=np.int64)
    out[new[starts]] = np.add.reduceat(counts, starts)
    return out


def _finite_float(x: np.ndarray) -> Tuple[np.ndarray, int, int, int]:
    """Values as float32 (exact for float32/float16/bfloat16 inputs; float64 stays float64)
    without the non-finite ones, and the NaN, +Inf, -Inf counts."""
    v = np.asarray(x)
    v = (v if v.dtype == np.float64 else v.astype(np.float32, copy=False)).ravel()
    finite = np.isfinite(v)
    if finite.all():
        return v, 0, 0, 0
    bad = v[~finite]
    return (
        v[finite],
        int(np.isnan(bad).sum()),
        int(np.isposinf(bad).sum()),
        int(np.isneginf(bad).sum()),
    )


def histogram_state_update(state: State, x: np.ndarray) -> State:
    """Adds the values of ``x`` (any float array) to ``state`` in place."""
    v, nan, pinf, ninf = _finite_float(x)
    state["nan"] += nan
    state["posinf"] += pinf
    state["neginf"] += ninf
    if v.size == 0:
        return state
    state["finite"] += int(v.size)
    lo, hi = float(v.min()), float(v.max())
    amax = max(-lo, hi)
    state["min"] = lo if state["min"] is None else min(state["min"], lo)
    state["max"] = hi if state["max"] is None else max(state["max"], hi)
    state["amax"] = max(state["amax"], amax)
    if amax > 0:
        need = range_exponent(amax)
        if state["exponent"] is None:
            state["exponent"] = need
        elif need > state["exponent"]:
            state["counts"] = rebin(state["counts"], state["signed"], need - state["exponent"])
            state["exponent"] = need
    idx = bin_index(v, state["bins"], state["signed"], state["exponent"])
    state["counts"] += np.bincount(idx, minlength=state["bins"]).astype(np.int64)
    return state


def histogram_state_merge(a: State, b: State) -> State:
    """a + b on the larger range (a is updated in place and returned)."""
    if a["bins"] != b["bins"] or a["signed"] != b["signed"]:
        raise ValueError("trtcal: cannot merge histograms with different bins or sign")
    ea, eb = a["exponent"], b["exponent"]
    e = max((x for x in (ea, eb) if x is not None), default=None)
    ca = rebin(a["counts"], a["signed"], e - ea) if ea is not None else a["counts"].copy()
    cb = rebin(b["counts"], b["signed"], e - eb) if eb is not None else b["counts"].copy()
    a["counts"] = ca + cb
    a["exponent"] = e
    a["amax"] = max(a["amax"], b["amax"])
    for key, fn in (("min", min), ("max", max)):
        vals = [s[key] for s in (a, b) if s[key] is not None]
        a[key] = fn(vals) if vals else None
    for key in ("finite", "nan", "posinf", "neginf"):
        a[key] = int(a[key]) + int(b[key])
    return a


def histogram_fixed(
    x: np.ndarray, bins: int, range_: float, signed: bool
) -> Tuple[np.ndarray, int, int, int, int]:
    """Histogram over [0, R] (|x|) or [-R, R]: bin = floor(v * (bins/R)), last bin closed.

    Returns (counts, outside, nan, posinf, neginf).
    """
    v = np.asarray(x, dtype=np.float64).ravel()
    nan, pinf, ninf = int(np.isnan(v).sum()), int(np.isposinf(v).sum()), int(np.isneginf(v).sum())
    v = v[np.isfinite(v)]
    d = v if signed else np.abs(v)
    inside = (d <= range_) & (d >= (-range_ if signed else 0.0))
    outside = int(d.size - inside.sum())
    d = d[inside]
    h = _half(bins, signed)
    scale = h / range_
    idx = np.floor(d * scale).astype(np.int64) + (h if signed else 0)
    idx = np.clip(idx, 0, bins - 1)
    return np.bincount(idx, minlength=bins).astype(np.int64), outside, nan, pinf, ninf


def minmax_channels(
    x: np.ndarray, axis: Optional[int]
) -> Tuple[np.ndarray, np.ndarray, int, int, int]:
    """Per-channel (or whole-tensor, axis=None) min and max over finite values.

    Channels without a finite value get NaN. Returns (mins, maxs, nan, posinf, neginf) with
    mins/maxs 1-D float64 arrays (length 1 for axis=None).
    """
    v = np.asarray(x, dtype=np.float64)
    if axis is None:
        v = v.reshape(1, -1)
    else:
        v = np.moveaxis(v, axis, 0).reshape(v.shape[axis], -1)
    finite = np.isfinite(v)
    nan, pinf, ninf = int(np.isnan(v).sum()), int(np.isposinf(v).sum()), int(np.isneginf(v).sum())
    with np.errstate(invalid="ignore"):
        lo = np.where(finite, v, np.inf).min(axis=1, initial=np.inf)
        hi = np.where(finite, v, -np.inf).max(axis=1, initial=-np.inf)
    empty = ~finite.any(axis=1)
    lo[empty] = np.nan
    hi[empty] = np.nan
    return lo, hi, nan, pinf, ninf
