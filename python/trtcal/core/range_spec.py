"""What a range search computes and how its GPU kernel is launched: the methods and their
flavors, the checked parameters of one search (:func:`_spec`), and the kernel's method codes
and launch shape. Shared by the general search (:mod:`trtcal.core.range_search`) and the
batched driver for GPU collectors (:mod:`trtcal.core._range_batch`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

from ._backend import enum_codes
from .reference import range_search as ref

METHODS = ("minmax", "entropy", "percentile", "mse")
FLAVORS = {
    "minmax": ("trtcal",),
    "entropy": ("pytorch_quantization", "tensorrt", "onnxruntime"),
    "percentile": ("pytorch_quantization", "onnxruntime"),
    "mse": ("pytorch_quantization",),
}
# trtcal's default entropy flavor is pytorch-quantization's search (also ModelOpt's torch
# calibrator): it is what NVIDIA's maintained TensorRT quantization tool computes, so the
# ranges users already get do not move; it is float64 arithmetic end to end, so trtcal can
# reproduce it exactly; TensorRT's own calibrator is closed source.
DEFAULT_FLAVOR = {
    "minmax": "trtcal",
    "entropy": "pytorch_quantization",
    "percentile": "pytorch_quantization",
    "mse": "pytorch_quantization",
}
_PARAMS = {
    "bits",
    "levels",
    "start_bin",
    "stride",
    "percentile",
    "candidates_per_bin",
    "tie_tolerance",
    "eps",
}


@dataclass
class _Spec:
    method: str
    flavor: str
    bits: int = 8
    levels: int = 128
    start_bin: int = 0  # 0: the method's default (set by _spec)
    stride: int = 1
    percentile: float = 99.99
    candidates_per_bin: int = 1
    tie_tolerance: float = ref.TIE_TOLERANCE
    eps: float = 1e-4


def _spec(method: str, flavor: Optional[str], params: Dict[str, Any]) -> _Spec:
    if method not in METHODS:
        raise ValueError(f"trtcal: unknown method {method!r}; accepted: {', '.join(METHODS)}")
    flavor = DEFAULT_FLAVOR[method] if flavor is None else flavor
    if flavor not in FLAVORS[method]:
        raise ValueError(
            f"trtcal: unknown {method} flavor {flavor!r}; accepted: {', '.join(FLAVORS[method])}"
        )
    unknown = set(params) - _PARAMS
    if unknown:
        raise TypeError(
            f"trtcal: unknown parameter(s) {sorted(unknown)}; accepted: {sorted(_PARAMS)}"
        )
    s = _Spec(method, flavor)
    if flavor == "onnxruntime" and method == "percentile":
        s.percentile = 99.999
    for k, v in params.items():
        setattr(s, k, v)
    bits = int(s.bits)
    if not 2 <= bits <= 16:
        raise ValueError(f"trtcal: bits must be in [2, 16], got {bits}")
    if "levels" not in params:
        s.levels = 1 << (bits - 1)
    if params.get("start_bin") is None:
        s.start_bin = s.levels // 2 if (method == "entropy" and flavor == "onnxruntime") else 128
    for k in ("levels", "stride", "candidates_per_bin"):
        if int(getattr(s, k)) < 1:
            raise ValueError(f"trtcal: {k} must be >= 1, got {getattr(s, k)}")
    if int(s.start_bin) < 1:
        raise ValueError(f"trtcal: start_bin must be >= 1, got {s.start_bin}")
    if not 0.0 <= float(s.percentile) <= 100.0:
        raise ValueError(f"trtcal: percentile must be in [0, 100], got {s.percentile}")
    if not float(s.tie_tolerance) >= 0:
        raise ValueError("trtcal: tie_tolerance must be >= 0")
    return s


# Codes of csrc/kernels/range_search.h RangeMethod: read from trtcal._C.RangeMethod; the table is
# the fallback of the NumPy-only install (tests/test_extension_enums.py checks that they agree).
_CPU_RANGE_METHOD = {"entropy_proportional": 0, "entropy_onnxruntime": 1, "mse": 2, "percentile": 3}
_RANGE_METHOD = enum_codes("RangeMethod", _CPU_RANGE_METHOD)
_GPU_METHOD = {
    ("entropy", "pytorch_quantization"): _RANGE_METHOD["entropy_proportional"],
    ("entropy", "tensorrt"): _RANGE_METHOD["entropy_proportional"],
    ("entropy", "onnxruntime"): _RANGE_METHOD["entropy_onnxruntime"],
    ("mse", "pytorch_quantization"): _RANGE_METHOD["mse"],
}
# Threads per block by GPU method.
_THREADS = {
    _RANGE_METHOD["entropy_proportional"]: 256,
    _RANGE_METHOD["entropy_onnxruntime"]: 64,
    _RANGE_METHOD["mse"]: 256,
    _RANGE_METHOD["percentile"]: 128,
}
_SHAPE_ENV = "TRTCAL_RANGE_SEARCH_SHAPE"


def _launch_shape(
    method: int, threads: Optional[int], group: Optional[int], chunk: Optional[int]
) -> Tuple[int, int, int]:
    """(threads, group, chunk) of a plan; 0 lets the binding choose group/chunk from the SM count.

    Explicit arguments win; then the environment variable ``TRTCAL_RANGE_SEARCH_SHAPE``
    (``"threads=128,group=1,chunk=128"``, any subset: the fallback knob, e.g. that value is
    the pre-v2 shape of one thread per candidate); then the defaults.
    """
    env: Dict[str, int] = {}
    raw = os.environ.get(_SHAPE_ENV, "").strip()
    if raw:
        for part in raw.split(","):
            key, _, val = part.partition("=")
            key = key.strip()
            if key not in ("threads", "group", "chunk") or not val.strip().lstrip("-").isdigit():
                raise ValueError(
                    f"trtcal: {_SHAPE_ENV}={raw!r}: expected comma-separated threads=N, group=N, "
                    "chunk=N"
                )
            env[key] = int(val)
    t = threads if threads is not None else env.get("threads", _THREADS[method])
    g = group if group is not None else env.get("group", 0)
    c = chunk if chunk is not None else env.get("chunk", 0)
    return int(t), int(g), int(c)


def _gpu_method(s: _Spec) -> int:
    if s.method == "percentile":
        return _RANGE_METHOD["percentile"]
    return _GPU_METHOD[(s.method, s.flavor)]


# The names of what _kernel_params returns first, as the binding's keywords.
_KERNEL_PARAMS = (
    "method",
    "levels",
    "zero_bin_rule",
    "tie_last",
    "per_bin",
    "max_bound",
    "threads",
    "tol",
    "eps",
)


def _kernel_params(
    s: _Spec,
    method: int,
    threads: Optional[int] = None,
    group: Optional[int] = None,
    chunk: Optional[int] = None,
) -> Tuple[Any, ...]:
    """(method, levels, zero_bin_rule, tie_last, per_bin, max_bound, threads, tol, eps) and
    (group, chunk) as the binding takes them."""
    t, g, c = _launch_shape(method, threads, group, chunk)
    pq_entropy = s.flavor == "pytorch_quantization" and s.method == "entropy"
    return (
        (
            method,
            int(s.levels),
            pq_entropy,
            pq_entropy,
            int(s.candidates_per_bin),
            (1 << (int(s.bits) - 1)) - 1,
            t,
            float(s.tie_tolerance),
            float(s.eps),
        ),
        (g, c),
    )
