"""trtcal: fast, exact INT8/FP16 calibration statistics on the GPU for TensorRT.

Statistics (this module's top level): :func:`histogram`, :func:`amax`, :func:`minmax`,
the streaming :class:`HistogramCollector` and :class:`MinMaxCollector`, and
:func:`cuda_available`.
"""

from ._backend import CUDAUnavailableError, cuda_available
from .collectors import HistogramCollector, MinMaxCollector
from .results import Histogram
from .stats import amax, histogram, minmax
from .table import CalibrationTable

__version__ = "0.1.0"

__all__ = [
    "CalibrationTable",
    "CUDAUnavailableError",
    "Histogram",
    "HistogramCollector",
    "MinMaxCollector",
    "amax",
    "cuda_available",
    "histogram",
    "minmax",
    "__version__",
]
