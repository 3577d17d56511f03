"""trtcal: fast, exact INT8/FP16 calibration statistics on the GPU for TensorRT.

Statistics (this module's top level): :func:`histogram`, :func:`amax`, :func:`minmax`,
the streaming :class:`HistogramCollector` and :class:`MinMaxCollector`, and
:func:`cuda_available`.

SiLU (for INT8 TensorRT engines of YOLO-style models): :func:`silu`, :func:`silu_int8`,
:func:`silu_int8_to_float`, :func:`silu_float_to_int8`, :func:`silu_int8_table`, and the
TensorRT plugin library at :func:`plugin_library_path`.
"""

from ._backend import CUDAUnavailableError, cuda_available
from .collectors import HistogramCollector, MinMaxCollector
from .plugin import plugin_library_path
from .results import Histogram
from .silu import silu, silu_float_to_int8, silu_int8, silu_int8_table, silu_int8_to_float
from .stats import amax, histogram, minmax

__version__ = "0.1.0"

__all__ = [
    "CUDAUnavailableError",
    "Histogram",
    "HistogramCollector",
    "MinMaxCollector",
    "amax",
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
