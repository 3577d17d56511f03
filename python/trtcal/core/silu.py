"""SiLU = x * sigmoid(x) in float, and exact INT8 SiLU with its Q/DQ boundaries.

Device arrays (CuPy, PyTorch, pycuda, DLPack) run the CUDA kernels on the caller's stream
and return without waiting. NumPy arrays run the reference on the CPU
(:mod:`trtcal.reference.silu`), which defines every result bit for bit:

- float: ``y = x * sigmoid(x)``, computed in float32 on the GPU (float64 on the CPU);
- INT8: ``y = clamp(round_half_even(silu(q * scale_in) / scale_out), -128, 127)``, an exact
  256-entry table (``q * scale_in`` is one float32 product, the rest float64);
- int8 -> float: the table value rounded to float32, then to the output dtype;
- float -> int8: ``clamp(round_half_even(silu(x) / scale_out), -128, 127)``, NaN -> 0.

Any size, any alignment (16-byte vector accesses where the input and output allow), any
dense layout: ``out`` must have the same shape and strides as the input.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from ._arrays import FLOAT_DTYPES, ArrayView, as_view
from ._backend import require_cuda
from .reference import silu as ref

ArrayLike = Any

__all__ = [
    "silu",
    "silu_fp8",
    "silu_fp8_table",
    "silu_int8",
    "silu_int8_to_float",
    "silu_float_to_int8",
    "silu_int8_table",
]


def silu(x: ArrayLike, out: Optional[ArrayLike] = None, *, stream: Any = None) -> ArrayLike:
    """``x * sigmoid(x)`` element-wise.

    Parameters
    ----------
    x : array, float32 / float16 / bfloat16, any shape and dense layout
    out : array, optional
        Same dtype, shape and layout as ``x`` (may be ``x`` itself). Allocated like ``x``
        (PyTorch or CuPy) when omitted.
    stream : stream-like, optional
        Defaults to the producer's current stream (never silently to stream 0).

    Returns
    -------
    ``out``, of ``x``'s dtype. Device inputs: queued on the stream, not waited for.
    """
    view = as_view(x, "x", stream)
    if not view.on_device:
        host = view.require_host()
        return _host_result(ref.silu(host).astype(host.dtype), out, "out")
    ov = _device_out(view, out, view.dtype)
    ext = require_cuda("silu of a device array")
    ext.silu(view.ptr, ov.ptr, view.dtype_code, view.size, view.stream, view.device)
    return ov.keepalive[0]


def silu_int8(
    q: ArrayLike,
    scale_in: float,
    scale_out: float,
    out: Optional[ArrayLike] = None,
    *,
    stream: Any = None,
) -> ArrayLike:
    """INT8 SiLU: int8 codes in (scale ``scale_in``), int8 codes out (scale ``scale_out``).

    ``out = clamp(round_half_even(silu(q * scale_in) / scale_out), -128, 127)``, exact: it is a
    lookup in the 256-entry table :func:`silu_int8_table` (built from the scales on the host).

    Parameters
    ----------
    q : array, int8, any shape and dense layout
    scale_in, scale_out : float
        Positive finite float32 scales (amax / 127).
    out : array, optional, int8, same shape and layout (may be ``q``)

    Returns
    -------
    ``out`` (int8). Device inputs: queued on the stream, not waited for.
    """
    s_in, s_out = _scale(scale_in, "scale_in"), _scale(scale_out, "scale_out")
    view = as_view(q, "q", stream, accepted=("int8",))
    if not view.on_device:
        return _host_result(ref.silu_int8(view.host, s_in, s_out), out, "out")
    ov = _device_out(view, out, "int8")
    ext = require_cuda("silu_int8 of a device array")
    ext.silu_int8(view.ptr, ov.ptr, view.size, s_in, s_out, view.stream, view.device)
    return ov.keepalive[0]


def silu_int8_to_float(
    q: ArrayLike,
    scale_in: float,
    dtype: str = "float16",
    out: Optional[ArrayLike] = None,
    *,
    stream: Any = None,
) -> ArrayLike:
    """Dequantize and SiLU: int8 codes in, float out (the DQ boundary of an INT8 region).

    Parameters
    ----------
    q : array, int8
    scale_in : float
        Positive finite float32 scale of ``q``.
    dtype : {'float16', 'float32', 'bfloat16'}
        Output dtype (ignored when ``out`` is given: its dtype is used).
    out : array, optional, float, same shape and layout as ``q``

    Returns
    -------
    ``out``: ``silu(q * scale_in)`` rounded to float32, then to the output dtype.
    """
    s_in = _scale(scale_in, "scale_in")
    view = as_view(q, "q", stream, accepted=("int8",))
    if out is not None:
        dtype = as_view(out, "out", stream).dtype
    if dtype not in FLOAT_DTYPES:
        raise ValueError(f"trtcal: dtype must be one of {', '.join(FLOAT_DTYPES)}, got {dtype!r}")
    if not view.on_device:
        return _host_result(ref.silu_int8_to_float(view.host, s_in, dtype), out, "out")
    ov = _device_out(view, out, dtype)
    ext = require_cuda("silu_int8_to_float of a device array")
    ext.silu_int8_to_float(
        view.ptr, ov.ptr, ov.dtype_code, view.size, s_in, view.stream, view.device
    )
    return ov.keepalive[0]


def silu_float_to_int8(
    x: ArrayLike, scale_out: float, out: Optional[ArrayLike] = None, *, stream: Any = None
) -> ArrayLike:
    """SiLU and quantize: float in, int8 codes out (the Q boundary of an INT8 region).

    ``out = clamp(round_half_even(silu(x) / scale_out), -128, 127)``; NaN gives 0, +Inf 127.
    On the GPU ``silu(x)`` is the float32 value (before any rounding to ``x``'s dtype) and the
    division is in float32, so a value within float32 rounding of a half-way point may round
    to the neighbouring code of the float64 reference.

    Parameters
    ----------
    x : array, float32 / float16 / bfloat16
    scale_out : float
        Positive finite float32 scale of the output.
    out : array, optional, int8, same shape and layout as ``x``
    """
    s_out = _scale(scale_out, "scale_out")
    view = as_view(x, "x", stream)
    if not view.on_device:
        return _host_result(ref.silu_float_to_int8(view.host, s_out), out, "out")
    ov = _device_out(view, out, "int8")
    ext = require_cuda("silu_float_to_int8 of a device array")
    ext.silu_float_to_int8(
        view.ptr, view.dtype_code, ov.ptr, view.size, s_out, view.stream, view.device
    )
    return ov.keepalive[0]


def silu_fp8(
    q: ArrayLike,
    scale_in: float,
    scale_out: float,
    out: Optional[ArrayLike] = None,
    *,
    stream: Any = None,
) -> ArrayLike:
    """FP8 SiLU: E4M3FN codes in (scale ``scale_in``), E4M3FN codes out (scale ``scale_out``).

    ``out = e4m3(silu(e4m3_value(q) * scale_in) / scale_out)`` rounded to nearest even and
    saturating at +-448, exact: a lookup in the 256-entry table :func:`silu_fp8_table`.

    Parameters
    ----------
    q : array of E4M3FN bytes: NumPy ``uint8`` / ``int8`` / ``ml_dtypes.float8_e4m3fn``; a device
        array as ``int8`` (e.g. ``t.view(torch.int8)`` of a ``torch.float8_e4m3fn`` tensor)
    scale_in, scale_out : float
        Positive finite float32 scales (amax / 448).
    out : array, optional, int8 (device) with q's shape and layout

    Returns
    -------
    NumPy: uint8 codes (``.view(ml_dtypes.float8_e4m3fn)`` gives the values); device: ``out``
    (int8 bytes), queued on the stream, not waited for.
    """
    s_in, s_out = _scale(scale_in, "scale_in"), _scale(scale_out, "scale_out")
    if isinstance(q, np.ndarray) and q.dtype.itemsize == 1 and q.dtype != np.int8:
        q = q.view(np.int8)
    view = as_view(q, "q", stream, accepted=("int8",))
    if not view.on_device:
        return _host_result(ref.silu_fp8(view.host, s_in, s_out), out, "out")
    ov = _device_out(view, out, "int8")
    ext = require_cuda("silu_fp8 of a device array")
    ext.silu_fp8(view.ptr, ov.ptr, view.size, s_in, s_out, view.stream, view.device)
    return ov.keepalive[0]


def silu_fp8_table(scale_in: float, scale_out: float) -> np.ndarray:
    """The uint8[256] E4M3 SiLU table by input byte (the float64 reference's)."""
    return ref.silu_fp8_table(_scale(scale_in, "scale_in"), _scale(scale_out, "scale_out"))


def silu_int8_table(scale_in: float, scale_out: float) -> np.ndarray:
    """The exact INT8 SiLU table: int8[256], entry ``q + 128`` is the output code of ``q``."""
    return ref.silu_int8_table(_scale(scale_in, "scale_in"), _scale(scale_out, "scale_out"))


# ---- helpers ------------------------------------------------------------------------


def _scale(value: float, name: str) -> float:
    try:
        with np.errstate(over="ignore"):  # too large for float32: inf, refused below
            s = np.float32(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"trtcal: {name} must be a float, got {type(value).__name__}") from exc
    if not (np.isfinite(s) and s > 0):
        raise ValueError(f"trtcal: {name} must be a positive finite float32, got {value!r}")
    return float(s)


def _host_result(result: np.ndarray, out: Optional[ArrayLike], name: str) -> np.ndarray:
    if out is None:
        return result
    if not isinstance(out, np.ndarray):
        raise TypeError(f"trtcal: '{name}' must be a NumPy array when the input is a NumPy array")
    if out.shape != result.shape or out.dtype != result.dtype:
        raise ValueError(
            f"trtcal: '{name}' has shape {out.shape} and dtype {out.dtype}; expected "
            f"{result.shape} and {result.dtype}"
        )
    out[...] = result
    return out


def _significant_strides(shape: Sequence[int], strides: Sequence[int]):
    return tuple(st for s, st in zip(shape, strides) if s != 1)


def _device_out(view: ArrayView, out: Optional[ArrayLike], dtype: str) -> ArrayView:
    """A view of ``out`` (allocated like the input when None), checked against the input."""
    view.memory_order()  # raises for layouts with gaps or overlaps
    if out is None:
        out = _empty_like(view, dtype)
    ov = as_view(out, "out", view.stream, accepted=(dtype,))
    if not ov.on_device:
        raise TypeError("trtcal: 'out' must be a device array when the input is on the device")
    if ov.device != view.device:
        raise ValueError(
            f"trtcal: 'out' is on device {ov.device} but the input is on device {view.device}"
        )
    if ov.shape != view.shape:
        raise ValueError(f"trtcal: 'out' has shape {ov.shape}; expected {view.shape}")
    if view.size and _significant_strides(ov.shape, ov.strides) != _significant_strides(
        view.shape, view.strides
    ):
        raise ValueError(
            f"trtcal: 'out' has element strides {ov.strides} but the input has {view.strides}: "
            "both must have the same memory layout"
        )
    ov.keepalive.insert(0, out)
    return ov


def _empty_like(view: ArrayView, dtype: str) -> Any:
    src = view.keepalive[0]
    module = type(src).__module__.split(".")[0]
    if module == "torch":
        import torch

        return torch.empty_like(src, dtype=getattr(torch, dtype))
    if module == "cupy":
        import cupy

        if dtype == "bfloat16":
            raise TypeError(
                "trtcal: CuPy has no bfloat16: pass 'out' (for example a PyTorch tensor)"
            )
        return cupy.empty_like(src, dtype=dtype)
    raise TypeError(
        f"trtcal: cannot allocate an output like a {type(src).__module__}.{type(src).__name__}: "
        "pass 'out'"
    )
