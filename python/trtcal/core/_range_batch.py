"""``compute_amax`` for many GPU collectors at once, with the host work vectorised.

The general path (:mod:`trtcal.core.range_search`) reads each collector's histogram to the host and
prepares and finishes each (tensor, method) in Python: fine for tens of tensors, but about
60 us a pair, so 1000 collectors x 3 methods spent ~190 ms on the host around 2.4 ms of
kernels. Here the collectors' states come back in one gather (their counts stay on the GPU,
where the kernels read them in place), every descriptor array is built with NumPy over all
tensors, the search is one call of the extension per method in its cached workspace, and
amax is computed from the chosen indices with the same float64 arithmetic as
``range_search._finish`` (bit for bit; tests/test_range_batch.py checks it against the general
path). Anything unusual (a signed or empty histogram, a degenerate result, a flavor or
parameter this path does not cover, collectors on several streams) returns ``None`` and the
general path answers, with its statuses and messages.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from ._backend import require_cuda
from ._streams import stream_handle
from .collectors import HistogramCollector
from .range_spec import _KERNEL_PARAMS, FLAVORS, _gpu_method, _kernel_params, _spec

# (method, flavor) pairs this path covers: |x| histograms, candidates on the bins.
_COVERED = {
    ("minmax", "trtcal"),
    ("entropy", "pytorch_quantization"),
    ("entropy", "tensorrt"),
    ("percentile", "pytorch_quantization"),
    ("mse", "pytorch_quantization"),
}


class Batch:
    """Many unsigned streaming histograms as arrays: bins, exact amax, and the occupied
    prefix of each (``k`` bins ending at ``hi``), as ``range_search._from_histogram`` cuts it."""

    def __init__(
        self,
        names: List[str],
        bins: np.ndarray,
        exponent: np.ndarray,
        amax: np.ndarray,
        counts_ptrs: np.ndarray,
    ) -> None:
        self.names = names
        self.bins = bins.astype(np.int64)
        self.amax = amax.astype(np.float64)
        rng = np.ldexp(1.0, exponent.astype(np.int64))
        self.k = np.minimum(self.bins, np.floor(self.amax * self.bins / rng).astype(np.int64) + 1)
        full = np.where(self.k == self.bins, rng, self.k * (rng / self.bins))  # linspace(0, R)[k]
        self.hi = full
        self.counts_ptrs = counts_ptrs.astype(np.uint64)

    def edge(self, i: np.ndarray) -> np.ndarray:
        """Edge i of each tensor's cut histogram, linspace(0, hi, k + 1)[i], as NumPy computes
        it."""
        return np.where(i == self.k, self.hi, i * (self.hi / self.k))


def plan(b: Batch, s: Any) -> Optional[Dict[str, np.ndarray]]:
    """Descriptor arrays for the binding, or None when some tensor needs the general path."""
    T = len(b.names)
    k = b.k
    lin = np.stack([np.zeros(T), b.hi / k, b.hi], axis=1)
    targets = np.zeros((T, 2))
    targets[:, 1] = -1.0  # no second target
    cands = np.zeros((T, 3), np.int32)
    start, stride = int(s.start_bin), int(s.stride)
    if s.method == "percentile":
        targets[:, 0] = float(s.percentile) / 100.0
    else:
        if s.method == "entropy":
            stop = k if s.flavor == "pytorch_quantization" else k - 1
        else:  # mse: candidates start_bin .. k - 1
            stop = k - 1
        if (start > stop).any() or (k < 2).any():
            return None
        ncand = (stop - start) // stride + 1
        cands[:, 0] = start
        cands[:, 1] = np.where(ncand > 1, stride, 1)
        cands[:, 2] = ncand
    return {
        "counts_ptrs": b.counts_ptrs,
        "nbins": k.astype(np.int32),
        "edges_ptrs": np.zeros(T, np.uint64),
        "linspace": lin.ravel(),
        "grid": np.zeros(2 * T),
        "targets": targets.ravel(),
        "cands": cands.ravel(),
    }


def amax_from(b: Batch, s: Any, index: np.ndarray) -> np.ndarray:
    """amax of each tensor from the chosen candidate index (``_finish``'s arithmetic)."""
    index = np.asarray(index, dtype=np.int64)
    if s.method == "percentile":
        return b.edge(np.minimum(index, b.k))
    i = int(s.start_bin) + index * int(s.stride)
    if s.method == "entropy" and s.flavor == "tensorrt":
        return (b.edge(i) + b.edge(i + 1)) * 0.5
    if s.method == "entropy":
        return b.edge(i)
    return (b.edge(i) + b.edge(i + 1)) * 0.5  # mse: the bin center


def batch_of_collectors(hist: Any, device: Optional[str], stream: Any):
    """(Batch, device, stream handle) for a mapping of unsigned GPU collectors on one device and
    one stream, or None."""

    if not isinstance(hist, Mapping) or not hist:
        return None
    cols = list(hist.values())
    if not all(type(c) is HistogramCollector and c._gpu is not None and not c.signed for c in cols):
        return None
    dev = cols[0]._device
    if any(c._device != dev for c in cols) or device not in (None, "cuda", f"cuda:{dev}"):
        return None
    if stream is not None:
        handle = stream_handle(stream)
    else:
        streams = {c._stream for c in cols}
        if len(streams) != 1:
            return None
        handle = streams.pop()
    names = [str(n) for n in hist]
    if len(set(names)) != len(names):
        return None
    ext = require_cuda("range search on the GPU")
    st = ext.histogram_read_states([c._gpu for c in cols], handle, dev)
    if not st["has_range"].all():
        return None  # empty or all-zero tensors: the general path names them
    ptrs = np.fromiter((c._gpu.counts_ptr for c in cols), np.uint64, len(cols))
    return (
        Batch(
            names,
            np.fromiter((c.bins for c in cols), np.int64, len(cols)),
            st["exponent"],
            st["amax"],
            ptrs,
        ),
        dev,
        handle,
    )


def compute_amax_collectors(
    hist: Any,
    methods: Sequence[str],
    flavor: Any,
    device: Optional[str],
    stream: Any,
    params: Dict[str, Any],
) -> Optional[Dict[str, Dict[str, float]]]:
    """{method: {name: amax}} for many GPU collectors, or None (then the general path runs)."""

    specs = []
    for m in methods:
        fl = flavor.get(m) if isinstance(flavor, Mapping) else flavor
        if isinstance(flavor, str) and flavor not in FLAVORS.get(m, ()):
            fl = None if len(methods) > 1 else flavor  # search_ranges' rule
        mparams = {k: v for k, v in params.items() if k != "percentile" or m == "percentile"}
        s = _spec(m, fl, mparams)
        if (s.method, s.flavor) not in _COVERED:
            return None
        if s.method == "mse" and int(s.candidates_per_bin) != 1:
            return None
        specs.append(s)
    got = batch_of_collectors(hist, device, stream)
    if got is None:
        return None
    b, dev, handle = got
    ext = require_cuda("range search on the GPU")
    out: Dict[str, Dict[str, float]] = {}
    for s in specs:
        if s.method == "minmax":
            a = b.amax
        else:
            arrays = plan(b, s)
            if arrays is None:
                return None
            method = _gpu_method(s)  # _COVERED holds proportional entropy only
            kparams, (group, chunk) = _kernel_params(s, method)
            empty_i, empty_f = np.zeros(0, np.int64), np.zeros(0)
            none = np.full(len(b.names), -1, np.int64)
            idx, _idx2, _val, _curve = ext.range_search_once(
                device=dev,
                **dict(zip(_KERNEL_PARAMS, kparams)),
                counts_ptrs=arrays["counts_ptrs"],
                nbins=arrays["nbins"],
                edges_ptrs=arrays["edges_ptrs"],
                linspace=arrays["linspace"],
                grid=arrays["grid"],
                targets=arrays["targets"],
                cands=arrays["cands"],
                group=group,
                chunk=chunk,
                host_counts=empty_i,
                host_counts_off=none,
                host_edges=empty_f,
                host_edges_off=none,
                stream=handle,
                with_curve=False,
            )
            a = amax_from(b, s, idx)
        if not (np.isfinite(a).all() and (a > 0).all()):
            return None  # a degenerate tensor: the general path raises or flags it by name
        out[s.method] = dict(zip(b.names, a.tolist()))
    return out
