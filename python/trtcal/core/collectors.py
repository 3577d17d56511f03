"""Streaming collectors: bounded memory, order-independent, mergeable, checkpointable.

A collector's state lives where its data is: on the GPU for device arrays (updates are
queued on the caller's stream and never wait), in NumPy for host arrays. ``state_dict``,
``histogram`` and ``result`` return host values and wait for the last stream used.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from . import ordered_float, reference
from ._arrays import ArrayView, as_view, normalise_axis
from ._backend import require_cuda
from .results import Histogram

StateDict = Dict[str, Any]
Device = Union[None, str, int]

_HIST_FORMAT = "trtcal.HistogramCollector"
_MINMAX_FORMAT = "trtcal.MinMaxCollector"
_STATE_VERSION = 1


def check_bins(bins: int, signed: bool, name: str) -> None:
    if (
        not isinstance(bins, (int, np.integer))
        or isinstance(bins, bool)
        or not 1 <= bins <= (1 << 24)
    ):
        raise ValueError(f"trtcal: bins for '{name}' must be an integer in [1, 2^24], got {bins!r}")
    if signed and bins % 2:
        raise ValueError(
            f"trtcal: a signed histogram of '{name}' needs an even number of bins, got {bins}"
        )


def _parse_device(device: Device) -> Optional[int]:
    """None: decided by the first update; -1: CPU; >= 0: that GPU."""
    if device is None:
        return None
    if isinstance(device, (int, np.integer)) and not isinstance(device, bool):
        return int(device)
    if isinstance(device, str):
        if device == "cpu":
            return -1
        if device == "cuda":
            return 0
        if device.startswith("cuda:") and device[5:].isdigit():
            return int(device[5:])
    raise ValueError(f"trtcal: device must be 'cpu', 'cuda', 'cuda:N' or an int, got {device!r}")


class _Staging:
    """A reusable device buffer for host arrays given to a GPU collector."""

    def __init__(self) -> None:
        self.buf: Any = None

    def upload(self, view: ArrayView, device: int, stream: int) -> int:
        ext = require_cuda("uploading a host array")
        host = np.ascontiguousarray(view.host)
        if self.buf is None or self.buf.nbytes < host.nbytes or self.buf.device != device:
            self.buf = ext.DeviceBuffer(max(host.nbytes, 1), device)
        self.buf.upload(host.reshape(-1).view(np.uint8), stream)
        return int(self.buf.ptr)


class _Collector:
    def __init__(self, device: Device, name: str) -> None:
        self._device = _parse_device(device)
        self.name = name
        self.batches = 0
        self._stream = 0
        self._staging = _Staging()

    @property
    def device(self) -> str:
        """'cpu', 'cuda:N', or 'unset' before the first update."""
        if self._device is None:
            return "unset"
        return "cpu" if self._device < 0 else f"cuda:{self._device}"

    def _prepare(self, view: ArrayView) -> Optional[int]:
        """Chooses the backend on first use; returns a device pointer (GPU) or None (CPU)."""
        if self._device is None:
            self._device = view.device if view.on_device else -1
        if self._device < 0:
            if view.on_device:
                raise ValueError(
                    f"trtcal: collector for '{self.name}' keeps its state on the CPU but got a "
                    "device "
                    "array; create it with device='cuda' (or let the first update choose)"
                )
            return None
        if view.on_device:
            if view.device != self._device:
                raise ValueError(
                    f"trtcal: collector for '{self.name}' is on cuda:{self._device} but the tensor "
                    "is on "
                    f"cuda:{view.device}"
                )
            self._stream = view.stream
            return view.ptr
        # host batches are staged on the stream this collector last used
        return self._staging.upload(view, self._device, self._stream)


class HistogramCollector(_Collector):
    """Streaming histogram of |x| (or x, ``signed=True``) on a power-of-two range grid.

    The range is R = 2^e, the smallest power of two above every finite |x| seen. When a
    batch exceeds R, R doubles as often as needed and each group of 2^m old bins merges
    into one new bin, which is exact; the final counts therefore equal the histogram of
    all data at the final range, whatever the batch order and sizes. Memory is ``bins``
    64-bit counters. An update reads the batch once when it fits the range and twice when
    the range grows.

    Parameters
    ----------
    bins : int
        Bin count (default 2048; even when ``signed``).
    signed : bool
        Histogram x over [-R, R) instead of |x| over [0, R).
    device : None, 'cpu', 'cuda', 'cuda:N' or int
        Where the state lives; by default where the first batch is.
    name : str
        Tensor name used in messages.
    """

    def __init__(
        self, bins: int = 2048, signed: bool = False, *, device: Device = None, name: str = "tensor"
    ) -> None:
        super().__init__(device, name)
        check_bins(bins, signed, name)
        self.bins = int(bins)
        self.signed = bool(signed)
        self._cpu: Optional[StateDict] = None
        self._gpu = None

    # -- updates ---------------------------------------------------------------------------
    def update(self, x: Any, *, stream: Any = None) -> "HistogramCollector":
        """Adds a batch (any shape, float32/float16/bfloat16). Does not wait on the GPU."""
        self._update_view(as_view(x, self.name, stream))
        return self

    def _update_view(self, view: ArrayView) -> None:
        view.memory_order()  # refuse gapped layouts; element order is irrelevant here
        ptr = self._prepare(view)
        if ptr is None:
            reference.histogram_state_update(self._cpu_state(), view.require_host())
        else:
            self._gpu_state().update(ptr, view.dtype_code, view.size, self._stream)
        self.batches += 1

    def merge(self, other: "HistogramCollector") -> "HistogramCollector":
        """Adds another collector's counts (same bins and sign) to this one; returns self."""
        if not isinstance(other, HistogramCollector):
            raise TypeError("trtcal: can only merge a HistogramCollector")
        if other.bins != self.bins or other.signed != self.signed:
            raise ValueError(
                f"trtcal: cannot merge '{other.name}' ({other.bins} bins, signed={other.signed}) "
                "into "
                f"'{self.name}' ({self.bins} bins, signed={self.signed})"
            )
        if self._device is None:
            self._device = other._device
        if (
            self._device is not None
            and self._device >= 0
            and other._gpu is not None
            and other._device == self._device
        ):
            self._gpu_state().merge(other._gpu, self._stream)
        else:
            self.load_state_dict(
                reference.histogram_state_merge(self.state_dict(), other.state_dict())
            )
        self.batches += other.batches
        return self

    # -- state -----------------------------------------------------------------------------
    def _cpu_state(self) -> StateDict:
        if self._cpu is None:
            self._cpu = reference.histogram_state_new(self.bins, self.signed)
        return self._cpu

    def _gpu_state(self):
        if self._gpu is None:
            ext = require_cuda("a GPU histogram collector")
            self._gpu = ext.HistogramState(self.bins, self.signed, self._device, self._stream)
        return self._gpu

    def state_dict(self) -> StateDict:
        """Host copy of the whole state (plain ints/floats and one int64 array). Waits."""
        if self._gpu is not None:
            s = dict(self._gpu.read(self._stream))
        else:
            s = dict(self._cpu_state())
            s["counts"] = s["counts"].copy()
        s.update(format=_HIST_FORMAT, version=_STATE_VERSION, name=self.name, batches=self.batches)
        return s

    def load_state_dict(self, state: StateDict) -> None:
        _check_state(state, _HIST_FORMAT, self.name)
        if int(state["bins"]) != self.bins or bool(state["signed"]) != self.signed:
            raise ValueError(f"trtcal: state for '{self.name}' has different bins or sign")
        counts = np.asarray(state["counts"], dtype=np.int64)
        if counts.shape != (self.bins,) or (counts < 0).any():
            raise ValueError(f"trtcal: state for '{self.name}' has malformed counts")
        self.batches = int(state.get("batches", self.batches))
        if self._device is not None and self._device >= 0:
            exp = state["exponent"]
            self._gpu_state().load(
                0 if exp is None else int(exp),
                exp is not None,
                float(state["amax"]),
                state["min"],
                state["max"],
                int(state["finite"]),
                int(state["nan"]),
                int(state["posinf"]),
                int(state["neginf"]),
                counts,
                self._stream,
            )
        else:
            self._device = -1
            s = reference.histogram_state_new(self.bins, self.signed)
            for k in s:
                if k not in ("bins", "signed"):
                    s[k] = state[k]
            s["counts"] = counts.copy()
            self._cpu = s

    @classmethod
    def from_state_dict(cls, state: StateDict, *, device: Device = "cpu") -> "HistogramCollector":
        """Rebuilds a collector (on the CPU by default, or on ``device``)."""
        _check_state(state, _HIST_FORMAT, state.get("name", "tensor"))
        c = cls(
            int(state["bins"]),
            bool(state["signed"]),
            device=device,
            name=state.get("name", "tensor"),
        )
        c.load_state_dict(state)
        return c

    # -- results ---------------------------------------------------------------------------
    def histogram(self) -> Histogram:
        """The collected histogram (host copy; waits)."""
        s = self.state_dict()
        exp = s["exponent"]
        return Histogram(
            counts=np.asarray(s["counts"], dtype=np.int64),
            range=None if exp is None else float(np.ldexp(1.0, exp)),
            signed=self.signed,
            name=self.name,
            amax=float(s["amax"]),
            min=s["min"],
            max=s["max"],
            nan=int(s["nan"]),
            posinf=int(s["posinf"]),
            neginf=int(s["neginf"]),
        )


class MinMaxCollector(_Collector):
    """Streaming min / max / amax per tensor or per channel (``axis``), in one pass per batch.

    NaN and Inf are counted (``result()['nan']`` ...) and never enter the ranges.
    """

    def __init__(
        self, axis: Optional[int] = None, *, device: Device = None, name: str = "tensor"
    ) -> None:
        super().__init__(device, name)
        self.axis = axis
        self.channels: Optional[int] = None
        self._cpu: Optional[StateDict] = None
        self._gpu = None

    def update(self, x: Any, *, stream: Any = None) -> "MinMaxCollector":
        """Folds a batch in. Does not wait on the GPU."""
        view = as_view(x, self.name, stream)
        if view.size == 0:
            return self
        ax = None if self.axis is None else normalise_axis(self.axis, len(view.shape), self.name)
        channels = 1 if ax is None else view.shape[ax]
        if self.channels is None:
            self.channels = channels
        elif channels != self.channels:
            raise ValueError(
                f"trtcal: tensor '{self.name}' has {channels} channels along axis {self.axis}, "
                f"earlier batches had {self.channels}"
            )
        if ax is None:
            view.memory_order()
            outer, inner = 1, view.size
        else:
            outer, _, inner = view.channel_split(ax)
        ptr = self._prepare(view)
        if ptr is None:
            lo, hi, nan, pinf, ninf = reference.minmax_channels(view.require_host(), ax)
            s = self._cpu_state()
            s["min"] = np.fmin(s["min"], lo)
            s["max"] = np.fmax(s["max"], hi)
            s["nan"] += nan
            s["posinf"] += pinf
            s["neginf"] += ninf
        else:
            if not view.on_device:  # staged copy is C-contiguous in the original axis order
                outer, _, inner = _c_split(view.shape, ax)
            self._gpu_state().update(ptr, view.dtype_code, outer, inner, self._stream)
        self.batches += 1
        return self

    def _cpu_state(self) -> StateDict:
        if self._cpu is None:
            c = self.channels or 1
            self._cpu = {
                "min": np.full(c, np.nan),
                "max": np.full(c, np.nan),
                "nan": 0,
                "posinf": 0,
                "neginf": 0,
            }
        return self._cpu

    def _gpu_state(self):
        if self._gpu is None:
            ext = require_cuda("a GPU min/max collector")
            self._gpu = ext.MinMaxState(self.channels or 1, self._device)
            self._gpu.reset(self._stream)
        return self._gpu

    def merge(self, other: "MinMaxCollector") -> "MinMaxCollector":
        """Folds another collector (same axis and channels) into this one; returns self."""
        if not isinstance(other, MinMaxCollector):
            raise TypeError("trtcal: can only merge a MinMaxCollector")
        if other.channels is None:
            return self
        a, b = self.state_dict(), other.state_dict()
        if a["channels"] is not None and a["channels"] != b["channels"]:
            raise ValueError(
                f"trtcal: cannot merge min/max of '{other.name}' ({b['channels']} channels) into "
                f"'{self.name}' ({a['channels']} channels)"
            )
        if a["channels"] is None:
            merged = b
        else:
            merged = dict(
                a,
                min=np.fmin(a["min"], b["min"]),
                max=np.fmax(a["max"], b["max"]),
                **{k: a[k] + b[k] for k in ("nan", "posinf", "neginf")},
            )
        merged["batches"] = self.batches + other.batches
        if self._device is None:
            self._device = other._device
        self.load_state_dict(merged)
        return self

    def state_dict(self) -> StateDict:
        """Host copy of the state. Waits."""
        s: StateDict = {
            "format": _MINMAX_FORMAT,
            "version": _STATE_VERSION,
            "name": self.name,
            "axis": self.axis,
            "channels": self.channels,
            "batches": self.batches,
        }
        if self._gpu is not None:
            lo, hi, nf = self._gpu.read(self._stream)
            s.update(
                min=ordered_float.decode(lo),
                max=ordered_float.decode(hi),
                nan=int(nf[0]),
                posinf=int(nf[1]),
                neginf=int(nf[2]),
            )
        else:
            c = self._cpu_state()
            s.update(
                min=c["min"].copy(),
                max=c["max"].copy(),
                nan=c["nan"],
                posinf=c["posinf"],
                neginf=c["neginf"],
            )
        return s

    def load_state_dict(self, state: StateDict) -> None:
        _check_state(state, _MINMAX_FORMAT, self.name)
        self.axis = state["axis"]
        self.channels = state["channels"]
        self.batches = int(state.get("batches", 0))
        if self.channels is None:
            return
        lo, hi = np.asarray(state["min"], np.float64), np.asarray(state["max"], np.float64)
        if lo.shape != (self.channels,) or hi.shape != (self.channels,):
            raise ValueError(f"trtcal: min/max state for '{self.name}' has malformed ranges")
        if self._device is not None and self._device >= 0:
            self._gpu = None
            g = self._gpu_state()
            g.load(
                ordered_float.encode(lo, 0xFFFFFFFF),
                ordered_float.encode(hi, 0),
                np.array([state["nan"], state["posinf"], state["neginf"]], dtype=np.uint64),
                self._stream,
            )
        else:
            self._device = -1
            self._cpu = {
                "min": lo.copy(),
                "max": hi.copy(),
                "nan": int(state["nan"]),
                "posinf": int(state["posinf"]),
                "neginf": int(state["neginf"]),
            }

    @classmethod
    def from_state_dict(cls, state: StateDict, *, device: Device = "cpu") -> "MinMaxCollector":
        _check_state(state, _MINMAX_FORMAT, state.get("name", "tensor"))
        c = cls(state["axis"], device=device, name=state.get("name", "tensor"))
        c.load_state_dict(state)
        return c

    def result(self) -> Dict[str, Any]:
        """{'min', 'max', 'amax'} (floats, or arrays per channel) and the non-finite counts.
        Waits."""
        s = self.state_dict()
        if s["channels"] is None:
            raise ValueError(f"trtcal: min/max collector for '{self.name}' has seen no data")
        lo, hi = s["min"], s["max"]
        amax = np.fmax(-lo, hi)
        out = {"min": lo, "max": hi, "amax": amax}
        if self.axis is None:
            out = {k: float(v[0]) for k, v in out.items()}
        out.update(nan=s["nan"], posinf=s["posinf"], neginf=s["neginf"])
        return out


def update_many(pairs: Sequence[Tuple["HistogramCollector", Any]], *, stream: Any = None) -> None:
    """Adds one array to each of many histogram collectors: ``[(collector, array), ...]``.

    Device arrays of one GPU go to the collectors in three kernel launches in all (one per
    pass, whatever the number of tensors), on ``stream`` or the arrays' producer stream;
    a model's hundreds of small activations then cost what their bytes cost, not hundreds of
    launches. Arrays on other streams form their own launches; host arrays and CPU collectors
    take the one-by-one path. Does not wait.
    """
    batched: Dict[Tuple[int, int], list] = {}
    for c, x in pairs:
        view = as_view(x, c.name, stream)
        if (
            not view.on_device
            or view.size == 0
            or (c._device is not None and c._device != view.device)
        ):
            c._update_view(view)  # CPU state, host data, or a device mismatch to report
            continue
        view.memory_order()
        batched.setdefault((view.device, view.stream), []).append((c, view))
    for (device, s), items in batched.items():
        launch_many(
            [c for c, _ in items],
            [v.ptr for _, v in items],
            [v.dtype_code for _, v in items],
            [v.size for _, v in items],
            s,
            device,
        )


def launch_many(
    collectors: Sequence["HistogramCollector"],
    ptrs: Sequence[int],
    dtypes: Sequence[int],
    sizes: Sequence[int],
    stream: int,
    device: int,
) -> None:
    """The batched update on already-checked device arrays (dense, float dtype codes, on
    ``device``, ready on ``stream``): what :func:`update_many` and the PyTorch hooks call."""
    ext = require_cuda("batched histogram updates")
    states = []
    for c in collectors:
        if c._device is None:
            c._device = device
        c._stream = stream
        states.append(c._gpu_state())
        c.batches += 1
    ext.histogram_update_many(states, list(ptrs), list(dtypes), list(sizes), stream, device)


def _c_split(shape, axis):
    if axis is None:
        return 1, 1, int(np.prod(shape, dtype=np.int64))
    outer = int(np.prod(shape[:axis], dtype=np.int64))
    inner = int(np.prod(shape[axis + 1 :], dtype=np.int64))
    return outer, shape[axis], inner


def _check_state(state: Any, fmt: str, name: str) -> None:
    if not isinstance(state, dict) or state.get("format") != fmt:
        raise ValueError(
            f"trtcal: not a {fmt} state (for '{name}'): got {type(state).__name__} "
            f"with format {state.get('format') if isinstance(state, dict) else None!r}"
        )
    if state.get("version") != _STATE_VERSION:
        raise ValueError(
            f"trtcal: {fmt} state version {state.get('version')!r} is not supported "
            f"(this trtcal reads version {_STATE_VERSION})"
        )
