"""Calibration over many processes (GPUs, hosts) through ``torch.distributed``, exact.

Each rank reads its own shard of the data (:func:`shard_indices`, :func:`shard_iterable`),
runs the model, and collects statistics locally; :func:`all_reduce_collectors` then merges the
collector states across ranks with three collectives (a signature check, one MAX, one SUM), so
that every rank holds, bit for bit, the state a single process would have collected over all
the data. This is exact because the histograms live on a power-of-two range grid: merging
takes the largest range exponent, re-bins each state to it (an exact sum of whole bins) and
adds 64-bit counts, and min / max / amax are exact float values. So any partition of the data
gives the same result, whatever the shard sizes, batch sizes or order (a rank may have no data).

Without a process group, :func:`save_states` / :func:`load_states` and ``trtcal merge`` combine
collector files written on separate machines.

:class:`RankGuard` turns an exception on one rank into an error on every rank that names the
failing rank, its host and its message, instead of a hang in the next collective.
"""

from __future__ import annotations

import json
import os
import re
import socket
import zipfile
from typing import (
    Any,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
    Union,
)

import numpy as np

from ..core._files import atomic_savez, json_default
from ..core.collectors import HistogramCollector, MinMaxCollector
from ..core.reference.stats import rebin
from . import checkpoint as ckpt
from .checkpoint import known_kind

__all__ = [
    "shard_indices",
    "shard_range",
    "shard_iterable",
    "rank_path",
    "all_gather_objects",
    "all_reduce_collectors",
    "check_ranks",
    "rank_and_world",
    "RankGuard",
    "RankFailedError",
    "save_states",
    "load_states",
    "merge_collectors",
    "merge_files",
]

Collector = Union[HistogramCollector, MinMaxCollector]
T = TypeVar("T")

NO_RANGE = -(2**31)  # the exponent of a histogram that has no range yet (no non-zero finite value)
STATES_FORMAT = "trtcal.collector-states"
STATES_VERSION = 1
CHECKPOINT_FORMAT = "trtcal.calibration.checkpoint"  # trtcal.pipeline.checkpoint.FORMAT, read too


# --------------------------------------------------------------------------------------------
# sharding
# --------------------------------------------------------------------------------------------
def _check_rank(rank: int, world_size: int) -> None:
    if not isinstance(world_size, (int, np.integer)) or world_size < 1:
        raise ValueError(f"trtcal: world_size must be a positive int, got {world_size!r}")
    if not isinstance(rank, (int, np.integer)) or not 0 <= rank < world_size:
        raise ValueError(f"trtcal: rank must be in [0, {world_size}), got {rank!r}")


def shard_range(n_samples: int, rank: int, world_size: int, align: int = 1) -> Tuple[int, int]:
    """The contiguous shard ``[start, stop)`` of ``n_samples`` positions that ``rank`` reads.

    Shards are contiguous and in rank order: rank 0 reads the first positions, the last rank
    the last ones; their union is every position exactly once. With ``align`` (the batch
    size), shards hold whole blocks of ``align`` positions (only the last shard that has data
    ends with the partial block), so each rank's batches are exactly the batches a single
    process would form: the activations are then identical even when inference kernels depend
    on the batch composition. Blocks are spread as evenly as possible (shard sizes differ by
    at most one block); when there are fewer blocks than ranks, the last ranks get none.

    Contiguous shards (rather than strided ones) keep file reads sequential and make a
    per-rank resume cursor a plain offset into the shard.
    """
    _check_rank(rank, world_size)
    if n_samples < 0:
        raise ValueError(f"trtcal: n_samples must be >= 0, got {n_samples}")
    if align < 1:
        raise ValueError(f"trtcal: align must be >= 1, got {align}")
    blocks = -(-n_samples // align)
    lo = (rank * blocks) // world_size
    hi = ((rank + 1) * blocks) // world_size
    return min(lo * align, n_samples), min(hi * align, n_samples)


def shard_indices(n_samples: int, rank: int, world_size: int, align: int = 1) -> range:
    """The sample positions ``rank`` of ``world_size`` reads: ``range(*shard_range(...))``.

    Deterministic, contiguous and balanced; see :func:`shard_range`.

    >>> [list(shard_indices(5, r, 2)) for r in range(2)]
    [[0, 1], [2, 3, 4]]
    """
    return range(*shard_range(n_samples, rank, world_size, align))


def shard_iterable(iterable: Iterable[T], rank: int, world_size: int) -> Iterator[T]:
    """The items of an iterable of unknown length that ``rank`` reads: items ``i`` with
    ``i % world_size == rank`` (strided, since a contiguous split needs the length). Every
    rank walks the whole iterable (items it skips are not loaded if the iterable is lazy).
    """
    _check_rank(rank, world_size)
    for i, item in enumerate(iterable):
        if i % world_size == rank:
            yield item


def rank_path(path: str, rank: int, world_size: int) -> str:
    """``ckpt.npz`` -> ``ckpt.rank1-of-4.npz``: a per-rank file next to ``path``."""
    _check_rank(rank, world_size)
    root, ext = os.path.splitext(path)
    return f"{root}.rank{rank}-of-{world_size}{ext}"


# --------------------------------------------------------------------------------------------
# process group helpers
# --------------------------------------------------------------------------------------------
def _dist():
    try:
        import torch
        import torch.distributed as dist
    except ImportError:
        raise ImportError(
            "trtcal: distributed calibration needs PyTorch (torch.distributed)"
        ) from None
    if not dist.is_available():
        raise RuntimeError("trtcal: this PyTorch build has no torch.distributed")
    if not dist.is_initialized():
        raise RuntimeError(
            "trtcal: no torch.distributed process group: call torch.distributed.init_process_group "
            "first (or launch with torchrun)"
        )
    return torch, dist


def _collective_device(dist: Any, torch: Any, group: Any) -> Any:
    """CUDA for NCCL-only groups (NCCL reduces only device tensors), the CPU otherwise."""
    backend = str(dist.get_backend(group)).lower()
    if "nccl" in backend and "gloo" not in backend:
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _global_rank(dist: Any, group: Any, group_rank: int) -> int:
    if group is None:
        return group_rank
    try:
        return int(dist.get_global_rank(group, group_rank))
    except Exception:  # noqa: BLE001 - older torch: name the rank within the group
        return group_rank


def rank_and_world(group: Any = None) -> Tuple[int, int]:
    """(this process's rank in ``group``, the group's size); needs an initialised process group."""
    _, dist = _dist()
    return int(dist.get_rank(group)), int(dist.get_world_size(group))


def all_gather_objects(obj: Any, group: Any = None) -> List[Any]:
    """Collective: every rank's ``obj`` (picklable), in rank order."""
    _, dist = _dist()
    out: List[Any] = [None] * dist.get_world_size(group)
    dist.all_gather_object(out, obj, group=group)
    return out


class RankFailedError(RuntimeError):
    """One or more ranks failed; raised on every rank. ``failures``: {rank: (host, message)}."""

    def __init__(self, what: str, failures: Mapping[int, Tuple[str, str]]) -> None:
        self.failures = dict(failures)
        ranks = ", ".join(str(r) for r in sorted(self.failures))
        detail = "; ".join(f"rank {r} on {h}: {m}" for r, (h, m) in sorted(self.failures.items()))
        plural = "s" if len(self.failures) > 1 else ""
        super().__init__(f"trtcal: {what} failed on rank{plural} {ranks}: {detail}")


class RankGuard:
    """Runs one rank's share of the work; at the end, all ranks exchange their status.

    ::

        with RankGuard("calibration"):
            ...  # this rank's data, model and collectors; no collectives inside

    On leaving the block (normally or by an exception), every rank joins one
    ``all_gather_object`` of its status. If any rank failed, every rank raises
    :class:`RankFailedError` naming each failing rank, its host and its message (on a failing
    rank, chained to the original exception); nothing is deleted, so per-rank checkpoints
    written before the failure stay on disk for ``--resume``. A rank that dies without raising
    (killed, segfault) cannot report: the others wait in the collective until torchrun stops
    the job or the process group's timeout expires.
    """

    def __init__(self, what: str = "calibration", group: Any = None) -> None:
        self.what = what
        self.group = group

    def __enter__(self) -> "RankGuard":
        return self

    def __exit__(self, exc_type: Any, exc: Optional[BaseException], tb: Any) -> None:
        check_ranks(
            exc, self.what, self.group
        )  # no failure anywhere: nothing was raised here either


def check_ranks(
    error: Optional[BaseException], what: str = "calibration", group: Any = None
) -> None:
    """Collective: raises :class:`RankFailedError` on every rank if ``error`` is set on any."""
    _, dist = _dist()
    status = None if error is None else (socket.gethostname(), f"{type(error).__name__}: {error}")
    statuses = all_gather_objects(status, group)
    failures = {
        _global_rank(dist, group, i): tuple(s) for i, s in enumerate(statuses) if s is not None
    }
    if failures:
        raise RankFailedError(what, failures) from error


# --------------------------------------------------------------------------------------------
# merging collectors across ranks
# --------------------------------------------------------------------------------------------
def _signature(name: str, c: Collector) -> Tuple[Any, ...]:
    if isinstance(c, HistogramCollector):
        return (name, "histogram", c.bins, c.signed)
    if isinstance(c, MinMaxCollector):
        return (name, "minmax", c.axis, c.channels)
    raise TypeError(
        f"trtcal: collector '{name}' is a {type(c).__name__}; expected HistogramCollector or "
        "MinMaxCollector"
    )


def _agree(
    signatures: Sequence[Sequence[Tuple[Any, ...]]], ranks: Sequence[int]
) -> Dict[str, Optional[int]]:
    """Checks every rank has the same tensors and layouts; returns {minmax name: channels}.

    A min/max collector that saw no data has no channel count yet; it agrees with any.
    """
    ref = {s[0]: s for s in signatures[0]}
    problems: List[str] = []
    for r, sigs in zip(ranks[1:], signatures[1:]):
        mine = {s[0]: s for s in sigs}
        missing = sorted(set(ref) - set(mine))
        extra = sorted(set(mine) - set(ref))
        if missing or extra:
            parts = []
            if missing:
                parts.append(
                    "lacks "
                    + ", ".join(repr(n) for n in missing[:5])
                    + (" ..." if len(missing) > 5 else "")
                )
            if extra:
                parts.append(
                    "has extra "
                    + ", ".join(repr(n) for n in extra[:5])
                    + (" ..." if len(extra) > 5 else "")
                )
            problems.append(f"rank {r} {' and '.join(parts)} (compared with rank {ranks[0]})")
            continue
        for n, s in mine.items():
            a = ref[n]
            same = a[:3] == s[:3] if a[1] == "minmax" else a == s
            if not same:
                problems.append(
                    f"rank {r} has {_describe(s)} for '{n}', rank {ranks[0]} has {_describe(a)}"
                )
    channels: Dict[str, Optional[int]] = {}
    for n, s in ref.items():
        if s[1] != "minmax":
            continue
        seen: Dict[Any, Any] = {}
        for r, sigs in zip(ranks, signatures):
            c = next(x for x in sigs if x[0] == n)[3]
            if c is not None:
                seen.setdefault(c, []).append(r)
        if len(seen) > 1:
            problems.append(
                f"'{n}' has different channel counts: "
                + "; ".join(
                    f"{c} on rank{'s' if len(rs) > 1 else ''} {', '.join(map(str, rs))}"
                    for c, rs in seen.items()
                )
            )
        channels[n] = next(iter(seen), None)
    if problems:
        raise ValueError(
            "trtcal: the ranks' collectors differ, so they cannot be merged: " + "; ".join(problems)
        )
    return channels


def _describe(sig: Tuple[Any, ...]) -> str:
    if sig[1] == "histogram":
        return f"a {sig[2]}-bin {'signed ' if sig[3] else ''}histogram"
    return f"a min/max collector (axis {sig[2]})"


def _nan_to(v: Any, fill: float) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64).copy()
    a[np.isnan(a)] = fill
    return a


def _float_or_none(v: float) -> Optional[float]:
    return None if v == -np.inf else float(v)


class _Layout:
    """Where each collector's values sit in the two flat vectors that are reduced."""

    def __init__(
        self,
        names: Sequence[str],
        collectors: Mapping[str, Collector],
        channels: Mapping[str, Optional[int]],
    ) -> None:
        self.f: Dict[str, int] = {}
        self.i: Dict[str, int] = {}
        nf = ni = 0
        for n in names:
            c = collectors[n]
            self.f[n], self.i[n] = nf, ni
            if isinstance(c, HistogramCollector):
                nf += 4  # exponent, amax, max, -min
                ni += c.bins + 5  # counts, finite, nan, posinf, neginf, batches
            else:
                nf += 2 * (channels[n] or 0)  # max, -min per channel
                ni += 4  # nan, posinf, neginf, batches
        self.nf, self.ni = nf, ni


def all_reduce_collectors(
    collectors: Mapping[str, Collector], group: Any = None
) -> Dict[str, Collector]:
    """Merges every rank's collectors in place: afterwards each rank holds the global state.

    Collective: every rank of ``group`` (default: the whole world) must call it with
    collectors for the same tensor names (same bins and sign, same min/max axis). Three
    collectives in all, whatever the number of tensors: ``all_gather_object`` of a small
    signature (the ranks that differ are named in a ``ValueError``), one ``all_reduce(MAX)``
    of a float64 vector (every histogram's range exponent, amax, max and -min, and every
    min/max channel's max and -min; all exact float32 values or small integers), then, after
    each rank re-bins its counts exactly to the agreed exponent, one ``all_reduce(SUM)`` of
    an int64 vector (all counts, finite / NaN / +Inf / -Inf counts and batch counts).
    Tensors go on the current CUDA device for NCCL and on the CPU for Gloo (or other backends).

    The result equals, bit for bit, the state of one process that collected all the data:
    counts, range exponent, amax, min, max and non-finite counts (``batches`` is the sum).
    Waits for the collectors' GPU streams (it reads their states).

    Returns ``collectors``.
    """
    torch, dist = _dist()
    names = sorted(collectors)
    world = dist.get_world_size(group)
    ranks = [_global_rank(dist, group, i) for i in range(world)]
    sigs: List[Any] = [None] * world
    dist.all_gather_object(sigs, [_signature(n, collectors[n]) for n in names], group=group)
    channels = _agree(sigs, ranks)
    if not names:
        return dict(collectors)
    states = {n: collectors[n].state_dict() for n in names}
    lay = _Layout(names, collectors, channels)
    device = _collective_device(dist, torch, group)

    # 1. one MAX: range exponents, amax, max and -min (min = -max(-min): negation is exact)
    fv = np.full(lay.nf, -np.inf)
    for n in names:
        s, o = states[n], lay.f[n]
        if isinstance(collectors[n], HistogramCollector):
            fv[o] = NO_RANGE if s["exponent"] is None else int(s["exponent"])
            fv[o + 1] = float(s["amax"])
            fv[o + 2] = -np.inf if s["max"] is None else float(s["max"])
            fv[o + 3] = -np.inf if s["min"] is None else -float(s["min"])
        elif s["channels"] is not None:
            c = s["channels"]
            fv[o : o + c] = _nan_to(s["max"], -np.inf)
            fv[o + c : o + 2 * c] = -_nan_to(s["min"], np.inf)
    t = torch.from_numpy(fv).to(device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=group)
    fv = t.cpu().numpy()

    # 2. re-bin locally to the agreed exponent, then one SUM of every count
    iv = np.zeros(lay.ni, dtype=np.int64)
    for n in names:
        s, o, c = states[n], lay.i[n], collectors[n]
        if isinstance(c, HistogramCollector):
            counts = np.asarray(s["counts"], dtype=np.int64)
            e = int(fv[lay.f[n]])
            if s["exponent"] is not None and e > int(s["exponent"]):
                counts = rebin(counts, c.signed, e - int(s["exponent"]))
            iv[o : o + c.bins] = counts
            iv[o + c.bins : o + c.bins + 5] = [
                int(s[k]) for k in ("finite", "nan", "posinf", "neginf", "batches")
            ]
        else:
            iv[o : o + 4] = [int(s[k]) for k in ("nan", "posinf", "neginf", "batches")]
    t = torch.from_numpy(iv).to(device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM, group=group)
    iv = t.cpu().numpy()

    # 3. every rank loads the merged state
    for n in names:
        s, c, fo, io = states[n], collectors[n], lay.f[n], lay.i[n]
        if isinstance(c, HistogramCollector):
            e = int(fv[fo])
            merged = dict(
                s,
                exponent=None if e == NO_RANGE else e,
                amax=float(fv[fo + 1]),
                max=_float_or_none(fv[fo + 2]),
                min=_float_or_none(fv[fo + 3]),
                counts=iv[io : io + c.bins].copy(),
            )
            if merged["min"] is not None:
                merged["min"] = -merged["min"]
            for j, k in enumerate(("finite", "nan", "posinf", "neginf", "batches")):
                merged[k] = int(iv[io + c.bins + j])
            c.load_state_dict(merged)
        else:
            ch = channels[n]
            merged = dict(
                s,
                channels=ch,
                **{
                    k: int(iv[io + j]) for j, k in enumerate(("nan", "posinf", "neginf", "batches"))
                },
            )
            if ch is not None:
                hi = fv[fo : fo + ch].copy()
                lo = -fv[fo + ch : fo + 2 * ch]
                hi[hi == -np.inf] = np.nan
                lo[lo == np.inf] = np.nan
                merged.update(min=lo, max=hi)
                c.load_state_dict(merged)
            else:
                c.batches = merged["batches"]
    return dict(collectors)


# --------------------------------------------------------------------------------------------
# merging collector files (no process group)
# --------------------------------------------------------------------------------------------
def merge_collectors(
    parts: Sequence[Mapping[str, Collector]], labels: Optional[Sequence[str]] = None
) -> Dict[str, Collector]:
    """Merges collector sets (e.g. from :func:`load_states` of several files) into new CPU
    collectors. Every set must hold the same tensor names; ``labels`` name the sets in errors.
    The result is exact and independent of the order of ``parts``.
    """
    if not parts:
        raise ValueError("trtcal: nothing to merge")
    labels = list(labels) if labels is not None else [f"set {i}" for i in range(len(parts))]
    ref = set(parts[0])
    for lab, p in zip(labels[1:], parts[1:]):
        if set(p) != ref:
            missing, extra = sorted(ref - set(p)), sorted(set(p) - ref)
            raise ValueError(
                f"trtcal: {lab} has different tensors from {labels[0]}: "
                f"lacks {missing[:5]}, has extra {extra[:5]}"
            )
    out: Dict[str, Collector] = {}
    for n in parts[0]:
        first = parts[0][n]
        out[n] = type(first).from_state_dict(first.state_dict(), device="cpu")
        for lab, p in zip(labels[1:], parts[1:]):
            try:
                out[n].merge(p[n])  # type: ignore[arg-type]  # a mismatch raises TypeError, said below
            except (TypeError, ValueError) as exc:
                raise ValueError(
                    f"trtcal: cannot merge '{n}' from {lab}: {_unprefixed(exc)}"
                ) from None
    return out


_LOCATION_KEYS = frozenset({"path", "root", "file", "folder"})  # where one machine keeps the data
_RANK_NAME = re.compile(r"\.rank(\d+)-of-(\d+)(\.[^./\\]*)?$")  # rank_path(): ck.rank1-of-4.npz
_JOB_LABELS = {
    "data.shard.world_size": "number of shards",
    "shards": "number of shards",
    "data.shard.limit": "samples in the data",
    "data.shard.align": "shard alignment (batch size)",
}


class _Input:
    """What one file given to :func:`merge_files` holds.

    ``job``: the settings of the run it comes from, without the shard's own rank (None: a
    collector-state file that does not say); ``world``: the run's number of shards (1: a whole
    run); ``ranks``: the shards it holds; ``complete``: they all finished; ``samples``: how
    many samples, when the file says; ``key``: for files without a job, the user's own
    ``meta['shard']`` (two files with the same one hold the same data).
    """

    def __init__(
        self,
        path: str,
        job: Optional[Dict[str, Any]],
        world: int,
        ranks: Tuple[int, ...],
        complete: bool,
        samples: Optional[int],
        key: str = "",
    ) -> None:
        self.path, self.job, self.world, self.ranks = path, job, world, ranks
        self.complete, self.samples, self.key = complete, samples, key

    def what(self) -> str:
        """'shard 1 of 3', 'shards 0, 1 of 3' or 'a whole run' (for messages)."""
        if self.world == 1:
            return "a whole run (not one of --shard / --distributed shards)"
        return _shards_text(self.ranks, self.world)


def _shards_text(ranks: Iterable[int], world: int) -> str:
    ranks = sorted(ranks)
    return f"shard{'s' if len(ranks) != 1 else ''} {', '.join(map(str, ranks))} of {world}"


def _int_or_none(v: Any) -> Optional[int]:
    try:
        return None if v is None else int(v)
    except (TypeError, ValueError):
        return None


def _describe_input(path: str, info: Mapping[str, Any]) -> _Input:
    """Reads which run and which shards a loaded file (:func:`load_states`) holds.

    A calibrate checkpoint records its shard in ``config['data']['shard']`` ({rank,
    world_size, align, limit}, written by ``trtcal.pipeline.shard.ShardedSource``); a
    checkpoint without it is a whole run's, unless its name says ``.rankR-of-N.``. A state file
    written by ``trtcal merge --out-state`` records the run and the shards it merged.
    """

    def malformed(why: str) -> ValueError:
        return ValueError(f"trtcal: {path} is malformed: {why}")

    if info["format"] == CHECKPOINT_FORMAT:
        cfg, prog = info.get("config"), info.get("progress")
        if not isinstance(cfg, dict) or not isinstance(prog, dict):
            raise malformed("its config or progress is not a JSON object")
        samples = _int_or_none(prog.get("samples"))
        complete = bool(prog.get("complete"))
        data = cfg.get("data")
        shard = data.get("shard") if isinstance(data, dict) else None
        if shard is not None:
            try:
                rank, world = int(shard["rank"]), int(shard["world_size"])
            except (KeyError, TypeError, ValueError):
                raise malformed(f"its shard record {shard!r} has no rank and world_size") from None
            if not 0 <= rank < world:
                raise malformed(f"it says shard {rank} of {world}")
            job = dict(
                cfg, data=dict(data or {}, shard={k: v for k, v in shard.items() if k != "rank"})
            )
            return _Input(path, job, world, (rank,), complete, samples)
        named = _RANK_NAME.search(os.path.basename(path))
        if named and 0 <= int(named.group(1)) < int(named.group(2)) and int(named.group(2)) > 1:
            rank, world = int(named.group(1)), int(named.group(2))
            return _Input(path, dict(cfg, shards=world), world, (rank,), complete, samples)
        return _Input(path, dict(cfg), 1, (0,), complete, samples)
    meta = info.get("meta")
    meta = meta if isinstance(meta, dict) else {}
    samples = _int_or_none(meta.get("samples"))
    if meta.get("job") is not None:
        try:
            job, world = dict(meta["job"]), int(meta["world_size"])
            ranks = tuple(sorted(int(r) for r in meta["ranks"]))
        except (KeyError, TypeError, ValueError):
            raise malformed(
                "its record of the merged run (job, world_size, ranks) is incomplete"
            ) from None
        if (
            world < 1
            or not ranks
            or any(not 0 <= r < world for r in ranks)
            or len(set(ranks)) != len(ranks)
        ):
            raise malformed(f"it says it holds shards {list(ranks)} of {world}")
        return _Input(path, job, world, ranks, bool(meta.get("complete", True)), samples)
    key = (
        json.dumps(meta["shard"], sort_keys=True, default=str)
        if meta.get("shard") is not None
        else ""
    )
    return _Input(path, None, 0, (), True, samples, key)


def _short(v: Any) -> str:
    if v is None:
        return "(none)"
    s = json.dumps(v, sort_keys=True, default=str)
    return s if len(s) <= 60 else s[:57] + "..."


def _diff(a: Any, b: Any, where: str = "") -> List[Tuple[str, Any, Any]]:
    """(dotted key, value in a, value in b) for every setting that differs."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: List[Tuple[str, Any, Any]] = []
        for k in sorted(set(a) | set(b), key=str):
            out += _diff(a.get(k), b.get(k), f"{where}.{k}" if where else str(k))
        return out
    return [] if a == b else [(where, a, b)]


def _diff_text(key: str, va: Any, vb: Any, a: str, b: str) -> str:
    label = _JOB_LABELS.get(key, key)
    if isinstance(va, list) and isinstance(vb, list):
        only_a = [x for x in va if x not in vb]
        only_b = [x for x in vb if x not in va]
        if only_a or only_b:
            parts = ([f"{_short(only_a[:3])} only in {a}"] if only_a else []) + (
                [f"{_short(only_b[:3])} only in {b}"] if only_b else []
            )
            return f"{label}: {len(va)} in {a}, {len(vb)} in {b} ({'; '.join(parts)})"
        return f"{label}: the same {len(va)} in another order"
    return f"{label}: {_short(va)} in {a}, {_short(vb)} in {b}"


def _check_same_run(parts: Sequence[_Input], warnings: List[str]) -> None:
    """Refuses files that are not shards of one run; notes harmless differences in ``warnings``."""
    whole = [q for q in parts if q.world == 1]
    if whole and len(parts) > 1:
        w = whole[0]
        o = next(q for q in parts if q is not w)
        raise ValueError(
            f"trtcal: {w.path} holds a whole run (all of its data, not one --shard), so it cannot "
            "be "
            f"merged with {o.path} ({o.what()}): that would count data twice or mix different "
            "runs. "
            "Merge a whole run's checkpoint on its own, or merge the shard checkpoints of one run "
            "(ck.rank*-of-N.npz)"
        )
    ref = parts[0]
    for q in parts[1:]:
        problems, places, runners = [], [], []
        for key, va, vb in _diff(ref.job, q.job):
            if key.startswith("data.") and key.rsplit(".", 1)[-1] in _LOCATION_KEYS:
                places.append(_diff_text(key, va, vb, ref.path, q.path))
            elif key == "runner":
                runners.append(_diff_text(key, va, vb, ref.path, q.path))
            else:
                problems.append(_diff_text(key, va, vb, ref.path, q.path))
        if ref.world != q.world and not any(t.startswith("number of shards") for t in problems):
            problems.insert(
                0, f"number of shards: {ref.world} in {ref.path}, {q.world} in {q.path}"
            )
        if problems:
            more = f"; and {len(problems) - 4} more" if len(problems) > 4 else ""
            raise ValueError(
                f"trtcal: {q.path} and {ref.path} are not shards of the same run, so they cannot "
                "be "
                f"merged: {'; '.join(problems[:4])}{more}"
            )
        if places:
            warnings.append(
                "the shards read their data from different places ("
                + "; ".join(places)
                + "); the rest "
                "of the data fingerprint (file names, sizes, preprocessing) agrees, so they are "
                "taken "
                "as shards of the same data"
            )
        if runners:
            warnings.append(
                "the shards ran the model with different runners ("
                + "; ".join(runners)
                + "); their "
                "activations may differ slightly"
            )


def _expected_names(parts: Sequence[_Input], missing: Sequence[int], world: int) -> str:
    """' (ck.rank2-of-3.npz)': the missing shards' file names, when the given ones follow
    rank_path()."""
    for q in parts:
        m = _RANK_NAME.search(q.path)
        if m and int(m.group(2)) == world:
            root, ext = q.path[: m.start()], m.group(3) or ""
            names = [f"{root}.rank{r}-of-{world}{ext}" for r in missing]
            return f" ({', '.join(names[:4])}{', ...' if len(names) > 4 else ''})"
    return ""


def merge_files(
    paths: Sequence[str], *, allow_partial: bool = False, allow_incomplete: bool = False
) -> Tuple[Dict[str, Collector], Dict[str, Any]]:
    """Merges collector files (:func:`save_states` files or ``trtcal calibrate`` checkpoints,
    one per machine or rank) into one exact set of CPU collectors.

    Calibrate checkpoints (and state files that ``trtcal merge --out-state`` wrote from them)
    must be shards of one run: the same model, bins, tensors, batch size, sign, max_samples,
    data fingerprint (apart from each shard's own rank and from where each machine keeps the
    files) and number of shards N, each shard once. Refused, naming the files and what
    differs: shards of different runs; a whole run's checkpoint with anything else (it would
    count data twice); the same shard twice; a state file that does not record its run mixed
    with checkpoints; files of other kinds. Unless ``allow_partial`` (``allow_incomplete`` is
    its older name), also refused: a missing shard of the N, and the checkpoint of a shard
    that did not finish; with it, each is a line in ``info['warnings']``. State files
    without a recorded run (your own :func:`save_states` files) are merged as they are, each once.

    Returns ``(collectors, info)``: ``info`` has ``files``, ``samples`` (None unless every
    file says), ``shards`` ({world_size, ranks, missing}, or None for state files without a
    run), ``unfinished`` (files of shards that did not finish), ``warnings`` (lines for the
    user), and ``state_meta`` (the ``meta`` for :func:`save_states` of the result: it records
    the run and shards, so the merged file can be merged again and is checked the same way).
    """
    allow_partial = bool(allow_partial or allow_incomplete)
    if not paths:
        raise ValueError("trtcal: give at least one collector-state file or checkpoint to merge")
    paths = [os.fspath(p) for p in paths]
    seen_files: Dict[str, str] = {}
    for p in paths:
        real = os.path.realpath(p)
        if real in seen_files:
            also = f" (also as {seen_files[real]})" if seen_files[real] != p else ""
            raise ValueError(
                f"trtcal: {p} is given twice{also}; merging it twice would count its data twice"
            )
        seen_files[real] = p
    loaded = [load_states(p) for p in paths]
    parts = [_describe_input(p, info) for p, (_, info) in zip(paths, loaded)]
    runs = [q for q in parts if q.job is not None]
    loose = [q for q in parts if q.job is None]
    warnings: List[str] = []
    shards: Optional[Dict[str, Any]] = None
    unfinished: List[str] = []
    if runs and loose:
        raise ValueError(
            f"trtcal: {loose[0].path} is a collector-state file that does not record which run and "
            f"shard it holds, so it cannot be checked against {runs[0].path} ({runs[0].what()}); "
            "merge the shards' checkpoints (or state files merged from them) together, and such "
            "state files only with each other"
        )
    if runs:
        _check_same_run(runs, warnings)
        world = runs[0].world
        owner: Dict[int, str] = {}
        for q in runs:
            for r in q.ranks:
                if r in owner:
                    raise ValueError(
                        f"trtcal: {owner[r]} and {q.path} both hold shard {r} of {world}; merging "
                        "both "
                        "would count its data twice"
                    )
                owner[r] = q.path
        for q in runs:
            if q.complete:
                continue
            unfinished.append(q.path)
            so_far = (
                f"{q.samples} samples so far" if q.samples is not None else "samples so far unknown"
            )
            if not allow_partial:
                raise ValueError(
                    f"trtcal: {q.path} holds {q.what()} of a run that did not finish ({so_far}); "
                    "finish it (trtcal calibrate ... --resume with the same --shard and "
                    "--checkpoint), "
                    "or pass --allow-partial to merge it as it is"
                )
            warnings.append(
                f"{q.path} holds {q.what()} of a run that did not finish ({so_far}): the merged "
                "statistics cover only part of its data"
            )
        missing = sorted(set(range(world)) - set(owner))
        if missing:
            gone = _shards_text(missing, world) + _expected_names(runs, missing, world)
            have = _shards_text(owner, world)
            if not allow_partial:
                raise ValueError(
                    f"trtcal: {gone} {'is' if len(missing) == 1 else 'are'} missing: the files "
                    "given "
                    f"hold only {have}. Merge all {world} shards, or pass --allow-partial to merge "
                    "only these (the table then covers only part of the data)"
                )
            warnings.append(
                f"{gone} {'is' if len(missing) == 1 else 'are'} missing: the merged statistics "
                "cover "
                f"only {have}"
            )
        shards = {"world_size": world, "ranks": sorted(owner), "missing": missing}
    else:
        seen: Dict[str, str] = {}
        for q in loose:
            if q.key and q.key in seen:
                raise ValueError(
                    f"trtcal: {q.path} and {seen[q.key]} hold the same shard of the same data; "
                    "merging "
                    "both would count it twice"
                )
            seen[q.key] = q.path
    merged = merge_collectors([c for c, _ in loaded], labels=paths)
    samples = None if any(q.samples is None for q in parts) else sum(q.samples for q in parts)  # type: ignore
    meta: Dict[str, Any] = {"merged_from": list(paths), "samples": samples}
    if shards is not None:
        meta.update(
            job=runs[0].job,
            world_size=shards["world_size"],
            ranks=shards["ranks"],
            complete=not unfinished,
        )
    return merged, {
        "files": list(paths),
        "samples": samples,
        "shards": shards,
        "unfinished": unfinished,
        "warnings": warnings,
        "state_meta": meta,
    }


def save_states(
    path: str, collectors: Mapping[str, Collector], meta: Optional[Mapping[str, Any]] = None
) -> str:
    """Writes collectors' exact states to ``path`` (a NumPy ``.npz`` without pickles), atomically.

    Layout: ``meta`` (UTF-8 JSON: format, version, names, each state without its counts, and
    ``meta`` given here) and ``counts`` (all histogram counts, int64, concatenated in name
    order). Floats go through JSON's shortest round-trip form, so states load back bit-exact.
    """
    names = list(collectors)
    states: Dict[str, Any] = {}
    rows: List[np.ndarray] = []
    for n in names:
        s = dict(collectors[n].state_dict())
        if "counts" in s:
            rows.append(np.asarray(s.pop("counts"), dtype=np.int64))
        for k in ("min", "max"):
            if isinstance(s.get(k), np.ndarray):
                s[k] = [None if np.isnan(v) else float(v) for v in s[k]]
        states[n] = s
    doc = {
        "format": STATES_FORMAT,
        "version": STATES_VERSION,
        "names": names,
        "states": states,
        "meta": dict(meta or {}),
    }
    blob = np.frombuffer(
        json.dumps(doc, default=json_default, allow_nan=False).encode("utf-8"), dtype=np.uint8
    )
    counts = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    atomic_savez(path, ".trtcal-states-", meta=blob, counts=counts)
    return path


def _not_ours(path: str, why: str) -> ValueError:
    return ValueError(f"trtcal: {path} is not a trtcal checkpoint or state file ({why})")


def _read_npz(path: str) -> Tuple[Any, np.ndarray]:
    """(the parsed ``meta`` JSON, the ``counts``) of a trtcal .npz; ``ValueError`` for any other
    file."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except FileNotFoundError:
        raise FileNotFoundError(f"trtcal: {path}: no such file") from None
    except IsADirectoryError:
        raise _not_ours(path, "it is a folder") from None
    except OSError as exc:
        raise _not_ours(path, f"it cannot be read: {exc.strerror or exc}") from None
    if not head.startswith(b"PK"):
        raise _not_ours(path, known_kind(path, head))
    try:
        with np.load(path, allow_pickle=False) as z:
            if "meta" not in z.files or "counts" not in z.files:
                names = ", ".join(repr(n) for n in z.files[:5]) + (
                    ", ..." if len(z.files) > 5 else ""
                )
                raise _not_ours(
                    path,
                    "it is an .npz, but not a trtcal collector-state file or checkpoint: it holds "
                    f"{names or 'no arrays'}, not 'meta' and 'counts'",
                )
            raw, counts = z["meta"], np.array(z["counts"], dtype=np.int64)
    except ValueError as exc:
        if str(exc).startswith("trtcal: "):
            raise
        why = (
            "its arrays hold Python objects (pickles), which trtcal never writes"
            if "pickle" in str(exc)
            else exc
        )
        raise _not_ours(path, f"an .npz that cannot be read: {why}") from None
    except (OSError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise _not_ours(path, f"a damaged or non-NumPy zip archive: {exc}") from None
    try:
        doc = json.loads(bytes(np.asarray(raw, dtype=np.uint8)).decode("utf-8"))
    except (TypeError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise _not_ours(path, f"its 'meta' is not trtcal's JSON: {exc}") from None
    return doc, counts


def load_states(path: str) -> Tuple[Dict[str, Collector], Dict[str, Any]]:
    """Reads a file of :func:`save_states` or a ``trtcal calibrate`` checkpoint.

    Returns ``(collectors, info)``: CPU collectors by tensor name, and ``info`` with the
    file's ``format`` and its ``meta`` (states files) or ``config`` / ``progress``
    (calibrate checkpoints). Raises ``FileNotFoundError`` for a missing file and
    ``ValueError``, naming the file and what it is instead, for any other or malformed file.
    """
    doc, counts = _read_npz(path)
    fmt = doc.get("format") if isinstance(doc, dict) else None
    version = doc.get("version") if isinstance(doc, dict) else None
    out: Dict[str, Collector] = {}
    if fmt == CHECKPOINT_FORMAT:
        if version != ckpt.VERSION:
            raise _not_ours(
                path,
                f"a calibrate checkpoint of version {version!r}; this trtcal reads version "
                f"{ckpt.VERSION}",
            )
        try:
            data = ckpt.parse(path, doc, counts)
            for n, s in data["stats_state"]["collectors"].items():
                out[n] = HistogramCollector.from_state_dict(s)
        except (KeyError, TypeError, IndexError) as exc:
            raise ValueError(
                f"trtcal: {path} is a malformed calibrate checkpoint: {type(exc).__name__}: {exc}"
            ) from None
        return out, {"format": fmt, "config": data["config"], "progress": data["progress"]}
    if fmt != STATES_FORMAT:
        raise _not_ours(
            path,
            f"its meta says format {fmt!r}; trtcal reads {STATES_FORMAT} and {CHECKPOINT_FORMAT}",
        )
    if version != STATES_VERSION:
        raise _not_ours(
            path,
            f"a collector-state file of version {version!r}; this trtcal reads version "
            f"{STATES_VERSION}",
        )
    try:
        pos = 0
        for n in doc["names"]:
            s = dict(doc["states"][n])
            if s.get("format") == "trtcal.HistogramCollector":
                b = int(s["bins"])
                if pos + b > counts.size:
                    raise ValueError("counts are shorter than the states say")
                s["counts"] = counts[pos : pos + b].copy()
                pos += b
                out[n] = HistogramCollector.from_state_dict(s)
            else:
                for k in ("min", "max"):
                    if s.get(k) is not None:
                        s[k] = np.array(
                            [np.nan if v is None else v for v in s[k]], dtype=np.float64
                        )
                out[n] = MinMaxCollector.from_state_dict(s)
        if pos != counts.size:
            raise ValueError("counts are longer than the states say")
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"trtcal: {path} is malformed: {_unprefixed(exc)}") from None
    return out, {"format": fmt, "meta": doc.get("meta", {})}


def _unprefixed(exc: BaseException) -> str:
    """An exception's message without its own 'trtcal: ' (the message it goes into has one)."""
    msg = str(exc)
    return msg[len("trtcal: ") :] if msg.startswith("trtcal: ") else msg
