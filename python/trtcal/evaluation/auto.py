"""``method="auto"``: choose the ranges by measured accuracy on held-out data, from the one pass.

Every method's ranges come from the same histograms (:func:`trtcal.pipeline.outputs.thresholds`),
so choosing costs no second statistics pass, only evaluation runs of Q/DQ models in ONNX
Runtime (graph optimisations off: INT8 rounding simulated in float, as TensorRT applies it).

The search, in a bounded number of runs, each one Q/DQ model over the ``E`` held-out samples
(default 16) next to one FP32 run per batch that is cached:

1. **Per model**: the ``N`` candidate methods (:data:`CANDIDATES`: min-max, entropy in its two
   |x| flavors, percentile 99.9 / 99.99 / 99.999, MSE; ``N = 7``) are measured and ranked by
   the task metric of the worst head (:mod:`trtcal.tasks`: detections kept, top-1 agreement,
   mask IoU, else SQNR), then the worst head's SQNR; task metrics within one unit (one sample,
   one detection) tie, decided by that SQNR (:func:`trtcal.tasks.best_of`); the best is the base.
2. **Per tensor**, at most ``K`` refinements (default :data:`DEFAULT_REFINEMENTS` = 8): first the
   tensors that feed the layers producing the outputs ("head" tensors) all at once, then one
   tensor at a time, head tensors first, then the tensors the base clips most (largest share of
   values above its threshold). A refinement gives the tensor the min-max range (or, when the
   base is min-max, the second-best method's range) and is kept only when it measurably helps:
   the task metric rises, or it ties and the worst head's SQNR gains more than
   :data:`MARGIN_DB`.

So auto costs ``N + K`` evaluation runs over ``E`` samples at most (``1 + 7 + 8 = 16`` passes
of ``E`` samples, counting the FP32 reference); at E = 16 that is seconds for small CNNs and
about a minute for a YOLOv8n at 320x320 on two CPU cores. Held-out data: ``eval_data``, else the
last ``E`` samples of the calibration data, which the statistics pass then leaves out
(:func:`plan_split`; needs data of known length with at least 2E samples, else the choice is
judged on calibration samples and a note says so). What was measured and why the choice was
made goes into the table's provenance (``extra.auto``) and the printed output.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from ..formats._qdq import WEIGHTED_OPS
from ..pipeline import outputs
from ..pipeline.data import Source, open_source
from ..pipeline.runners import load_onnx
from . import measure as ev
from . import tasks as tk
from .comparison import parse_methods

CANDIDATES = (
    "minmax",
    "entropy",
    "percentile:99.9",
    "percentile:99.99",
    "percentile:99.999",
    "mse",
)
N_CANDIDATES = 7  # 'entropy' is both |x| flavors
DEFAULT_REFINEMENTS = 8
DEFAULT_EVAL_SAMPLES = 16
MARGIN_DB = 0.1  # a refinement that ties on the task metric must gain this much worst-head SQNR


@dataclass
class AutoDecision:
    """What auto measured and chose."""

    method: str  # the best single method (the base)
    amax: Dict[str, float]  # the chosen ranges (base + refinements)
    overrides: Dict[str, str] = field(default_factory=dict)  # tensor -> method of its range
    scores: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # candidate -> task summary
    trials: List[Dict[str, Any]] = field(default_factory=list)  # refinements tried
    final: Dict[str, Any] = field(default_factory=dict)  # task summary of the chosen ranges
    task: str = ""
    eval: str = ""
    runs: int = 0
    seconds: float = 0.0
    effects: Dict[str, Dict[str, Any]] = field(
        default_factory=dict
    )  # tensor -> effect of its refinement

    def to_dict(self) -> Dict[str, Any]:
        return {
            "chosen": self.method,
            "overrides": self.overrides,
            "candidates": self.scores,
            "trials": self.trials,
            "final": self.final,
            "task": self.task,
            "eval": self.eval,
            "runs": self.runs,
            "seconds": round(self.seconds, 3),
            "budget": f"{N_CANDIDATES} methods + "
            f"{DEFAULT_REFINEMENTS} per-tensor refinements by default",
        }

    def lines(self) -> List[str]:
        """Why this choice, for the terminal."""
        out = [f"trtcal: auto: task {self.task}; judged on {self.eval}"]
        for label, s in sorted(self.scores.items(), key=lambda kv: _order(kv[1])):
            out.append(f"trtcal: auto:   {label:18s} {s['text']:28s} {s['heads']}")
        out.append(f"trtcal: auto: best single method: {self.method}")
        for t in self.trials:
            verdict = "kept" if t["kept"] else "not kept"
            out.append(
                f"trtcal: auto:   refinement {t['what']} -> {t['to']}: {t['text']} ({verdict})"
            )
        n = len(self.overrides)
        out.append(
            f"trtcal: auto: chose {self.method}"
            + (f" with {n} tensor(s) re-ranged" if n else "")
            + f": {self.final.get('text', '')}; {self.runs} evaluation runs in {self.seconds:.1f} s"
        )
        return out


def _order(s: Mapping[str, Any]) -> Tuple[float, ...]:
    return tuple(-v for v in s["key"])


class SliceSource(Source):
    """Positions ``[start, stop)`` of a bound source (the held-out tail of the calibration data)."""

    def __init__(self, inner: Source, start: int, stop: int) -> None:
        self.inner = inner
        self.start, self.stop = int(start), int(stop)
        self.kind = inner.kind
        self.batched = inner.batched
        self.specs = getattr(inner, "specs", [])

    def __getattr__(self, name: str) -> Any:
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def bind(self, specs: Any) -> None:
        self.inner.bind(specs)
        self.specs = list(specs)

    def __len__(self) -> int:
        return self.stop - self.start

    def items(self, start: int) -> Iterator[Tuple[str, Any]]:
        pos = self.start + start
        for item in self.inner.items(pos):
            if pos >= self.stop:
                return
            yield item
            pos += 1

    def describe(self) -> Dict[str, Any]:
        return dict(self.inner.describe(), positions=[self.start, self.stop])

    def fingerprint(self) -> Dict[str, Any]:
        return dict(self.inner.fingerprint(), positions=[self.start, self.stop])


@dataclass
class Split:
    """Where auto's held-out samples come from, and what the statistics pass may use."""

    eval_source: Any  # data for evaluation (a Source or what open_source reads)
    max_samples: Optional[int]  # the statistics pass's limit
    description: str
    held_out: bool


def plan_split(
    source: Source,
    data: Any,
    eval_data: Any,
    eval_samples: Optional[int],
    max_samples: Optional[int],
    preprocess: Any = None,
    input_name: Optional[str] = None,
) -> Split:
    """Before the statistics pass: auto's evaluation data and the pass's sample limit.

    ``eval_data`` given: it, and the pass is unchanged. Otherwise, for calibration data of known
    length ``n`` (after ``max_samples``), the last ``E = eval_samples or 16`` positions are held
    out when ``n >= 2E`` (the pass then uses the first ``n - E``; if ``max_samples`` leaves
    positions unused, the next ``E`` of those are held out and the pass is unchanged). Else the
    choice is judged on the calibration samples themselves, which the description says.
    """
    e = int(eval_samples or DEFAULT_EVAL_SAMPLES)
    if eval_data is not None:
        return Split(
            eval_data, max_samples, f"held-out data ({_what(eval_data)}), up to {e} samples", True
        )
    try:
        n = len(source)
    except TypeError:
        n = None
    if n is None or source.batched:
        return Split(
            data,
            max_samples,
            "the calibration data itself (its length is unknown, so none could be held "
            "out; pass eval_data / --eval-data)",
            False,
        )
    used = n if max_samples is None else min(n, int(max_samples))
    if n - used >= 1:
        stop = min(n, used + e)
        return Split(
            SliceSource(_fresh(data, source, preprocess, input_name), used, stop),
            max_samples,
            f"{stop - used} held-out calibration samples (positions {used}-{stop - 1}; "
            "the statistics used "
            f"positions 0-{used - 1})",
            True,
        )
    if used >= 2 * e:
        return Split(
            SliceSource(_fresh(data, source, preprocess, input_name), used - e, used),
            used - e,
            f"the last {e} of the {used} calibration samples, held out of the statistics pass "
            "(it used the "
            f"first {used - e}; pass eval_data / --eval-data to keep them all)",
            True,
        )
    return Split(
        data,
        max_samples,
        f"the calibration data itself ({used} samples: fewer than {2 * e}, too few to "
        "hold some out; pass eval_data / --eval-data)",
        False,
    )


def _fresh(data: Any, source: Source, preprocess: Any, input_name: Optional[str]) -> Source:
    """A second reader of the same data (the pass's own source keeps its state)."""
    try:
        s = open_source(data, preprocess, input_name)
    except (TypeError, ValueError, FileNotFoundError):
        return source
    specs = getattr(source, "specs", None)
    if s is source or not specs:
        return source
    s.bind(specs)
    return s


def _what(data: Any) -> str:
    return (
        str(data)
        if isinstance(data, (str, bytes)) or hasattr(data, "__fspath__")
        else type(data).__name__
    )


def candidate_ranges(
    hists: Mapping[str, Any], candidates: Sequence[str] = CANDIDATES
) -> Tuple[Dict[str, Dict[str, float]], List[str]]:
    """{label: {tensor: amax}} of each candidate method from the histograms; labels that this
    build cannot compute (no range search) are returned second."""

    out: Dict[str, Dict[str, float]] = {}
    missing: List[str] = []
    for v in parse_methods(list(candidates)):
        try:
            amax = outputs.thresholds(hists, [v.method], v.flavor, {v.method: dict(v.params)})[
                v.method
            ]
        except outputs.OutputUnavailable:
            missing.append(v.label)
            continue
        out[v.label] = {n: a for n, a in amax.items() if a > 0 and math.isfinite(a)}
    return out, missing


def head_tensors(model: Any, activations: Sequence[str]) -> List[str]:
    """The quantized activations read by the quantizable layers nearest each model output
    (walking back from the outputs through unquantized ops): the inputs of the output heads."""

    producer = {o: n for n in model.graph.node for o in n.output}
    acts = set(activations)
    out: List[str] = []
    seen = set()
    stack = [o.name for o in model.graph.output]
    while stack:
        t = stack.pop()
        if t in seen:
            continue
        seen.add(t)
        n = producer.get(t)
        if n is None:
            continue
        if n.op_type in WEIGHTED_OPS:
            out.extend(i for i in n.input if i in acts and i not in out)
            continue
        stack.extend(n.input)
    return out


def choose(
    model: Any,
    hists: Mapping[str, Any],
    eval_data: Any,
    *,
    eval_description: str = "",
    eval_samples: Optional[int] = None,
    batch_size: Optional[int] = None,
    preprocess: Any = None,
    input_name: Optional[str] = None,
    task: Any = "auto",
    output_slices: Any = None,
    candidates: Sequence[str] = CANDIDATES,
    refinements: int = DEFAULT_REFINEMENTS,
    score_threshold: Optional[float] = None,
    backend: str = "onnxruntime",
    log: Optional[Callable[[str], None]] = None,
) -> AutoDecision:
    """Measures the candidate methods and per-tensor refinements on ``eval_data``; see the module
    docstring. Returns the decision (its ``amax`` is the table to write)."""
    from ..formats.onnx import quantize

    say = log or (lambda s: None)
    t0 = time.perf_counter()
    proto = load_onnx(model)
    ranges, missing = candidate_ranges(hists, candidates)
    if not ranges:
        raise outputs.OutputUnavailable("trtcal: method 'auto' found no method it can compute")
    reference = ev.Reference(proto)
    e = int(eval_samples or DEFAULT_EVAL_SAMPLES)
    evalset = ev.EvalSet(
        eval_data,
        reference.specs,
        ev.fixed_batch(reference.specs) or batch_size or 16,
        max_samples=e,
        preprocess=preprocess,
        input_name=input_name,
    )
    spec = ev.task_spec(reference, evalset, task, output_slices, score_threshold)
    runs = [0]

    def run(amax: Mapping[str, float]) -> Any:
        qm = quantize(proto, dict(amax), missing="skip")
        stats, _ = ev.measure_task(qm, reference, evalset, spec, backend=backend)
        runs[0] += 1
        return stats

    scored: Dict[str, Any] = {}
    for label, amax in ranges.items():
        scored[label] = run(amax)
        say(
            f"trtcal: auto: {label}: {scored[label].describe_metric()} "
            f"({tk.heads_text(scored[label])})"
        )
    base = tk.best_of(scored)
    order = [base] + [k for k in tk.ranked(scored) if k != base]
    d = AutoDecision(
        base,
        dict(ranges[base]),
        task=spec.describe(),
        eval=f"{eval_description or 'evaluation data'} ({evalset.samples} samples)",
    )
    d.scores = {k: _summary(s) for k, s in scored.items()}
    if missing:
        d.trials.append(
            {
                "what": "skipped",
                "to": ", ".join(missing),
                "text": "not in this build",
                "kept": False,
            }
        )
    alt_label = "minmax" if base != "minmax" else (order[1] if len(order) > 1 else None)
    best = scored[base]
    if alt_label is not None and refinements > 0:
        alt = ranges[alt_label]
        _, rep = quantize(proto, d.amax, missing="skip", return_report=True)
        acts = [
            t for t in rep.activations if t in alt and t in d.amax and not _same(alt[t], d.amax[t])
        ]
        heads = [t for t in head_tensors(proto, list(rep.activations)) if t in acts]
        clipped = sorted(
            (t for t in acts if t not in heads),
            key=lambda t: -outputs.clipped_fraction(hists[t], d.amax[t]) if t in hists else 0.0,
        )
        plan: List[Tuple[str, List[str]]] = []
        if len(heads) > 1:
            plan.append(("head tensors " + ", ".join(heads), heads))
        plan += [(t, [t]) for t in heads + clipped]
        tried = 0
        for what, ts in plan:
            if tried >= refinements:
                break
            if all(_same(alt[t], d.amax[t]) for t in ts):
                continue  # already given these ranges (the head group was kept): no run spent
            trial = dict(d.amax)
            for t in ts:
                trial[t] = alt[t]
            s = run(trial)
            tried += 1
            kept = tk.better(s, best, MARGIN_DB)
            if len(ts) == 1:
                d.effects[ts[0]] = {
                    "metric": s.metric - best.metric,
                    "sqnr_db": s.worst_sqnr - best.worst_sqnr,
                    "text": f"{best.describe_metric()} -> {s.describe_metric()}, worst head "
                    f"{s.worst_sqnr - best.worst_sqnr:+.2f} dB",
                }
            d.trials.append(
                {
                    "what": what,
                    "to": alt_label,
                    "text": f"{s.describe_metric()}, worst head {s.worst_sqnr:.2f} dB",
                    "kept": kept,
                    "key": list(s.key),
                }
            )
            if kept:
                best, d.amax = s, trial
                for t in ts:
                    d.overrides[t] = alt_label
    d.final = _summary(best)
    d.runs = runs[0]
    d.seconds = time.perf_counter() - t0
    return d


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(abs(a), abs(b))


def _summary(s: Any) -> Dict[str, Any]:

    return {
        "metric": s.metric,
        "metric_name": s.spec.metric,
        "text": s.describe_metric(),
        "worst_head_sqnr_db": s.worst_sqnr,
        "heads": tk.heads_text(s),
        "key": [float(v) for v in s.key],
    }


def annotate(table: Any, decision: AutoDecision) -> None:
    """Records in a CalibrationTable which method gave each tensor's range (the overrides)."""
    for t, m in decision.overrides.items():
        if t in table:
            table.override(
                t, table[t], method=m, reason="trtcal auto: measured better on held-out data"
            )


def decide(
    model: Any,
    hists: Mapping[str, Any],
    split: Split,
    cfg: Any,
    batch_size: int,
    say: Callable[[str], None],
) -> "AutoDecision":
    """calibrate's method 'auto': measure, choose, and say why (``cfg`` a CalibrationConfig;
    ``cfg.params['auto']`` holds candidates, refinements, backend, score_threshold)."""
    kw = dict((cfg.params or {}).get("auto") or {})
    kw.setdefault("log", say)
    if cfg.score_threshold is not None:
        kw.setdefault("score_threshold", cfg.score_threshold)
    decision = choose(
        model,
        hists,
        split.eval_source,
        eval_description=split.description,
        eval_samples=cfg.eval_samples,
        batch_size=batch_size,
        preprocess=cfg.preprocess,
        input_name=cfg.input_name,
        task=cfg.task,
        output_slices=cfg.output_slices,
        **kw,
    )
    for line in decision.lines():
        say(line)
    return decision
