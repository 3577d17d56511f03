"""One pass over the activations: a streaming |x| histogram per tensor serves every method.

Entropy, percentile and MSE search one 2048-bin histogram; min-max reads the exact amax that
the same collector keeps (its state also holds min, max and the NaN/Inf counts), so each
activation is read once per batch whatever ``--method`` is, and a separate min/max collector
would only read every tensor a second time.

Non-finite activations are bad samples. Host activations are checked per batch before any
collector sees them, so a bad batch never leaves half-updated state; the offending samples are
named (rows along the batch axis). Device activations are checked without a per-batch wait:
the collectors count NaN/Inf and :meth:`ActivationStats.nonfinite` is read at checkpoints
(``check='deferred'``), or with ``check='batch'`` (used with ``skip_bad``) each batch waits.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..core.collectors import HistogramCollector, update_many
from ..core.results import Histogram
from .data import BadSampleError
from .outputs import thresholds

STATE_FORMAT = "trtcal.calibration.ActivationStats"  # a file format name


class ActivationStats:
    """Per-tensor :class:`~trtcal.HistogramCollector` (``bins`` bins over |x|).

    Parameters
    ----------
    tensors : names, in report order (more may be added by updates).
    bins : histogram bins (2048, as TensorRT uses).
    device : where the collectors keep their state; None: where the first batch is.
    signed : histograms of x over [-R, R) instead of |x| (ONNX Runtime's flavors search those;
        the |x| methods search them folded).
    """

    def __init__(
        self,
        tensors: Sequence[str] = (),
        bins: int = 2048,
        device: Any = None,
        signed: bool = False,
    ) -> None:
        self.bins = int(bins)
        self.device = device
        self.signed = bool(signed)
        self.collectors: Dict[str, HistogramCollector] = {}
        for t in tensors:
            self._collector(t)

    def _collector(self, name: str) -> HistogramCollector:
        c = self.collectors.get(name)
        if c is None:
            c = HistogramCollector(self.bins, self.signed, device=self.device, name=name)
            self.collectors[name] = c
        return c

    @property
    def names(self) -> List[str]:
        return list(self.collectors)

    # -- updates ---------------------------------------------------------------------------
    def update(
        self,
        activations: Mapping[str, Any],
        samples: Sequence[str],
        *,
        skip_bad: bool = False,
        check: str = "batch",
        stream: Any = None,
    ) -> List[Tuple[str, str]]:
        """Adds one batch. Returns the samples skipped as (sample, reason) (only with ``skip_bad``).

        Raises :class:`BadSampleError` naming the sample and tensor when an activation holds
        NaN/Inf (host arrays, or device arrays with ``check='batch'``); nothing is added then.
        """
        acts, skipped = self.screen(activations, samples, skip_bad=skip_bad, check=check)
        self.add(acts, stream=stream)
        return skipped

    def add(self, activations: Mapping[str, Any], *, stream: Any = None) -> None:
        """Adds screened activations (see :meth:`screen`) to the collectors (device arrays of
        one GPU in three kernel launches in all, see :func:`trtcal.core.collectors.update_many`)."""
        update_many(
            [(self._collector(name), value) for name, value in activations.items()], stream=stream
        )

    def screen(
        self,
        activations: Mapping[str, Any],
        samples: Sequence[str],
        *,
        skip_bad: bool = False,
        check: str = "batch",
    ) -> Tuple[Dict[str, Any], List[Tuple[str, str]]]:
        """The NaN/Inf check of :meth:`update` alone: (activations without bad rows, skipped)."""
        acts = dict(activations)
        bad = self._bad_rows(acts, len(samples)) if check == "batch" or _all_host(acts) else {}
        skipped: List[Tuple[str, str]] = []
        if bad:
            first_tensor, rows = next(iter(bad.items()))
            if not skip_bad:
                r = int(rows[0]) if rows is not None and len(rows) else 0
                who = samples[r] if r < len(samples) else f"batch of {', '.join(samples[:3])}..."
                raise BadSampleError(who, f"NaN or Inf in activation '{first_tensor}'")
            drop = np.zeros(len(samples), dtype=bool)
            whole = False
            for rows in bad.values():
                if rows is None:
                    whole = True
                else:
                    drop[rows] = True
            splittable = all(
                getattr(v, "shape", None) is not None
                and len(v.shape) > 0
                and v.shape[0] == len(samples)
                for v in acts.values()
            )
            if whole or not splittable:
                drop[:] = True  # the bad rows cannot be told apart or removed: skip the batch
            for i in np.flatnonzero(drop):
                tensor = next((t for t, r in bad.items() if r is None or i in r), "?")
                skipped.append((samples[int(i)], f"NaN or Inf in activation '{tensor}'"))
            if drop.all():
                return {}, skipped
            keep = np.flatnonzero(~drop)
            acts = {t: _take_rows(v, keep, len(samples), t) for t, v in acts.items()}
        return acts, skipped

    def _bad_rows(self, acts: Mapping[str, Any], n: int) -> Dict[str, Optional[np.ndarray]]:
        """{tensor: rows with NaN/Inf (None: cannot tell which rows)} for tensors with any."""
        bad: Dict[str, Optional[np.ndarray]] = {}
        for name, v in acts.items():
            rows = _nonfinite_rows(v, n)
            if rows is not False:
                bad[name] = rows
        return bad

    # -- checks, state, results --------------------------------------------------------------
    def nonfinite(self) -> Dict[str, int]:
        """NaN + Inf counts per tensor (host read; waits on the collectors' streams)."""
        out = {}
        for name, c in self.collectors.items():
            s = c.state_dict()
            out[name] = int(s["nan"]) + int(s["posinf"]) + int(s["neginf"])
        return out

    def state_dict(self) -> Dict[str, Any]:
        """Host copy of every collector's exact state. Waits."""
        return {
            "format": STATE_FORMAT,
            "bins": self.bins,
            "signed": self.signed,
            "collectors": {n: c.state_dict() for n, c in self.collectors.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("format") != STATE_FORMAT:
            raise ValueError(
                f"trtcal: not a calibration statistics state (format {state.get('format')!r})"
            )
        if int(state["bins"]) != self.bins:
            raise ValueError(
                f"trtcal: checkpoint has {state['bins']} bins, this run uses {self.bins}"
            )
        if bool(state.get("signed", False)) != self.signed:
            raise ValueError(
                "trtcal: the checkpoint's histograms are "
                + ("signed" if state.get("signed") else "of |x|")
                + ", this run's are "
                + ("signed" if self.signed else "of |x|")
            )
        for name, s in state["collectors"].items():
            c = HistogramCollector(
                self.bins,
                self.signed,
                device=self.device if self.device is not None else _device_hint(s),
                name=name,
            )
            c.load_state_dict(s)
            self.collectors[name] = c

    def histograms(self, names: Optional[Iterable[str]] = None) -> Dict[str, Histogram]:
        """Host copies of the histograms (waits)."""
        keys = list(names) if names is not None else list(self.collectors)
        return {n: self.collectors[n].histogram() for n in keys}

    def amax(
        self, method: str = "entropy", flavor: Optional[str] = None, **params: Any
    ) -> Dict[str, float]:
        """{tensor: amax} by one method ('entropy', 'percentile', 'mse', 'minmax'). Waits."""

        return thresholds(self.histograms(), [method], flavor, {method: params})[method]

    def summary(self) -> Dict[str, Dict[str, Any]]:
        """Per tensor: values binned, min, max, amax, non-finite counts."""
        out = {}
        for n, c in self.collectors.items():
            s = c.state_dict()
            out[n] = {
                "values": int(s["finite"]),
                "min": s["min"],
                "max": s["max"],
                "amax": float(s["amax"]),
                "nan": int(s["nan"]),
                "inf": int(s["posinf"]) + int(s["neginf"]),
                "batches": c.batches,
            }
        return out


def _device_hint(state: Mapping[str, Any]) -> Any:
    return None  # restored collectors take the device of their next batch (CPU state loads lazily)


def _all_host(acts: Mapping[str, Any]) -> bool:
    return all(isinstance(v, np.ndarray) for v in acts.values())


def _nonfinite_rows(v: Any, n: int):
    """False when all finite; else the bad rows along axis 0 (when axis 0 is the batch), or None."""
    if isinstance(v, np.ndarray):
        if v.dtype.kind != "f" or v.size == 0:
            return False
        finite = np.isfinite(v)
        if finite.all():
            return False
        if v.ndim >= 1 and v.shape[0] == n:
            return np.flatnonzero(~finite.reshape(n, -1).all(axis=1))
        return None
    mod = type(v).__module__.split(".")[0]
    if mod == "torch":
        import torch

        ok = torch.isfinite(v)
        if bool(ok.all()):
            return False
        if v.dim() >= 1 and v.shape[0] == n:
            return ok.reshape(n, -1).all(dim=1).logical_not().nonzero().flatten().cpu().numpy()
        return None
    if mod == "cupy":
        import cupy

        ok = cupy.isfinite(v)
        if bool(ok.all()):
            return False
        if v.ndim >= 1 and v.shape[0] == n:
            return cupy.asnumpy(cupy.flatnonzero(~ok.reshape(n, -1).all(axis=1)))
        return None
    return False  # other device arrays: counted by the collectors, checked at checkpoints


def _take_rows(v: Any, keep: np.ndarray, n: int, name: str) -> Any:
    if getattr(v, "shape", None) is None or len(v.shape) == 0 or v.shape[0] != n:
        raise BadSampleError(
            f"batch of {n}",
            f"tensor '{name}' has no batch axis, so bad samples cannot be "
            "dropped from it; the batch is skipped",
        )
    mod = type(v).__module__.split(".")[0]
    if mod == "torch":
        import torch

        return v.index_select(0, torch.as_tensor(keep, device=v.device)).contiguous()
    if mod == "cupy":
        import cupy

        return cupy.ascontiguousarray(v[cupy.asarray(keep)])
    return np.ascontiguousarray(v[keep])
