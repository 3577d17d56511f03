"""Explicit quantization of ONNX models (QuantizeLinear/DequantizeLinear) from a
:class:`~trtcal.CalibrationTable`: INT8 for TensorRT 10 and 11.

``onnx`` is imported when a function is called, not when this package is imported
(install it with ``pip install trtcal[onnx]``).
"""

from .quantize import PATH, QuantizeReport, quantize

__all__ = ["PATH", "QuantizeReport", "quantize"]
