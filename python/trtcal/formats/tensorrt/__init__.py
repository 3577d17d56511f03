"""Handing trtcal's ranges to TensorRT.

TensorRT <= 10 (implicit INT8): calibrators on TensorRT's own base classes
(:class:`EntropyCalibrator2`, :class:`MinMaxCalibrator`, ...) that feed batches or hand
TensorRT a :class:`~trtcal.CalibrationTable` as its calibration cache, and
:func:`apply_dynamic_ranges`. TensorRT 11 removed these; they raise
:class:`ImplicitInt8RemovedError` there, pointing to explicit quantization.

TensorRT 10 and 11 (explicit INT8): :func:`quantize_network` adds Q/DQ layers to a network;
for ONNX models use :func:`trtcal.onnx.quantize`.

``tensorrt`` is imported on first use, so this package imports without it; using a class or
function that needs it raises :class:`TensorRTUnavailableError`.
"""

from ._runtime import (
    ImplicitInt8RemovedError,
    TensorRTUnavailableError,
    check_implicit_int8,
    tensorrt_major,
    tensorrt_version,
)
from .calibrator import (
    BatchFeeder,
    CupyDeviceMemory,
    DeviceMemory,
    EntropyCalibrator,
    EntropyCalibrator2,
    LegacyCalibrator,
    MinMaxCalibrator,
    TrtcalDeviceMemory,
    cache_bytes_for,
    calibrator_class,
    make_calibrator,
)
from .network import (
    DynamicRangeReport,
    NetworkQuantizeReport,
    apply_dynamic_ranges,
    plan_dynamic_ranges,
    quantize_network,
)
from .plugins import load_plugins
from .session import TensorRTSession

__all__ = [
    "BatchFeeder",
    "CupyDeviceMemory",
    "DeviceMemory",
    "DynamicRangeReport",
    "EntropyCalibrator",
    "EntropyCalibrator2",
    "ImplicitInt8RemovedError",
    "LegacyCalibrator",
    "MinMaxCalibrator",
    "NetworkQuantizeReport",
    "TensorRTSession",
    "TensorRTUnavailableError",
    "TrtcalDeviceMemory",
    "apply_dynamic_ranges",
    "cache_bytes_for",
    "calibrator_class",
    "check_implicit_int8",
    "load_plugins",
    "make_calibrator",
    "plan_dynamic_ranges",
    "quantize_network",
    "tensorrt_major",
    "tensorrt_version",
]
