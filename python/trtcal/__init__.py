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

# The subpackages that need an optional dependency (onnx, torch, tensorrt) load on first
# attribute access (PEP 562), so ``import trtcal`` stays light and ``trtcal.onnx.quantize``,
# ``trtcal.torch.collect`` and ``trtcal.tensorrt.EntropyCalibrator2`` work without importing
# the subpackage first. Their own imports of onnx/torch/tensorrt happen when a function is called.
_LAZY_SUBMODULES = ("onnx", "torch", "tensorrt", "distributed", "cli", "fp8", "tasks", "precision_choice")


def __getattr__(name: str):
    if name in _LAZY_SUBMODULES:
        import importlib

        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY_SUBMODULES))

__all__ = [
    "CUDAUnavailableError",
    "CalibrationTable",
    "Histogram",
    "HistogramCollector",
    "MinMaxCollector",
    "RangeSearchResult",
    "TensorRange",
    "__version__",
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
]
