"""trtcal: fast, exact INT8/FP16 calibration statistics on the GPU for TensorRT.

Statistics (this module's top level): :func:`histogram`, :func:`amax`, :func:`minmax`,
the streaming :class:`HistogramCollector` and :class:`MinMaxCollector`, and
:func:`cuda_available`.
Ranges: :func:`compute_amax` (minmax, entropy, percentile, MSE for many tensors at once),
:func:`search_ranges` (with chosen bins and curves) and the exact :func:`percentile`.
"""

from ._backend import CUDAUnavailableError, cuda_available
from .collectors import HistogramCollector, MinMaxCollector
from .percentile import percentile
from .range_search import RangeSearchResult, TensorRange, compute_amax, search_ranges
from .results import Histogram
from .stats import amax, histogram, minmax

__version__ = "0.1.0"

__all__ = [
    "CUDAUnavailableError",
    "Histogram",
    "HistogramCollector",
    "MinMaxCollector",
    "RangeSearchResult",
    "TensorRange",
    "amax",
    "compute_amax",
    "cuda_available",
    "histogram",
    "minmax",
    "percentile",
    "search_ranges",
    "__version__",
]
