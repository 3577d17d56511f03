"""``trtcal.compare``: which calibration method keeps this model accurate? One statistics pass,
every method's Q/DQ model measured against FP32 by the task metric."""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Union

from ..core import _locks
from ..evaluation.comparison import ComparisonResult, run_comparison
from ..evaluation.sensitivity import run_analysis
from ..pipeline import calibration_pass
from ..pipeline.config import CalibrationConfig


@_locks.released_on_return
def compare(
    model: Any,
    data: Any = None,
    eval_data: Any = None,
    *,
    config: Optional[CalibrationConfig] = None,
    methods: Union[None, str, Sequence[str]] = None,
    tables: Optional[Mapping[str, Mapping[str, float]]] = None,
    calibration: Any = None,
    per_layer: bool = True,
    out_dir: Optional[str] = None,
    plots: bool = True,
    precisions: Union[None, str, Sequence[str]] = None,
    **options: Any,
) -> ComparisonResult:
    """Compares calibration methods on ``model`` by measured accuracy against FP32.

    Collects the activation histograms once (the pass :func:`trtcal.calibrate` makes), derives
    every method's ranges from them, builds each Q/DQ model and runs it (in TensorRT or ONNX
    Runtime, see ``evaluate``; the FP32 model always runs in ONNX Runtime) on the evaluation
    batches. Methods are ranked by the task metric of the worst head (detections kept, top-1
    agreement, mask IoU; SQNR for generic outputs), then the worst head's SQNR and cosine.

    Parameters
    ----------
    model : ONNX path or onnx.ModelProto
    data : calibration data (any form :class:`~trtcal.CalibrationConfig` ``data`` takes).
    eval_data : held-out evaluation data (same forms); default: ``data`` itself (noted in the
        result, since ranges are then judged on the samples they were computed from).
    config, **options : a :class:`~trtcal.CalibrationConfig` and/or its fields as keywords
        (``batch_size``, ``max_samples``, ``eval_samples``, ``preprocess``, ``input_name``,
        ``tensors``, ``op_types``, ``runner``, ``evaluate``, ``task``, ``output_slices``,
        ``score_threshold``, ``bins``, ``checkpoint`` (resumed when present), ``quant_dtype``,
        ``progress``, ``log``, ...), which override it. ``quant_dtype='fp8'`` compares FP8
        (E4M3) Q/DQ models (:func:`trtcal.onnx.fp8.convert_to_fp8`: FP8 where TensorRT runs the
        layer in FP8, the others INT8 with entropy ranges). Counts, runner, ``evaluate`` and
        ``eval_data`` (a path must exist) are checked before the statistics pass;
        'tensorrt' needs the ``tensorrt`` module (TensorRTUnavailableError otherwise).
    methods : method specs (:func:`trtcal.evaluation.comparison.parse_methods`: 'minmax',
        'entropy[:flavor]', 'percentile[:p]', 'mse', 'fp8-mse', 'fp8-kl', 'all'); default the
        config's ``method`` unless 'auto', else every INT8 method and flavor, or with FP8
        fp8-mse, fp8-kl and minmax.
    tables : extra {label: {tensor: amax}} to compare (a cache from another tool, say).
    calibration : a :class:`~trtcal.pipeline.result.CalibrationResult` to reuse instead of a
        new statistics pass (then ``data`` is only needed for evaluation).
    per_layer : also measure the SQNR of every quantized activation.
    out_dir : write comparison.csv/.json, layers.csv, one JSON table per method, the
        recommended Q/DQ model and the plots (with ``plots``) there.
    precisions : e.g. 'int8,fp8,fp16': also measure the per-layer choice among them
        (:func:`trtcal.analyze` ``precisions``, on the same statistics and evaluation data) as
        the row 'mixed'.

    Returns
    -------
    ComparisonResult, methods best first.
    """
    given = {k: v for k, v in (("data", data), ("eval_data", eval_data)) if v is not None}
    cfg = CalibrationConfig.of(config, **options, **given)
    mixed = None
    if precisions is not None:
        if calibration is None:
            calibration = calibration_pass.statistics(
                model, cfg.replace(resume=cfg.resume or bool(cfg.checkpoint), log=cfg.say())
            )
        mixed = run_analysis(
            model, cfg.replace(method="auto"), precisions=precisions, calibration=calibration,
            cache=False, plots=False,
        )  # fmt: skip
    res = run_comparison(
        model, cfg, methods=methods, tables=tables, calibration=calibration, per_layer=per_layer,
        out_dir=out_dir, plots=plots, models={"mixed": mixed.model} if mixed else None,
    )  # fmt: skip
    if mixed is not None:
        res.notes.append(f"mixed: {mixed.final_text}; speed order: {mixed.speed_source}")
    return res
