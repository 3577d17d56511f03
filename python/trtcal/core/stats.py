"""One-shot statistics: ``histogram``, ``amax``, ``minmax``.

Host (NumPy) inputs run the float64 reference on the CPU; device inputs run the CUDA
kernels on the caller's stream. Every function here returns host values and therefore
waits for the stream it used (the streaming collectors in :mod:`trtcal.core.collectors` do not).
"""

from __future__ import annotations

import math
from typing import Any, Optional, Tuple, Union

import numpy as np

from . import reference
from ._arrays import as_view, normalise_axis
from ._backend import require_cuda
from .collectors import HistogramCollector, check_bins
from .results import Histogram

ArrayLike = Any
_NONFINITE_POLICIES = ("raise", "ignore")


def histogram(
    x: ArrayLike,
    bins: int = 2048,
    range: Optional[float] = None,
    signed: bool = False,
    *,
    stream: Any = None,
    name: str = "x",
) -> Histogram:
    """Histogram of ``|x|`` over [0, R) (or of ``x`` over [-R, R) when ``signed``).

    Parameters
    ----------
    x : array, any shape, float32 / float16 / bfloat16
        NumPy array (CPU path) or device array (CuPy, PyTorch, pycuda, DLPack).
    bins : int
        Number of bins (even when ``signed``), at most 2^24.
    range : float, optional
        R. By default R is the power of two just above max |x| (the grid the streaming
        :class:`~trtcal.HistogramCollector` uses, so both agree bin for bin). A given R keeps
        the last bin closed and counts values beyond it in ``Histogram.outside``.
    signed : bool
        Histogram of x over [-R, R) instead of |x| over [0, R).

    Returns
    -------
    Histogram
        64-bit counts; NaN/Inf are counted, never binned. Waits for the stream.
    """
    view = as_view(x, name, stream)
    check_bins(bins, signed, name)
    if view.size == 0:
        raise ValueError(f"trtcal: tensor '{name}' is empty: nothing to histogram")
    view.memory_order()
    if range is None:
        if view.on_device:  # one-shot in the extension's cached workspace: no allocation
            ext = require_cuda("histogram of a device array")
            s = ext.histogram_once(
                view.ptr, view.dtype_code, view.size, bins, signed, view.stream, view.device
            )
            exp = s["exponent"]
            return Histogram(
                s["counts"],
                None if exp is None else math.ldexp(1.0, exp),
                signed,
                name,
                amax=float(s["amax"]),
                min=s["min"],
                max=s["max"],
                nan=int(s["nan"]),
                posinf=int(s["posinf"]),
                neginf=int(s["neginf"]),
            )
        c = HistogramCollector(bins, signed, device="cpu", name=name)
        c._update_view(view)
        return c.histogram()
    range = float(range)
    if not (math.isfinite(range) and range > 0):
        raise ValueError(
            f"trtcal: histogram range for '{name}' must be a positive finite number, got {range}"
        )
    if view.on_device:
        ext = require_cuda("histogram of a device array")
        counts, stats = ext.histogram_fixed(
            view.ptr, view.dtype_code, view.size, range, bins, signed, view.stream, view.device
        )
        outside, nan, pinf, ninf = (int(v) for v in stats)
    else:
        counts, outside, nan, pinf, ninf = reference.histogram_fixed(
            view.require_host(), bins, range, signed
        )
    return Histogram(
        np.asarray(counts, dtype=np.int64),
        range,
        signed,
        name,
        nan=nan,
        posinf=pinf,
        neginf=ninf,
        outside=outside,
    )


def minmax(
    x: ArrayLike,
    axis: Optional[int] = None,
    *,
    nonfinite: str = "raise",
    stream: Any = None,
    name: str = "x",
) -> Tuple[Union[float, np.ndarray], Union[float, np.ndarray]]:
    """Minimum and maximum of the finite values, per tensor or per channel (one pass).

    Parameters
    ----------
    x : array, float32 / float16 / bfloat16, any shape and dense layout
    axis : int, optional
        Channel axis: returns one (min, max) per index along ``axis``.
    nonfinite : {'raise', 'ignore'}
        NaN/Inf raise ``ValueError`` naming the tensor and the counts by default; 'ignore'
        skips them (a tensor or channel with no finite value still raises).

    Returns
    -------
    (min, max) as floats (``axis=None``) or float64 arrays of length ``x.shape[axis]``.
    Returns once the result is on the host (every read of ``x`` is done; ``axis=None``: the
    kernel writes it to mapped host memory, so the stream is not synchronised as a whole).
    """
    return _minmax(x, axis, nonfinite, stream, name)


def amax(
    x: ArrayLike,
    axis: Optional[int] = None,
    *,
    nonfinite: str = "raise",
    stream: Any = None,
    name: str = "x",
) -> Union[float, np.ndarray]:
    """max |x| over the finite values, per tensor or per channel (see :func:`minmax`).

    Returns once the result is on the host (as :func:`minmax`).
    """
    lo, hi = _minmax(x, axis, nonfinite, stream, name)
    if axis is None:
        return max(hi, -lo)
    return np.maximum(-lo, hi)


def _minmax(x: ArrayLike, axis: Optional[int], nonfinite: str, stream: Any, name: str):
    """(min, max): floats for ``axis=None``, else float64 arrays. Device arrays take one
    call of the extension, which works in its cached workspace (no allocation per call)."""
    if nonfinite not in _NONFINITE_POLICIES:
        raise ValueError(
            f"trtcal: nonfinite must be one of {_NONFINITE_POLICIES}, got {nonfinite!r}"
        )
    view = as_view(x, name, stream)
    size = view.size
    if size == 0:
        raise ValueError(f"trtcal: tensor '{name}' is empty: it has no min/max")
    ax = None if axis is None else normalise_axis(axis, len(view.shape), name)
    if view.on_device:
        ext = require_cuda("min/max of a device array")
        if ax is None:
            view.memory_order()
            outer, channels, inner = 1, 1, size
        else:
            outer, channels, inner = view.channel_split(ax)
        lo, hi, nan, pinf, ninf = ext.minmax_once(
            view.ptr, view.dtype_code, outer, channels, inner, view.stream, view.device
        )
    else:
        view.memory_order()
        lo, hi, nan, pinf, ninf = reference.minmax_channels(view.require_host(), ax)
        if ax is None:
            lo, hi = float(lo[0]), float(hi[0])
    if nan or pinf or ninf:
        check_nonfinite(name, nan, pinf, ninf, nonfinite)
    if ax is None:
        if lo != lo:  # NaN: no finite value
            raise ValueError(f"trtcal: tensor '{name}' has no finite values")
        return lo, hi
    empty = np.isnan(lo)
    if empty.any():
        raise ValueError(
            f"trtcal: tensor '{name}' has no finite values (channels "
            f"{np.flatnonzero(empty)[:10].tolist()} along axis {ax})"
        )
    return lo, hi


def check_nonfinite(name: str, nan: int, posinf: int, neginf: int, policy: str = "raise") -> None:
    """Raises ValueError naming the tensor when it held NaN/Inf and the policy is 'raise'."""
    if policy == "raise" and (nan or posinf or neginf):
        raise ValueError(
            f"trtcal: tensor '{name}' has non-finite values: {nan} NaN, {posinf} +Inf, {neginf} "
            "-Inf "
            "(pass nonfinite='ignore' to skip them)"
        )
