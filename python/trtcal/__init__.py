"""trtcal: fast, exact INT8/FP16 calibration for TensorRT.

- Statistics: :func:`histogram`, :func:`amax`, :func:`minmax`, the streaming
  :class:`HistogramCollector` and :class:`MinMaxCollector`, and :func:`cuda_available`.
- Ranges: :func:`compute_amax` (minmax, entropy, percentile, MSE for many tensors at once),
  :func:`search_ranges` (with chosen bins and curves) and the exact :func:`percentile`.
- Tables and TensorRT feeds: :class:`CalibrationTable`, :mod:`trtcal.onnx`, :mod:`trtcal.tensorrt`.
- End to end: :func:`calibrate`; which method to use: :func:`compare`; which layers break
  INT8: :func:`analyze`.
- SiLU (INT8 TensorRT engines of YOLO-style models): :func:`silu`, :func:`silu_int8`,
  :func:`silu_int8_to_float`, :func:`silu_float_to_int8`, :func:`silu_int8_table`, and the
  TensorRT plugin library at :func:`plugin_library_path`.
"""

from ._backend import CUDAUnavailableError, cuda_available
from .calibration import calibrate
from .collectors import HistogramCollector, MinMaxCollector
from .comparison import compare
from .percentile import percentile
from .plugin import plugin_library_path
from .range_search import RangeSearchResult, TensorRange, compute_amax, search_ranges
from .results import Histogram
from .sensitivity import analyze
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
    "RangeSearchResult",
    "TensorRange",
    "amax",
    "analyze",
    "calibrate",
    "compare",
    "compute_amax",
    "cuda_available",
    "histogram",
    "minmax",
    "percentile",
    "plugin_library_path",
    "search_ranges",
    "silu",
    "silu_float_to_int8",
    "silu_int8",
    "silu_int8_table",
    "silu_int8_to_float",
    "__version__",
]
