"""Per-layer choice among FP8, INT8 and FP16, judged by a task metric.

FP8 and INT8 have the same peak on Hopper (1979 dense TFLOPS against 989 for FP16), but
TensorRT has no FP8 depthwise or grouped convolution, FP8 convolutions are often no faster than
FP16, and FP8's 3 mantissa bits lose more than INT8 on narrow, well-behaved tensors (per-channel
weights), while INT8 loses more on wide ones. So the choice is per layer. docs/fp8.md has the
table of what TensorRT runs in FP8 and its sources.

:func:`choose_precisions` measures every layer alone (all others in float) in each precision
it can take, keeps for each the first precision in its speed order (:func:`speed_order`) whose
score stays within ``tolerance`` of the float model's, then builds the mixed model and, while
its score is more than ``total_tolerance`` below the float one, returns the worst layers to
FP16 one at a time. ``score`` is any callable model -> number (higher is better): a task metric
(top-1 agreement, detection recall, per-head SQNR), e.g. :func:`ort_scorer`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..formats.tensorrt.session import TensorRTSession

PRECISIONS = ("fp8", "int8", "fp16")


def speed_order(node: Any, weight_shape: Sequence[int] | None = None) -> tuple[str, ...]:
    """The precisions a layer may take, fastest first (docs/fp8.md): MatMul/Gemm FP8, INT8, FP16
    (FP8 GEMMs are TensorRT's fast path on Hopper); Conv INT8, FP8, FP16 (FP8 convolutions are
    often no faster than FP16: NVIDIA/TensorRT#4081, Model-Optimizer#512); grouped/depthwise
    Conv, convolutions with 16 channels or fewer (given ``weight_shape``, its constant weight's
    shape), GEMVs and other ops INT8, FP16 (no fast FP8 kernels: NVIDIA/TensorRT#4524)."""
    from ..formats.onnx.fp8 import _why_not

    fp8_ok = _why_not(node, {}, weight_shape) is None
    if not fp8_ok:
        return ("int8", "fp16")
    if node.op_type in ("MatMul", "Gemm"):
        return ("fp8", "int8", "fp16")
    return ("int8", "fp8", "fp16")


@dataclass
class PrecisionChoice:
    """What :func:`choose_precisions` chose.

    Attributes
    ----------
    choices : {layer: 'fp8' | 'int8' | 'fp16'}
    layer_scores : {layer: {precision: score with only that layer quantized}}
    float_score, score : the float model's and the mixed model's scores
    all_int8, all_fp8 : scores of INT8 everywhere, and FP8 wherever TensorRT allows it
    model : the mixed Q/DQ model (onnx.ModelProto)
    reverted : layers returned to FP16 to meet ``total_tolerance``, in order
    """

    choices: dict[str, str]
    layer_scores: dict[str, dict[str, float]]
    float_score: float
    score: float
    all_int8: float
    all_fp8: float
    model: Any = None
    reverted: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {p: sum(1 for c in self.choices.values() if c == p) for p in PRECISIONS}


def _layers(q: Any) -> list[Any]:
    """Nodes that read a DequantizeLinear output (the quantized layers), in graph order."""
    dq = {n.output[0] for n in q.graph.node if n.op_type == "DequantizeLinear"}
    seen, out = set(), []
    for n in q.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") or not n.name or n.name in seen:
            continue
        if any(i in dq for i in n.input):
            seen.add(n.name)
            out.append(n)
    return out


def _weight_shape(q: Any, node: Any) -> list[int] | None:
    """The shape of the constant weight a layer of the Q/DQ model reads (through its pair)."""
    from onnx import numpy_helper

    if len(node.input) < 2:
        return None
    inits = {t.name: t for t in q.graph.initializer}
    producer = {o: n for n in q.graph.node for o in n.output}
    t, seen = node.input[1], 0
    while t not in inits and t in producer and seen < 4:  # DQ <- Q <- (Cast) <- weight
        n = producer[t]
        if n.op_type == "Constant":
            return list(numpy_helper.to_array(n.attribute[0].t).shape)
        t, seen = n.input[0], seen + 1
    return list(inits[t].dims) if t in inits else None


def choose_precisions(
    model: Any,
    int8_table: Mapping[str, float],
    fp8_table: Mapping[str, float],
    score: Callable[[Any], float],
    *,
    tolerance: float = 0.01,
    total_tolerance: float | None = None,
    min_layer_score: float | None = None,
    min_score: float | None = None,
    layers: Sequence[str] | None = None,
    order: Callable[[Any], Sequence[str]] = speed_order,
    log: Callable[[str], None] | None = None,
    fp8_fallback: bool = True,
) -> PrecisionChoice:
    """Chooses FP8, INT8 or FP16 per layer of ``model`` by ``score`` (module docstring).

    Parameters
    ----------
    model : float ONNX model (path or ModelProto)
    int8_table, fp8_table : {activation: amax} for INT8 (e.g. entropy) and FP8 (e.g.
        ``trtcal.fp8.fp8_amax(histograms, 'mse')``), from the same statistics pass
    score : model -> float, higher is better (the task metric on held-out data)
    tolerance : largest score drop from the float model that one layer alone may cause in a
        precision for that precision to be kept
    total_tolerance : largest drop of the mixed model (default: ``tolerance``); layers go back
        to FP16, worst first, until it holds
    min_layer_score, min_score : absolute floors instead of the two tolerances, for metrics
        whose float value is no useful reference (SQNR against the float model is infinite there):
        a layer alone must score at least ``min_layer_score``, the mixed model ``min_score``
    layers : node names to choose for (default: every quantized layer); the others follow
        :func:`trtcal.onnx.fp8.convert_to_fp8`'s default (FP8 where supported)
    order : node -> precisions, fastest first (default :func:`speed_order`)
    log : progress messages
    fp8_fallback : return FP8-where-possible instead when the per-layer choice scores below it

    Returns
    -------
    PrecisionChoice
    """
    from ..formats.onnx import quantize
    from ..formats.onnx.fp8 import FP8_MIN_OPSET, _raise_opset, convert_to_fp8

    say = log or (lambda s: None)
    q = _raise_opset(quantize(model, dict(int8_table), missing="skip"), FP8_MIN_OPSET)
    nodes = {n.name: n for n in _layers(q)}
    names = list(nodes) if layers is None else [n for n in layers if n in nodes]
    unknown = [n for n in (layers or ()) if n not in nodes]
    if unknown:
        raise ValueError(f"trtcal: layers {unknown[:5]} are not quantized layers of the model")
    f8 = dict(fp8_table)

    def build(choice: Mapping[str, str]) -> Any:
        return convert_to_fp8(q, f8, int8_table=int8_table, precisions=choice)

    def good(v: float) -> bool:
        return v >= min_layer_score if min_layer_score is not None else base - v <= tolerance

    everything_float = {n: "fp16" for n in nodes}
    base = float(score(build(everything_float)))
    all_int8 = float(score(build({n: "int8" for n in nodes})))
    all_fp8 = float(score(build({})))
    say(f"float {base:.4g}, all INT8 {all_int8:.4g}, FP8 where possible {all_fp8:.4g}")
    layer_scores: dict[str, dict[str, float]] = {}
    choices: dict[str, str] = {}
    for name in names:
        node = nodes[name]
        ranked = order(node, _weight_shape(q, node)) if order is speed_order else order(node)
        opts = [p for p in ranked if p in PRECISIONS]
        layer_scores[name] = {}
        for p in opts:
            if p == "fp16":
                continue
            layer_scores[name][p] = float(score(build({**everything_float, name: p})))
        ok = [p for p in opts if p == "fp16" or good(layer_scores[name].get(p, -math.inf))]
        choices[name] = ok[0] if ok else "fp16"
    total = tolerance if total_tolerance is None else float(total_tolerance)
    mixed = build(choices)
    final = float(score(mixed))
    reverted: list[str] = []

    def drop(n: str) -> float:
        return base - layer_scores[n].get(choices[n], base)

    def short(v: float) -> bool:
        return v < min_score if min_score is not None else base - v > total

    while short(final):
        cands = sorted((n for n in names if choices[n] != "fp16"), key=drop, reverse=True)
        if not cands:
            break
        choices[cands[0]] = "fp16"
        reverted.append(cands[0])
        mixed = build(choices)
        final = float(score(mixed))
        say(f"{cands[0]} -> FP16: {final:.4g}")
    # the per-layer picks and repairs interact: never return worse than the default
    if fp8_fallback and final < all_fp8:
        say(
            f"the per-layer choice scores {final:.4g} < {all_fp8:.4g} (FP8 where possible): "
            "keeping that"
        )
        mixed, rep = convert_to_fp8(q, f8, int8_table=int8_table, return_report=True)
        choices = {
            n: "fp8" if n in rep.fp8_nodes else "int8" if n in rep.int8_nodes else "fp16"
            for n in names
        }  # what the default made of each layer
        final = all_fp8
    return PrecisionChoice(choices, layer_scores, base, final, all_int8, all_fp8, mixed, reverted)


def ort_scorer(
    inputs: Mapping[str, np.ndarray],
    reference: np.ndarray,
    metric: str = "sqnr",
    output: int = 0,
    select: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Callable[[Any], float]:
    """A score for :func:`choose_precisions`: runs a model in ONNX Runtime (CPU, basic graph
    optimizations: docs/fp8.md) on ``inputs`` and compares output ``output`` (after ``select``,
    e.g. one head) with ``reference`` (the float model's, after the same ``select``):
    'sqnr' (dB) or 'top1' (fraction of rows whose argmax over the last axis agrees)."""
    import onnxruntime as ort

    if metric not in ("sqnr", "top1"):
        raise ValueError(f"trtcal: metric must be 'sqnr' or 'top1', got {metric!r}")
    pick = select or (lambda y: y)
    ref = np.asarray(pick(reference), dtype=np.float64)

    def score(model: Any) -> float:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        data = model if isinstance(model, str) else model.SerializeToString()
        y = np.asarray(
            pick(
                ort.InferenceSession(data, so, providers=["CPUExecutionProvider"]).run(
                    None, dict(inputs)
                )[output]
            ),
            dtype=np.float64,
        )
        if metric == "top1":
            return float(np.mean(y.argmax(-1) == ref.argmax(-1)))
        noise = float(((y - ref) ** 2).sum())
        return float(10 * np.log10(float((ref**2).sum()) / noise)) if noise > 0 else math.inf

    return score


def tensorrt_speed_order(
    model: Any,
    int8_table: Mapping[str, float],
    fp8_table: Mapping[str, float],
    feeds: Mapping[str, np.ndarray],
    layers: Sequence[str],
    *,
    repeats: int = 20,
    log: Callable[[str], None] | None = None,
) -> dict[str, tuple[str, ...]]:
    """{layer: precisions, fastest first}, measured in TensorRT: for each layer and each
    precision of its :func:`speed_order` (TensorRT has no FP8 kernel for the others), the model
    with that layer alone in that precision (every other layer FP16) is built (strongly typed)
    and run ``repeats`` times on ``feeds``; the median time orders the precisions. Costs one
    engine build per layer and precision; needs the ``tensorrt`` module and a GPU."""
    import time

    from ..formats.onnx import quantize
    from ..formats.onnx.fp8 import FP8_MIN_OPSET, _raise_opset, convert_to_fp8

    say = log or (lambda s: None)
    q = _raise_opset(quantize(model, dict(int8_table), missing="skip"), FP8_MIN_OPSET)
    nodes = {n.name: n for n in _layers(q)}
    rest = {n: "fp16" for n in nodes}
    names = [o.name for o in q.graph.output]
    out: dict[str, tuple[str, ...]] = {}
    for name in layers:
        if name not in nodes:
            continue
        times: dict[str, float] = {}
        for p in speed_order(nodes[name]):
            sess = TensorRTSession(
                convert_to_fp8(
                    q, dict(fp8_table), int8_table=int8_table, precisions={**rest, name: p}
                )
            )
            sess.run(names, feeds)  # builds the engine and warms up
            runs = []
            for _ in range(max(1, int(repeats))):
                t0 = time.perf_counter()
                sess.run(names, feeds)
                runs.append(time.perf_counter() - t0)
            times[p] = float(np.median(runs))
        out[name] = tuple(sorted(times, key=times.__getitem__))
        say(f"{name}: " + ", ".join(f"{p} {t * 1e3:.3f} ms" for p, t in times.items()))
    return out


def speed_source(
    model: Any,
    int8_table: Mapping[str, float],
    fp8_table: Mapping[str, float],
    evalset: Any,
    layers: Sequence[str],
    log: Callable[[str], None] | None = None,
) -> tuple[Callable[[Any], Sequence[str]], str]:
    """(node -> precisions fastest first, where that order comes from): measured in TensorRT
    (:func:`tensorrt_speed_order`, on the first evaluation batch) when the ``tensorrt`` module
    is present, else the documented table (:func:`speed_order`, docs/fp8.md)."""
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        return speed_order, "table (docs/fp8.md; the tensorrt module is not installed)"
    feeds = next(iter(evalset))[1]
    measured = tensorrt_speed_order(model, int8_table, fp8_table, feeds, layers, log=log)
    return (lambda node: measured.get(node.name) or speed_order(node)), "measured in TensorRT"


def why(
    node: Any,
    choice: str,
    ch: PrecisionChoice,
    order: Callable[[Any], Sequence[str]],
    tolerance: float,
    floor: float | None = None,
) -> str:
    """One line: why ``node`` got ``choice`` (faster precisions it lost, or the repair)."""
    parts = []
    if "fp8" not in order(node) and "fp8" in PRECISIONS:
        from ..formats.onnx.fp8 import _why_not

        reason = _why_not(node, {})
        parts.append(f"no FP8: {reason}" if reason else "FP8 not allowed")
    bar = (
        f">= {floor:g}"
        if floor is not None
        else f"within {tolerance:.4g} of float {ch.float_score:.4g}"
    )
    for p in order(node):
        if p == choice or p == "fp16":
            break
        got = ch.layer_scores.get(node.name, {}).get(p)
        if got is not None:
            parts.append(f"{p.upper()} alone scores {got:.4g}, not {bar}")
    if node.name in ch.reverted:
        parts.append("returned to FP16 to keep the whole model within tolerance")
    elif choice != "fp16":
        parts.append(f"{choice.upper()}: fastest that stays {bar}")
    elif ch.choices and all(c == "fp8" for c in ch.choices.values()):
        parts.append("FP8 where TensorRT runs it scored best")
    else:
        parts.append("FP16: no quantized precision stays " + bar)
    return "; ".join(parts)
