"""Explicit-quantization rules shared by the ONNX and TensorRT Q/DQ inserters: where Q/DQ
go, which axis a weight is quantized on, and the scales (symmetric INT8, zero point 0)."""

from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

import numpy as np

from ..core.stats import amax as _amax

# TensorRT's placement guidance: quantize the inputs of weighted layers (and the residual
# input of an add that follows one) so that each of them runs in INT8.
WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
# and, from TensorRT's placement rules (trtcal.onnx.placement): residual adds, pooling, Concat
# (one shared scale) and Resize, which Q/DQ commute through
DEFAULT_OP_TYPES = WEIGHTED_OPS + (
    "Add",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "Concat",
    "Resize",
    "Upsample",
)
INT8_MAX = 127.0
# Q/DQ element types: name -> (largest magnitude, ONNX TensorProto type of the zero point).
# FP8 (FLOAT8E4M3FN, 448) plugs in here and in :func:`scale_zero_point`.
QUANT_TYPES = {"int8": (INT8_MAX, 3)}


def scale_zero_point(
    amax: "np.ndarray | float",
    quant_dtype: str = "int8",
    scale_dtype: "np.dtype | type" = np.float32,
) -> "tuple[np.ndarray, np.ndarray]":
    """The scale and zero-point arrays of a Q/DQ pair for ``amax`` (a scalar: per tensor; an
    array: per channel): symmetric, scale = amax / qmax in ``scale_dtype``, zero point 0 of the
    Q/DQ element type. The one place that knows the element type of the quantized tensor.

    Raises ValueError naming the accepted types for an unknown ``quant_dtype``.
    """
    if quant_dtype not in QUANT_TYPES:
        raise ValueError(
            f"trtcal: unknown quant_dtype {quant_dtype!r}; accepted: {', '.join(QUANT_TYPES)}"
        )
    qmax, _ = QUANT_TYPES[quant_dtype]
    a = np.asarray(amax, dtype=np.float64)
    scale = (a / qmax).astype(scale_dtype)
    zero = np.zeros(a.shape, dtype=np.int8)
    return scale, zero


def weight_axis(op_type: str, ndim: int, trans_b: bool = False) -> int:
    """Per-channel axis of a weight: Conv 0 (K of KCRS), ConvTranspose 1 (C x K x R x S),
    Gemm 0 when transB else 1, MatMul the last dim (1 for a 2-D weight)."""
    if op_type == "Conv":
        return 0
    if op_type == "ConvTranspose":
        return 1
    if op_type == "Gemm":
        return 0 if trans_b else 1
    if op_type == "MatMul":
        return ndim - 1
    raise ValueError(f"trtcal: no weight axis rule for op type '{op_type}'")


def activation_scale(table: Mapping[str, float], name: str) -> float:
    """amax / 127 for an activation; raises naming the tensor when amax is not usable."""
    amax = float(table[name])
    if not math.isfinite(amax) or amax <= 0:
        raise ValueError(
            f"trtcal: tensor '{name}' has amax {amax} in the calibration table; a Q/DQ scale must "
            "be a "
            "positive finite number (amax 0 means the tensor was all zeros during calibration, inf "
            "that it overflowed). Fix its range (table.override(name, amax)) or exclude its "
            "consumer."
        )
    scale = np.float32(amax / INT8_MAX)
    if not scale > 0:
        raise ValueError(f"trtcal: tensor '{name}' has amax {amax}, whose scale underflows float32")
    return float(scale)


def weight_scales(w: np.ndarray, axis: Optional[int], name: str) -> "tuple[np.ndarray, int]":
    """Float32 scales of a weight (per channel along ``axis``, or one when ``axis`` is None)
    and the number of all-zero channels, which get scale 1/127: any positive scale quantizes
    them exactly to 0, and a zero scale is never written."""

    w32 = np.ascontiguousarray(w, dtype=np.float32)
    if w32.size == 0:
        raise ValueError(f"trtcal: weight '{name}' is empty")
    a = np.atleast_1d(np.asarray(_amax(w32, axis=axis, name=name), dtype=np.float64))
    zero = a == 0
    a = np.where(zero, INT8_MAX, a)
    scales = (a / INT8_MAX).astype(np.float32)
    if not np.all(scales > 0):
        raise ValueError(f"trtcal: weight '{name}' has channels whose scale underflows float32")
    return (scales if axis is not None else scales.reshape(())), int(zero.sum())


def residual_add_inputs(from_weighted: Sequence[bool]) -> list:
    """Which inputs of a two-activation Add get Q/DQ.

    TensorRT fuses an add into the weighted layer (Conv, ...) that produces one of its inputs
    when the OTHER input is quantized. So: quantize the inputs that no weighted layer
    produces; when both are produced by weighted layers, quantize input 1 and leave input 0
    to fuse; when neither is, the add is not a residual add of a weighted layer: none.
    """
    if len(from_weighted) != 2:
        return []
    a, b = from_weighted
    if a and b:
        return [1]
    if a or b:
        return [0] if b else [1]
    return []
