"""FP8 (E4M3FN) ranges from the collected |x| histograms: max, percentile, and the amax searched
on the E4M3 grid itself (MSE or KL between the float histogram and its E4M3 quantization with
amax mapped to 448).

The histograms are those of the one statistics pass every other method uses (a
:class:`~trtcal.HistogramCollector`, a :class:`~trtcal.Histogram`, a raw ``(counts, edges)``
pair, or a mapping name -> either). On the GPU one launch searches every tensor (and one more
picks the minima); on the CPU the float64 reference :mod:`trtcal.reference.fp8` runs, which is
also the GPU's test oracle. Definitions, the tie rule and the sources: docs/fp8.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import range_search as rs
from ._backend import cuda_available, require_cuda
from .reference import fp8 as ref
from .reference.range_search import TIE_TOLERANCE, fold_signed, pick

__all__ = ["E4M3_MAX", "FP8_METHODS", "Fp8Range", "fp8_amax", "fp8_search"]

FP8_METHODS = ("mse", "kl", "max", "percentile")
E4M3_MAX = ref.E4M3_MAX
_GPU_METHOD = {"mse": 0, "kl": 1}


@dataclass
class Fp8Range:
    """One tensor's FP8 range.

    ``amax`` is NaN unless ``status == 'ok'`` (the scale is ``amax / 448``). For the searches,
    ``bin`` is the chosen bin (MSE: the bin whose centre is amax; KL: the number of kept bins,
    amax its upper edge), ``candidates`` the candidate amax values and ``curve`` their MSE or KL.
    """

    name: str
    method: str
    amax: float
    status: str = "ok"
    message: str = ""
    bin: int | None = None
    index: int | None = None
    candidates: np.ndarray | None = None
    curve: np.ndarray | None = None
    device: str = "cpu"


@dataclass
class _Job:
    name: str
    counts: np.ndarray
    edges: np.ndarray
    bins: np.ndarray  # candidate bins (MSE: centre index; KL: kept bins)
    amaxes: np.ndarray


def _prepare(item: Any, method: str, start_bin: int, stride: int) -> _Job | Fp8Range:
    name = item.name
    if item.status != "ok":
        return Fp8Range(name, method, math.nan, item.status, item.message)
    counts, edges = item.counts, item.edges
    if item.signed:
        counts, edges = fold_signed(counts, edges, name)
    n = counts.size
    last = n - 1 if method == "mse" else n
    if start_bin > last:
        return Fp8Range(
            name,
            method,
            math.nan,
            "too-few-bins",
            f"trtcal: histogram of '{name}' has {n} bins; the FP8 {method} search starts at bin "
            f"{start_bin} (pass a smaller start_bin)",
        )
    if method == "mse":
        bins, amaxes = ref.mse_candidates(edges, start_bin, stride)
    else:
        bins, amaxes = ref.kl_candidates(edges, start_bin, stride)
    ok = np.isfinite(amaxes) & (amaxes > 0)
    if not ok.all():  # a raw histogram whose first candidate edges are <= 0 cannot be a scale
        bins, amaxes = bins[ok], amaxes[ok]
        if bins.size == 0:
            return Fp8Range(
                name,
                method,
                math.nan,
                "degenerate",
                f"trtcal: no positive candidate amax in the histogram of '{name}'",
            )
    return _Job(name, np.asarray(counts, np.int64), np.asarray(edges, np.float64), bins, amaxes)


def _finish(job: _Job, method: str, index: int, curve: np.ndarray, device: str) -> Fp8Range:
    r = Fp8Range(
        job.name,
        method,
        float(job.amaxes[index]),
        bin=int(job.bins[index]),
        index=int(index),
        candidates=job.amaxes,
        curve=curve,
        device=device,
    )
    if not math.isfinite(float(curve[index])):
        r.status, r.amax = "degenerate", math.nan
        r.message = (
            f"trtcal: every FP8 {method} candidate of '{job.name}' has an infinite divergence"
        )
    return r


def _run_cpu(jobs: list[_Job], method: str, tol: float) -> list[Fp8Range]:
    out = []
    for j in jobs:
        if method == "mse":
            curve = ref.mse_curve(j.counts, j.edges, j.amaxes)
        else:
            curve = ref.kl_curve(j.counts, j.edges, j.bins)
        out.append(_finish(j, method, pick(curve, "first", tol), curve, "cpu"))
    return out


def _run_gpu(jobs: list[_Job], method: str, tol: float, device: int) -> list[Fp8Range]:
    ext = require_cuda("the FP8 range search on the GPU")
    counts = np.concatenate([j.counts for j in jobs]).astype(np.int64)
    centers = np.concatenate([ref.bin_centers(j.edges) for j in jobs])
    nbins = np.array([j.counts.size for j in jobs], np.int32)
    totals = np.array([int(j.counts.sum()) for j in jobs], np.int64)
    ncand = np.array([j.amaxes.size for j in jobs], np.int32)
    keep = np.concatenate([j.bins for j in jobs]).astype(np.int32)
    amax = np.concatenate([j.amaxes for j in jobs]).astype(np.float64)
    stream = ext.PrivateStream(device)
    index, curve = ext.fp8_search(
        device,
        _GPU_METHOD[method],
        counts,
        centers,
        nbins,
        totals,
        ncand,
        keep,
        amax,
        float(tol),
        stream.handle,
    )
    out, off = [], 0
    for t, j in enumerate(jobs):
        k = j.amaxes.size
        out.append(
            _finish(j, method, int(index[t]), np.array(curve[off : off + k]), f"cuda:{device}")
        )
        off += k
    return out


def _device(device: str | None) -> tuple[str, int]:
    if device is None:
        return ("cuda", 0) if cuda_available() else ("cpu", -1)
    if device == "cpu":
        return "cpu", -1
    if device == "cuda":
        return "cuda", 0
    if device.startswith("cuda:") and device[5:].isdigit():
        return "cuda", int(device[5:])
    raise ValueError(f"trtcal: device must be None, 'cpu', 'cuda' or 'cuda:N', got {device!r}")


def fp8_search(
    hist: Any,
    method: str = "mse",
    *,
    percentile: float = 99.99,
    start_bin: int = 128,
    stride: int = 1,
    tie_tolerance: float = TIE_TOLERANCE,
    device: str | None = None,
) -> dict[str, Fp8Range]:
    """Every tensor's FP8 range by ``method``, with chosen bins, curves and statuses; never raises
    for a degenerate tensor (see each ``Fp8Range.status``). Arguments as :func:`fp8_amax`."""
    if method not in FP8_METHODS:
        raise ValueError(
            f"trtcal: unknown FP8 method {method!r}; accepted: {', '.join(FP8_METHODS)}"
        )
    if int(start_bin) < 1 or int(stride) < 1:
        raise ValueError(f"trtcal: start_bin and stride must be >= 1, got {start_bin} and {stride}")
    if not float(tie_tolerance) >= 0:
        raise ValueError("trtcal: tie_tolerance must be >= 0")
    kind, dev = _device(device)
    items, _ = rs._items(hist)
    names = [it.name for it in items]
    if len(set(names)) != len(names):
        raise ValueError("trtcal: tensor names must be unique")
    out: dict[str, Fp8Range] = {}
    if method in ("max", "percentile"):
        # the same amax as INT8's: neither depends on the number format
        m = "minmax" if method == "max" else "percentile"
        res = rs.search_ranges(
            hist, m, device="cpu" if kind == "cpu" else device, percentile=percentile
        )
        for n, r in res.ranges[m].items():
            out[n] = Fp8Range(
                n, method, float(r.amax), r.status, r.message, bin=r.bin, device=r.device
            )
        return out
    jobs: list[_Job] = []
    for it in items:
        j = _prepare(it, method, int(start_bin), int(stride))
        if isinstance(j, Fp8Range):
            out[it.name] = j
        else:
            jobs.append(j)
    if jobs:
        done = (
            _run_cpu(jobs, method, tie_tolerance)
            if kind == "cpu"
            else _run_gpu(jobs, method, tie_tolerance, dev)
        )
        for fr in done:
            out[fr.name] = fr
    return {n: out[n] for n in names}


def fp8_amax(
    hist: Any,
    method: str = "mse",
    *,
    percentile: float = 99.99,
    start_bin: int = 128,
    stride: int = 1,
    tie_tolerance: float = TIE_TOLERANCE,
    device: str | None = None,
    on_degenerate: str = "raise",
) -> float | dict[str, float]:
    """amax of each tensor for FP8 E4M3 (scale = amax / 448).

    Parameters
    ----------
    hist : HistogramCollector, Histogram, (counts, edges) pair, or mapping name -> either
        |x| histograms (a signed one is folded to |x|); trtcal's histograms are searched over
        their occupied bins.
    method : 'mse' (default), 'kl', 'max', 'percentile'
        'mse' / 'kl': the candidate whose E4M3 quantization of the histogram has the least
        mean squared error / KL divergence (docs/fp8.md); 'max': the largest |x|; 'percentile':
        the ``percentile`` of |x| (the INT8 methods' amax: neither depends on the format).
    percentile : float
        For 'percentile' (99.99).
    start_bin, stride : int
        Searched candidates: bin ``start_bin`` (128) onwards, every ``stride`` (1).
    tie_tolerance : float
        Candidates within ``tie_tolerance * (1 + |min|)`` of the minimum tie; the first wins.
    device : None (GPU when available), 'cpu' (the float64 reference), 'cuda', 'cuda:N'
    on_degenerate : 'raise' (ValueError naming the tensor) or 'flag' (NaN)

    Returns
    -------
    float for one histogram, {name: float} for a mapping. Waits for the GPU.
    """
    if on_degenerate not in ("raise", "flag"):
        raise ValueError(f"trtcal: on_degenerate must be 'raise' or 'flag', got {on_degenerate!r}")
    res = fp8_search(
        hist,
        method,
        percentile=percentile,
        start_bin=start_bin,
        stride=stride,
        tie_tolerance=tie_tolerance,
        device=device,
    )
    if on_degenerate == "raise":
        for n, r in res.items():
            if r.status != "ok":
                raise ValueError(r.message or f"trtcal: FP8 {method} range of '{n}' is {r.status}")
    amax = {n: r.amax for n, r in res.items()}
    if isinstance(hist, Mapping):
        return amax
    return next(iter(amax.values()))
