"""ONNX graph tools for TensorRT (needs the ``onnx`` package).

:func:`fuse_silu` rewrites ``Mul(x, Sigmoid(x))`` into trtcal's SiLU plugin node;
:func:`quantize_silu` makes fused nodes INT8 from scales; :func:`expand_silu` undoes both.
"""

from .fuse import expand_silu, fuse_silu, quantize_silu

__all__ = ["expand_silu", "fuse_silu", "quantize_silu"]
