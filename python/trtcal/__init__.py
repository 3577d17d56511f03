"""trtcal: fast, exact INT8/FP16 calibration statistics on the GPU for TensorRT.

Statistics: :func:`histogram`, :func:`amax`, :func:`minmax`, the streaming
:class:`HistogramCollector` and :class:`MinMaxCollector`, and :func:`cuda_available`.
Tables and TensorRT feeds: :class:`CalibrationTable`, :mod:`trtcal.onnx`, :mod:`trtcal.tensorrt`.
End to end: :func:`calibrate`; which method to use: :func:`compare`; which layers break INT8:
:func:`analyze`.
"""

from ._backend import CUDAUnavailableError, cuda_available
from .analyze import analyze
from .calibration import calibrate
from .compare import compare
from .collectors import HistogramCollector, MinMaxCollector
from .results import Histogram
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
    "__version__",
]
