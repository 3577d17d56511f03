"""Which calibration method keeps this model accurate? One statistics pass, every method.

:func:`compare` collects the activation histograms once (the pass :func:`trtcal.calibrate`
makes), derives every method's ranges from them (min-max; entropy in each flavor; percentile
99.9 / 99.99 / 99.999; MSE), builds each Q/DQ model and runs it (in TensorRT or ONNX Runtime,
see ``evaluate``; the FP32 model always runs in ONNX Runtime) against the FP32 model on
evaluation batches: per output and per head (:mod:`trtcal.tasks`: boxes and class scores of a
detector, a classifier's logits, a segmentation map) SQNR, cosine similarity, max abs error;
top-1/top-5 agreement for classifiers, detections kept for detectors, mask IoU for
segmentation; the SQNR of every quantized activation, and the time each range search took.
Methods are ranked by the task metric of the worst head (detections kept, top-1 agreement,
mask IoU; SQNR for generic outputs), then the worst head's SQNR, then its cosine: never by a
whole-output number that one head dominates.
"""

from __future__ import annotations

import csv
import io
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from ..core import _files
from ..core.progress import Progress
from ..core.range_search import FLAVORS
from ..pipeline import calibration_pass, outputs
from ..pipeline.config import CalibrationConfig
from ..pipeline.result import FP8_QDQ_METHODS
from ..pipeline.runners import load_onnx
from . import measure as ev
from . import tasks as tk

__all__ = ["run_comparison", "ComparisonResult", "MethodResult", "DEFAULT_METHODS", "parse_methods"]

# ONNX Runtime's entropy flavor searches a signed histogram; trtcal's pipeline collects |x|
# histograms, so 'entropy' expands to the |x| flavors (ask for 'entropy:onnxruntime' by name).
_ENTROPY_FLAVORS = ("pytorch_quantization", "tensorrt")
_PERCENTILES = (99.9, 99.99, 99.999)
DEFAULT_METHODS = ("minmax", "entropy", "percentile", "mse")
#: quant_dtype 'fp8': the searches on the E4M3 grid (MSE, KL) and max (min-max).
FP8_DEFAULT_METHODS = ("fp8-mse", "fp8-kl", "minmax")


@dataclass(frozen=True)
class Variant:
    """One way to compute ranges: a method, a flavor and its parameters."""

    method: str
    flavor: Optional[str] = None
    params: Tuple[Tuple[str, Any], ...] = ()

    @property
    def label(self) -> str:
        if self.method == "percentile":
            return f"percentile:{_pct(dict(self.params)['percentile'])}"
        return f"{self.method}:{self.flavor}" if self.flavor else self.method


def _pct(p: float) -> str:
    return f"{p:g}"


def _entropy_flavors() -> Tuple[str, ...]:
    try:
        return tuple(f for f in FLAVORS["entropy"] if f != "onnxruntime")
    except (ImportError, KeyError):
        return _ENTROPY_FLAVORS


def parse_methods(methods: Union[str, Sequence[str]]) -> List[Variant]:
    """Method specs -> variants. ``'minmax'``, ``'mse'``; ``'entropy'`` (every flavor) or
    ``'entropy:<flavor>'``; ``'percentile'`` (99.9, 99.99, 99.999) or ``'percentile:<p>'``;
    ``'all'``. A string may hold several, comma-separated."""
    specs = [methods] if isinstance(methods, str) else list(methods)
    items = [s.strip() for spec in specs for s in str(spec).split(",") if s.strip()]
    out: List[Variant] = []
    for item in items:
        name, _, arg = item.partition(":")
        name = name.lower()
        if name == "all":
            vs = parse_methods(DEFAULT_METHODS)
        elif name == "minmax" and not arg:
            vs = [Variant("minmax")]
        elif name in ("fp8-mse", "fp8-kl") and not arg:
            vs = [Variant(name)]
        elif name == "mse":
            vs = [Variant("mse", arg or None)]
        elif name == "entropy":
            vs = [Variant("entropy", f) for f in ((arg,) if arg else _entropy_flavors())]
        elif name == "percentile":
            try:
                ps = (float(arg),) if arg else _PERCENTILES
            except ValueError:
                raise ValueError(f"trtcal: percentile must be a number, got {item!r}") from None
            for p in ps:
                if not 0 < p <= 100:
                    raise ValueError(f"trtcal: percentile must be in (0, 100], got {p}")
            vs = [Variant("percentile", None, (("percentile", p),)) for p in ps]
        else:
            raise ValueError(
                f"trtcal: unknown method {item!r}; accepted: minmax, entropy[:flavor], "
                "percentile[:p], mse[:flavor], fp8-mse, fp8-kl, all"
            )
        for v in vs:
            if v not in out:
                out.append(v)
    if not out:
        raise ValueError("trtcal: no methods to compare")
    return out


@dataclass
class MethodResult:
    """One method's ranges and how its Q/DQ model did against FP32."""

    label: str
    method: str
    flavor: Optional[str] = None
    params: Dict[str, Any] = field(default_factory=dict)
    amax: Dict[str, float] = field(default_factory=dict)
    search_seconds: Optional[float] = None
    outputs: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # model output -> metrics
    layers: Dict[str, float] = field(default_factory=dict)  # quantized activation -> SQNR dB
    quantized: int = 0
    error: Optional[str] = None
    rank: Optional[int] = None
    task: Dict[str, Any] = field(default_factory=dict)  # TaskStats.summary(): the task metric
    heads: List[Dict[str, Any]] = field(default_factory=list)  # TaskStats.head_rows(): per head
    stats: Any = None  # the TaskStats (None when not run)

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.outputs)

    @property
    def summary(self) -> Dict[str, Any]:
        if not self.outputs:
            return {}
        sqnr = min(o["sqnr_db"] for o in self.outputs.values())
        top = [
            o["top1_agreement"]
            for o in self.outputs.values()
            if o.get("top1_agreement") is not None
        ]
        out = {
            "cosine": min(o["cosine"] for o in self.outputs.values()),
            "sqnr_db": sqnr,
            "max_abs_error": max(o["max_abs_error"] for o in self.outputs.values()),
            "top1_agreement": min(top) if top else None,
        }
        if self.stats is not None:
            out.update(
                task=self.stats.spec.task,
                task_metric=self.stats.metric,
                task_metric_name=self.stats.spec.metric,
                task_text=self.stats.describe_metric(),
                worst_head_sqnr_db=self.stats.worst_sqnr,
                worst_head_cosine=self.stats.worst_cosine,
                heads=tk.heads_text(self.stats),
            )
            tops = [h["top1_agreement"] for h in self.heads if h.get("top1_agreement") is not None]
            if tops:
                out["top1_agreement"] = min(tops)
        return out

    def row(self) -> Dict[str, Any]:
        s = self.summary
        return {
            "rank": self.rank,
            "method": self.label,
            "task_metric": s.get("task_metric"),
            "task_metric_name": s.get("task_metric_name"),
            "worst_head_sqnr_db": s.get("worst_head_sqnr_db"),
            "heads": s.get("heads"),
            "cosine": s.get("cosine"),
            "sqnr_db": s.get("sqnr_db"),
            "max_abs_error": s.get("max_abs_error"),
            "top1_agreement": s.get("top1_agreement"),
            "search_seconds": self.search_seconds,
            "quantized_tensors": self.quantized,
            "worst_layer": _worst_layer(self.layers),
            "error": self.error,
        }


def _worst_layer(layers: Mapping[str, float]) -> Optional[str]:
    return min(layers, key=lambda t: layers[t]) if layers else None


@dataclass
class ComparisonResult:
    """Every method's result, best first (``methods``), and the one to use."""

    methods: List[MethodResult]
    samples: int
    eval_samples: int
    eval_on_calibration_data: bool
    files: Dict[str, str] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)
    tables: Dict[str, Any] = field(
        default_factory=dict
    )  # label -> CalibrationTable (when available)
    task: Optional[str] = None  # TaskSpec.describe(): the task and heads measured
    quant_dtype: str = "int8"  # the Q/DQ models' type: 'int8' or 'fp8' (E4M3)

    @property
    def ranked(self) -> List[MethodResult]:
        return [m for m in self.methods if m.ok]

    @property
    def recommended(self) -> Optional[str]:
        r = self.ranked
        return r[0].label if r else None

    @property
    def table(self) -> Any:
        """The recommended method's CalibrationTable (None when none ran)."""
        return self.tables.get(self.recommended) if self.recommended else None

    def __getitem__(self, label: str) -> MethodResult:
        for m in self.methods:
            if m.label == label:
                return m
        raise KeyError(
            f"trtcal: no method {label!r} in this comparison "
            f"({', '.join(m.label for m in self.methods)})"
        )

    def rows(self) -> List[Dict[str, Any]]:
        return [m.row() for m in self.methods]

    def format_table(self) -> str:
        """The ranked table as text for a terminal: the task metric of the worst head, each
        head's SQNR (and top-1, mask IoU, detections kept), then the whole outputs."""
        metric = next(
            (m.summary.get("task_metric_name") for m in self.ranked if m.stats is not None), None
        )
        head = [
            "#",
            "method",
            metric or "task",
            "worst head dB",
            "per head",
            "cosine",
            "search s",
            "worst layer (SQNR dB)",
        ]
        lines = []
        for m in self.methods:
            if not m.ok:
                err = m.error or "no result"
                lines.append(
                    [
                        "-",
                        m.label,
                        "",
                        "",
                        "",
                        "",
                        "",
                        "not run: " + (err if len(err) <= 70 else err[:67] + "..."),
                    ]
                )
                continue
            s = m.summary
            worst = _worst_layer(m.layers)
            lines.append(
                [
                    str(m.rank),
                    m.label,
                    s.get("task_text", ""),
                    _db(s.get("worst_head_sqnr_db", s["sqnr_db"])),
                    s.get("heads", ""),
                    f"{s['cosine']:.6f}",
                    "" if m.search_seconds is None else f"{m.search_seconds:.3f}",
                    "" if worst is None else f"{worst} ({_db(m.layers[worst])})",
                ]
            )
        widths = [
            max(len(h), *(len(r[i]) for r in lines)) if lines else len(h)
            for i, h in enumerate(head)
        ]
        left = (1, 2, 4, 7)

        def fmt(r: Sequence[str]) -> str:
            return "  ".join(
                c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))
            )

        out = [fmt(head), fmt(["-" * w for w in widths])] + [fmt(r) for r in lines]
        for m in self.methods:
            if m.error and len(m.error) > 70:
                out.append(f"{m.label}: {m.error}")
        if self.task:
            out.append(
                f"task: {self.task}; ranked by {metric or 'the task metric'} of the worst head, "
                "then the "
                "worst head's SQNR"
            )
        if self.recommended:
            out.append(
                f"recommended: {self.recommended}"
                + (
                    f"  (table: {self.files['recommended_table']})"
                    if "recommended_table" in self.files
                    else ""
                )
            )
        return "\n".join(out)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "recommended": self.recommended,
            "quant_dtype": self.quant_dtype,
            "samples": self.samples,
            "eval_samples": self.eval_samples,
            "eval_on_calibration_data": self.eval_on_calibration_data,
            "notes": self.notes,
            "task": self.task,
            "methods": [
                dict(
                    m.row(),
                    flavor=m.flavor,
                    params=m.params,
                    outputs=m.outputs,
                    layers=m.layers,
                    task=m.task,
                    per_head=m.heads,
                )
                for m in self.methods
            ],
            "files": self.files,
        }


def _db(v: float) -> str:
    return "inf" if math.isinf(v) and v > 0 else f"{v:.2f}"


def run_comparison(
    model: Any,
    cfg: CalibrationConfig,
    *,
    methods: Union[None, str, Sequence[str]] = None,
    tables: Optional[Mapping[str, Mapping[str, float]]] = None,
    calibration: Any = None,
    per_layer: bool = True,
    out_dir: Optional[str] = None,
    plots: bool = True,
    models: Optional[Mapping[str, Any]] = None,
) -> ComparisonResult:
    """The comparison :func:`trtcal.compare` documents, over the shared settings ``cfg``.

    ``methods`` None: ``cfg.method`` unless 'auto', else every method of ``cfg.quant_dtype``
    (:data:`DEFAULT_METHODS`, or :data:`FP8_DEFAULT_METHODS` for FP8, whose models are FP8
    Q/DQ, :func:`trtcal.onnx.fp8.convert_to_fp8`). ``models``: {label: Q/DQ model} measured
    too (a mixed-precision model, say)."""
    say = cfg.say()
    proto = load_onnx(model)
    variants = parse_methods(default_methods(cfg) if methods is None else methods)
    check_quant_methods(variants, cfg.quant_dtype)
    tk.check_task_arguments(cfg.task, cfg.output_slices)
    notes: List[str] = []
    # what would otherwise fail after the statistics pass is checked before it
    backend, eval_source = ev.check_before_pass("compare", calibration, cfg)
    if calibration is None:  # a checkpoint is resumed when present
        calibration = calibration_pass.statistics(
            model, cfg.replace(resume=cfg.resume or bool(cfg.checkpoint), log=say)
        )
    hists = calibration.histograms
    results = _search(hists, variants)
    for label, table in (tables or {}).items():
        results.append(
            MethodResult(str(label), "table", amax={k: float(a) for k, a in table.items()})
        )
    if any(r.error and "compute_amax" in r.error for r in results):
        notes.append(
            "only min-max and given tables were compared: trtcal.compute_amax is not in this build"
        )
    qmodels, dq = _qdq_models(
        proto, results, per_layer, fp8_int8_table(hists, cfg.quant_dtype), notes
    )
    for label, qm in (models or {}).items():
        results.append(MethodResult(str(label), "model"))
        qmodels[str(label)], dq[str(label)] = qm, {}

    # evaluation: one FP32 run per batch, every method's Q/DQ model on the same batch
    layer_names = sorted({t for d in dq.values() for t in d})
    reference = ev.Reference(proto, layer_names)
    bs = ev.fixed_batch(reference.specs) or cfg.batch_size or 16
    on_cal = cfg.eval_data is None
    if on_cal:
        notes.append(
            "evaluated on the calibration data (pass eval_data / --eval-data for held-out samples)"
        )
    evalset = ev.EvalSet(
        cfg.data if on_cal else eval_source,
        reference.specs,
        bs,
        max_samples=cfg.eval_samples,
        preprocess=cfg.preprocess,
        input_name=cfg.input_name,
    )
    notes.append(ev.backend_note(backend))
    spec = ev.task_spec(reference, evalset, cfg.task, cfg.output_slices, cfg.score_threshold)
    stats = {label: _Streams(qm, dq[label], spec, backend) for label, qm in qmodels.items()}
    bar = _bar(cfg.progress, evalset, "evaluating")
    for i, inputs in evalset:
        ref = reference.run(i, inputs, with_tensors=bool(layer_names))
        for s in stats.values():
            s.update(reference.outputs, ref, inputs)
        bar.update(next(iter(inputs.values())).shape[0])
    bar.close()
    for r in results:
        if r.label in stats:
            r.stats = stats[r.label].task
            r.outputs = {o: s.to_dict() for o, s in r.stats.outputs.items()}
            r.task, r.heads = r.stats.summary(), r.stats.head_rows()
            r.layers = {t: s.sqnr_db for t, s in stats[r.label].layers.items()}
    ok = sorted((r for r in results if r.ok), key=_rank_key)
    for k, r in enumerate(ok, 1):
        r.rank = k
    res = ComparisonResult(
        ok + [r for r in results if not r.ok],
        calibration.samples,
        evalset.samples,
        on_cal,
        notes=notes,
        task=spec.describe(),
        quant_dtype=cfg.quant_dtype,
    )
    for r in ok:
        if r.method == "model":
            continue  # a given model has no one table
        try:
            res.tables[r.label] = outputs.make_table(
                r.amax, dict(calibration.provenance, method=r.method, flavor=r.flavor, **r.params)
            )
        except outputs.OutputUnavailable:
            break
    if out_dir:
        _write(res, qmodels, out_dir, plots, say)
    return res


def default_methods(cfg: CalibrationConfig) -> Union[str, Sequence[str]]:
    """The methods compared when none are named: ``cfg.method`` unless 'auto', else every
    method of ``cfg.quant_dtype``."""
    if cfg.method != "auto" and list(cfg.method) != ["auto"]:
        return cfg.method
    return FP8_DEFAULT_METHODS if cfg.quant_dtype == "fp8" else DEFAULT_METHODS


def check_quant_methods(variants: Sequence[Variant], quant_dtype: str) -> None:
    """FP8 takes the E4M3-grid searches, min-max and percentile; INT8 takes no E4M3-grid search."""
    for v in variants:
        fp8_grid = v.method.startswith("fp8-")
        if quant_dtype == "fp8" and v.method not in FP8_QDQ_METHODS + ("table",):
            raise ValueError(
                f"trtcal: quant_dtype 'fp8' (--quant-dtype fp8) takes methods fp8-mse, fp8-kl, "
                f"minmax or percentile, not {v.label}"
            )
        if quant_dtype == "int8" and fp8_grid:
            raise ValueError(
                f"trtcal: {v.label} searches ranges on the FP8 grid: give quant_dtype 'fp8' "
                "(--quant-dtype fp8)"
            )


def fp8_int8_table(hists: Mapping[str, Any], quant_dtype: str) -> Optional[Dict[str, float]]:
    """quant_dtype 'fp8': the entropy ranges of the layers an FP8 model leaves INT8 (as
    calibrate's FP8 conversion uses); None for INT8."""
    if quant_dtype != "fp8":
        return None
    return outputs.thresholds(hists, ["entropy"])["entropy"]


def qdq_model(
    proto: Any,
    amax: Mapping[str, float],
    int8_table: Optional[Mapping[str, float]] = None,
    **quantize_options: Any,
) -> Tuple[Any, Any]:
    """(Q/DQ model, quantize report) for ``amax``: INT8 Q/DQ, or with ``int8_table`` (FP8) the
    FP8 Q/DQ model where TensorRT runs a layer in FP8, those layers left INT8 taking
    ``int8_table``'s ranges."""
    from ..formats.onnx import quantize
    from ..formats.onnx.fp8 import convert_to_fp8

    qm, rep = quantize(proto, dict(amax), missing="skip", return_report=True, **quantize_options)
    if int8_table is not None and rep.activations:
        qm = convert_to_fp8(qm, amax, int8_table=int8_table)
    return qm, rep


def _search(hists: Mapping[str, Any], variants: Sequence[Variant]) -> List[MethodResult]:
    """Each variant's ranges from the one statistics pass, timed."""
    results: List[MethodResult] = []
    for v in variants:
        r = MethodResult(v.label, v.method, v.flavor, dict(v.params))
        t0 = time.perf_counter()
        try:
            r.amax = outputs.thresholds(hists, [v.method], v.flavor, {v.method: dict(v.params)})[
                v.method
            ]
        except outputs.OutputUnavailable:
            r.error = "needs trtcal.compute_amax (range search), which this build lacks"
        except (ValueError, RuntimeError, TypeError) as exc:
            r.error = str(exc)
        else:
            r.search_seconds = time.perf_counter() - t0
        results.append(r)
    return results


def _qdq_models(
    proto: Any,
    results: Sequence[MethodResult],
    per_layer: bool,
    int8_table: Optional[Mapping[str, float]],
    notes: List[str],
) -> Tuple[Dict[str, Any], Dict[str, Dict[str, str]]]:
    """Every method's Q/DQ model (FP8 with ``int8_table``) and its dequantized activations."""
    qmodels: Dict[str, Any] = {}
    dq: Dict[str, Dict[str, str]] = {}
    for r in results:
        if r.error:
            continue
        usable = {n: a for n, a in r.amax.items() if a > 0 and math.isfinite(a)}
        try:
            qm, rep = qdq_model(proto, usable, int8_table)
        except (ValueError, KeyError) as exc:
            r.error = f"quantize failed: {exc}"
            continue
        r.quantized = len(rep.activations)
        qmodels[r.label] = qm
        dq[r.label] = ev.dequantized_names(qm, list(rep.activations)) if per_layer else {}
    if not qmodels:
        raise ValueError(
            "trtcal: no method produced a Q/DQ model: "
            + "; ".join(f"{r.label}: {r.error}" for r in results)
        )
    if int8_table is not None:
        notes.append(
            "FP8 (E4M3) Q/DQ models: FP8 where TensorRT runs the layer in FP8, the other "
            "layers INT8 with entropy ranges"
        )
    return qmodels, dq


def _rank_key(r: MethodResult) -> Tuple[float, ...]:
    """Best first: the task metric of the worst head, the worst head's SQNR, its cosine."""
    if r.stats is not None:
        return tuple(-v for v in r.stats.key)
    s = r.summary
    return (-s["sqnr_db"], -s["cosine"])


class _Streams:
    """One method's Q/DQ session and its running task and layer statistics."""

    def __init__(
        self, qmodel: Any, layers: Mapping[str, str], spec: Any, backend: str = "onnxruntime"
    ) -> None:
        self.layer_map = dict(layers)
        self.names: List[str] = []
        self.sess = ev.session(ev.expose(qmodel, list(self.layer_map.values())), backend=backend)
        self.task = tk.TaskStats(spec)
        self.layers = {t: ev.ErrorStats(t) for t in self.layer_map}

    def update(
        self, outputs_: List[str], ref: Mapping[str, Any], inputs: Mapping[str, Any]
    ) -> None:
        if not self.names:
            self.names = list(outputs_) + [q for q in self.layer_map.values() if q not in outputs_]
        got = dict(zip(self.names, self.sess.run(self.names, dict(inputs))))
        self.task.update({o: ref[o] for o in outputs_}, {o: got[o] for o in outputs_})
        for t, q in self.layer_map.items():
            self.layers[t].update(ref[t], got[q])


def _bar(enabled: bool, evalset: Any, desc: str) -> Progress:
    try:
        total: Optional[int] = len(evalset.source)
        if evalset.max_samples is not None:
            total = min(total, evalset.max_samples)
    except TypeError:
        total = None
    return Progress(enabled, total, desc)


def _write(
    res: ComparisonResult,
    qmodels: Mapping[str, Any],
    out_dir: str,
    plots: bool,
    say: Callable[[str], None],
) -> None:
    os.makedirs(out_dir, exist_ok=True)
    p = os.path.join(out_dir, "comparison.csv")
    rows = res.rows()
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    _files.atomic_write(p, buf.getvalue())
    res.files["csv"] = p
    tensors = sorted({t for m in res.methods for t in m.layers})
    if tensors:
        p = os.path.join(out_dir, "layers.csv")
        buf = io.StringIO(newline="")
        lw = csv.writer(buf)
        labels = [m.label for m in res.ranked]
        lw.writerow(["tensor"] + [f"sqnr_db[{lb}]" for lb in labels])
        for t in tensors:
            lw.writerow([t] + [res[lb].layers.get(t, "") for lb in labels])
        _files.atomic_write(p, buf.getvalue())
        res.files["layers_csv"] = p
    for label, table in res.tables.items():
        p = os.path.join(out_dir, f"table.{ev.safe_label(label)}.json")
        table.to_json(p)
        res.files[f"table.{label}"] = p
    best = res.recommended
    if best is not None:
        if f"table.{best}" in res.files:
            res.files["recommended_table"] = res.files[f"table.{best}"]
        p = os.path.join(out_dir, f"model.qdq.{ev.safe_label(best)}.onnx")
        _files.save_onnx(qmodels[best], p)
        res.files["recommended_qdq"] = p
    if plots:
        try:
            res.files.update(plot(res, out_dir))
        except ImportError as exc:
            res.notes.append(str(exc))
            say(str(exc))
    p = os.path.join(out_dir, "comparison.json")
    res.files["json"] = p
    ev.write_json(p, res.to_dict())


def plot(res: ComparisonResult, out_dir: str) -> Dict[str, str]:
    """compare_outputs.png (per-method output SQNR and cosine) and compare_layers.png
    (per-layer SQNR of each method). Needs matplotlib."""
    plt = ev.pyplot()
    files: Dict[str, str] = {}
    ranked = res.ranked
    if not ranked:
        return files
    labels = [m.label for m in ranked]
    sq = [min(m.summary["sqnr_db"], 200.0) for m in ranked]
    cos = [m.summary["cosine"] for m in ranked]
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.45 * len(labels) + 2))
    axes[0].barh(labels[::-1], sq[::-1], color="tab:blue")
    axes[0].set_xlabel("output SQNR (dB, worst output)")
    axes[1].barh(labels[::-1], cos[::-1], color="tab:green")
    axes[1].set_xlabel("output cosine similarity")
    lo = min(cos)
    axes[1].set_xlim(max(-1.0, lo - (1 - lo) * 0.1 - 1e-6), 1.0)
    fig.suptitle(f"{res.quant_dtype.upper()} (Q/DQ) vs FP32 by calibration method")
    fig.tight_layout()
    p = os.path.join(out_dir, "compare_outputs.png")
    _files.atomic_savefig(fig, p, dpi=110)
    plt.close(fig)
    files["plot_outputs"] = p
    tensors = [t for t in dict.fromkeys(t for m in ranked for t in m.layers)]
    if tensors:
        fig, ax = plt.subplots(figsize=(max(7, 0.25 * len(tensors) + 3), 4.5))
        for m in ranked:
            ax.plot(
                range(len(tensors)),
                [min(m.layers.get(t, math.nan), 200.0) for t in tensors],
                marker=".",
                label=m.label,
            )
        ax.set_xlabel("quantized activation (graph order)")
        ax.set_ylabel("SQNR vs FP32 (dB)")
        if len(tensors) <= 40:
            ax.set_xticks(range(len(tensors)))
            ax.set_xticklabels(tensors, rotation=90, fontsize=7)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        p = os.path.join(out_dir, "compare_layers.png")
        _files.atomic_savefig(fig, p, dpi=110)
        plt.close(fig)
        files["plot_layers"] = p
    return files
