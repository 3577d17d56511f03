"""trtcal: fast, exact INT8/FP16 calibration statistics on the GPU for TensorRT.

Statistics: :func:`histogram`, :func:`amax`, :func:`minmax`, the streaming
:class:`HistogramCollector` and :class:`MinMaxCollector`, and :func:`cuda_available`.
Tables and TensorRT feeds: :class:`CalibrationTable`, :mod:`trtcal.onnx`, :mod:`trtcal.tensorrt`.
End to end: :func:`calibrate`; which method to use: :func:`compare`; which layers break INT8:
:func:`analyze`.
SiLU (INT8 TensorRT engines of YOLO-style models): :func:`silu`, :func:`silu_int8`,
:func:`silu_int8_to_float`, :func:`silu_float_to_int8`, :func:`silu_int8_table`, and the
TensorRT plugin library at :func:`plugin_library_path`.
"""

from ._backend import CUDAUnavailableError, cuda_available
from .analyze import analyze
from .calibration import calibrate
from .compare import compare
from .collectors import HistogramCollector, MinMaxCollector
from .plugin import plugin_library_path
from .results import Histogram
from .silu import silu, silu_float_to_int8, silu_int8, silu_int8_table, silu_int8_to_float
from .stats import amax, histogram, minmax
from .table import CalibrationTable

__version__ = "0.1.0"

__all__ = [
    "CUDAUnavailableError",
    "CalibrationTable",
    "Histogram",
    "HistogramCollector",
    "MinMaxCollector",
    "amax",
    "analyze",
    "calibrate",
    "compare",
    "cuda_available",
    "histogram",
    "minmax",
    "plugin_library_path",
    "silu",
    "silu_float_to_int8",
    "silu_int8",
    "silu_int8_table",
    "silu_int8_to_float",
    "__version__",
]
