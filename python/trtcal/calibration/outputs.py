"""The one place where calibration meets the range-search and table APIs.

``trtcal.compute_amax`` turns histograms into thresholds; ``trtcal.CalibrationTable`` holds
them with provenance and writes the TensorRT cache and JSON; ``trtcal.onnx.quantize`` writes
the Q/DQ model. When this build lacks one of them, :class:`OutputUnavailable` says which.
"""

from __future__ import annotations

import importlib
from typing import Any, Dict, Iterable, Mapping, Optional

import numpy as np

from ..results import Histogram

METHODS = ("entropy", "percentile", "mse", "minmax")
DEFAULT_TENSORRT = "10.16"


class OutputUnavailable(RuntimeError):
    """A calibration output needs a trtcal API that this installation does not have."""


def _api(name: str, what: str):
    import trtcal

    if "." in name:
        mod, attr = name.rsplit(".", 1)
        try:
            obj = getattr(importlib.import_module(f"trtcal.{mod}"), attr, None)
        except ImportError:
            obj = None
    else:
        obj = getattr(trtcal, name, None)
    if obj is None:
        raise OutputUnavailable(f"trtcal: {what} needs trtcal.{name}, which this trtcal build does not provide")
    return obj


def available() -> Dict[str, bool]:
    """Which output APIs exist: compute_amax, CalibrationTable, onnx.quantize."""
    out = {}
    for name in ("compute_amax", "CalibrationTable", "onnx.quantize"):
        try:
            _api(name, name)
            out[name] = True
        except OutputUnavailable:
            out[name] = False
    return out


def thresholds(hists: Mapping[str, Histogram], methods: Iterable[str], flavor: Optional[str] = None,
               params: Optional[Mapping[str, Any]] = None) -> Dict[str, Dict[str, float]]:
    """{method: {tensor: amax}} from the collected histograms (one histogram, every method).

    Tensors whose histogram has no range (all values zero, or no finite values) get amax 0
    for min-max and are left out of the searches.
    """
    params = dict(params or {})
    out: Dict[str, Dict[str, float]] = {}
    usable = {n: h for n, h in hists.items() if h.status == "ok"}
    for m in methods:
        if m == "minmax":
            out[m] = {n: float(h.amax) for n, h in hists.items()}
            continue
        compute_amax = _api("compute_amax", f"the '{m}' method")
        kw: Dict[str, Any] = dict(params.get(m, {})) if isinstance(params.get(m), Mapping) else {}
        if flavor is not None:
            kw["flavor"] = flavor
        pairs = {n: (h.counts, h.edges) for n, h in usable.items()}
        res = compute_amax(pairs, method=m, **kw) if pairs else {}
        out[m] = {n: float(res[n]) for n in usable}
    return out


# provenance keys of a calibration run -> fields of trtcal.table.Provenance (the rest go to extra)
_PROVENANCE_FIELDS = {"method": "method", "flavor": "flavor", "bins": "bins", "samples": "num_samples",
                      "batches": "num_batches", "nonfinite": "nonfinite", "trtcal_version": "trtcal_version",
                      "percentile": "percentile"}


def make_table(amax: Mapping[str, float], provenance: Mapping[str, Any]):
    """A :class:`trtcal.CalibrationTable` of one method's thresholds with provenance.

    Run facts with a Provenance field (method, flavor, bins, samples, batches, ...) fill it;
    everything else (model, data, preprocessing, runner, tensorrt_version, ...) goes to
    ``provenance.extra``, where the cache writer also finds the TensorRT version.
    """
    CalibrationTable = _api("CalibrationTable", "writing a calibration table")
    prov: Dict[str, Any] = {}
    extra: Dict[str, Any] = {}
    for k, v in provenance.items():
        if k in _PROVENANCE_FIELDS:
            if v is not None:
                prov[_PROVENANCE_FIELDS[k]] = v
        else:
            extra[k] = v
    prov["extra"] = extra
    return CalibrationTable(dict(amax), provenance=prov)


def write_json(table: Any, path: str) -> str:
    table.to_json(path)
    return path


def write_cache(table: Any, path: str, tensorrt_version: Optional[str], method: str) -> str:
    """TensorRT's text cache. The header names EntropyCalibration2 for every method except
    min-max: trtexec's own calibrator is an entropy calibrator and skips a cache whose
    algorithm differs, and the scales inside are whatever method chose them."""
    algorithm = "MinMaxCalibration" if method == "minmax" else "EntropyCalibration2"
    table.to_cache(path, tensorrt_version=tensorrt_version or DEFAULT_TENSORRT, algorithm=algorithm)
    return path


def write_qdq(model: Any, table: Any, path: str) -> str:
    """The Q/DQ ONNX model. Tensors without a usable range (amax 0: all-zero activations) stay
    in float (``missing='skip'``)."""
    quantize = _api("onnx.quantize", "writing a Q/DQ model")
    usable = {n: a for n, a in table.items() if a > 0 and np.isfinite(a)}
    quantize(model, usable, missing="skip", output=path)
    return path


def amax_array(values: Mapping[str, float]) -> np.ndarray:
    return np.asarray(list(values.values()), dtype=np.float64)
