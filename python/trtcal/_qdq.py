"""Explicit-quantization rules shared by the ONNX and TensorRT Q/DQ inserters: where Q/DQ
go, which axis a weight is quantized on, and the scales (symmetric INT8, zero point 0)."""

from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

import numpy as np

# TensorRT's placement guidance: quantize the inputs of weighted layers (and the residual
# input of an add that follows one) so that each of them runs in INT8.
WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
DEFAULT_OP_TYPES = WEIGHTED_OPS + ("Add",)
INT8_MAX = 127.0


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
            f"trtcal: tensor '{name}' has amax {amax} in the calibration table; a Q/DQ scale must be a "
            "positive finite number (amax 0 means the tensor was all zeros during calibration, inf "
            "that it overflowed). Fix its range (table.override(name, amax)) or exclude its consumer."
        )
    scale = np.float32(amax / INT8_MAX)
    if not scale > 0:
        raise ValueError(f"trtcal: tensor '{name}' has amax {amax}, whose scale underflows float32")
    return float(scale)


def weight_scales(w: np.ndarray, axis: Optional[int], name: str) -> "tuple[np.ndarray, int]":
    """Float32 scales of a weight (per channel along ``axis``, or one when ``axis`` is None)
    and the number of all-zero channels, which get scale 1/127: any positive scale quantizes
    them exactly to 0, and a zero scale is never written."""
    from .stats import amax as _amax

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
