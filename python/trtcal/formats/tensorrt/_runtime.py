"""Finding the ``tensorrt`` module lazily and telling implicit INT8 (TensorRT <= 10) from
explicit-only INT8 (TensorRT 11)."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Optional

from ..trt_version import parse_major, parse_version  # noqa: F401 - re-exported

#: The last TensorRT major version with calibrators, calibration caches and dynamic ranges.
LAST_IMPLICIT_INT8_MAJOR = 10

EXPLICIT_PATH_HINT = (
    "Use explicit quantization instead: trtcal.onnx.quantize(model, table) inserts "
    "QuantizeLinear/DequantizeLinear into an ONNX model, and trtcal.tensorrt.quantize_network("
    "network, table) adds Q/DQ layers to a network built in code."
)


class TensorRTUnavailableError(ImportError):
    """The ``tensorrt`` Python module is not installed."""


class ImplicitInt8RemovedError(RuntimeError):
    """Calibrators, calibration caches or dynamic ranges were used with TensorRT >= 11."""


def load_tensorrt(what: str = "this function") -> ModuleType:
    """Imports ``tensorrt`` or raises TensorRTUnavailableError naming what needed it."""
    try:
        return importlib.import_module("tensorrt")
    except ImportError as exc:
        raise TensorRTUnavailableError(
            f"trtcal: {what} needs the tensorrt Python module, which is not installed ({exc}). "
            "Install TensorRT's Python package (pip install tensorrt) in this environment. Without "
            "TensorRT, trtcal can still write calibration caches (CalibrationTable.to_cache) and "
            "Q/DQ ONNX models (trtcal.onnx.quantize)."
        ) from exc


def tensorrt_version() -> str:
    """The installed TensorRT version string (``trt.__version__``)."""
    return str(load_tensorrt("tensorrt_version()").__version__)


def tensorrt_major() -> int:
    """The installed TensorRT major version (10, 11, ...)."""
    return parse_major(tensorrt_version())


def check_implicit_int8(major: int, what: str) -> None:
    """Raises ImplicitInt8RemovedError when TensorRT ``major`` has no implicit INT8."""
    if major > LAST_IMPLICIT_INT8_MAJOR:
        raise ImplicitInt8RemovedError(
            f"trtcal: {what} needs implicit INT8, which TensorRT {major} does not have: TensorRT "
            "11.0 "
            "removed IInt8Calibrator and its subclasses, calibration caches, "
            "IBuilderConfig.int8_calibrator and ITensor.set_dynamic_range. " + EXPLICIT_PATH_HINT
        )


def require_implicit_int8(what: str, trt: Optional[ModuleType] = None) -> ModuleType:
    """The tensorrt module, after checking that it still has implicit INT8 (<= 10)."""
    trt = trt or load_tensorrt(what)
    check_implicit_int8(parse_major(trt.__version__), what)
    return trt
