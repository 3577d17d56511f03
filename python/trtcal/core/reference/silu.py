"""SiLU references. Same definitions as csrc/kernels/silu.h.

``silu`` is the float64 oracle of the float kernels (which compute in float32). The INT8
tables are bit-exact mirrors of the kernels' host-built tables: the dequantized input is one
float32 product, the SiLU is evaluated in float64 and rounded once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .fp8 import e4m3_values, encode_e4m3

TABLE_SIZE = 256  # index = q + 128
CODES = np.arange(-128, 128, dtype=np.int32)


def silu(x: Any) -> np.ndarray:
    """x * sigmoid(x) in float64 (stable for every input: silu(-inf) = -0, NaN stays NaN)."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        t = np.exp(-np.abs(x))
        y = np.where(x >= 0, x, x * t) / (1.0 + t)
    return np.where(np.isneginf(x), -0.0, y)


def _scale32(scale: float, name: str) -> np.float32:
    with np.errstate(over="ignore"):
        s = np.float32(scale)
    if not (np.isfinite(s) and s > 0):
        raise ValueError(f"trtcal: {name} must be a positive finite float32, got {scale!r}")
    return s


def silu_of_codes(scale_in: float) -> np.ndarray:
    """silu(float32(q) * float32(scale_in)) in float64 for q = -128 .. 127."""
    s = _scale32(scale_in, "scale_in")
    with np.errstate(over="ignore"):
        v = CODES.astype(np.float32) * s  # one float32 product, as TensorRT dequantizes
    return silu(v)


def silu_int8_table(scale_in: float, scale_out: float) -> np.ndarray:
    """int8[256]: table[q + 128] = clamp(round_half_even(silu(q * scale_in) / scale_out))."""
    so = np.float64(_scale32(scale_out, "scale_out"))
    with np.errstate(over="ignore"):
        r = np.rint(silu_of_codes(scale_in) / so)
    return np.clip(r, -128, 127).astype(np.int8)


def silu_int8_to_float_table(scale_in: float, dtype: str = "float32") -> np.ndarray:
    """[256] of ``dtype``: silu(q * scale_in) rounded to float32, then to ``dtype``."""
    with np.errstate(over="ignore"):  # beyond the dtype's range: +-inf, like the kernels
        f32 = silu_of_codes(scale_in).astype(np.float32)
        return f32.astype(numpy_dtype(dtype))


def silu_int8(q: Any, scale_in: float, scale_out: float) -> np.ndarray:
    """int8 -> int8 SiLU through the exact table."""
    q = np.asarray(q, dtype=np.int8)
    return silu_int8_table(scale_in, scale_out)[q.astype(np.int32) + 128]


def silu_int8_to_float(q: Any, scale_in: float, dtype: str = "float32") -> np.ndarray:
    """int8 -> float SiLU (dequantize, SiLU) through the table."""
    q = np.asarray(q, dtype=np.int8)
    return silu_int8_to_float_table(scale_in, dtype)[q.astype(np.int32) + 128]


def silu_float_to_int8(x: Any, scale_out: float) -> np.ndarray:
    """float -> int8 (SiLU, quantize): clamp(round_half_even(silu(x) / scale_out)); NaN -> 0."""
    so = np.float64(_scale32(scale_out, "scale_out"))
    with np.errstate(invalid="ignore", over="ignore"):
        r = np.rint(silu(x) / so)
    r = np.where(np.isnan(r), 0.0, r)
    return np.clip(r, -128, 127).astype(np.int8)


def silu_fp8_table(scale_in: float, scale_out: float) -> np.ndarray:
    """uint8[256] by input byte (E4M3FN code c): the E4M3 code of silu(float32(e4m3(c)) *
    float32(scale_in)) / scale_out, rounded once to nearest even and saturating at +-448; the
    NaN codes 0x7F/0xFF give 0x7F (csrc/kernels/silu.h)."""

    si = _scale32(scale_in, "scale_in")
    so = np.float64(_scale32(scale_out, "scale_out"))
    vals = e4m3_values()
    nan = np.isnan(vals)
    with np.errstate(over="ignore", invalid="ignore"):
        v = np.where(nan, 0.0, vals).astype(np.float32) * si  # one float32 product
        s = silu(v) / so
    out = encode_e4m3(s)
    out[nan] = 0x7F
    return out


def silu_fp8(codes: Any, scale_in: float, scale_out: float) -> np.ndarray:
    """FP8 (E4M3FN bytes, uint8) -> FP8 SiLU through the exact table."""
    c = (
        np.asarray(codes).view(np.uint8)
        if np.asarray(codes).itemsize == 1
        else np.asarray(codes, np.uint8)
    )
    return silu_fp8_table(scale_in, scale_out)[c]


def numpy_dtype(name: str) -> np.dtype:
    """NumPy dtype for a trtcal dtype name (bfloat16 needs ml_dtypes)."""
    if name == "bfloat16":
        try:
            import ml_dtypes
        except ImportError as exc:  # pragma: no cover - optional dependency
            raise ImportError(
                "trtcal: bfloat16 on the host needs ml_dtypes (pip install ml_dtypes)"
            ) from exc
        return np.dtype(ml_dtypes.bfloat16)
    if name not in ("float32", "float16", "int8"):
        raise ValueError(
            f"trtcal: unsupported dtype {name!r}; accepted: float32, float16, bfloat16, int8"
        )
    return np.dtype(name)
