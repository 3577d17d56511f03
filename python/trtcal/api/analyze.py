"""``trtcal.analyze``: find the layers that break INT8 (or FP8); re-range them, keep them in
float, or choose INT8, FP8 or FP16 per layer."""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Union

from ..core import _locks
from ..evaluation.sensitivity import (
    DEFAULT_ALTERNATIVES,
    MAX_FLOAT,
    SEARCH_LAYERS,
    AnalysisResult,
    run_analysis,
)
from ..pipeline.config import CalibrationConfig


@_locks.released_on_return
def analyze(
    model: Any,
    data: Any = None,
    eval_data: Any = None,
    *,
    config: Optional[CalibrationConfig] = None,
    alternatives: Union[str, Sequence[str], Mapping[str, Mapping[str, float]], None] = (
        DEFAULT_ALTERNATIVES
    ),
    threshold: Optional[float] = None,
    metric: Optional[str] = None,
    search_layers: int = SEARCH_LAYERS,
    max_float: int = MAX_FLOAT,
    precisions: Union[None, str, Sequence[str]] = None,
    tolerance: Optional[float] = None,
    calibration: Any = None,
    out_dir: Optional[str] = None,
    out_qdq: Optional[str] = None,
    cache: Union[bool, str] = True,
    plots: bool = True,
    **options: Any,
) -> AnalysisResult:
    """Finds the layers whose quantization breaks the model's task, and what to do with each.

    By default (``metric='task'``) every candidate method's all-quantized model is measured by
    the task metric, then each layer in float, then other ranges and float fallback on the most
    sensitive layers; the result is kept only if it beats the best single method
    (:mod:`trtcal.evaluation.sensitivity`). With ``metric`` 'cosine' or 'sqnr_db' layers are
    enabled one at a time against ``threshold``. With ``precisions`` each layer gets INT8, FP8 or
    FP16 instead (:func:`trtcal.evaluation.sensitivity.precision_mode`).

    Parameters
    ----------
    model : ONNX path or onnx.ModelProto
    data, eval_data : calibration and evaluation data (default: ``data``).
    config, **options : a :class:`~trtcal.CalibrationConfig` and/or its fields as keywords,
        which override it: ``method`` is the base ranges ('auto': the best measured candidate,
        or one method such as 'entropy:tensorrt', 'percentile:99.99', 'fp8-mse'; several or 'all'
        are refused); ``quant_dtype='fp8'`` searches FP8 (E4M3) Q/DQ models (candidates
        fp8-mse, fp8-kl, minmax, percentile); ``high_precision`` is the written model's float
        type; ``batch_size``, ``eval_samples``, ``evaluate``, ``task``, ``output_slices``,
        ``score_threshold``, ``progress``, ``log``, ... as for :func:`trtcal.calibrate`.
    alternatives : method specs that are the candidates and are tried on layers, or
        {label: {tensor: amax}} tables; None or () for none. The default is every INT8 method,
        or with FP8 the FP8 ones.
    threshold, metric : 'task' (the default without a threshold), or 'cosine' (the default
        with one) / 'sqnr_db' of the worst output (default thresholds 0.99, 20 dB).
    search_layers, max_float : task mode: how many of the most sensitive layers get other
        ranges tried, and how many float fallbacks are tried.
    precisions : e.g. 'int8,fp8,fp16': choose one per layer, the fastest (measured in TensorRT
        when its module is present, else docs/fp8.md's table; ``result.speed_source`` says
        which) that keeps the task metric within ``tolerance`` (default one unit: one row, one
        detection) of the float model's; writes the mixed Q/DQ model.
    calibration : a CalibrationResult to reuse instead of a new statistics pass.
    out_dir, out_qdq : analyze.csv/.json, analyze.png, the table, the Q/DQ model (default
        ``<out_dir>/<model>.analyzed.qdq.onnx``), the cache and the statistics checkpoint.
    cache : True (``<out_dir>/analyze-cache.json``), False (nothing read), or a path.

    Returns
    -------
    AnalysisResult
    """
    given = {k: v for k, v in (("data", data), ("eval_data", eval_data)) if v is not None}
    cfg = CalibrationConfig.of(config, **options, **given)
    return run_analysis(
        model,
        cfg,
        alternatives=alternatives,
        threshold=threshold,
        metric=metric,
        search_layers=search_layers,
        max_float=max_float,
        precisions=precisions,
        tolerance=tolerance,
        calibration=calibration,
        out_dir=out_dir,
        out_qdq=out_qdq,
        cache=cache,
        plots=plots,
    )
