"""End-to-end calibration: model + data -> ranges TensorRT uses, in one streaming, resumable pass.

:func:`calibrate` runs the model over the data once (ONNX Runtime by default, an FP32 TensorRT
engine when the ``tensorrt`` module and trtcal's CUDA build are present), feeds every chosen
activation to a streaming histogram (memory constant in the number of samples), checkpoints
the exact collector state, and turns the histograms into thresholds for every requested method
and into TensorRT's inputs: a calibration cache (TensorRT <= 10), a Q/DQ ONNX model (10 and 11),
a JSON table, and a report.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from ..core import _files, _locks
from . import checkpoint as ckpt
from . import outputs, preflight
from .collect import ActivationStats
from .data import BadSampleError, InputSpec, Preprocess, Source, batches, open_source
from .runners import DEFAULT_MAX_MEMORY, Runner, TensorSelection, make_runner, model_digest
from .signals import DeferredSignals

__all__ = ["calibrate", "CalibrationResult", "Preprocess", "TensorSelection", "BadSampleError"]

METHOD_CHOICES = ("auto", "entropy", "percentile", "minmax", "mse", "all", "fp8-mse", "fp8-kl")  # fp8-*: trtcal.fp8
DEMO_OUT = "trtcal-demo-out"


@dataclass
class CalibrationResult:
    """What a calibration run produced.

    Attributes
    ----------
    amax : {method: {tensor: amax}}
    histograms : {tensor: Histogram}, the collected |x| histograms
    tables : {method: CalibrationTable} (empty when this build has no table API)
    files : {what: path} of every file written
    next_steps : the TensorRT commands that use the outputs
    """

    amax: Dict[str, Dict[str, float]]
    histograms: Dict[str, Any]
    samples: int
    batches: int
    skipped: List[Tuple[str, str]]
    provenance: Dict[str, Any]
    tables: Dict[str, Any] = field(default_factory=dict)
    files: Dict[str, str] = field(default_factory=dict)
    next_steps: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    flavors: Dict[str, Optional[str]] = field(default_factory=dict)
    clipped: Dict[str, Dict[str, float]] = field(default_factory=dict)  # {method: {tensor: fraction}}
    auto: Any = None  # method 'auto': its AutoDecision (what it measured and why it chose)

    @property
    def method(self) -> str:
        return self.provenance["method"]

    @property
    def table(self) -> Any:
        """The table of the primary method (auto; entropy when several were asked)."""
        return self.tables.get(_primary(list(self.amax)))


def _primary(methods: Sequence[str]) -> str:
    return next((m for m in ("auto", "entropy") if m in methods), methods[0])


def _methods(method: Union[str, Sequence[str]]) -> List[str]:
    ms = [method] if isinstance(method, str) else list(method)
    if not ms:
        raise ValueError(f"trtcal: no method given; choose from {', '.join(METHOD_CHOICES)}")
    out: List[str] = []
    for m in ms:
        if m not in METHOD_CHOICES:
            raise ValueError(f"trtcal: method must be one of {', '.join(METHOD_CHOICES)}, got {m!r}")
        for x in (outputs.METHODS if m == "all" else (m,)):
            if x not in out:
                out.append(x)
    if "auto" in out and len(out) > 1:
        raise ValueError("trtcal: method 'auto' chooses among the others by measurement; give it alone")
    return out


@_locks.released_on_return
def calibrate(
    model: Any = None,
    data: Any = None,
    *,
    method: Union[str, Sequence[str]] = "auto",
    flavor: Union[None, str, Mapping[str, str]] = None,
    params: Optional[Mapping[str, Any]] = None,
    batch_size: Optional[int] = None,
    max_samples: Optional[int] = None,
    preprocess: Optional[Preprocess] = None,
    input_name: Optional[str] = None,
    tensors: Optional[Union[TensorSelection, Sequence[str]]] = None,
    op_types: Optional[Sequence[str]] = None,
    runner: Union[str, Runner] = "auto",
    bins: int = 2048,
    out_cache: Optional[str] = None,
    out_qdq: Optional[str] = None,
    out_table: Optional[str] = None,
    report: Optional[str] = None,
    checkpoint: Optional[str] = None,
    checkpoint_every: int = 50,
    checkpoint_seconds: Optional[float] = 300.0,
    resume: bool = False,
    skip_bad: bool = False,
    tensorrt_version: Optional[str] = None,
    out_dir: Optional[str] = None,
    progress: bool = True,
    log: Optional[Callable[[str], None]] = None,
    distributed: bool = False,
    group: Any = None,
    shard: Optional[Tuple[int, int]] = None,
    max_memory: Optional[float] = None,
    eval_data: Any = None,
    eval_samples: Optional[int] = None,
    task: Any = "auto",
    output_slices: Any = None,
    qdq_options: Optional[Mapping[str, Any]] = None,
) -> CalibrationResult:
    """Calibrates ``model`` over ``data`` and writes the requested outputs.

    Parameters
    ----------
    model : path to an ONNX file, onnx.ModelProto, or None
        None (with ``data`` None) runs the demo: a small CNN and synthetic images that trtcal
        builds in ``out_dir`` (default ``./trtcal-demo-out``), calibrated on the CPU in seconds.
    data : path, arrays, or iterable
        An image folder (with ``preprocess``), a .npy/.npz file or folder of them, a NumPy array
        or {input name: array} with samples along axis 0, or any iterable of {input name: batch}
        dicts (each item is one batch; resuming skips the batches already seen, so the iterable
        must yield the same sequence again).
    method : 'auto' (default), 'entropy', 'percentile', 'minmax', 'mse', 'all', or a list
        Every method comes from the same single pass. 'auto' measures every method's Q/DQ model
        (and a few per-tensor refinements) on held-out samples by the task metric and writes the
        best (:mod:`trtcal.evaluation.auto`: bounded cost, the reasons go to the provenance).
    flavor : a flavor name, applied to the requested methods that have it, or {method: flavor};
        checked before any data is read (see ``trtcal.core.range_search.FLAVORS``). ``onnxruntime``
        (entropy, percentile) searches a signed histogram: the collectors then keep x over
        [-R, R) and the other methods search it folded to |x|.
    params : per method, passed to :func:`trtcal.compute_amax`:
        ``{"percentile": {"percentile": 99.99}}``.
    batch_size : samples per inference for files and arrays (default: the model's fixed batch
        size, else 16); an iterable's batches are run as it gives them.
    max_samples : stop after this many samples.
    tensors, op_types : which activations (default all float tensors): a TensorSelection, or
        glob / ``re:`` name patterns, and/or op types.
    runner : 'auto', 'onnxruntime', 'tensorrt', or a Runner.
    eval_data : held-out samples (the forms ``data`` takes): with ``report`` and ``out_qdq``, the
        report shows each Q/DQ model's outputs against FP32 (SQNR, cosine, top-1 agreement).
    max_memory : bytes of activations one ONNX Runtime run may return (default 1.5e9, about
        1.5 GB; 0: no limit): a batch is split into sub-batches that fit. The table does not
        depend on it.
    bins : histogram bins per tensor (2048, as TensorRT's); the entropy search needs at least
        twice its start bin (256 by default).
    out_cache, out_qdq, out_table, report : output paths (with several methods, each path gets
        ``.<method>`` before its extension). ``report`` ending in .html writes HTML, else Markdown.
    checkpoint, checkpoint_every, checkpoint_seconds, resume : the collector state is written
        atomically to ``checkpoint`` every ``checkpoint_every`` batches or ``checkpoint_seconds``
        seconds (whichever comes first; None: by batches only), at Ctrl-C, SIGTERM or SIGHUP, and
        on errors; ``resume``
        continues from it and gives exactly the uninterrupted result. A checkpoint written with
        other settings (model, data, batch size, tensors, bins) is refused; ``skip_bad`` may change,
        so a run stopped by a bad sample resumes with ``skip_bad=True``.
    skip_bad : skip (and report) unreadable or malformed samples and samples whose activations
        hold NaN/Inf; otherwise the first one stops the run with the checkpoint intact.
    tensorrt_version : 'X.Y' for the cache header (default: the installed tensorrt, else 10.16).
    out_dir : the demo's folder (model None); with a model, give each output's path instead.
    progress : a progress bar on stderr (tqdm when installed).
    log : where messages go (default: print to stderr; pass ``lambda s: None`` to silence).
    distributed, group : calibrate as one rank of a ``torch.distributed`` process group
        (``group``, default the whole world; created by the caller, e.g. under torchrun).
        Each rank reads its own contiguous shard of whole batches, runs the model on its
        current CUDA device, checkpoints to ``<checkpoint>.rank<R>-of-<N>.npz``, and the
        collector states are merged exactly with collectives: every rank returns the table of
        a one-process run over the same data, bit for bit; only rank 0 writes the outputs and
        logs. A rank that fails stops every rank (after the others finish their shards and
        save their checkpoints) with an error naming it; ``resume`` then redoes only what is
        missing. With ``max_samples``, the first ``max_samples`` positions are split.
    eval_data, eval_samples : method 'auto': held-out data it judges on (any form ``data`` takes)
        and how many samples (default 16); without ``eval_data`` the last ``eval_samples``
        calibration samples are held out of the statistics pass (data of known length, at
        least twice as many samples), else auto judges on calibration samples and says so.
    task, output_slices : method 'auto': what the outputs hold (see :func:`trtcal.tasks.resolve_task`;
        default detected), which sets the metric it judges by.
    shard : (rank, count): calibrate only that shard, with no process group (separate machines),
        and write only its checkpoint (``<checkpoint>.rank<R>-of-<N>.npz``); ``trtcal merge``
        combines the shards' checkpoints into the table. The result holds the shard's statistics.
    qdq_options : keyword arguments of :func:`trtcal.pipeline.outputs.write_qdq` for ``out_qdq``:
        ``high_precision`` ('fp16' by default, 'bf16', 'fp32'), ``placement_report`` (a path).
    """
    rank, world = 0, 1
    if distributed and shard is not None:
        raise ValueError("trtcal: give either distributed=True (a process group) or shard=(rank, count), not both")
    if distributed:
        from .distributed import rank_and_world

        rank, world = rank_and_world(group)
    elif shard is not None:
        rank, world = (int(v) for v in shard)
        if not 0 <= rank < world:
            raise ValueError(f"trtcal: shard must be (rank, count) with 0 <= rank < count, got {shard}")
    say = log or (lambda s: print(s, file=sys.stderr))
    if distributed and rank != 0:
        say = lambda s: None  # noqa: E731 - rank 0 speaks for the job
        progress = False
    batch_size_given = batch_size is not None
    if batch_size_given and int(batch_size) < 1:
        raise ValueError(f"trtcal: batch_size must be >= 1, got {batch_size}")
    methods = _methods(method)
    if methods == ["auto"] and flavor is not None:
        raise ValueError("trtcal: a flavor picks one method's search; method 'auto' measures each method's default "
                         "(name a method, e.g. method='entropy', to use a flavor)")
    if methods == ["auto"]:
        from ..evaluation import tasks as _tasks

        _tasks.check_task_arguments(task, output_slices)
    flavors = outputs.method_flavors(methods, flavor)  # before any data is read
    signed = outputs.needs_signed(flavors)
    # the percentile used (default or given), for the provenance
    percentile = _check_settings(methods, flavors, params, int(bins), checkpoint_every, max_samples)
    demo = model is None
    if not demo and out_dir is not None:
        raise ValueError("trtcal: out_dir is where the demo (no model) writes; with a model, give each output's path")
    if demo:
        if data is not None:
            raise ValueError("trtcal: calibration data was given without a model")
        from . import demo as demo_mod

        out_dir = out_dir or DEMO_OUT
        model, data, demo_pre = demo_mod.build(out_dir)
        preprocess = preprocess or demo_pre
        out_table = out_table or os.path.join(out_dir, "calibration.json")
        out_cache = out_cache or os.path.join(out_dir, "calibration.cache")
        out_qdq = out_qdq or os.path.join(out_dir, "demo_cnn.qdq.onnx")
        report = report or os.path.join(out_dir, "report.md")
        checkpoint = checkpoint or os.path.join(out_dir, "checkpoint.npz")
        batch_size = batch_size or 16
        say(f"trtcal: demo: calibrating a small CNN built in {out_dir} on {os.path.basename(data)}")

    trt_version = tensorrt_version or _installed_tensorrt() or outputs.DEFAULT_TENSORRT
    if out_cache and _major(trt_version) >= 11:
        raise ValueError(f"trtcal: TensorRT {trt_version} has no calibration caches (11.0 removed implicit INT8); "
                         "write a Q/DQ model with out_qdq / --out-qdq instead")

    outs = [("out_cache", out_cache), ("out_qdq", out_qdq), ("out_table", out_table), ("report", report),
            ("checkpoint", checkpoint)]
    ins = [("model", m) for m in preflight.model_files(model)] + preflight.data_files(data)
    preflight.check_paths(ins, outs, data if isinstance(data, (str, os.PathLike)) else None)
    preflight.check_writable(outs)  # folders created, writable; free space is checked below
    selection = _selection(tensors, op_types)
    if out_qdq:
        outputs.qdq_op_types(selection.op_types)  # before the pass: the choice holds an op it quantizes
        if not isinstance(runner, Runner):
            _check_onnx(model)  # a Q/DQ model of an invalid model fails at the end: say it before the pass
    if isinstance(runner, Runner):
        run = runner
    else:
        with preflight.engine_errors(model, "load"):
            run = make_runner(model, selection, runner, batch_size or 16, device_id=_local_device(distributed),
                              max_memory=DEFAULT_MAX_MEMORY if max_memory is None else max_memory)
    specs = run.specs
    fixed_batch = _fixed_batch(specs)
    if fixed_batch is not None:
        if batch_size is not None and batch_size != fixed_batch:
            raise ValueError(f"trtcal: the model's inputs have a fixed batch size of {fixed_batch}; "
                             f"batch_size={batch_size} cannot be used")
        batch_size = fixed_batch
    batch_size = int(batch_size or 16)
    if batch_size < 1:
        raise ValueError(f"trtcal: batch_size must be positive, got {batch_size}")

    if input_name is not None and input_name not in [sp.name for sp in specs]:
        raise ValueError(f"trtcal: the model has no input {input_name!r} (inputs: {', '.join(sp.name for sp in specs)})")
    source = open_source(data, preprocess, input_name)
    source.bind(specs)
    split = None
    if methods == ["auto"] and shard is None:
        from ..evaluation import auto as auto_mod

        split = auto_mod.plan_split(source, data, eval_data, eval_samples, max_samples, preprocess, input_name)
        max_samples = split.max_samples
        say(f"trtcal: auto judges the methods on {split.description}")
    if preprocess is not None and not demo and getattr(source, "preprocess", None) is None:
        say("trtcal: the preprocessing applies to images; this data holds none, so it is used as it is")
    if world > 1 or shard is not None:
        from .shard import ShardedSource

        source = ShardedSource(source, rank, world, align=batch_size, limit=max_samples)
        max_samples = None  # applied to positions above
        if checkpoint:
            from .distributed import rank_path

            checkpoint = rank_path(checkpoint, rank, world)
        say(f"trtcal: rank {rank} of {world}: {_shard_text(source)}")
    preflight.check_space(outs, len(run.tensors), int(bins), model, methods)
    writes = shard is None and rank == 0  # the files this process writes besides its checkpoint
    _locks.take([(checkpoint, "the checkpoint")] + [(p, "the output") for _, p in outs[:4] if p and writes])
    digest = model_digest(model) if not isinstance(runner, Runner) or model is not None else "runner"
    config = {"model": digest, "data": source.fingerprint(), "batch_size": batch_size, "bins": int(bins),
              "tensors": list(run.tensors), "runner": run.describe().get("runner", type(run).__name__),
              "max_samples": max_samples}
    if signed:
        config["signed"] = True
    stats = ActivationStats(run.tensors, bins=bins, signed=signed)
    cursor, used, nbatches, skipped = 0, 0, 0, []  # type: int, int, int, List[Tuple[str, str]]
    complete = False
    if shard is not None and not checkpoint:
        raise ValueError("trtcal: a shard run needs a checkpoint path: its checkpoint is its result")
    if resume:
        if not checkpoint:
            raise ValueError("trtcal: resume needs a checkpoint path")
        if os.path.exists(checkpoint):
            state = ckpt.load(checkpoint, config)
            stats.load_state_dict(state["stats_state"])
            p = state["progress"]
            cursor, used, nbatches = int(p["cursor"]), int(p["samples"]), int(p["batches"])
            skipped = [tuple(s) for s in p.get("skipped", [])]
            complete = bool(p.get("complete"))
            say(f"trtcal: resuming from {checkpoint}: {used} samples in {nbatches} batches already collected")
        else:
            say(f"trtcal: no checkpoint at {checkpoint}; starting from the beginning")
    # the run's setup, once the checkpoint (if any) was accepted
    say("trtcal: model inputs: " + "; ".join(s.describe() for s in specs))
    for note in getattr(source, "notes", None) or []:
        say("trtcal: " + note)
    pre = getattr(source, "preprocess", None)
    if pre is not None:
        say(f"trtcal: preprocessing: {pre.describe()}  (make sure inference does exactly the same)")
    if source.batched and batch_size_given and fixed_batch is None:
        say("trtcal: batch_size applies to files and arrays; the batches of an iterable are run as it gives them")
    batching = "batches as the data gives them" if source.batched else f"batch {batch_size}"
    say(f"trtcal: calibrating {len(run.tensors)} tensors with {type(run).__name__} "
        f"({batching}; methods {', '.join(methods)})")

    def save(done: bool = False) -> None:
        if checkpoint:
            ckpt.save(checkpoint, config=config, stats_state=stats.state_dict(),
                      progress={"cursor": cursor, "samples": used, "batches": nbatches,
                                "skipped": [list(s) for s in skipped], "complete": done})

    def on_bad(exc: BadSampleError) -> None:
        say(f"trtcal: skipping {exc.sample}: {exc.reason}")

    device_acts = run.device != "cpu"
    # the bar counts samples: positions of files and arrays, or (an iterable of batches) samples
    # used and skipped, against max_samples when the number of samples is not known
    def position() -> int:
        return used + len(skipped) if source.batched else cursor

    total = (int(max_samples) if max_samples is not None else None) if source.batched else _total(source, max_samples)
    bar = _Progress(progress and not complete, total, position())
    saved_nonfinite = {n: 0 for n in run.tensors} if device_acts else None
    since_check: List[str] = []
    dropped = [0]  # samples of this run's batches dropped for NaN/Inf activations
    dirty = False
    last_save = time.monotonic()
    try:
        with DeferredSignals() as interrupt:
            if not complete:
                for batch in batches(source, batch_size, start=cursor, max_samples=max_samples, used=used,
                                     skip_bad=skip_bad, on_bad=on_bad, dropped=lambda: dropped[0]):
                    if batch.names:
                        if fixed_batch is not None and len(batch.names) < fixed_batch:
                            say(f"trtcal: dropping the last {len(batch.names)} samples: the model's batch size is "
                                f"fixed at {fixed_batch}")
                        else:
                            bad = []
                            # ONNX Runtime's runner splits the batch to its memory budget
                            with preflight.engine_errors(model, "run", batch.names):
                                for rows, acts in run.run_parts(batch.inputs):
                                    acts, part_bad = stats.screen(acts, batch.names[rows], skip_bad=skip_bad,
                                                                  check="batch" if skip_bad else "deferred")
                                    dirty = True  # an error while adding leaves the collectors half-updated
                                    stats.add(acts, stream=run.stream)
                                    bad.extend(part_bad)
                                    del acts
                            dirty = False
                            dropped[0] += len(bad)
                            for s in bad:
                                on_bad(BadSampleError(*s))
                            batch.skipped.extend(bad)
                            used += len(batch.names) - len(bad)
                            nbatches += 1
                            since_check.extend(batch.names)
                    skipped.extend(batch.skipped)  # with the cursor: a failed batch is redone whole
                    cursor = batch.end
                    bar.update(position(), used, len(skipped))
                    due = nbatches % checkpoint_every == 0 or (
                        checkpoint_seconds is not None and time.monotonic() - last_save >= checkpoint_seconds)
                    if checkpoint and nbatches and due and batch.names:
                        _check_deferred(stats, saved_nonfinite, since_check)
                        save()
                        since_check = []
                        last_save = time.monotonic()
                    if interrupt.hit:
                        raise interrupt.stop()
                _check_deferred(stats, saved_nonfinite, since_check)
                save(done=True)
    except BaseException as exc:
        bar.close()
        if not dirty and not isinstance(exc, _DeferredBadSample) and (used or resume):
            save()  # the state of every batch completed so far
            if checkpoint:
                again = " with --skip-bad" if isinstance(exc, BadSampleError) and not skip_bad else ""
                say(f"trtcal: stopped after {used} samples; state saved to {checkpoint} "
                    f"(run again with --resume{again} to continue)")
        elif not used and not dirty:
            say("trtcal: stopped before any sample was calibrated; nothing to resume")
        if distributed:  # every rank learns which rank failed, and why
            from .distributed import check_ranks

            check_ranks(exc, "calibration", group)
        raise
    bar.close()
    if distributed:
        used, nbatches, skipped = _merge_ranks(stats, used, nbatches, skipped, group)
    if used == 0:
        raise ValueError("trtcal: no usable calibration samples" + (f" ({len(skipped)} skipped)" if skipped else ""))
    if shard is not None:
        say(f"trtcal: shard {rank} of {world} done: {used} samples; its checkpoint {checkpoint} is merged with the "
            "others' by: trtcal merge " + checkpoint.replace(f".rank{rank}-of-", ".rank*-of-") + " --out-table ...")
        out_cache = out_qdq = out_table = report = None  # one shard's data: no table files

    hists = stats.histograms()
    provenance = {
        "tool": "trtcal calibrate", "trtcal_version": _version(),
        "model": os.path.abspath(model) if isinstance(model, (str, os.PathLike)) else "<ModelProto>",
        "model_sha256": digest, "data": source.describe(), "samples": used, "batches": nbatches,
        "skipped": len(skipped), "batch_size": batch_size, "bins": int(bins), "method": ",".join(methods),
        "flavor": _flavor_text(flavors), "runner": run.describe(), "tensorrt_version": trt_version,
        "nonfinite": {k: sum(int(getattr(h, k)) for h in hists.values()) for k in ("nan", "posinf", "neginf")},
    }
    if percentile is not None:
        provenance["percentile"] = percentile
    if pre is not None:
        provenance["preprocess"] = pre.to_dict()
    result = CalibrationResult({}, hists, used, nbatches, skipped, provenance, flavors=flavors)
    if skipped:
        say(f"trtcal: {len(skipped)} bad samples skipped (first: {skipped[0][0]}: {skipped[0][1]})")
    bare = outputs.no_range(hists)
    for n, status in bare.items():
        result.notes.append(f"tensor '{n}' is {status}: it gets no threshold (no zero scale is written)")
    if bare:
        say(f"trtcal: {len(bare)} tensor(s) have no range and get no threshold, so TensorRT keeps their layers in "
            f"float: {_names_text([f'{n} ({st})' for n, st in bare.items()])}")
    try:
        if split is not None:
            result.auto = _auto(model, hists, split, eval_samples, batch_size, preprocess, input_name, task,
                                output_slices, (params or {}).get("auto"), say)
            result.amax = {"auto": result.auto.amax}
            provenance["auto"] = result.auto.to_dict()
        else:
            result.amax = outputs.thresholds(hists, [m for m in methods if m != "auto"] or ["minmax"], flavors,
                                             params)
    except outputs.OutputUnavailable as exc:
        result.amax = outputs.thresholds(hists, ["minmax"])
        result.notes.append(str(exc) + "; only min-max thresholds were computed")
        say(f"{exc}; only min-max thresholds were computed")
    result.clipped = outputs.clipping(hists, result.amax)
    effects = {"auto": result.auto.effects} if result.auto is not None else None
    for note in outputs.saturation_warnings(result.clipped, outputs.unflaggable(model), effects):
        result.notes.append(note)
        say(note)
    said: List[str] = []  # 'wrote ...' is said once every output landed
    with _files.output_set():  # every output is written, then all land together (or none)
        if distributed and rank != 0:  # rank 0 writes; every rank holds the tables
            _make_tables(result)
            report = None
        else:
            _write_outputs(result, model, methods, out_cache, out_qdq, out_table, trt_version, said.append,
                           selection.op_types, qdq_options)
        if report:
            from ..evaluation import report as report_mod

            qdq = {k.split(".", 1)[1]: _files.readable_path(v) for k, v in result.files.items()
                   if k.startswith("qdq.")}
            if eval_data is not None and qdq:  # the report shows the Q/DQ models' accuracy against FP32
                report_mod.add_accuracy_rows(result, report_mod.accuracy_rows(
                    model, qdq, eval_data, preprocess=preprocess, input_name=input_name, batch_size=batch_size or 16,
                    task=task, output_slices=output_slices))
            for p in report_mod.write(report, result):
                result.files.setdefault("report", p)
    for line in said:
        say(line)
    if report:
        say(f"trtcal: report written to {report}")
    for line in result.next_steps:
        say(line)
    return result


def _auto(model: Any, hists: Mapping[str, Any], split: Any, eval_samples: Optional[int], batch_size: int,
          preprocess: Any, input_name: Optional[str], task: Any, output_slices: Any,
          settings: Optional[Mapping[str, Any]], say: Callable[[str], None]) -> Any:
    """Method 'auto' (:mod:`trtcal.evaluation.auto`): measure, choose, and say why."""
    from ..evaluation import auto as auto_mod

    kw = dict(settings or {})
    kw.setdefault("log", say)
    decision = auto_mod.choose(model, hists, split.eval_source, eval_description=split.description,
                               eval_samples=eval_samples, batch_size=batch_size, preprocess=preprocess,
                               input_name=input_name, task=task, output_slices=output_slices, **kw)
    for line in decision.lines():
        say(line)
    return decision


def _merge_ranks(stats: ActivationStats, used: int, nbatches: int, skipped: List[Tuple[str, str]],
                 group: Any) -> Tuple[int, int, List[Tuple[str, str]]]:
    """After this rank's pass: learn whether any rank failed, merge the collectors exactly, and
    sum the sample and batch counts (skipped samples in rank order, i.e. data order)."""
    from .distributed import all_gather_objects, all_reduce_collectors, check_ranks

    check_ranks(None, "calibration", group)
    all_reduce_collectors(stats.collectors, group)
    parts = all_gather_objects((used, nbatches, [list(s) for s in skipped]), group)
    return (sum(p[0] for p in parts), sum(p[1] for p in parts),
            [(str(a), str(b)) for p in parts for a, b in p[2]])


def _make_tables(result: CalibrationResult) -> None:
    for m, amax in result.amax.items():
        prov = dict(result.provenance, method=m, flavor=result.flavors.get(m))
        if m != "percentile":
            prov.pop("percentile", None)
        try:
            result.tables[m] = outputs.make_table(amax, prov)
        except outputs.OutputUnavailable:
            return


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


def _write_outputs(result: CalibrationResult, model: Any, methods: List[str], out_cache: Optional[str],
                   out_qdq: Optional[str], out_table: Optional[str], trt_version: str,
                   say: Callable[[str], None], op_types: Optional[Sequence[str]] = None,
                   qdq_options: Optional[Mapping[str, Any]] = None) -> None:
    several = len([m for m in methods if m in result.amax]) > 1
    primary = _primary([m for m in methods if m in result.amax] or ["minmax"])
    model_path = os.path.abspath(model) if isinstance(model, (str, os.PathLike)) else "model.onnx"
    for m, amax in result.amax.items():
        if not (out_cache or out_qdq or out_table):
            break
        prov = dict(result.provenance, method=m, flavor=result.flavors.get(m))
        if m != "percentile":
            prov.pop("percentile", None)
        try:
            table = outputs.make_table(amax, prov)
        except outputs.OutputUnavailable as exc:
            result.notes.append(str(exc))
            say(f"{exc}; no table, cache or Q/DQ model written")
            return
        if m == "auto" and result.auto is not None:
            from ..evaluation import auto as auto_mod

            auto_mod.annotate(table, result.auto)
        result.tables[m] = table
        name = (lambda p: _with_method(p, m)) if several else (lambda p: p)
        if out_table:
            result.files[f"table.{m}"] = outputs.write_json(table, name(out_table))
        if out_cache:
            p = outputs.write_cache(table, name(out_cache), trt_version, m)
            result.files[f"cache.{m}"] = p
            if m == primary:
                result.next_steps.extend(outputs.trtexec_lines(cache=os.path.abspath(p), model=model_path))
        if out_qdq:
            try:
                p, floats = outputs.write_qdq(model, table, name(out_qdq), op_types, **dict(qdq_options or {}))
            except outputs.OutputUnavailable as exc:
                result.notes.append(str(exc))
                say(str(exc))
                continue
            if floats and m == primary:
                note = (f"trtcal: the Q/DQ model leaves {len(floats)} input(s) of quantizable ops in float, for want "
                        f"of a range: {_names_text(floats)} (calibrate them: widen --tensors/--op-types; all-zero "
                        "tensors have no range)")
                result.notes.append(note)
                say(note)
            result.files[f"qdq.{m}"] = p
            if m == primary:
                result.next_steps.extend(outputs.trtexec_lines(qdq=os.path.abspath(p)))
    for k, p in result.files.items():
        say(f"trtcal: wrote {k}: {p}")


def _check_settings(methods: Sequence[str], flavors: Mapping[str, Optional[str]],
                    params: Optional[Mapping[str, Any]], bins: int, checkpoint_every: int,
                    max_samples: Optional[int]) -> Optional[float]:
    """What would otherwise fail after the whole pass: per-method parameters, the bin count the
    searches need, the checkpoint period, max_samples. Returns the percentile the percentile
    method will use (its flavor's default unless given), None without that method."""
    from ..core.range_search import _spec

    for m, given in (params or {}).items():
        if m == "auto" and isinstance(given, Mapping):
            unknown = set(given) - {"candidates", "refinements", "backend", "score_threshold"}
            if unknown:
                raise ValueError("trtcal: params['auto'] takes candidates, refinements, backend, score_threshold; "
                                 f"got {sorted(unknown)}")
            continue
        if m not in outputs.METHODS:  # a typo; a known method this run does not compute is ignored
            raise ValueError(f"trtcal: params for {m!r}, which is not a method (methods: "
                             f"{', '.join(outputs.METHODS)})")
        if not isinstance(given, Mapping):
            raise ValueError(f"trtcal: params[{m!r}] must be a mapping of parameters, e.g. "
                             "{'percentile': {'percentile': 99.9}}; got " + repr(given))
    percentile = None
    # auto searches every method's ranges: their settings are checked too
    for m in (list(outputs.METHODS) if list(methods) == ["auto"] else methods):
        if m in ("minmax", "auto") or m.startswith("fp8-"):  # fp8-*: trtcal.fp8.fp8_amax, its defaults
            continue
        given = dict((params or {}).get(m) or {})
        if m != "percentile" and "percentile" in given:
            raise ValueError(f"trtcal: 'percentile' is a parameter of the percentile method, not of {m}")
        spec = _spec(m, flavors.get(m), given)  # unknown names and bad values raise here
        if m == "entropy" and bins < 2 * int(spec.start_bin):
            raise ValueError(f"trtcal: bins={bins} is too few for the entropy search: its first candidate is bin "
                             f"{spec.start_bin}, and the searched bins (up to the amax) can be only half of them; "
                             f"use bins >= {2 * int(spec.start_bin)} (2048 is TensorRT's)")
        if m == "percentile" and "auto" not in methods:
            percentile = float(spec.percentile)
            if not percentile > 0:
                raise ValueError(f"trtcal: the percentile must be in (0, 100], got {spec.percentile}")
    if int(checkpoint_every) < 1:
        raise ValueError(f"trtcal: checkpoint_every must be >= 1 batch, got {checkpoint_every}")
    if max_samples is not None and int(max_samples) < 1:
        raise ValueError(f"trtcal: max_samples must be >= 1, got {max_samples}")
    return percentile


def _check_onnx(model: Any) -> None:
    import onnx

    try:
        onnx.checker.check_model(os.fspath(model) if isinstance(model, (str, os.PathLike)) else model)
    except onnx.checker.ValidationError as exc:
        raise ValueError(f"trtcal: the model fails ONNX's checker, so no valid Q/DQ model can be written from it: "
                         f"{str(exc).strip().splitlines()[0]}") from exc


def _names_text(names: Sequence[str], shown: int = 5) -> str:
    head = ", ".join(repr(n) for n in names[:shown])
    return head + (f" and {len(names) - shown} more" if len(names) > shown else "")


def _flavor_text(flavors: Mapping[str, Optional[str]]) -> Optional[str]:
    """The provenance's flavor: None (every default), one name, or 'method:flavor,...'."""
    given = {m: f for m, f in flavors.items() if f is not None}
    if not given:
        return None
    if len(set(given.values())) == 1 and len(flavors) == 1:
        return next(iter(given.values()))
    return ",".join(f"{m}:{f}" for m, f in given.items())


def _with_method(path: str, method: str) -> str:
    root, ext = os.path.splitext(path)
    return f"{root}.{method}{ext}"


def _selection(tensors: Any, op_types: Optional[Sequence[str]]) -> TensorSelection:
    if isinstance(tensors, TensorSelection):
        return tensors
    names = None
    if tensors is not None and tensors != "all":
        names = (tensors,) if isinstance(tensors, str) else tuple(tensors)
    return TensorSelection(op_types=tuple(op_types) if op_types else None, names=names)


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


def _check_deferred(stats: ActivationStats, seen: Optional[Dict[str, int]], samples: List[str]) -> None:
    """Device activations: NaN/Inf counted by the collectors since the last check -> bad sample."""
    if seen is None:
        return
    now = stats.nonfinite()
    for name, count in now.items():
        if count > seen.get(name, 0):
            who = samples[0] if len(samples) == 1 else f"one of {len(samples)} samples from {samples[0]} to {samples[-1]}"
            raise _DeferredBadSample(who, f"NaN or Inf in activation '{name}' (rerun with --skip-bad to find and skip it)")
    seen.update(now)


def _installed_tensorrt() -> Optional[str]:
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        return None
    try:
        import tensorrt

        return ".".join(tensorrt.__version__.split(".")[:2])
    except Exception:  # noqa: BLE001 - a broken install is the same as none here
        return None


def _major(version: str) -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        raise ValueError(f"trtcal: TensorRT version must look like X.Y, got {version!r}") from None


def _version() -> str:
    from ..core.version import __version__

    return __version__


class _Progress:
    """tqdm bar over sample positions (or nothing), with samples/s and ETA."""

    def __init__(self, enabled: bool, total: Optional[int], start: int) -> None:
        self.bar = None
        self.pos = start
        if not enabled:
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return
        self.bar = tqdm(total=total, initial=start, unit="sample", desc="calibrating", dynamic_ncols=True,
                        file=sys.stderr)

    def update(self, pos: int, used: int, skipped: int) -> None:
        if self.bar is not None:
            self.bar.update(pos - self.pos)
            if skipped:
                self.bar.set_postfix(skipped=skipped, refresh=False)
        self.pos = pos

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


_DeferredInterrupt = DeferredSignals  # the former name
