"""``trtcal.calibrate``: model + data -> the ranges TensorRT uses, in one streaming, resumable
pass."""

from __future__ import annotations

from typing import Any, List, Mapping, Optional

from ..core import _files, _locks
from ..evaluation import auto as auto_mod
from ..evaluation import report as report_mod
from ..evaluation import tasks
from ..pipeline import calibration_pass as cp
from ..pipeline import demo, outputs, result_files
from ..pipeline.config import CalibrationConfig
from ..pipeline.result import FP8_QDQ_METHODS, CalibrationResult


@_locks.released_on_return
def calibrate(
    model: Any = None,
    data: Any = None,
    *,
    config: Optional[CalibrationConfig] = None,
    out_cache: Optional[str] = None,
    out_qdq: Optional[str] = None,
    out_table: Optional[str] = None,
    report: Optional[str] = None,
    out_dir: Optional[str] = None,
    qdq_options: Optional[Mapping[str, Any]] = None,
    **options: Any,
) -> CalibrationResult:
    """Calibrates ``model`` over ``data`` and writes the requested outputs.

    Parameters
    ----------
    model : path to an ONNX file, onnx.ModelProto, or None
        None (with no data) runs the demo: a small CNN and synthetic images built in ``out_dir``
        (default ``./trtcal-demo-out``), calibrated on the CPU in seconds.
    data : calibration data (any form :class:`~trtcal.CalibrationConfig` ``data`` takes).
    config, **options : a :class:`~trtcal.CalibrationConfig` and/or its fields as keywords
        (``method``, ``batch_size``, ``preprocess``, ``checkpoint``, ``resume``, ``eval_data``,
        ``quant_dtype``, ...), which override it. Method 'auto' (the default) measures every
        method's Q/DQ model on held-out samples by the task metric and writes the best
        (:mod:`trtcal.evaluation.auto`).
    out_cache, out_qdq, out_table, report : output paths (with several methods, each path gets
        ``.<method>`` before its extension); ``report`` ending in .html writes HTML, else Markdown.
    out_dir : the demo's folder (model None only).
    qdq_options : keyword arguments of :func:`trtcal.pipeline.outputs.write_qdq` for ``out_qdq``
        (``placement_report``, ``head_sigmoid_float``; ``high_precision`` defaults to the config's).

    Returns
    -------
    CalibrationResult : ``amax`` {method: {tensor: amax}}, ``histograms``, ``tables``, ``files``
        written, ``next_steps`` (the trtexec lines), ``notes``.
    """
    cfg = CalibrationConfig.of(config, **options, **({"data": data} if data is not None else {}))
    paths = cp.OutputPaths(out_cache, out_qdq, out_table, report)
    is_demo = model is None
    if is_demo:
        model, cfg, paths = demo.setup(cfg, paths, out_dir)
    elif out_dir is not None:
        raise ValueError(
            "trtcal: out_dir is where the demo (no model) writes; with a model, give each output's "
            "path"
        )
    cfg = _check_fp8(cfg, paths)
    if cfg.method == "auto" or list(cfg.method) == ["auto"]:
        tasks.check_task_arguments(cfg.task, cfg.output_slices)
    plan = cp.prepare(model, cfg, paths, demo=is_demo, plan_split=auto_mod.plan_split)
    result = cp.finish(plan, cp.collect(plan))
    say, paths = plan.say, plan.paths
    if plan.split is not None:
        result.auto = auto_mod.decide(
            model, result.histograms, plan.split, cfg, plan.batch_size, say
        )
        result.amax = {"auto": result.auto.amax}
        result.provenance["auto"] = result.auto.to_dict()
    else:
        result.amax = outputs.thresholds(
            result.histograms,
            [m for m in plan.methods if m != "auto"] or ["minmax"],
            plan.flavors,
            cfg.params,
        )
    result.clipped = outputs.clipping(result.histograms, result.amax)
    effects = {"auto": result.auto.effects} if result.auto is not None else None
    for note in outputs.saturation_warnings(result.clipped, outputs.unflaggable(model), effects):
        result.notes.append(note)
        say(note)
    _write(result, model, cfg, plan, qdq_options)
    for line in result.next_steps:
        say(line)
    return result


def _write(
    result: CalibrationResult,
    model: Any,
    cfg: CalibrationConfig,
    plan: cp.Plan,
    qdq_options: Optional[Mapping[str, Any]],
) -> None:
    """Every output lands together (or none); rank 0 of a distributed run writes, every rank
    holds the tables; 'wrote ...' is said once every output landed."""
    writes = not (cfg.distributed and plan.rank != 0)
    paths = plan.paths
    said: List[str] = []

    def annotate(method: str, table: Any) -> None:
        if method == "auto":
            auto_mod.annotate(table, result.auto)

    with _files.output_set():
        if not writes:
            result_files.make_tables(result)
        else:
            qdq = {"high_precision": cfg.high_precision, **dict(qdq_options or {})}
            result_files.write_result(
                result,
                model,
                plan.methods,
                paths,
                plan.trt_version,
                said.append,
                plan.selection.op_types,
                qdq,
                annotate,
            )
            if paths.report:
                _write_report(result, model, cfg, plan.batch_size, paths.report)
                said.append(f"trtcal: report written to {paths.report}")
    if cfg.quant_dtype == "fp8" and writes:  # rewrites the Q/DQ models that landed
        result_files.convert_to_fp8(
            result, said.append, (qdq_options or {}).get("placement_report")
        )
    for line in said:
        plan.say(line)


def _check_fp8(cfg: CalibrationConfig, paths: cp.OutputPaths) -> CalibrationConfig:
    """quant_dtype 'fp8': no cache (TensorRT's caches are INT8 only); methods on the E4M3 grid."""
    if cfg.quant_dtype != "fp8":
        return cfg
    if paths.cache:
        raise ValueError(
            "trtcal: quant_dtype 'fp8' writes no calibration cache (TensorRT's caches are INT8 "
            "only): "
            "write a Q/DQ model (out_qdq / --out-qdq)"
        )
    method = "fp8-mse" if cfg.method == "auto" else cfg.method
    for m in [method] if isinstance(method, str) else method:
        if m not in FP8_QDQ_METHODS:
            raise ValueError(
                f"trtcal: quant_dtype 'fp8' takes method fp8-mse (default), fp8-kl, minmax or "
                f"percentile, not {m}"
            )
    return cfg.replace(method=method)


def _write_report(
    result: CalibrationResult, model: Any, cfg: CalibrationConfig, batch_size: int, path: str
) -> None:
    qdq = {
        k.split(".", 1)[1]: _files.readable_path(v)
        for k, v in result.files.items()
        if k.startswith("qdq.")
    }
    if cfg.eval_data is not None and qdq:  # the report shows the Q/DQ models' accuracy against FP32
        report_mod.add_accuracy_rows(
            result,
            report_mod.accuracy_rows(
                model,
                qdq,
                cfg.eval_data,
                preprocess=cfg.preprocess,
                input_name=cfg.input_name,
                batch_size=batch_size,
                task=cfg.task,
                output_slices=cfg.output_slices,
            ),
        )
    for p in report_mod.write(path, result):
        result.files.setdefault("report", p)
