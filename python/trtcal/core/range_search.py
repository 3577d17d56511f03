"""Range search: each tensor's amax by minmax, entropy (KL), percentile and MSE.

:func:`compute_amax` takes a :class:`~trtcal.HistogramCollector`, a :class:`~trtcal.Histogram`,
a raw ``(counts, edges)`` pair (any peer's histogram as is), or a mapping name -> either, and
runs every requested method for every tensor: on the GPU one kernel launch per method
covers all tensors (ragged bin counts included); on the CPU the vectorised float64
reference in :mod:`trtcal.reference.range_search` runs (it is also the GPU's test oracle).
See docs/range-search.md for the flavors and how they reproduce the peers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ._backend import cuda_available, require_cuda
from ._range_batch import compute_amax_collectors
from ._streams import stream_handle
from .collectors import HistogramCollector
from .range_spec import (
    _GPU_METHOD,
    _KERNEL_PARAMS,
    _RANGE_METHOD,
    FLAVORS,
    _gpu_method,
    _kernel_params,
    _Spec,
    _spec,
)
from .reference import range_search as ref
from .results import Histogram

STATUSES = ("ok", "empty", "all-zero", "nonfinite", "too-few-bins", "degenerate")

HistLike = Any


@dataclass
class TensorRange:
    """One tensor's result for one method.

    ``amax`` is NaN unless ``status == 'ok'``. ``bin`` is the chosen candidate: the number of
    kept bins (proportional entropy), the half-width around the zero bin (ONNX Runtime
    entropy), the CDF index (percentile) or the candidate index (MSE). ``lo``/``hi`` are the
    (possibly asymmetric) range the flavor returns; ``amax = max(|lo|, |hi|)``.
    ``candidates``/``thresholds``/``curve`` give the searched curve (KL or MSE per candidate
    amax) for plots.
    """

    name: str
    method: str
    flavor: str
    amax: float
    status: str = "ok"
    message: str = ""
    bin: Optional[int] = None
    lo: Optional[float] = None
    hi: Optional[float] = None
    candidates: Optional[np.ndarray] = None
    thresholds: Optional[np.ndarray] = None
    curve: Optional[np.ndarray] = None
    device: str = "cpu"


@dataclass
class RangeSearchResult:
    """All methods for all tensors: ``result[method][name] -> amax`` and
    ``result.ranges[method][name] -> TensorRange``."""

    ranges: Dict[str, Dict[str, TensorRange]] = field(default_factory=dict)

    def __getitem__(self, method: str) -> Dict[str, float]:
        return {n: r.amax for n, r in self.ranges[method].items()}

    def __iter__(self):
        return iter(self.ranges)

    def __len__(self) -> int:
        return len(self.ranges)

    def methods(self) -> List[str]:
        return list(self.ranges)

    def by_tensor(self) -> Dict[str, Dict[str, float]]:
        """name -> {method: amax}."""
        out: Dict[str, Dict[str, float]] = {}
        for m, per in self.ranges.items():
            for n, r in per.items():
                out.setdefault(n, {})[m] = r.amax
        return out

    def status(self) -> Dict[str, Dict[str, str]]:
        """name -> {method: status}."""
        out: Dict[str, Dict[str, str]] = {}
        for m, per in self.ranges.items():
            for n, r in per.items():
                out.setdefault(n, {})[m] = r.status
        return out


# -- inputs ---------------------------------------------------------------------------------


@dataclass
class _Item:
    name: str
    counts: np.ndarray  # int64 host copy
    edges: np.ndarray  # float64
    signed: bool
    linspace: Optional[Tuple[float, float]] = None  # edges == np.linspace(lo, hi, n + 1)
    amax: Optional[float] = None  # exact max |x| when known (collectors)
    vmin: Optional[float] = None
    vmax: Optional[float] = None
    status: str = "ok"
    message: str = ""
    device_ptr: Optional[int] = None  # counts already on this GPU (a collector's buffer)
    device: int = -1
    stream: Optional[int] = None


def _from_histogram(
    h: Histogram,
    name: str,
    ptr: Optional[int] = None,
    device: int = -1,
    stream: Optional[int] = None,
) -> _Item:
    counts = np.asarray(h.counts, dtype=np.int64)
    item = _Item(
        name,
        counts,
        np.zeros(counts.size + 1),
        h.signed,
        amax=float(h.amax),
        vmin=h.min,
        vmax=h.max,
        device_ptr=ptr,
        device=device,
        stream=stream,
    )
    if h.range is None:
        item.status = "empty" if h.total == 0 else "all-zero"
        item.message = (
            f"trtcal: tensor '{name}' has no finite values"
            if h.total == 0
            else f"trtcal: every finite value of tensor '{name}' is 0: amax would be 0, "
            "which is no usable INT8 scale"
        )
        item.edges = np.linspace(-1.0 if h.signed else 0.0, 1.0, counts.size + 1)
        return item
    # trtcal's grid is a power of two above amax: only the bins up to bin(amax) on each side
    # can be occupied. The search runs over those, as it would on a peer's [0, amax] (or
    # [-amax, amax]) histogram, so no threshold lands in the empty top of the grid, and a
    # signed histogram folds to exactly the |x| histogram of half its bins.
    full = np.linspace(-h.range if h.signed else 0.0, h.range, counts.size + 1)
    half = counts.size // 2 if h.signed else counts.size
    k = min(half, int(math.floor(float(h.amax) * half / h.range)) + 1)
    first = half - k if h.signed else 0
    stop = half + k if h.signed else k
    item.counts = counts = counts[first:stop]
    lo, hi = float(full[first]), float(full[stop])
    item.edges = np.linspace(lo, hi, counts.size + 1)
    item.linspace = (lo, hi)
    if ptr is not None and first:
        item.device_ptr = ptr + 8 * first
    return item


def _from_pair(pair: Sequence[Any], name: str) -> _Item:
    if len(pair) not in (2, 4, 5):
        raise TypeError(
            f"trtcal: histogram of '{name}' must be a (counts, edges) pair (or ONNX Runtime's "
            "(hist, edges, min, max[, threshold]) tuple)"
        )
    vmin = vmax = None
    if len(pair) >= 4:  # ONNX Runtime's histogram_dict entry: min/max clamp its thresholds
        vmin, vmax = float(np.asarray(_to_numpy(pair[2]))), float(np.asarray(_to_numpy(pair[3])))
    counts = _to_numpy(pair[0])
    edges = np.asarray(_to_numpy(pair[1]), dtype=np.float64).ravel()
    counts = counts.ravel()
    if counts.size == 0:
        it = _Item(
            name,
            np.zeros(0, np.int64),
            edges,
            False,
            status="empty",
            message=f"trtcal: histogram of '{name}' has no bins",
        )
        return it
    if edges.size != counts.size + 1:
        raise ValueError(
            f"trtcal: histogram of '{name}' has {counts.size} counts but {edges.size} edges "
            f"(expected {counts.size + 1})"
        )
    if not np.all(np.isfinite(edges)) or not np.all(np.diff(edges) > 0):
        raise ValueError(f"trtcal: edges of '{name}' must be finite and strictly increasing")
    item = _Item(
        name, np.zeros(counts.size, np.int64), edges, bool(edges[0] < 0), vmin=vmin, vmax=vmax
    )
    if counts.dtype.kind == "f":
        if not np.all(np.isfinite(counts)):
            item.status = "nonfinite"
            item.message = f"trtcal: counts of '{name}' contain NaN or Inf"
            return item
        if np.any(counts != np.round(counts)):
            raise ValueError(f"trtcal: counts of '{name}' must be whole numbers")
    elif counts.dtype.kind not in "iub":
        raise TypeError(
            f"trtcal: counts of '{name}' have dtype {counts.dtype}; expected integers or floats"
        )
    if np.any(counts < 0):
        raise ValueError(f"trtcal: counts of '{name}' must be non-negative")
    item.counts = counts.astype(np.int64)
    if item.counts.sum() == 0:
        item.status = "empty"
        item.message = f"trtcal: histogram of '{name}' is empty (all counts are 0)"
    return item


def _to_numpy(x: Any) -> np.ndarray:
    if type(x).__module__.split(".")[0] == "torch":
        x = x.detach().cpu().numpy()
    elif hasattr(x, "get") and type(x).__module__.split(".")[0] == "cupy":
        x = x.get()
    return np.asarray(x)


def _item_of(h: HistLike, name: str) -> _Item:

    if isinstance(h, HistogramCollector):
        hist = h.histogram()
        ptr = None
        if h._gpu is not None and not hist.signed:
            ptr = int(h._gpu.counts_ptr)
        return _from_histogram(
            hist, name, ptr, h._device if h._device is not None else -1, h._stream
        )
    if isinstance(h, Histogram):
        return _from_histogram(h, name)
    if isinstance(h, (tuple, list)):
        return _from_pair(h, name)
    raise TypeError(
        f"trtcal: cannot search a range in {type(h).__name__} for '{name}': pass a "
        "HistogramCollector, a trtcal.Histogram or a (counts, edges) pair"
    )


def _items(hist: Any) -> Tuple[List[_Item], bool]:
    if isinstance(hist, Mapping):
        return [_item_of(h, str(n)) for n, h in hist.items()], True
    return [_item_of(hist, getattr(hist, "name", "tensor"))], False


# -- parameters -----------------------------------------------------------------------------


# -- per-method planning (host) -------------------------------------------------------------


@dataclass
class _Job:
    """One tensor prepared for one method: counts/edges in the method's domain + candidates."""

    item: _Item
    counts: np.ndarray
    edges: np.ndarray
    linspace: Optional[Tuple[float, float]]
    cands: Optional[np.ndarray] = None  # candidate bins (entropy/mse per_bin == 1)
    grid: Optional[Tuple[float, float, int]] = None  # mse fine grid
    targets: Tuple[float, float] = (0.0, -1.0)
    device_ptr: Optional[int] = None


def _prepare(item: _Item, s: _Spec) -> Union[_Job, TensorRange]:
    name = item.name

    def bad(status: str, msg: str) -> TensorRange:
        return TensorRange(name, s.method, s.flavor, math.nan, status, msg)

    if item.status != "ok":
        return bad(item.status, item.message)
    counts, edges, lin, ptr = item.counts, item.edges, item.linspace, item.device_ptr
    n = counts.size
    if s.method == "entropy" and s.flavor == "onnxruntime":
        if not item.signed:
            raise ValueError(
                f"trtcal: the onnxruntime entropy flavor needs a signed histogram of '{name}' "
                "(ONNX Runtime "
                "searches x over [-T, T]); collect with HistogramCollector(signed=True) or pass "
                "ONNX Runtime's "
                "own (hist, edges); the |x| histogram cannot be unfolded"
            )
        half = n // 2
        if n < s.levels or s.start_bin > half:
            return bad(
                "too-few-bins",
                f"trtcal: histogram of '{name}' has {n} bins; the onnxruntime entropy "
                f"search needs at least {max(s.levels, 2 * s.start_bin)}",
            )
        return _Job(
            item,
            counts,
            edges,
            lin,
            cands=np.arange(s.start_bin, half + 1, s.stride),
            device_ptr=ptr,
        )
    if s.method == "percentile" and s.flavor == "onnxruntime":
        p = float(s.percentile)
        if item.signed:
            cut = (100.0 - p) / 200.0
            targets = (cut, 1.0 - cut)
        else:
            targets = (p / 100.0, -1.0)
        return _Job(item, counts, edges, lin, targets=targets, device_ptr=ptr)
    # |x| domain for everything else
    if item.signed:
        counts, edges = ref.fold_signed(counts, edges, name)
        lin = (0.0, lin[1]) if lin is not None else None
        if lin is not None and not np.array_equal(edges, np.linspace(0.0, lin[1], counts.size + 1)):
            lin = None
        ptr = None
        n = counts.size
    if s.method == "percentile":
        return _Job(
            item, counts, edges, lin, targets=(float(s.percentile) / 100.0, -1.0), device_ptr=ptr
        )
    if s.method == "entropy":
        stop = n if s.flavor == "pytorch_quantization" else n - 1
        if s.start_bin > stop:
            return bad(
                "too-few-bins",
                f"trtcal: histogram of '{name}' has {n} bins, fewer than the start bin "
                f"{s.start_bin} of the entropy search",
            )
        job = _Job(
            item,
            counts,
            edges,
            lin,
            cands=np.arange(s.start_bin, stop + 1, s.stride),
            device_ptr=ptr,
        )
        zr = s.flavor == "pytorch_quantization"
        b = counts.copy()
        if zr and n > 1:
            b[0] = b[1]
        if b.sum() == 0:
            return bad(
                "degenerate",
                f"trtcal: all counts of '{name}' are in bin 0, which the pytorch_quantization "
                "zero-bin rule replaces by bin 1 (empty): no entropy range",
            )
        return job
    # mse
    if s.start_bin > n - 1:
        return bad(
            "too-few-bins",
            f"trtcal: histogram of '{name}' has {n} bins; the MSE search starts at bin "
            f"{s.start_bin}",
        )
    job = _Job(item, counts, edges, lin, device_ptr=ptr)
    if s.candidates_per_bin == 1:
        job.cands = np.arange(s.start_bin, n, s.stride)
    else:
        job.grid = ref.mse_grid(edges, s.start_bin, s.stride, s.candidates_per_bin)
    return job


def _finish(
    job: _Job, s: _Spec, index: int, index2: int, curve: Optional[np.ndarray], device: str
) -> TensorRange:
    """Turns a chosen candidate into amax (host arithmetic, identical for both paths)."""
    it, e = job.item, job.edges
    n = job.counts.size
    r = TensorRange(it.name, s.method, s.flavor, math.nan, device=device)
    if s.method == "entropy":
        assert job.cands is not None  # every entropy job has its candidates
        i = int(job.cands[index])
        r.bin, r.candidates, r.curve = i, job.cands, curve
        if s.flavor == "onnxruntime":
            z = n // 2
            st = z - job.cands
            en = np.minimum(z + job.cands + 1, n)
            lo, hi = float(e[z - i]), float(e[min(z + i + 1, n)])
            if it.vmin is not None:
                lo = max(lo, float(it.vmin))
            if it.vmax is not None:
                hi = min(hi, float(it.vmax))
            r.thresholds = np.maximum(np.abs(e[st]), np.abs(e[en]))
        elif s.flavor == "tensorrt":
            lo, hi = 0.0, float((e[i] + e[i + 1]) * 0.5)
            r.thresholds = (e[job.cands] + e[job.cands + 1]) * 0.5
        else:
            lo, hi = 0.0, float(e[i])
            r.thresholds = e[job.cands]
        r.lo, r.hi = (lo, hi) if s.flavor == "onnxruntime" else (-hi, hi)
        r.amax = max(abs(lo), abs(hi))
    elif s.method == "percentile":
        r.bin = int(index)
        hi = float(e[min(index, n)])
        if s.flavor == "onnxruntime":
            if index2 >= 0:  # two-sided on a signed histogram
                lo, hi = float(e[min(index, n)]), float(e[min(index2, n)])
            else:
                lo = -hi
            if it.vmin is not None:
                lo = max(lo, float(it.vmin))
            if it.vmax is not None:
                hi = min(hi, float(it.vmax))
        else:
            lo = -hi
        r.lo, r.hi = lo, hi
        r.amax = max(abs(lo), abs(hi))
    else:  # mse
        if job.grid is None:
            amaxes = ref.bin_centers(e)[job.cands]
            r.candidates = job.cands
        else:
            a0, h, count = job.grid
            amaxes = np.arange(count, dtype=np.float64) * h + a0
            r.candidates = np.arange(count)
        r.bin = int(index)
        r.thresholds, r.curve = amaxes, curve
        r.amax = float(amaxes[index])
        r.lo, r.hi = -r.amax, r.amax
    if not (r.amax > 0 and math.isfinite(r.amax)):
        r.status = "degenerate"
        r.message = (
            f"trtcal: the {s.method} search for '{it.name}' gave amax {r.amax}, which is no usable "
            "scale"
        )
        r.amax = math.nan
    return r


def _run_cpu(jobs: List[_Job], s: _Spec) -> List[TensorRange]:
    out = []
    for job in jobs:
        idx2, curve = -1, None
        if s.method == "entropy":
            assert job.cands is not None  # every entropy job has its candidates
            if s.flavor == "onnxruntime":
                curve = ref.entropy_onnxruntime(job.counts, job.cands, levels=s.levels, eps=s.eps)
                idx = ref.pick(curve, "first", s.tie_tolerance)
            else:
                zr = s.flavor == "pytorch_quantization"
                curve = ref.entropy_proportional(
                    job.counts, job.cands, levels=s.levels, zero_bin_rule=zr
                )
                idx = ref.pick(curve, "last" if zr else "first", s.tie_tolerance)
        elif s.method == "percentile":
            idx = ref.percentile_index(job.counts, job.targets[0])
            if job.targets[1] >= 0:
                idx2 = ref.percentile_index(job.counts, job.targets[1])
        else:
            amaxes = ref.mse_candidates(job.edges, s.start_bin, s.stride, s.candidates_per_bin)
            curve = ref.mse_curve(job.counts, job.edges, amaxes, max_bound=(1 << (s.bits - 1)) - 1)
            idx = ref.pick(curve, "first", s.tie_tolerance)
        out.append(_finish(job, s, idx, idx2, curve, "cpu"))
    return out


@dataclass
class _PlanArrays:
    """The descriptor arrays of one method over many tensors (what the binding takes), and the
    host histograms packed for one upload (tensor t's counts at element ``counts_off[t]`` of
    ``host_counts``, -1 when ``counts_ptrs[t]`` is a device pointer; likewise edges)."""

    method: int
    counts_ptrs: np.ndarray
    nbins: np.ndarray
    edges_ptrs: np.ndarray
    linspace: np.ndarray
    grid: np.ndarray
    targets: np.ndarray
    cands: np.ndarray
    host_counts: np.ndarray
    counts_off: np.ndarray
    host_edges: np.ndarray
    edges_off: np.ndarray


def _pack(arrays: List[np.ndarray], dtype) -> Tuple[np.ndarray, List[int]]:
    """One array holding each distinct array once (by identity), and each one's offset."""
    where: Dict[int, int] = {}
    parts: List[np.ndarray] = []
    offs: List[int] = []
    total = 0
    for a in arrays:
        o = where.get(id(a))
        if o is None:
            o = where[id(a)] = total
            parts.append(a)
            total += a.size
        offs.append(o)
    packed = np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)
    return packed, offs


def _plan_arrays(jobs: List[_Job], s: _Spec) -> _PlanArrays:
    method = _gpu_method(s)
    T = len(jobs)
    counts_ptrs = np.zeros(T, np.uint64)
    counts_off = np.full(T, -1, np.int64)
    host = [t for t, j in enumerate(jobs) if j.device_ptr is None]
    host_counts, offs = _pack([jobs[t].counts for t in host], np.int64)
    counts_off[host] = offs
    for t, j in enumerate(jobs):
        if j.device_ptr is not None:
            counts_ptrs[t] = j.device_ptr
    edges_off = np.full(T, -1, np.int64)
    mse = method == _RANGE_METHOD["mse"]
    need_edges = [t for t, j in enumerate(jobs) if mse and j.linspace is None]
    host_edges, eoffs = _pack([jobs[t].edges for t in need_edges], np.float64)
    edges_off[need_edges] = eoffs
    lin = np.zeros((T, 3))
    grid = np.zeros((T, 2))
    targets = np.zeros((T, 2))
    cands = np.zeros((T, 3), np.int32)
    for t, j in enumerate(jobs):
        if j.linspace is not None:
            lo, hi = j.linspace
            lin[t] = (lo, (hi - lo) / j.counts.size, hi)
        if j.grid is not None:
            grid[t] = j.grid[:2]
            cands[t] = (0, 1, j.grid[2])
        elif j.cands is not None:
            stride = int(j.cands[1] - j.cands[0]) if j.cands.size > 1 else 1
            cands[t] = (int(j.cands[0]), stride, j.cands.size)
        targets[t] = j.targets
    nbins = np.array([j.counts.size for j in jobs], np.int32)
    # flat: the binding indexes t * k + i
    return _PlanArrays(
        method,
        counts_ptrs,
        nbins,
        np.zeros(T, np.uint64),
        lin.ravel(),
        grid.ravel(),
        targets.ravel(),
        cands.ravel(),
        host_counts,
        counts_off,
        host_edges,
        edges_off,
    )


def _results(jobs: List[_Job], s: _Spec, idx, idx2, curve, device: int) -> List[TensorRange]:
    out, off = [], 0
    dev = f"cuda:{device}"
    idx, idx2 = idx.tolist(), idx2.tolist()
    for t, j in enumerate(jobs):
        c = None
        if s.method != "percentile":
            k = j.grid[2] if j.grid is not None else (j.cands.size if j.cands is not None else 0)
            if curve is not None:
                c = np.array(curve[off : off + k])
            off += k
        out.append(_finish(j, s, idx[t], idx2[t], c, dev))
    return out


def _search_once(
    jobs: List[_Job], s: _Spec, device: int, stream: int, with_curve: bool = True
) -> List[TensorRange]:
    """One method over many tensors in one call of the extension: host histograms and
    descriptors in one upload into its cached workspace, no allocation; waits."""
    ext = require_cuda("range search on the GPU")
    a = _plan_arrays(jobs, s)
    params, (group, chunk) = _kernel_params(s, a.method)
    idx, idx2, _val, curve = ext.range_search_once(
        device=device,
        **dict(zip(_KERNEL_PARAMS, params)),
        counts_ptrs=a.counts_ptrs,
        nbins=a.nbins,
        edges_ptrs=a.edges_ptrs,
        linspace=a.linspace,
        grid=a.grid,
        targets=a.targets,
        cands=a.cands,
        group=group,
        chunk=chunk,
        host_counts=a.host_counts,
        host_counts_off=a.counts_off,
        host_edges=a.host_edges,
        host_edges_off=a.edges_off,
        stream=stream,
        with_curve=with_curve,
    )
    return _results(jobs, s, idx, idx2, curve, device)


class _GpuBatch:
    """A reusable plan of one method over many tensors: its own device buffers, launched as
    often as wanted (benchmarks and tests; one-shot searches use :func:`_search_once`)."""

    def __init__(
        self,
        jobs: List[_Job],
        s: _Spec,
        device: int,
        threads: Optional[int] = None,
        stream: int = 0,
        group: Optional[int] = None,
        chunk: Optional[int] = None,
    ) -> None:
        ext = require_cuda("range search on the GPU")
        self.ext, self.jobs, self.spec, self.device = ext, jobs, s, device
        a = _plan_arrays(jobs, s)
        self.keep: List[Any] = []
        counts_ptrs, edges_ptrs = a.counts_ptrs.copy(), a.edges_ptrs.copy()
        for packed, offs, ptrs in (
            (a.host_counts, a.counts_off, counts_ptrs),
            (a.host_edges, a.edges_off, edges_ptrs),
        ):
            if packed.size:
                buf = ext.DeviceBuffer(packed.nbytes, device)
                buf.upload(packed, stream)
                self.keep.append(buf)
                on_host = offs >= 0
                ptrs[on_host] = np.uint64(int(buf.ptr)) + offs[on_host].astype(
                    np.uint64
                ) * np.uint64(8)
        params, (group_, chunk_) = _kernel_params(s, a.method, threads, group, chunk)
        self.plan = ext.RangeSearchPlan(
            device=device,
            **dict(zip(_KERNEL_PARAMS, params)),
            counts_ptrs=counts_ptrs,
            nbins=a.nbins,
            edges_ptrs=edges_ptrs,
            linspace=a.linspace,
            grid=a.grid,
            targets=a.targets,
            cands=a.cands,
            group=group_,
            chunk=chunk_,
        )

    @property
    def shape(self) -> Tuple[int, int, int, int]:
        """(threads, group, chunk, blocks) of the launch, as the binding chose them."""
        t, g, c = self.plan.shape
        return int(t), int(g), int(c), int(self.plan.blocks)

    def launch(self, stream: int) -> None:
        self.plan.launch(stream)

    def results(self, stream: int, with_curve: bool = True) -> List[TensorRange]:
        idx, idx2, _val, curve = self.plan.read(stream, with_curve)
        return _results(self.jobs, self.spec, idx, idx2, curve, self.device)


def _gpu_limit(s: _Spec) -> int:
    ext = require_cuda("range search on the GPU")
    if s.method == "percentile":
        return 0
    return int(ext.range_search_max_bins(_GPU_METHOD[(s.method, s.flavor)]))


def _run(
    items: List[_Item], s: _Spec, device: str, stream: Any, with_curve: bool = True
) -> Dict[str, TensorRange]:
    out: Dict[str, TensorRange] = {}
    if s.method == "minmax":
        for it in items:
            if it.status != "ok":
                out[it.name] = TensorRange(
                    it.name, "minmax", s.flavor, math.nan, it.status, it.message
                )
                continue
            a = it.amax if it.amax is not None else ref.minmax_amax(it.counts, it.edges)
            a = 0.0 if a is None else a  # no nonzero bin: all zeros
            r = TensorRange(it.name, "minmax", s.flavor, float(a), lo=-float(a), hi=float(a))
            if not a > 0:
                r.status, r.amax = "all-zero", math.nan
                r.message = f"trtcal: tensor '{it.name}' is all zeros: amax 0 is no usable scale"
            out[it.name] = r
        return out
    jobs: List[_Job] = []
    for it in items:
        j = _prepare(it, s)
        if isinstance(j, TensorRange):
            out[it.name] = j
        else:
            jobs.append(j)
    if not jobs:
        return out
    if device == "cpu":
        results = _run_cpu(jobs, s)
    else:
        limit = _gpu_limit(s)
        gpu_jobs = [j for j in jobs if not limit or j.counts.size <= limit]
        cpu_jobs = [j for j in jobs if limit and j.counts.size > limit]
        results = _run_cpu(cpu_jobs, s) if cpu_jobs else []
        if gpu_jobs:
            dev = int(device.split(":")[1]) if ":" in device else _pick_device(gpu_jobs)
            ext = require_cuda("range search on the GPU")
            handle, private = _stream_for(gpu_jobs, stream, dev, ext)
            results += _search_once(gpu_jobs, s, dev, handle, with_curve)
            del private
    for r in results:
        out[r.name] = r
    return {it.name: out[it.name] for it in items}


def _pick_device(jobs: List[_Job]) -> int:
    devs = {j.item.device for j in jobs if j.device_ptr is not None}
    return devs.pop() if len(devs) == 1 else 0


def _stream_for(jobs: List[_Job], stream: Any, device: int, ext):

    if stream is not None:
        return stream_handle(stream), None
    streams = {
        j.item.stream for j in jobs if j.device_ptr is not None and j.item.stream is not None
    }
    if len(streams) == 1:
        return streams.pop(), None  # the collectors' own stream
    private = ext.PrivateStream(device)  # host inputs: trtcal's own stream, never stream 0
    return private.handle, private


def _resolve_device(device: Optional[str]) -> str:
    if device is None:
        return "cuda" if cuda_available() else "cpu"
    if device == "cpu" or device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
        return device
    raise ValueError(f"trtcal: device must be None, 'cpu', 'cuda' or 'cuda:N', got {device!r}")


def search_ranges(
    hist: Any,
    methods: Union[str, Sequence[str]] = ("entropy", "percentile", "mse"),
    flavor: Union[None, str, Mapping[str, str]] = None,
    *,
    device: Optional[str] = None,
    stream: Any = None,
    **params: Any,
) -> RangeSearchResult:
    """Every requested method for every tensor, with chosen bins, curves and statuses.

    Same arguments as :func:`compute_amax`; never raises for a degenerate tensor (see each
    ``TensorRange.status``). Waits for the GPU.
    """
    return _search_ranges(hist, methods, flavor, device, stream, True, params)


def _search_ranges(
    hist: Any,
    methods: Union[str, Sequence[str]],
    flavor: Union[None, str, Mapping[str, str]],
    device: Optional[str],
    stream: Any,
    with_curve: bool,
    params: Dict[str, Any],
) -> RangeSearchResult:
    items, _ = _items(hist)
    names = [it.name for it in items]
    if len(set(names)) != len(names):
        raise ValueError("trtcal: tensor names must be unique")
    methods = [methods] if isinstance(methods, str) else list(methods)
    dev = _resolve_device(device)
    result = RangeSearchResult()
    for m in methods:
        fl = flavor.get(m) if isinstance(flavor, Mapping) else flavor
        if isinstance(flavor, str) and flavor not in FLAVORS.get(m, ()):
            fl = None if len(methods) > 1 else flavor
        mparams = {k: v for k, v in params.items() if k != "percentile" or m == "percentile"}
        result.ranges[m] = _run(items, _spec(m, fl, mparams), dev, stream, with_curve)
    return result


def compute_amax(
    hist: Any,
    method: Union[str, Sequence[str]] = "entropy",
    flavor: Union[None, str, Mapping[str, str]] = None,
    *,
    device: Optional[str] = None,
    stream: Any = None,
    on_degenerate: str = "raise",
    details: bool = False,
    **params: Any,
) -> Any:
    """amax of each tensor by ``method`` ('minmax', 'entropy', 'percentile', 'mse').

    Parameters
    ----------
    hist : HistogramCollector, Histogram, (counts, edges) pair, or mapping name -> either
        Raw pairs are searched as is (ModelOpt's / ONNX Runtime's histograms); a signed
        histogram (edges from -R) is folded to |x| for the |x| flavors.
    method : str or sequence of str
    flavor : str or {method: flavor}
        entropy: 'pytorch_quantization' (default), 'tensorrt', 'onnxruntime';
        percentile: 'pytorch_quantization' (default), 'onnxruntime'; mse: 'pytorch_quantization'.
    device : None (GPU when available), 'cpu' (the float64 reference), 'cuda', 'cuda:N'
    stream : the CUDA stream for GPU work (default: the collectors' stream, else a private one)
    on_degenerate : 'raise' (ValueError naming the tensor) or 'flag' (amax NaN + status)
    details : return the :class:`RangeSearchResult` (bins, curves, statuses)
    **params : bits (8), levels (2^(bits-1)), start_bin (128; onnxruntime entropy: levels/2),
        stride (1), percentile (99.99; onnxruntime: 99.999), candidates_per_bin (MSE, 1),
        tie_tolerance (1e-12), eps (onnxruntime smoothing, 1e-4)

    Returns
    -------
    float (one histogram, one method), {name: float} (a mapping), {method: ...} (several
    methods), or the RangeSearchResult with ``details=True``. Waits for the GPU.
    """
    if on_degenerate not in ("raise", "flag"):
        raise ValueError(f"trtcal: on_degenerate must be 'raise' or 'flag', got {on_degenerate!r}")
    is_map = isinstance(hist, Mapping)
    single = not is_map and type(hist).__name__ == "HistogramCollector"
    if not details and (is_map or single) and _resolve_device(device) != "cpu":
        methods = [method] if isinstance(method, str) else list(method)
        fast = compute_amax_collectors(
            {hist.name: hist} if single else hist, methods, flavor, device, stream, params
        )
        if fast is not None:
            out: Dict[str, Any] = (
                {m: next(iter(d.values())) for m, d in fast.items()} if single else dict(fast)
            )
            return out[method] if isinstance(method, str) else out
    res = _search_ranges(hist, method, flavor, device, stream, details, params)
    if on_degenerate == "raise":
        for m, per in res.ranges.items():
            for n, r in per.items():
                if r.status != "ok":
                    raise ValueError(r.message or f"trtcal: {m} range of '{n}' is {r.status}")
    if details:
        return res

    def one(m: str):
        d = res[m]
        return d if is_map else next(iter(d.values()))

    if isinstance(method, str):
        return one(method)
    return {m: one(m) for m in res.methods()}
