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

import importlib
from typing import Any, List

from . import _public_paths
from .api.analyze import analyze
from .api.calibrate import calibrate
from .api.compare import compare
from .core._backend import CUDAUnavailableError, cuda_available
from .core.collectors import HistogramCollector, MinMaxCollector
from .core.percentile import percentile
from .core.plugin import plugin_library_path
from .core.range_search import RangeSearchResult, TensorRange, compute_amax, search_ranges
from .core.results import Histogram
from .core.silu import silu, silu_float_to_int8, silu_int8, silu_int8_table, silu_int8_to_float
from .core.stats import amax, histogram, minmax
from .core.version import __version__
from .formats.table import CalibrationTable
from .pipeline.config import CalibrationConfig

# The short public paths (trtcal.onnx, trtcal.torch, trtcal.tensorrt, ...) name modules of the
# layers below; they load on first use (PEP 562 here, an import finder for ``import trtcal.onnx``),
# so ``import trtcal`` stays light and needs no optional dependency.
_public_paths.install()


def __getattr__(name: str) -> Any:
    if name in _public_paths.PUBLIC_PATHS or name == "cli":
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_public_paths.PUBLIC_PATHS) | {"cli"})


__all__ = [
    "CalibrationConfig",
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
