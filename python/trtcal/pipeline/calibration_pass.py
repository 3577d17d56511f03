"""The calibration pass: model + data -> one streaming histogram per activation, resumable.

:func:`prepare` checks everything that could fail after the pass (settings, paths, free space,
the model, the data's first sample) and opens the runner and the data; :func:`collect` runs the
model over the data once, feeding every chosen activation to a streaming histogram (memory
constant in the number of samples) and checkpointing the exact collector state (every
``checkpoint_every`` batches or ``checkpoint_seconds``, at Ctrl-C, SIGTERM, SIGHUP and on
errors); :func:`finish` turns it into a :class:`~trtcal.pipeline.result.CalibrationResult`
with its provenance. Ranges, outputs and the report are the entry point's
(:func:`trtcal.calibrate`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from ..core import _locks
from ..core.progress import Progress
from ..core.range_search import _spec
from ..core.version import __version__
from ..formats.trt_version import installed_version, parse_major
from . import checkpoint as ckpt
from . import distributed as dist
from . import outputs, preflight
from .collect import ActivationStats
from .config import CalibrationConfig
from .data import BadSampleError, InputSpec, Source, batches, open_source
from .result import CalibrationResult, parse_methods
from .result_files import names_text
from .runners import Runner, TensorSelection, make_runner, model_digest
from .shard import ShardedSource
from .signals import DeferredSignals


@dataclass
class OutputPaths:
    """Where calibrate writes (None: not written); with several methods each path gets
    ``.<method>`` before its extension."""

    cache: Optional[str] = None
    qdq: Optional[str] = None
    table: Optional[str] = None
    report: Optional[str] = None

    def named(self) -> List[Tuple[str, Optional[str]]]:
        return [
            ("out_cache", self.cache),
            ("out_qdq", self.qdq),
            ("out_table", self.table),
            ("report", self.report),
        ]


@dataclass
class Plan:
    """Everything :func:`prepare` settled before the first sample is read."""

    model: Any
    cfg: CalibrationConfig
    paths: OutputPaths
    say: Callable[[str], None]
    progress: bool
    rank: int
    world: int
    methods: List[str]
    flavors: Dict[str, Optional[str]]
    percentile: Optional[float]
    trt_version: str
    selection: TensorSelection
    run: Runner
    fixed_batch: Optional[int]
    batch_size: int
    source: Source
    max_samples: Optional[int]
    checkpoint: Optional[str]
    digest: str
    fingerprint: Dict[str, Any]
    split: Any = None  # method 'auto': where it judges (trtcal.evaluation.auto.Split)
    demo: bool = False


@dataclass
class Collected:
    """The pass's state: the collectors and the counts (restored from a checkpoint, then grown)."""

    stats: ActivationStats
    cursor: int = 0
    used: int = 0
    batches: int = 0
    skipped: List[Tuple[str, str]] = field(default_factory=list)
    complete: bool = False


def prepare(
    model: Any,
    cfg: CalibrationConfig,
    paths: OutputPaths,
    *,
    demo: bool = False,
    plan_split: Optional[Callable[..., Any]] = None,
) -> Plan:
    """Checks and opens everything the pass needs; ``plan_split`` (method 'auto') decides which
    samples are held out for judging the methods."""
    rank, world = _rank_and_world(cfg)
    say, progress = cfg.say(), cfg.progress
    if cfg.distributed and rank != 0:
        say, progress = (lambda s: None), False  # rank 0 speaks for the job
    methods = parse_methods(cfg.method)
    if methods == ["auto"] and cfg.flavor is not None:
        raise ValueError(
            "trtcal: a flavor picks one method's search; method 'auto' measures each method's "
            "default "
            "(name a method, e.g. method='entropy', to use a flavor)"
        )
    flavors = outputs.method_flavors(methods, cfg.flavor)  # before any data is read
    percentile = _check_settings(methods, flavors, cfg.params, int(cfg.bins))
    trt_version = cfg.tensorrt_version or installed_version() or outputs.DEFAULT_TENSORRT
    if paths.cache and parse_major(trt_version) >= 11:
        raise ValueError(
            f"trtcal: TensorRT {trt_version} has no calibration caches (11.0 removed implicit "
            "INT8); "
            "write a Q/DQ model with out_qdq / --out-qdq instead"
        )
    data = cfg.data
    outs = paths.named() + [("checkpoint", cfg.checkpoint)]
    ins = [("model", m) for m in preflight.model_files(model)] + preflight.data_files(data)
    preflight.check_paths(
        ins, outs, os.fspath(data) if isinstance(data, (str, os.PathLike)) else None
    )
    preflight.check_writable(outs)  # folders created, writable; free space is checked below
    selection = cfg.selection()
    if paths.qdq:
        outputs.qdq_op_types(
            selection.op_types
        )  # before the pass: the choice holds an op it quantizes
        if not isinstance(cfg.runner, Runner):
            _check_onnx(
                model
            )  # a Q/DQ model of an invalid model fails at the end: say it before the pass
    if isinstance(cfg.runner, Runner):
        run = cfg.runner
    else:
        with preflight.engine_errors(model, "load"):
            run = make_runner(
                model,
                selection,
                cfg.runner,
                cfg.batch_size or 16,
                device_id=_local_device(cfg.distributed),
                max_memory=cfg.memory_budget(),
            )
    fixed_batch = _fixed_batch(run.specs)
    batch_size = _batch_size(cfg.batch_size, fixed_batch)
    if cfg.input_name is not None and cfg.input_name not in [sp.name for sp in run.specs]:
        raise ValueError(
            f"trtcal: the model has no input {cfg.input_name!r} "
            f"(inputs: {', '.join(sp.name for sp in run.specs)})"
        )
    source = open_source(data, cfg.preprocess, cfg.input_name)
    source.bind(run.specs)
    split, max_samples = None, cfg.max_samples
    if methods == ["auto"] and cfg.shard is None and plan_split is not None:
        split = plan_split(
            source,
            data,
            cfg.eval_data,
            cfg.eval_samples,
            max_samples,
            cfg.preprocess,
            cfg.input_name,
        )
        max_samples = split.max_samples
        say(f"trtcal: auto judges the methods on {split.description}")
    if cfg.preprocess is not None and not demo and getattr(source, "preprocess", None) is None:
        say(
            "trtcal: the preprocessing applies to images; this data holds none, so it is used as "
            "it is"
        )
    checkpoint = cfg.checkpoint
    if world > 1 or cfg.shard is not None:
        source = ShardedSource(source, rank, world, align=batch_size, limit=max_samples)
        max_samples = None  # applied to positions above
        if checkpoint:
            checkpoint = dist.rank_path(checkpoint, rank, world)
        say(f"trtcal: rank {rank} of {world}: {_shard_text(source)}")
    if cfg.shard is not None and not checkpoint:
        raise ValueError(
            "trtcal: a shard run needs a checkpoint path: its checkpoint is its result"
        )
    if cfg.resume and not checkpoint:
        raise ValueError("trtcal: resume needs a checkpoint path")
    preflight.check_space(outs, len(run.tensors), int(cfg.bins), model, methods)
    writes = cfg.shard is None and rank == 0  # the files this process writes besides its checkpoint
    _locks.take(
        [(checkpoint, "the checkpoint")]
        + [(p, "the output") for _, p in paths.named() if p and writes]
    )
    digest = (
        model_digest(model) if not isinstance(cfg.runner, Runner) or model is not None else "runner"
    )
    fingerprint = {
        "model": digest,
        "data": source.fingerprint(),
        "batch_size": batch_size,
        "bins": int(cfg.bins),
        "tensors": list(run.tensors),
        "runner": run.describe().get("runner", type(run).__name__),
        "max_samples": max_samples,
    }
    if outputs.needs_signed(flavors):
        fingerprint["signed"] = True
    return Plan(
        model,
        cfg,
        paths,
        say,
        progress,
        rank,
        world,
        methods,
        flavors,
        percentile,
        trt_version,
        selection,
        run,
        fixed_batch,
        batch_size,
        source,
        max_samples,
        checkpoint,
        digest,
        fingerprint,
        split,
        demo,
    )


def collect(plan: Plan) -> Collected:
    """The pass (resumed from the checkpoint when asked): every batch's activations into the
    collectors; the state is saved on a schedule, at signals and on errors, never half-updated."""
    cfg, say, run, source = plan.cfg, plan.say, plan.run, plan.source
    state = Collected(
        ActivationStats(run.tensors, bins=cfg.bins, signed=bool(plan.fingerprint.get("signed")))
    )
    _resume(plan, state)
    _say_setup(plan)

    def save(done: bool = False) -> None:
        if plan.checkpoint:
            ckpt.save(
                plan.checkpoint,
                config=plan.fingerprint,
                stats_state=state.stats.state_dict(),
                progress={
                    "cursor": state.cursor,
                    "samples": state.used,
                    "batches": state.batches,
                    "skipped": [list(s) for s in state.skipped],
                    "complete": done,
                },
            )

    def on_bad(exc: BadSampleError) -> None:
        say(f"trtcal: skipping {exc.sample}: {exc.reason}")

    # the bar counts samples: positions of files and arrays, or (an iterable of batches) samples
    # used and skipped, against max_samples when the number of samples is not known
    def position() -> int:
        return state.used + len(state.skipped) if source.batched else state.cursor

    total = plan.max_samples if source.batched else _total(source, plan.max_samples)
    bar = Progress(plan.progress and not state.complete, total, "calibrating", start=position())
    saved_nonfinite = {n: 0 for n in run.tensors} if run.device != "cpu" else None
    since_check: List[str] = []
    dropped = [0]  # samples of this run's batches dropped for NaN/Inf activations
    dirty = False
    last_save = time.monotonic()
    try:
        with DeferredSignals() as interrupt:
            if not state.complete:
                for batch in batches(
                    source,
                    plan.batch_size,
                    start=state.cursor,
                    max_samples=plan.max_samples,
                    used=state.used,
                    skip_bad=cfg.skip_bad,
                    on_bad=on_bad,
                    dropped=lambda: dropped[0],
                ):
                    if batch.names:
                        if plan.fixed_batch is not None and len(batch.names) < plan.fixed_batch:
                            say(
                                f"trtcal: dropping the last {len(batch.names)} samples: the "
                                "model's batch size is "
                                f"fixed at {plan.fixed_batch}"
                            )
                        else:
                            bad = []
                            # ONNX Runtime's runner splits the batch to its memory budget
                            with preflight.engine_errors(plan.model, "run", batch.names):
                                for rows, acts in run.run_parts(batch.inputs):
                                    acts, part_bad = state.stats.screen(
                                        acts,
                                        batch.names[rows],
                                        skip_bad=cfg.skip_bad,
                                        check="batch" if cfg.skip_bad else "deferred",
                                    )
                                    # an error while adding leaves the collectors half-updated
                                    dirty = True
                                    state.stats.add(acts, stream=run.stream)
                                    bad.extend(part_bad)
                                    del acts
                            dirty = False
                            dropped[0] += len(bad)
                            for s in bad:
                                on_bad(BadSampleError(*s))
                            batch.skipped.extend(bad)
                            state.used += len(batch.names) - len(bad)
                            state.batches += 1
                            since_check.extend(batch.names)
                    state.skipped.extend(
                        batch.skipped
                    )  # with the cursor: a failed batch is redone whole
                    state.cursor = batch.end
                    bar.move_to(position())
                    if state.skipped:
                        bar.note(skipped=len(state.skipped))
                    due = state.batches % cfg.checkpoint_every == 0 or (
                        cfg.checkpoint_seconds is not None
                        and time.monotonic() - last_save >= cfg.checkpoint_seconds
                    )
                    if plan.checkpoint and state.batches and due and batch.names:
                        _check_deferred(state.stats, saved_nonfinite, since_check)
                        save()
                        since_check = []
                        last_save = time.monotonic()
                    if interrupt.hit:
                        raise interrupt.stop()
                _check_deferred(state.stats, saved_nonfinite, since_check)
                save(done=True)
    except BaseException as exc:
        bar.close()
        if not dirty and not isinstance(exc, _DeferredBadSample) and (state.used or cfg.resume):
            save()  # the state of every batch completed so far
            if plan.checkpoint:
                again = (
                    " with --skip-bad"
                    if isinstance(exc, BadSampleError) and not cfg.skip_bad
                    else ""
                )
                say(
                    f"trtcal: stopped after {state.used} samples; state saved to {plan.checkpoint} "
                    f"(run again with --resume{again} to continue)"
                )
        elif not state.used and not dirty:
            say("trtcal: stopped before any sample was calibrated; nothing to resume")
        if cfg.distributed:  # every rank learns which rank failed, and why
            dist.check_ranks(exc, "calibration", cfg.group)
        raise
    bar.close()
    if cfg.distributed:
        state.used, state.batches, state.skipped = _merge_ranks(
            state.stats, state.used, state.batches, state.skipped, cfg.group
        )
    if state.used == 0:
        raise ValueError(
            "trtcal: no usable calibration samples"
            + (f" ({len(state.skipped)} skipped)" if state.skipped else "")
        )
    return state


def finish(plan: Plan, state: Collected) -> CalibrationResult:
    """The result of the pass: histograms, counts, provenance and notes (no ranges yet). A shard
    run writes no table files: its checkpoint is its result."""
    say, cfg = plan.say, plan.cfg
    if cfg.shard is not None:
        ck = plan.checkpoint or ""
        say(
            f"trtcal: shard {plan.rank} of {plan.world} done: {state.used} samples; its checkpoint "
            f"{ck} is merged "
            "with the others' by: trtcal merge "
            + ck.replace(f".rank{plan.rank}-of-", ".rank*-of-")
            + " --out-table ..."
        )
        plan.paths = OutputPaths()
    hists = state.stats.histograms()
    pre = getattr(plan.source, "preprocess", None)
    provenance = {
        "tool": "trtcal calibrate",
        "trtcal_version": __version__,
        "model": os.path.abspath(plan.model)
        if isinstance(plan.model, (str, os.PathLike))
        else "<ModelProto>",
        "model_sha256": plan.digest,
        "data": plan.source.describe(),
        "samples": state.used,
        "batches": state.batches,
        "skipped": len(state.skipped),
        "batch_size": plan.batch_size,
        "bins": int(cfg.bins),
        "method": ",".join(plan.methods),
        "flavor": _flavor_text(plan.flavors),
        "runner": plan.run.describe(),
        "tensorrt_version": plan.trt_version,
        "nonfinite": {
            k: sum(int(getattr(h, k)) for h in hists.values()) for k in ("nan", "posinf", "neginf")
        },
    }
    if plan.percentile is not None:
        provenance["percentile"] = plan.percentile
    if pre is not None:
        provenance["preprocess"] = pre.to_dict()
    result = CalibrationResult(
        {}, hists, state.used, state.batches, state.skipped, provenance, flavors=plan.flavors
    )
    if state.skipped:
        say(
            f"trtcal: {len(state.skipped)} bad samples skipped (first: {state.skipped[0][0]}: "
            f"{state.skipped[0][1]})"
        )
    bare = outputs.no_range(hists)
    for n, status in bare.items():
        result.notes.append(
            f"tensor '{n}' is {status}: it gets no threshold (no zero scale is written)"
        )
    if bare:
        say(
            f"trtcal: {len(bare)} tensor(s) have no range and get no threshold, so TensorRT keeps "
            "their layers in "
            f"float: {names_text([f'{n} ({st})' for n, st in bare.items()])}"
        )
    return result


def _rank_and_world(cfg: CalibrationConfig) -> Tuple[int, int]:
    if cfg.distributed:
        return dist.rank_and_world(cfg.group)
    if cfg.shard is not None:
        rank, world = (int(v) for v in cfg.shard)
        if not 0 <= rank < world:
            raise ValueError(
                f"trtcal: shard must be (rank, count) with 0 <= rank < count, got {cfg.shard}"
            )
        return rank, world
    return 0, 1


def _batch_size(given: Optional[int], fixed: Optional[int]) -> int:
    if fixed is not None:
        if given is not None and given != fixed:
            raise ValueError(
                f"trtcal: the model's inputs have a fixed batch size of {fixed}; "
                f"batch_size={given} cannot be used"
            )
        return fixed
    return int(given or 16)


def _resume(plan: Plan, state: Collected) -> None:
    if not plan.cfg.resume or not plan.checkpoint:
        return
    if not os.path.exists(plan.checkpoint):
        plan.say(f"trtcal: no checkpoint at {plan.checkpoint}; starting from the beginning")
        return
    saved = ckpt.load(plan.checkpoint, plan.fingerprint)
    state.stats.load_state_dict(saved["stats_state"])
    p = saved["progress"]
    state.cursor, state.used, state.batches = int(p["cursor"]), int(p["samples"]), int(p["batches"])
    state.skipped = [(str(a), str(b)) for a, b in p.get("skipped", [])]
    state.complete = bool(p.get("complete"))
    plan.say(
        f"trtcal: resuming from {plan.checkpoint}: {state.used} samples in {state.batches} batches "
        "already "
        "collected"
    )


def _say_setup(plan: Plan) -> None:
    """The run's setup, once the checkpoint (if any) was accepted."""
    say, source = plan.say, plan.source
    say("trtcal: model inputs: " + "; ".join(s.describe() for s in plan.run.specs))
    for note in getattr(source, "notes", None) or []:
        say("trtcal: " + note)
    pre = getattr(source, "preprocess", None)
    if pre is not None:
        say(f"trtcal: preprocessing: {pre.describe()}  (make sure inference does exactly the same)")
    if source.batched and plan.cfg.batch_size is not None and plan.fixed_batch is None:
        say(
            "trtcal: batch_size applies to files and arrays; the batches of an iterable are run as "
            "it gives them"
        )
    batching = "batches as the data gives them" if source.batched else f"batch {plan.batch_size}"
    say(
        f"trtcal: calibrating {len(plan.run.tensors)} tensors with {type(plan.run).__name__} "
        f"({batching}; methods {', '.join(plan.methods)})"
    )


def _merge_ranks(
    stats: ActivationStats, used: int, nbatches: int, skipped: List[Tuple[str, str]], group: Any
) -> Tuple[int, int, List[Tuple[str, str]]]:
    """After this rank's pass: learn whether any rank failed, merge the collectors exactly, and
    sum the sample and batch counts (skipped samples in rank order, i.e. data order)."""
    dist.check_ranks(None, "calibration", group)
    dist.all_reduce_collectors(stats.collectors, group)
    parts = dist.all_gather_objects((used, nbatches, [list(s) for s in skipped]), group)
    return (
        sum(p[0] for p in parts),
        sum(p[1] for p in parts),
        [(str(a), str(b)) for p in parts for a, b in p[2]],
    )


def _local_device(distributed: bool) -> Optional[int]:
    """The CUDA device of this rank (the current one, set by the launcher), or None."""
    if not distributed:
        return None
    try:
        import torch

        return int(torch.cuda.current_device()) if torch.cuda.is_available() else None
    except ImportError:
        return None


def _shard_text(source: Any) -> str:
    try:
        n = len(source)
    except TypeError:
        return f"every {source.world_size}th item from item {source.rank}"
    if source.span is None:
        return f"{n} items"
    lo, hi = source.span
    return f"positions {lo} to {hi - 1} ({n})" if n else "no data (more ranks than batches)"


def _check_settings(
    methods: Sequence[str],
    flavors: Mapping[str, Optional[str]],
    params: Optional[Mapping[str, Any]],
    bins: int,
) -> Optional[float]:
    """What would otherwise fail after the whole pass: per-method parameters and the bin count
    the searches need. Returns the percentile the percentile
    method will use (its flavor's default unless given), None without that method."""
    for m, given in (params or {}).items():
        if m == "auto" and isinstance(given, Mapping):
            unknown = set(given) - {"candidates", "refinements", "backend", "score_threshold"}
            if unknown:
                raise ValueError(
                    "trtcal: params['auto'] takes candidates, refinements, backend, "
                    "score_threshold; "
                    f"got {sorted(unknown)}"
                )
            continue
        if m not in outputs.METHODS:  # a typo; a known method this run does not compute is ignored
            raise ValueError(
                f"trtcal: params for {m!r}, which is not a method (methods: "
                f"{', '.join(outputs.METHODS)})"
            )
        if not isinstance(given, Mapping):
            raise ValueError(
                f"trtcal: params[{m!r}] must be a mapping of parameters, e.g. "
                "{'percentile': {'percentile': 99.9}}; got " + repr(given)
            )
    percentile = None
    # auto searches every method's ranges: their settings are checked too
    for m in list(outputs.METHODS) if list(methods) == ["auto"] else methods:
        if m in ("minmax", "auto") or m.startswith(
            "fp8-"
        ):  # fp8-*: trtcal.fp8.fp8_amax, its defaults
            continue
        given = dict((params or {}).get(m) or {})
        if m != "percentile" and "percentile" in given:
            raise ValueError(
                f"trtcal: 'percentile' is a parameter of the percentile method, not of {m}"
            )
        spec = _spec(m, flavors.get(m), given)  # unknown names and bad values raise here
        if m == "entropy" and bins < 2 * int(spec.start_bin or 0):
            raise ValueError(
                f"trtcal: bins={bins} is too few for the entropy search: its first candidate is "
                "bin "
                f"{spec.start_bin}, and the searched bins (up to the amax) can be only half of "
                "them; "
                f"use bins >= {2 * int(spec.start_bin or 0)} (2048 is TensorRT's)"
            )
        if m == "percentile" and "auto" not in methods:
            percentile = float(spec.percentile)
            if not percentile > 0:
                raise ValueError(
                    f"trtcal: the percentile must be in (0, 100], got {spec.percentile}"
                )
    return percentile


def _check_onnx(model: Any) -> None:
    import onnx

    try:
        onnx.checker.check_model(
            os.fspath(model) if isinstance(model, (str, os.PathLike)) else model
        )
    except onnx.checker.ValidationError as exc:
        raise ValueError(
            "trtcal: the model fails ONNX's checker, so no valid Q/DQ model can be written from "
            "it: "
            f"{str(exc).strip().splitlines()[0]}"
        ) from exc


def _flavor_text(flavors: Mapping[str, Optional[str]]) -> Optional[str]:
    """The provenance's flavor: None (every default), one name, or 'method:flavor,...'."""
    given = {m: f for m, f in flavors.items() if f is not None}
    if not given:
        return None
    if len(set(given.values())) == 1 and len(flavors) == 1:
        return next(iter(given.values()))
    return ",".join(f"{m}:{f}" for m, f in given.items())


def _fixed_batch(specs: Sequence[InputSpec]) -> Optional[int]:
    dims = {s.shape[0] for s in specs if s.shape}
    if len(dims) == 1:
        d = next(iter(dims))
        return d if d is not None else None
    return None


def _total(source: Source, max_samples: Optional[int]) -> Optional[int]:
    """Positions the bar expects: the data's length, capped by ``max_samples`` (exact unless
    bad samples are skipped and replaced)."""
    try:
        n: Optional[int] = len(source)
    except TypeError:
        n = None
    if max_samples is not None:
        return int(max_samples) if n is None else min(n, int(max_samples))
    return n


class _DeferredBadSample(BadSampleError):
    """Found after the batch was added: the checkpoint on disk (before it) is kept as it is."""


def _check_deferred(
    stats: ActivationStats, seen: Optional[Dict[str, int]], samples: List[str]
) -> None:
    """Device activations: NaN/Inf counted by the collectors since the last check -> bad sample."""
    if seen is None:
        return
    now = stats.nonfinite()
    for name, count in now.items():
        if count > seen.get(name, 0):
            who = (
                samples[0]
                if len(samples) == 1
                else f"one of {len(samples)} samples from {samples[0]} to {samples[-1]}"
            )
            raise _DeferredBadSample(
                who,
                f"NaN or Inf in activation '{name}' (rerun with --skip-bad to find and skip it)",
            )
    seen.update(now)


@_locks.released_on_return
def statistics(model: Any, cfg: CalibrationConfig) -> CalibrationResult:
    """The pass alone, for compare and analyze (which search the ranges themselves): the
    histograms, with min-max thresholds; ``cfg.checkpoint`` / ``cfg.resume`` as for calibrate."""
    cfg = cfg.replace(method="minmax", flavor=None)
    plan = prepare(model, cfg, OutputPaths())
    result = finish(plan, collect(plan))
    result.amax = outputs.thresholds(result.histograms, ["minmax"], plan.flavors, cfg.params)
    return result
