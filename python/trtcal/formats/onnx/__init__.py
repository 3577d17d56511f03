"""ONNX tools for TensorRT (need the ``onnx`` package: ``pip install trtcal[onnx]``; it is
imported when a function is called).

- :func:`quantize`: explicit quantization (QuantizeLinear/DequantizeLinear) from a
  :class:`~trtcal.CalibrationTable`: INT8 for TensorRT 10 and 11, placed by TensorRT's rules
  (:mod:`trtcal.onnx.placement`), the rest cast to FP16/BF16 on request
  (:mod:`trtcal.onnx.precision`).
- :func:`fuse_silu` rewrites ``Mul(x, Sigmoid(x))`` into trtcal's SiLU plugin node;
  :func:`quantize_silu` makes fused nodes INT8 from scales; :func:`expand_silu` undoes both.
"""

from .fuse import expand_silu, fuse_silu, quantize_silu
from .quantize import PATH, QuantizeReport, quantize

__all__ = ["PATH", "QuantizeReport", "expand_silu", "fuse_silu", "quantize", "quantize_silu"]
