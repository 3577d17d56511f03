"""Find the layers that break INT8, and fix them with other ranges or higher precision.

By default (``metric="task"``) :func:`analyze` searches against the model's task metric
(:mod:`trtcal.tasks`: detections kept, top-1 agreement, mask IoU, else the worst head's SQNR;
ties broken by the worst head's SQNR):

1. every candidate method's all-INT8 model is measured; the best is the base (``method="auto"``)
   and the bar to beat;
2. each quantizable layer is measured in float alone (its sensitivity);
3. the ``search_layers`` (8) layers whose float gains most get each of the two next-best
   methods' ranges and min-max on their inputs (per-layer method choice), kept when the task
   key improves (by more than 0.1 dB of worst-head SQNR on a tie);
4. up to ``max_float`` (4) of those layers are left in float, each kept when it improves the key
   by more than 0.5 dB on a tie (float layers cost speed);
5. the result is kept only if it beats the best single method; otherwise analyze says so and
   returns the best single method's model.

Cost: ``N + L + 3 * search_layers + max_float`` evaluation runs for ``N`` candidate methods and
``L`` quantizable layers.

With ``metric="cosine"`` or ``"sqnr_db"`` and a threshold (the earlier mode), :func:`analyze`
enables INT8 (Q/DQ on the layer's inputs) one quantizable layer at a time in
graph (topological) order, the rest in float, and measures the model outputs against FP32.
A layer whose enabling drops the similarity below ``threshold`` is marked and left in float,
so the layers after it are measured without its effect. Then each marked layer is tried with
the other methods' ranges for its activations ("mixed quantization"); it stays INT8 with the
best of them when that passes the threshold, else it stays in float ("mixed precision").

Every measurement is cached (key: model, ranges of the enabled layers, evaluation data) in
``analyze-cache.json`` next to the outputs: a re-run with the same settings does no
inference, and one with another threshold runs only the configurations it has not measured.
The statistics pass is cached there too (``<model>.trtcal-ckpt.npz``, a calibration
checkpoint): a re-run with other data or settings discards it and collects again.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from ..core import _files
from ..core.progress import Progress
from ..pipeline import calibration_pass, outputs
from ..pipeline.checkpoint import StaleCheckpointError
from ..pipeline.config import CalibrationConfig
from ..pipeline.runners import model_digest
from . import measure as ev
from . import precision_choice as pc
from . import tasks as tk
from .comparison import Variant, check_quant_methods, fp8_int8_table, parse_methods, qdq_model
from .precision_choice import PRECISIONS

__all__ = ["run_analysis", "AnalysisResult", "LayerDecision"]

CACHE_FORMAT = "trtcal.analyze.cache/2"
METRICS = ("task", "cosine", "sqnr_db")
SEARCH_LAYERS = 8  # task mode: layers whose ranges are searched
MAX_FLOAT = 4  # task mode: float fallbacks tried
MARGIN_DB = 0.1  # task mode: a re-ranging that ties on the task metric must gain this much
FLOAT_MARGIN_DB = 0.5  # ... and a float fallback this much
#: The threshold used when none is given, per metric. Cosine 0.99; SQNR 20 dB (the noise
#: power 1% of the signal's: about cosine 0.995 for noise uncorrelated with the signal, where
#: cosine c corresponds to -10 log10(1/c^2 - 1) dB, so cosine 0.99 is about 17 dB).
DEFAULT_THRESHOLDS = {"cosine": 0.99, "sqnr_db": 20.0}
_UNITS = {"cosine": "", "sqnr_db": " dB", "task": ""}


@dataclass
class LayerDecision:
    """One quantizable layer: the similarity measured when it was enabled, and the decision."""

    index: int
    name: str
    op_type: str
    tensors: List[str]  # its activation inputs that get Q/DQ
    similarity: float  # after enabling it (with the layers accepted before it)
    decision: str = "int8"  # 'int8', 'int8-reranged' or 'float'
    method: Optional[str] = None  # the ranges it uses ('int8-reranged': the other method's)
    tried: Dict[str, float] = field(
        default_factory=dict
    )  # mixed quantization: method -> similarity
    detail: str = ""  # task mode: the task metric and heads with this layer in float

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


@dataclass
class AnalysisResult:
    """Per-layer decisions, the table and Q/DQ model that apply them, and the similarities."""

    layers: List[LayerDecision]
    metric: str
    threshold: float
    method: str
    all_int8: float  # similarity with every layer in INT8 (base ranges)
    final: float  # similarity of the returned model
    table: Any  # CalibrationTable (or dict) with the re-ranged tensors
    model: Any  # onnx.ModelProto with Q/DQ, float layers excluded
    measured: int = 0  # configurations run (the rest came from the cache)
    cached: int = 0
    files: Dict[str, str] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)
    best_single: Optional[str] = None  # task mode: the best single method, the bar to beat
    candidates: Dict[str, str] = field(
        default_factory=dict
    )  # task mode: method -> task metric and heads
    beats_best_single: Optional[bool] = None
    final_text: str = ""  # task mode: the returned model's task metric and heads
    task: str = ""
    quant_dtype: str = "int8"  # the Q/DQ type searched: 'int8' or 'fp8' (E4M3)
    speed_source: str = ""  # precisions mode: where the per-layer speed order came from

    def summary_text(self) -> str:
        """One line: what changed, and whether it beat the best single method."""
        what = (
            f"{len(self.reranged_layers)} layer(s) re-ranged, {len(self.float_layers)} in float"
            if self.layers
            else "no change"
        )
        if self.best_single is None:
            return f"base {self.method}; {what}"
        verdict = "beats" if self.beats_best_single else "could not beat (returned)"
        return f"base {self.method}; {what}; {verdict} the best single method {self.best_single}"

    @property
    def float_layers(self) -> List[str]:
        return [d.name for d in self.layers if d.decision in ("float", "fp16")]

    @property
    def reranged_layers(self) -> Dict[str, str]:
        return {d.name: str(d.method) for d in self.layers if d.decision == "int8-reranged"}

    def format_table(self) -> str:
        if self.speed_source:
            return self._format_precisions()
        if self.metric == "task":
            return self._format_task()
        head = ["#", "layer", "op", self.metric, "decision"]
        rows = [
            [
                str(d.index),
                d.name,
                d.op_type,
                _fmt(d.similarity, self.metric),
                d.decision + (f" ({d.method})" if d.decision == "int8-reranged" else ""),
            ]
            for d in self.layers
        ]
        widths = [
            max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)
        ]

        def fmt(r: Sequence[str]) -> str:
            return "  ".join(
                c.rjust(w) if i in (0, 3) else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))
            )

        out = [fmt(head), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows]
        out.append(
            f"{self.metric} with every layer INT8 ({self.method}): "
            f"{_fmt(self.all_int8, self.metric)}; "
            f"with these decisions: {_fmt(self.final, self.metric)} "
            f"(threshold {self.threshold:g}{_UNITS.get(self.metric, '')}); "
            f"{len(self.float_layers)} layer(s) in float, {len(self.reranged_layers)} re-ranged"
        )
        return "\n".join(out)

    def _format_precisions(self) -> str:
        head = ["#", "layer", "op", "precision", "why"]
        rows = [[str(d.index), d.name, d.op_type, d.decision, d.detail] for d in self.layers]
        widths = [
            max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)
        ]
        out = [
            "  ".join(c.ljust(w) for c, w in zip(r, widths))
            for r in [head, ["-" * w for w in widths]] + rows
        ]
        out.append(f"task: {self.task}")
        out += [f"  {k}: {v}" for k, v in self.candidates.items()]
        out.append(
            f"returned: {self.final_text}; ranges {self.method}; speed order: {self.speed_source}"
        )
        return "\n".join(out)

    @property
    def precisions(self) -> Dict[str, str]:
        """Precisions mode: {layer: 'int8' | 'fp8' | 'fp16'}."""
        return {d.name: d.decision for d in self.layers} if self.speed_source else {}

    def _format_task(self) -> str:
        changed = [d for d in self.layers if d.decision != "int8"]
        shown = changed or sorted(self.layers, key=lambda d: -d.similarity)[:5]
        head = ["#", "layer", "op", "task metric with it in float", "decision", "tried"]
        rows = [
            [
                str(d.index),
                d.name,
                d.op_type,
                d.detail,
                d.decision + (f" ({d.method})" if d.decision == "int8-reranged" else ""),
                ", ".join(f"{k} {v:.4g}" for k, v in d.tried.items()),
            ]
            for d in shown
        ]
        widths = [
            max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)
        ]
        fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths))  # noqa: E731
        out = [fmt(head), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows]
        if not changed:
            out.append("(no layer changed: the most sensitive layers are shown)")
        out.append(f"task: {self.task}")
        for label, text in self.candidates.items():
            out.append(f"  all {self.quant_dtype.upper()}, {label}: {text}")
        out.append(f"returned: {self.final_text}  [{self.summary_text()}]")
        return "\n".join(out)

    def to_dict(self) -> Dict[str, Any]:
        threshold = self.threshold if math.isfinite(self.threshold) else None  # task mode: none
        return {
            "metric": self.metric,
            "threshold": threshold,
            "method": self.method,
            "best_single": self.best_single,
            "beats_best_single": self.beats_best_single,
            "candidates": self.candidates,
            "final_text": self.final_text,
            "task": self.task,
            "all_int8": self.all_int8,
            "final": self.final,
            "float_layers": self.float_layers,
            "reranged_layers": self.reranged_layers,
            "layers": [d.to_dict() for d in self.layers],
            "measured": self.measured,
            "cached": self.cached,
            "notes": self.notes,
            "files": self.files,
            "quant_dtype": self.quant_dtype,
            "speed_source": self.speed_source or None,
            "precisions": self.precisions,
        }


def _fmt(v: float, metric: str) -> str:
    if metric == "sqnr_db":
        return "inf" if math.isinf(v) and v > 0 else f"{v:.2f}"
    return f"{v:.6f}"


#: The candidate methods analyze measures and tries on layers, by quant_dtype.
DEFAULT_ALTERNATIVES = ("percentile", "mse", "minmax", "entropy")
FP8_ALTERNATIVES = ("fp8-mse", "fp8-kl", "minmax", "percentile")


@dataclass
class _Setup:
    """What every search mode shares: the model, its layers, the candidates' ranges, the meter."""

    proto: Any
    calibration: Any
    cands: Dict[str, Dict[str, float]]
    base_v: Optional[Variant]
    layer_names: List[str]
    layer_tensors: Dict[str, List[str]]
    nodes: Dict[str, Any]
    meter: "_Meter"
    spec: Any
    stem: str
    cache_path: Optional[str]
    notes: List[str]


def run_analysis(
    model: Any,
    cfg: CalibrationConfig,
    *,
    alternatives: Union[
        str, Sequence[str], Mapping[str, Mapping[str, float]], None
    ] = DEFAULT_ALTERNATIVES,
    threshold: Optional[float] = None,
    metric: Optional[str] = None,
    search_layers: int = SEARCH_LAYERS,
    max_float: int = MAX_FLOAT,
    precisions: Optional[Sequence[str]] = None,
    tolerance: Optional[float] = None,
    calibration: Any = None,
    out_dir: Optional[str] = None,
    out_qdq: Optional[str] = None,
    cache: Union[bool, str] = True,
    plots: bool = True,
) -> AnalysisResult:
    """The analysis :func:`trtcal.analyze` documents, over the shared settings ``cfg``
    (``method``: the base ranges; ``quant_dtype``: INT8 or FP8 Q/DQ; ``high_precision``: the
    written model's float type)."""
    given = threshold is not None
    metric, threshold = _check_metric(metric, threshold, search_layers, max_float)
    prec = _check_precisions(precisions, metric)
    say = cfg.say()
    if metric == "task" and prec is None:
        say(
            "trtcal: analyze searches per-layer ranges and float fallback against the task "
            "metric, to beat the best single method"
        )
    elif prec is None:
        say(
            f"trtcal: threshold: worst output {_METRIC_NAMES[metric]} >= "
            f"{threshold:g}{_UNITS[metric]} "
            + ("(given)" if given else f"(the default for {metric}; --threshold sets another)")
        )
    st = _setup(model, cfg, alternatives, calibration, out_dir, cache, prec is not None)
    if prec is not None:
        res, deploy = precision_mode(st, cfg, prec, tolerance)
    else:
        res, deploy = _layer_search(st, cfg, metric, threshold, search_layers, max_float)
    if st.cache_path:
        res.files["cache"] = st.cache_path
    if out_dir or out_qdq:
        _write(
            res,
            out_dir,
            out_qdq or os.path.join(out_dir or ".", f"{st.stem}.analyzed.qdq.onnx"),
            plots,
            say,
            deploy,
        )
    return res


def _setup(
    model: Any,
    cfg: CalibrationConfig,
    alternatives: Any,
    calibration: Any,
    out_dir: Optional[str],
    cache: Union[bool, str],
    mixed_precision: bool,
) -> _Setup:
    """Checks, the statistics pass (or ``calibration``), the candidates' ranges, the layers, the
    evaluation set and the cached meter."""
    tk.check_task_arguments(cfg.task, cfg.output_slices)
    say = cfg.say()
    notes: List[str] = []
    method = cfg.method if isinstance(cfg.method, str) else ",".join(cfg.method)
    base_v = None if method == "auto" else _base_method(method)
    if cfg.quant_dtype == "fp8" and alternatives == DEFAULT_ALTERNATIVES:
        alternatives = FP8_ALTERNATIVES
    if mixed_precision:  # the precision choice takes its INT8 and FP8 ranges itself
        alternatives = None
    alt_vs = (
        parse_methods(alternatives)
        if alternatives and not isinstance(alternatives, Mapping)
        else []
    )
    if not mixed_precision:
        check_quant_methods(([base_v] if base_v else []) + alt_vs, cfg.quant_dtype)
    # what would otherwise fail after the statistics pass is checked before it
    backend, eval_source = ev.check_before_pass("analyze", calibration, cfg)
    proto = ev.name_nodes(model)
    digest = model_digest(model)
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
    stem = (
        os.path.splitext(os.path.basename(model))[0]
        if isinstance(model, (str, os.PathLike))
        else "model"
    )
    if calibration is None:
        ck = os.path.join(out_dir, f"{stem}.trtcal-ckpt.npz") if out_dir else None
        calibration = _statistics(
            model, cfg, ck, reuse=cache is not False and cache is not None, say=say
        )
    hists = calibration.histograms
    cands = _candidates(hists, base_v, alt_vs, alternatives, notes, say)

    from ..formats.onnx import quantize

    first = next(iter(cands.values()))
    _, rep = quantize(proto, dict(first), missing="skip", return_report=True)
    nodes = {n.name: n for n in proto.graph.node}
    # the layers whose precision is chosen: weighted ops and residual adds (pooling, Concat and
    # Resize Q/DQ follow their neighbours by the placement rules)
    layer_names = [
        n
        for n in rep.quantized_nodes
        if n in nodes and nodes[n].op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul", "Add")
    ]
    weights = {i.name for i in proto.graph.initializer}
    layer_tensors = {
        n: [t for t in nodes[n].input if t in rep.activations and t not in weights]
        for n in layer_names
    }
    if not layer_names:
        raise ValueError(
            "trtcal: the model has no layer that INT8 Q/DQ applies to (Conv, ConvTranspose, Gemm, "
            "MatMul, residual Add) with a calibrated activation"
        )

    reference = ev.Reference(proto)
    bs = ev.fixed_batch(reference.specs) or cfg.batch_size or 16
    if cfg.eval_data is None:
        notes.append(
            "evaluated on the calibration data (pass eval_data / --eval-data for held-out samples)"
        )
    evalset = ev.EvalSet(
        cfg.data if cfg.eval_data is None else eval_source,
        reference.specs,
        bs,
        max_samples=cfg.eval_samples,
        preprocess=cfg.preprocess,
        input_name=cfg.input_name,
    )
    notes.append(ev.backend_note(backend))
    spec = ev.task_spec(reference, evalset, cfg.task, cfg.output_slices, cfg.score_threshold)
    cache_path = _cache_path(cache, out_dir)
    scope = {
        "model": digest,
        "eval": evalset.digest,
        "format": CACHE_FORMAT,
        "backend": backend,
        "task": spec.describe(),
    }
    int8_table = None if mixed_precision else fp8_int8_table(hists, cfg.quant_dtype)
    if int8_table is not None:
        scope["quant_dtype"] = cfg.quant_dtype
        notes.append(
            "the search measures FP8 (E4M3) Q/DQ models: FP8 where TensorRT runs the layer in "
            "FP8, the other layers INT8 with entropy ranges"
        )
    meter = _Meter(
        proto,
        layer_names,
        layer_tensors,
        reference,
        evalset,
        spec,
        _Cache(cache_path, scope),
        backend,
        int8_table,
    )
    return _Setup(
        proto,
        calibration,
        cands,
        base_v,
        layer_names,
        layer_tensors,
        nodes,
        meter,
        spec,
        stem,
        cache_path,
        notes,
    )


def _layer_search(
    st: _Setup,
    cfg: CalibrationConfig,
    metric: str,
    threshold: float,
    search_layers: int,
    max_float: int,
) -> Tuple[AnalysisResult, Any]:
    """The task or threshold search over the layers' ranges and float fallback (module docstring).
    Returns (result, the model to write: ``cfg.high_precision`` for what stays float)."""
    say, notes, cands, base_v, layer_names = (
        cfg.say(),
        st.notes,
        st.cands,
        st.base_v,
        st.layer_names,
    )
    measure_stats = st.meter.stats

    def measure(enabled: Sequence[str], tbl: Mapping[str, float]) -> float:
        return min(getattr(s, metric) for s in measure_stats(enabled, tbl).outputs.values())

    bar = _Steps(cfg.progress, len(cands) + len(layer_names) + 2)
    single = {}
    for label, amax in cands.items():
        if base_v is None or metric == "task" or label == base_v.label:
            single[label] = measure_stats(layer_names, amax)
            bar.step(f"all {cfg.quant_dtype.upper()} {label}")
    if metric == "task":
        best_single = tk.best_of(single)
        base = _base_label(best_single if base_v is None else base_v.label, cands)
        decisions, table, enabled, final_stats, beats = _task_mode(
            single,
            cands,
            base,
            best_single,
            layer_names,
            st.layer_tensors,
            st.nodes,
            measure_stats,
            bar,
            search_layers,
            max_float,
            notes,
            say,
        )
        if not beats:
            base = best_single
        all_int8, final = single[base].metric, final_stats.metric
    else:
        best_single = max(
            single, key=lambda k: min(getattr(s, metric) for s in single[k].outputs.values())
        )
        base = _base_label(best_single if base_v is None else base_v.label, cands)
        alts = [(k, v) for k, v in cands.items() if k != base]
        decisions, table, enabled, final, all_int8 = _threshold_search(
            layer_names,
            st.layer_tensors,
            st.nodes,
            base,
            cands[base],
            alts,
            measure,
            bar,
            threshold,
            metric,
        )
        final_stats, beats = None, None
    bar.step("final")
    bar.close()
    st.meter.store.save()

    used = {t: table[t] for t in sorted({t for n in enabled for t in st.layer_tensors[n]})}
    final_table = _table(used, st.calibration, base, decisions)
    float_layers = [d.name for d in decisions if d.decision == "float"]
    qmodel, _ = qdq_model(st.proto, used, st.meter.int8_table, exclude_nodes=float_layers)
    res = AnalysisResult(
        decisions,
        metric,
        float(threshold),
        base,
        all_int8,
        final,
        final_table,
        qmodel,
        st.meter.measured,
        st.meter.cached,
        notes=notes,
        task=st.spec.describe(),
        quant_dtype=cfg.quant_dtype,
    )
    if metric == "task":
        res.best_single, res.beats_best_single = best_single, beats
        res.candidates = {
            k: f"{s.describe_metric()}; {tk.heads_text(s)}"
            for k, s in sorted(single.items(), key=lambda kv: tuple(-v for v in kv[1].key))
        }
        res.final_text = f"{final_stats.describe_metric()}; {tk.heads_text(final_stats)}"
    # the file is the engine's precision plan on TensorRT 11: everything not quantized is cast
    # to high_precision (measured above with an FP32 remainder, as ONNX Runtime runs it best)
    deploy = (
        res.model
        if cfg.high_precision == "fp32"
        else qdq_model(
            st.proto,
            used,
            st.meter.int8_table,
            exclude_nodes=float_layers,
            high_precision=cfg.high_precision,
        )[0]
    )
    return res, deploy


def _check_precisions(
    precisions: Optional[Sequence[str]], metric: str
) -> Optional[Tuple[str, ...]]:
    """The precisions the per-layer choice may give (None: no choice); FP16 is always the
    last resort."""
    if precisions is None:
        return None
    items = precisions.split(",") if isinstance(precisions, str) else list(precisions)
    got = tuple(dict.fromkeys(str(p).strip().lower() for p in items if str(p).strip()))
    bad = [p for p in got if p not in PRECISIONS]
    if bad or not got:
        raise ValueError(
            "trtcal: precisions (--precisions) are int8, fp8 and fp16, comma-separated; "
            f"got {precisions!r}"
        )
    if metric != "task":
        raise ValueError(
            "trtcal: the per-layer precision choice (--precisions) is judged by the task metric: "
            "give no --metric/--threshold"
        )
    return got


def precision_mode(
    st: _Setup, cfg: CalibrationConfig, allowed: Sequence[str], tolerance: Optional[float]
) -> Tuple[AnalysisResult, Any]:
    """Per layer INT8, FP8 or FP16 (:func:`trtcal.evaluation.precision_choice.choose_precisions`),
    judged by the task metric on the evaluation data; each layer takes the fastest precision
    that keeps the metric within ``tolerance`` of the float model's (default: one unit of the
    metric: one classified row, one detection; generic outputs: 20 dB worst-head SQNR). The
    speed order is TensorRT's, measured, when the ``tensorrt`` module is present, else the
    documented table (docs/fp8.md)."""
    say, hists, meter = cfg.say(), st.calibration.histograms, st.meter
    int8_label = (
        st.base_v.label
        if st.base_v is not None and not st.base_v.method.startswith("fp8-")
        else "entropy"
    )
    fp8_label = (
        st.base_v.label
        if st.base_v is not None and st.base_v.method.startswith("fp8-")
        else "fp8-mse"
    )
    got = _ranges(hists, parse_methods(int8_label)[0])[1]
    if got is None:  # the range search is not in this build
        int8_label, got = "minmax", _ranges(hists, Variant("minmax"))[1]
    int8: Dict[str, float] = got or {}
    fp8 = _ranges(hists, Variant(fp8_label))[1] or {}

    def score(m: Any) -> float:
        stats, _ = ev.measure_task(
            m, meter.reference, meter.evalset, meter.spec, backend=meter.backend
        )
        meter.measured += 1
        return float(stats.metric)

    float_stats, _ = ev.measure_task(
        st.proto, meter.reference, meter.evalset, meter.spec, backend=meter.backend
    )
    generic = not math.isfinite(float_stats.metric)
    tol = float(tolerance) if tolerance is not None else max(float_stats.unit, 1e-9)
    floor = DEFAULT_THRESHOLDS["sqnr_db"] if generic else None
    order, source = pc.speed_source(st.proto, int8, fp8, meter.evalset, st.layer_names, say)

    def allowed_order(node: Any) -> Tuple[str, ...]:
        return tuple(p for p in order(node) if p in allowed or p == "fp16")

    say(
        f"trtcal: choosing {'/'.join(p.upper() for p in allowed)} per layer by the task metric "
        f"({f'worst head SQNR >= {floor:g} dB' if floor is not None else f'tolerance {tol:.4g}'}); "
        f"speed order: {source}"
    )
    ch = pc.choose_precisions(
        st.proto,
        int8,
        fp8,
        score,
        tolerance=tol,
        min_layer_score=floor,
        min_score=floor,
        layers=st.layer_names,
        order=allowed_order,
        log=lambda s: say(f"trtcal: {s}"),
        fp8_fallback="fp8" in allowed,
    )
    decisions = []
    for i, n in enumerate(st.layer_names):
        c = ch.choices.get(n, "fp16")
        if c == "fp8" and "fp8" not in pc.speed_order(st.nodes[n]):
            c = "int8"  # FP8-where-possible leaves it INT8 (no FP8 kernel)
        decisions.append(
            LayerDecision(
                i,
                n,
                st.nodes[n].op_type,
                st.layer_tensors[n],
                ch.layer_scores.get(n, {}).get(c, ch.float_score),
                decision=c,
                method={"int8": int8_label, "fp8": fp8_label}.get(c),
                tried=dict(ch.layer_scores.get(n, {})),
                detail=pc.why(st.nodes[n], c, ch, allowed_order, tol, floor),
            )
        )
    table = dict(int8)
    res = AnalysisResult(
        decisions,
        "task",
        math.nan,
        f"{int8_label} / {fp8_label}",
        ch.all_int8,
        ch.score,
        table,
        ch.model,
        meter.measured,
        meter.cached,
        notes=st.notes,
        task=st.spec.describe(),
        quant_dtype=cfg.quant_dtype,
        speed_source=source,
    )
    res.candidates = {
        "float": f"{float_stats.describe_metric()}",
        "all INT8": f"{ch.all_int8:.4g}",
        "FP8 where TensorRT runs it": f"{ch.all_fp8:.4g}",
    }
    res.final_text = (
        f"mixed {ch.score:.4g} ({', '.join(f'{k} {v}' for k, v in ch.counts().items())}"
        + (f"; {len(ch.reverted)} reverted to FP16" if ch.reverted else "")
        + ")"
    )
    deploy = ch.model
    if cfg.high_precision != "fp32":
        from ..formats.onnx import quantize
        from ..formats.onnx.fp8 import convert_to_fp8

        q = quantize(st.proto, dict(int8), missing="skip", high_precision=cfg.high_precision)
        deploy = convert_to_fp8(q, fp8, int8_table=int8, precisions=ch.choices)
    return res, deploy


def _check_metric(
    metric: Optional[str], threshold: Optional[float], search_layers: Any, max_float: Any
) -> Tuple[str, float]:
    """(metric, threshold) after the checks: no threshold means the task metric (threshold NaN)."""
    given = threshold is not None
    if metric is None:
        metric = "cosine" if given else "task"
    if metric not in METRICS:
        raise ValueError(
            f"trtcal: metric (--metric) must be one of {', '.join(METRICS)}, got {metric!r}"
        )
    for what, v in (("search_layers", search_layers), ("max_float", max_float)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"trtcal: {what} must be an integer >= 0, got {v!r}")
    if metric == "task":
        if given:
            raise ValueError(
                "trtcal: threshold (--threshold) applies to --metric cosine or sqnr_db; the task "
                "metric "
                "is searched to beat the best single method, with no threshold"
            )
        return metric, math.nan
    value = float(DEFAULT_THRESHOLDS[metric] if threshold is None else threshold)
    if math.isnan(value):
        raise ValueError("trtcal: threshold (--threshold) is NaN")
    if metric == "cosine" and not -1.0 <= value <= 1.0:
        raise ValueError(
            f"trtcal: a cosine threshold (--threshold) must be in [-1, 1], got {value}"
        )
    return metric, value


def _base_label(label: str, cands: Mapping[str, Any]) -> str:
    """``label``, or min-max when its ranges need a range search this build lacks."""
    if label in cands:
        return label
    return "minmax" if "minmax" in cands else next(iter(cands))


def _task_mode(
    single: Mapping[str, Any],
    cands: Mapping[str, Dict[str, float]],
    base: str,
    best_single: str,
    layer_names: Sequence[str],
    layer_tensors: Mapping[str, List[str]],
    nodes: Mapping[str, Any],
    measure_stats: Callable[..., Any],
    bar: Any,
    search_layers: int,
    max_float: int,
    notes: List[str],
    say: Callable[[str], None],
) -> Tuple[List[LayerDecision], Dict[str, float], List[str], Any, bool]:
    """The task search from ``base``, then the check against the best single method (whose
    model is returned, with a note, when the search did not beat it)."""
    ranked = [k for k in tk.ranked(single) if k != base]
    alts = sorted(
        ((k, v) for k, v in cands.items() if k != base),
        key=lambda kv: ranked.index(kv[0]) if kv[0] in ranked else len(ranked),
    )
    decisions, table, enabled, final_stats = _task_search(
        layer_names,
        layer_tensors,
        nodes,
        base,
        cands[base],
        alts,
        measure_stats,
        bar,
        search_layers,
        max_float,
    )
    beats = tk.better(final_stats, single[best_single])
    if not beats:
        b = single[best_single]
        notes.append(
            f"analyze could not beat the best single method ({best_single}: {b.describe_metric()}, "
            f"worst head {b.worst_sqnr:.2f} dB); it returns that method's model"
        )
        say(f"trtcal: {notes[-1]}")
        table, enabled, final_stats = dict(cands[best_single]), list(layer_names), b
        for d in decisions:
            d.decision, d.method = "int8", best_single
    return decisions, table, enabled, final_stats, beats


class _Meter:
    """Measures a configuration (enabled layers, ranges) once: TaskStats, cached by key."""

    def __init__(
        self,
        proto: Any,
        layer_names: Sequence[str],
        layer_tensors: Mapping[str, List[str]],
        reference: Any,
        evalset: Any,
        spec: Any,
        store: "_Cache",
        backend: str,
        int8_table: Optional[Mapping[str, float]] = None,
    ) -> None:
        self.proto, self.layer_names, self.layer_tensors = proto, list(layer_names), layer_tensors
        self.reference, self.evalset, self.spec, self.store, self.backend = (
            reference,
            evalset,
            spec,
            store,
            backend,
        )
        self.int8_table = int8_table  # 'fp8': FP8 Q/DQ models; the layers left INT8 take these
        self.measured = self.cached = 0

    def stats(self, enabled: Sequence[str], tbl: Mapping[str, float]) -> tk.TaskStats:
        used = sorted({t for n in enabled for t in self.layer_tensors[n]})
        key = hashlib.sha256(
            json.dumps([sorted(enabled), [(t, repr(float(tbl[t]))) for t in used]]).encode()
        ).hexdigest()[:32]
        hit = self.store.get(key)
        if hit is None:
            exclude = [n for n in self.layer_names if n not in set(enabled)]
            qm, _ = qdq_model(
                self.proto, {t: tbl[t] for t in used}, self.int8_table, exclude_nodes=exclude
            )
            stats, _ = ev.measure_task(
                qm, self.reference, self.evalset, self.spec, backend=self.backend
            )
            hit = stats.state()
            self.store.put(key, hit)
            self.measured += 1
        else:
            self.cached += 1
        return tk.TaskStats.from_state(self.spec, hit)


def _candidates(
    hists: Mapping[str, Any],
    base_v: Optional[Variant],
    alt_vs: Sequence[Variant],
    alternatives: Any,
    notes: List[str],
    say: Callable[[str], None],
) -> Dict[str, Dict[str, float]]:
    """{label: ranges} of the base (when named) and the alternatives, from the histograms."""
    out: Dict[str, Dict[str, float]] = {}
    wanted = ([base_v] if base_v is not None else []) + [
        v for v in alt_vs if base_v is None or v != base_v
    ]
    for v in wanted:
        label, amax = _ranges(hists, v)
        if amax is None:
            if v is base_v:
                notes.append(
                    f"{base_v.label} needs trtcal.compute_amax, which this build lacks: min-max "
                    "ranges used"
                )
                say(f"trtcal: {notes[-1]}")
            elif not any("alternatives" in n for n in notes):
                notes.append(
                    "alternatives that need trtcal.compute_amax were skipped (not in this build)"
                )
            continue
        out[label] = amax
    if isinstance(alternatives, Mapping):
        for k, t in alternatives.items():
            out[str(k)] = {n: float(a) for n, a in t.items() if a > 0 and math.isfinite(a)}
    if not out or (base_v is not None and base_v.label not in out):
        label, amax = _ranges(hists, Variant("minmax"))
        out.setdefault(label, amax or {})
    return out


def _task_search(
    layer_names: Sequence[str],
    layer_tensors: Mapping[str, List[str]],
    nodes: Mapping[str, Any],
    base: str,
    base_amax: Mapping[str, float],
    alts: Sequence[Tuple[str, Dict[str, float]]],
    measure_stats: Callable[..., Any],
    bar: Any,
    search_layers: int,
    max_float: int,
) -> Tuple[List[LayerDecision], Dict[str, float], List[str], Any]:
    """Sensitivity of every layer, per-layer ranges on the most sensitive, float fallback (see
    the module docstring). Returns (decisions, table, enabled layers, their TaskStats)."""
    table = dict(base_amax)
    cur = measure_stats(list(layer_names), table)
    sens = {}
    for n in layer_names:
        sens[n] = measure_stats([x for x in layer_names if x != n], table)
        bar.step(f"{n} in float")
    decisions = [
        LayerDecision(
            i,
            n,
            nodes[n].op_type,
            layer_tensors[n],
            sens[n].metric,
            method=base,
            detail=f"{sens[n].describe_metric()}, worst head {sens[n].worst_sqnr:.2f} dB",
        )
        for i, n in enumerate(layer_names)
    ]
    dec = {d.name: d for d in decisions}
    gaining = [
        n
        for n in sorted(layer_names, key=lambda n: tuple(-v for v in sens[n].key))
        if tk.better(sens[n], cur)
    ]
    tries = [kv for kv in alts[:2]] + [
        kv for kv in alts if kv[0] == "minmax" and kv not in alts[:2]
    ]
    enabled = list(layer_names)
    bar.grow(min(len(gaining), search_layers) * len(tries) + min(len(gaining), max_float))
    for n in gaining[:search_layers]:
        best = None
        for label, amax in tries:
            trial = dict(table)
            changed = [
                t for t in layer_tensors[n] if t in amax and t in trial and amax[t] != trial[t]
            ]
            bar.step(f"{n} {label}")
            if not changed:
                continue
            for t in changed:
                trial[t] = amax[t]
            s = measure_stats(enabled, trial)
            dec[n].tried[label] = s.metric
            if tk.better(s, best[0] if best else cur, MARGIN_DB):
                best = (s, label, trial)
        if best is not None:
            cur, table = best[0], best[2]
            dec[n].decision, dec[n].method = "int8-reranged", best[1]
    for n in gaining[:max_float]:
        trial_enabled = [x for x in enabled if x != n]
        s = measure_stats(trial_enabled, table)
        bar.step(f"{n} float")
        if tk.better(s, cur, FLOAT_MARGIN_DB):
            cur, enabled = s, trial_enabled
            dec[n].decision, dec[n].method = "float", None
    return decisions, table, enabled, cur


def _threshold_search(
    layer_names: Sequence[str],
    layer_tensors: Mapping[str, List[str]],
    nodes: Mapping[str, Any],
    base: str,
    table: Dict[str, float],
    alts: Sequence[Tuple[str, Dict[str, float]]],
    measure: Callable[..., float],
    bar: Any,
    threshold: float,
    metric: str,
) -> Tuple[List[LayerDecision], Dict[str, float], List[str], float, float]:
    """The threshold mode: enable layers one at a time in graph order, mark those that drop the
    worst output's ``metric`` below ``threshold``, try other ranges on them, else keep them in
    float. Returns (decisions, table, enabled layers, final similarity, all-INT8 similarity)."""
    table = dict(table)
    all_int8 = measure(layer_names, table)
    bar.step("all layers INT8")
    decisions: List[LayerDecision] = []
    accepted: List[str] = []
    for i, name in enumerate(layer_names):
        sim = measure(accepted + [name], table)
        d = LayerDecision(i, name, nodes[name].op_type, layer_tensors[name], sim, method=base)
        if sim >= threshold:
            accepted.append(name)
        else:
            d.decision = "float"
        decisions.append(d)
        bar.step(name)
    marked = [d for d in decisions if d.decision == "float"]
    bar.grow(len(marked) * len(alts))
    for d in marked:  # mixed quantization: the other methods' ranges for the marked layer's inputs
        best: Optional[Tuple[float, str, Dict[str, float]]] = None
        for label, amax in alts:
            trial = dict(table)
            for t in d.tensors:
                if t in amax and amax[t] > 0 and math.isfinite(amax[t]):
                    trial[t] = amax[t]
            sim = measure(accepted + [d.name], trial)
            d.tried[label] = sim
            if sim >= threshold and (best is None or sim > best[0]):
                best = (sim, label, trial)
            bar.step(f"{d.name} {label}")
        if best is not None:
            d.decision, d.method, table = "int8-reranged", best[1], best[2]
            accepted.append(d.name)
    enabled = [n for n in layer_names if n in set(accepted)]
    final = measure(enabled, table) if enabled else _no_int8(metric)
    return decisions, table, enabled, final, all_int8


_METRIC_NAMES = {"cosine": "cosine similarity", "sqnr_db": "SQNR", "task": "task metric"}
_RESUME_HINT = re.compile(r"\(run again with --resume[^)]*\)")


def _base_method(method: str) -> Variant:
    """The one method of ``method`` (its first flavor or percentile when it has several)."""
    variants = parse_methods(method)
    names = list(dict.fromkeys(v.method for v in variants))
    if len(names) != 1:
        raise ValueError(
            f"trtcal: method (--method) takes one base method, e.g. entropy, entropy:tensorrt, "
            f"percentile:99.99, minmax or mse; got {method!r} ({', '.join(names)}). To rank every "
            "method run trtcal compare; --alternatives takes several (or 'all')"
        )
    return variants[0]


def _analyze_log(say: Callable[[str], None]) -> Callable[[str], None]:
    """calibrate's log as analyze shows it: analyze has no --resume (its checkpoint is a cache it
    reuses by itself), so the hint to resume by hand is reworded."""

    def log(line: str) -> None:
        say(_RESUME_HINT.sub("(analyze run again with this --out-dir continues from it)", line))

    return log


def _statistics(
    model: Any,
    cfg: CalibrationConfig,
    ck: Optional[str],
    *,
    reuse: bool,
    say: Callable[[str], None],
) -> Any:
    """The min-max statistics pass, with the checkpoint ``ck`` as its cache: resumed when
    ``reuse`` and it holds these settings' statistics; discarded (said in one line) and collected
    again when it holds others'; not read at all without ``reuse`` (then rewritten)."""
    cfg = cfg.replace(log=_analyze_log(say), checkpoint=ck)
    if ck and reuse and os.path.exists(ck):
        try:  # a refused checkpoint is refused before calibrate prints its setup
            return calibration_pass.statistics(model, cfg.replace(resume=True))
        except StaleCheckpointError as exc:
            say(
                f"trtcal: the statistics checkpoint {ck} holds {exc.reason}: discarded, collecting "
                "again"
            )
        try:
            os.remove(ck)
        except OSError:
            pass  # the pass below overwrites it
    return calibration_pass.statistics(model, cfg.replace(resume=False))


def _no_int8(metric: str) -> float:
    return 1.0 if metric == "cosine" else math.inf


def _ranges(hists: Mapping[str, Any], v: Variant) -> Tuple[str, Optional[Dict[str, float]]]:
    try:
        amax = outputs.thresholds(hists, [v.method], v.flavor, {v.method: dict(v.params)})[v.method]
    except outputs.OutputUnavailable:
        return v.label, None
    return v.label, {n: a for n, a in amax.items() if a > 0 and math.isfinite(a)}


def _table(
    amax: Mapping[str, float], calibration: Any, base: str, decisions: Sequence[LayerDecision]
) -> Any:
    per_tensor = {
        t: d.method for d in decisions if d.decision == "int8-reranged" for t in d.tensors
    }
    try:
        table = outputs.make_table(amax, dict(calibration.provenance, method=base))
    except outputs.OutputUnavailable:
        return dict(amax)
    for t, m in per_tensor.items():
        if t in table:
            table.override(t, table[t], method=m, reason="trtcal analyze: mixed quantization")
    return table


def _cache_path(cache: Union[bool, str], out_dir: Optional[str]) -> Optional[str]:
    if cache is False or cache is None:
        return None
    if isinstance(cache, (str, os.PathLike)):
        return os.fspath(cache)
    return os.path.join(out_dir, "analyze-cache.json") if out_dir else None


class _Cache:
    """Measurements keyed by configuration, in a JSON file; entries of another model or
    evaluation set are dropped when the file is opened."""

    def __init__(self, path: Optional[str], scope: Mapping[str, str]) -> None:
        self.path = path
        self.scope = dict(scope)
        self.entries: Dict[str, Any] = {}
        self.dirty = False
        if path and os.path.exists(path):
            try:
                with open(path) as f:
                    data = json.load(f)
            except (OSError, ValueError) as exc:
                raise ValueError(
                    f"trtcal: analyze cache {path} is unreadable ({exc}); delete it to start over"
                ) from None
            if isinstance(data, dict) and data.get("scope") == self.scope:
                self.entries = dict(data.get("entries", {}))

    def get(self, key: str) -> Optional[Dict[str, Any]]:
        return self.entries.get(key)

    def put(self, key: str, value: Dict[str, Any]) -> None:
        self.entries[key] = value
        self.dirty = True
        self.save()  # an interrupted run keeps what it measured

    def save(self) -> None:
        if self.path and self.dirty:
            ev.write_json(self.path, {"scope": self.scope, "entries": self.entries})
            self.dirty = False


def _write(
    res: AnalysisResult,
    out_dir: Optional[str],
    out_qdq: str,
    plots: bool,
    say: Callable[[str], None],
    deploy: Any = None,
) -> None:
    d = out_dir or os.path.dirname(os.path.abspath(out_qdq))
    os.makedirs(d, exist_ok=True)
    _files.save_onnx(res.model if deploy is None else deploy, out_qdq)
    res.files["qdq"] = out_qdq
    p = os.path.join(d, "analyze.csv")
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(
        [
            "index",
            "layer",
            "op_type",
            f"{res.metric}_after_enabling",
            "decision",
            "method",
            "tensors",
        ]
    )
    for x in res.layers:
        w.writerow(
            [
                x.index,
                x.name,
                x.op_type,
                x.similarity,
                x.decision,
                x.method or "",
                " ".join(x.tensors),
            ]
        )
    _files.atomic_write(p, buf.getvalue())
    res.files["csv"] = p
    p = os.path.join(d, "analyze.table.json")
    if hasattr(res.table, "to_json"):
        res.table.to_json(p)
    else:
        ev.write_json(p, dict(res.table))
    res.files["table"] = p
    if plots:
        try:
            res.files["plot"] = plot(res, os.path.join(d, "analyze.png"))
        except ImportError as exc:
            res.notes.append(str(exc))
            say(str(exc))
    p = os.path.join(d, "analyze.json")
    res.files["json"] = p
    ev.write_json(p, res.to_dict())
    say(f"trtcal: Q/DQ model with {len(res.float_layers)} layer(s) in float: {out_qdq}")
    for line in outputs.trtexec_lines(qdq=os.path.abspath(out_qdq)):
        say(line)


def plot(res: AnalysisResult, path: str) -> str:
    """Similarity after enabling each layer, coloured by decision, with the threshold. Needs
    matplotlib."""
    plt = ev.pyplot()
    colors = {
        "int8": "tab:green",
        "int8-reranged": "tab:orange",
        "float": "tab:red",
        "fp8": "tab:blue",
        "fp16": "tab:purple",
    }
    n = len(res.layers)
    fig, ax = plt.subplots(figsize=(max(7, 0.3 * n + 3), 4.5))
    ys = [x.similarity for x in res.layers]
    finite = [y for y in ys if math.isfinite(y)]
    cap = (max(finite) if finite else 1.0) + 1.0
    ys = [y if math.isfinite(y) else cap for y in ys]
    ax.plot(range(n), ys, color="0.6", lw=1, zorder=1)
    for dec, c in colors.items():
        idx = [x.index for x in res.layers if x.decision == dec]
        ax.scatter(idx, [ys[i] for i in idx], color=c, label=dec, zorder=2)
    if math.isfinite(res.threshold):
        ax.axhline(
            res.threshold,
            color="k",
            ls="--",
            lw=1,
            label=f"threshold {res.threshold:g}{_UNITS.get(res.metric, '')}",
        )
    ax.set_xlabel("layer (graph order)")
    ax.set_ylabel(
        "task metric with the layer in float"
        if res.metric == "task"
        else f"output {res.metric} vs FP32 after enabling"
    )
    if n <= 40:
        ax.set_xticks(range(n))
        ax.set_xticklabels([x.name for x in res.layers], rotation=90, fontsize=7)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title(f"trtcal analyze ({res.method})")
    fig.tight_layout()
    _files.atomic_savefig(fig, path, dpi=110)
    plt.close(fig)
    return path


class _Steps(Progress):
    """analyze's bar: one step per configuration measured, named."""

    def __init__(self, enabled: bool, total: int) -> None:
        super().__init__(enabled, total, "analyze", unit="config")

    def step(self, what: str) -> None:
        self.note(what)
        self.update(1)
