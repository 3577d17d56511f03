"""FP8 (E4M3FN) explicit quantization for TensorRT on Hopper and Blackwell: FP8 Q/DQ
initializers, and the conversion of an INT8 Q/DQ model (as :func:`trtcal.onnx.quantize`
writes it) into FP8 Q/DQ wherever TensorRT runs the consumer in FP8.

* Scales are float (the model's scale dtype), ``amax / 448``; zero points are
  ``FLOAT8E4M3FN`` zeros of the scale's shape; ONNX opset 19 or later (FLOAT8 Q/DQ).
  Activations take their FP8 amax from an FP8 table (:func:`trtcal.fp8.fp8_amax`, e.g. the
  E4M3 MSE search) when one is given, else keep the INT8 amax (``scale * 127``: ModelOpt's
  ``int8_to_fp8`` rescaling). Weights are measured again, per channel on the INT8 pair's axis:
  ``max|w| / 448``.
* Which consumers go FP8 (docs/fp8.md has the table and its sources): Conv with ``group == 1``,
  more than 16 input and output channels and filters of at most 32 taps, Gemm and MatMul
  with K and N of at least 16, and Add (ModelOpt's FP8 op set); the ops Q/DQ commute through
  (pooling, Concat, Resize: :mod:`trtcal.onnx.placement`) go FP8 where the layers after them
  do, with one scale for a Concat's inputs and output. A grouped or depthwise Conv has no FP8
  kernel in TensorRT (NVIDIA/TensorRT#4524, the TensorRT 10 release notes' limitation), small
  convolutions and GEMVs gain nothing from FP8, and ConvTranspose and any other consumer are not
  in the set: their Q/DQ pairs are removed (``fallback='float'``, the default: they run in the
  model's FP16 remainder, as ModelOpt's FP8 mode leaves them) or stay INT8
  (``fallback='int8'``). A Q/DQ pair read by several consumers goes FP8 only when all of them
  do, and a layer goes FP8 only when all its quantized inputs do (a layer's inputs must share
  one type): the report names every layer left behind and why.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...core._files import (
    atomic_write,
    save_onnx,  # atomic, with a run's other outputs
)

E4M3_MAX = 448.0
FP8_MIN_OPSET = 19
FP8_OP_TYPES = ("Conv", "Gemm", "MatMul", "Add")
# ops Q/DQ commute through (TensorRT's "Q/DQ propagation"): FP8 where the layers around them are
COMMUTING_OPS = ("MaxPool", "AveragePool", "GlobalAveragePool", "Concat", "Resize", "Upsample")
SHARED_SCALE_OPS = ("Concat", "MaxPool", "Resize", "Upsample")  # input and output share one scale
MIN_FP8_CHANNELS = 16  # a Conv with this many input or output channels or fewer stays out of FP8
MAX_FP8_FILTER = 32  # FP8 convolution kernels take filters up to this many taps (5 x 5 = 25)
MIN_FP8_GEMM = 16  # a Gemm/MatMul with K or N below this is a GEMV


@dataclass
class Fp8Report:
    """What :func:`convert_to_fp8` did: layers by precision, with the reason for each that is not
    FP8, and the activations' amax values used."""

    opset: int = 0
    fp8_nodes: list[str] = field(default_factory=list)
    int8_nodes: dict[str, str] = field(default_factory=dict)  # node -> why not FP8
    float_nodes: dict[str, str] = field(
        default_factory=dict
    )  # node -> why not FP8 (fallback float)
    activations: dict[str, float] = field(default_factory=dict)  # tensor -> FP8 amax
    weights: dict[str, int] = field(default_factory=dict)  # weight -> channels
    rescaled: list[str] = field(
        default_factory=list
    )  # activations with no FP8 amax: INT8 amax kept

    def summary(self) -> dict[str, Any]:
        return {
            "opset": self.opset,
            "fp8": len(self.fp8_nodes),
            "int8": len(self.int8_nodes),
            "float": len(self.float_nodes),
            "activations": len(self.activations),
            "weights": len(self.weights),
            "rescaled": len(self.rescaled),
        }

    def lines(self) -> list[str]:
        """One line per layer that is not FP8 (for printing)."""
        out = [f"{n}: INT8 ({why})" for n, why in self.int8_nodes.items()]
        return out + [
            f"{n}: high precision, FP16 with an FP16 remainder ({why})"
            for n, why in self.float_nodes.items()
        ]

    def placement_lines(self) -> list[str]:
        """The FP8 section of a placement report: every layer by precision, with the reason."""
        s = self.summary()
        title = (
            f"## FP8 (E4M3FN) conversion: {s['fp8']} layers FP8, {s['int8']} INT8, "
            f"{s['float']} high precision (opset {s['opset']})"
        )
        out = ["", title, "", "### FP8"]
        out += [f"- {n}" for n in self.fp8_nodes]
        out += ["", "### not FP8"] + [f"- {line}" for line in self.lines()]
        return out + [f"- {t}: no FP8 amax, the INT8 amax kept" for t in self.rescaled]


def fp8_scale(amax: Any, dtype: Any = np.float32) -> np.ndarray:
    """``amax / 448`` in ``dtype`` (per tensor or per channel); ValueError unless every amax is
    positive and finite and its scale does not underflow."""
    a = np.asarray(amax, dtype=np.float64)
    if not np.all(np.isfinite(a)) or not np.all(a > 0):
        raise ValueError(f"trtcal: an FP8 scale needs a positive finite amax, got {a.ravel()[:4]}")
    s = (a / E4M3_MAX).astype(dtype)
    if not np.all(s > 0):
        raise ValueError("trtcal: amax / 448 underflows the scale's dtype")
    return s


def fp8_qdq_initializers(name: str, amax: Any, *, dtype: Any = np.float32) -> tuple[Any, Any]:
    """The scale (``amax / 448`` in ``dtype``) and the ``FLOAT8E4M3FN`` zero point (zeros of
    the same shape) of an FP8 QuantizeLinear/DequantizeLinear pair, as ONNX initializers named
    ``<name>_scale`` and ``<name>_zero_point``. ``amax`` is a scalar (per tensor) or a 1-D
    array (per channel: give the pair's ``axis``)."""
    from onnx import TensorProto, helper, numpy_helper

    scale = fp8_scale(amax, dtype)
    s = numpy_helper.from_array(scale, f"{name}_scale")
    zp = helper.make_tensor(
        f"{name}_zero_point",
        TensorProto.FLOAT8E4M3FN,
        list(scale.shape),
        bytes(scale.size),
        raw=True,
    )
    return s, zp


def weight_amax(w: np.ndarray, axis: int | None) -> np.ndarray:
    """max|w| per channel along ``axis`` (or one value); all-zero channels get 448 (scale 1:
    any positive scale quantizes zeros exactly)."""
    w = np.abs(np.asarray(w, dtype=np.float64))
    if axis is None or w.ndim == 0:
        a = np.asarray(w.max() if w.size else 0.0)
    else:
        ax = axis % w.ndim
        a = (
            w.max(axis=tuple(i for i in range(w.ndim) if i != ax))
            if w.size
            else np.zeros(w.shape[ax])
        )
    return np.where(a > 0, a, E4M3_MAX)


def _attr(node: Any, name: str, default: Any) -> Any:
    for a in node.attribute:
        if a.name == name:
            from onnx import helper

            return helper.get_attribute_value(a)
    return default


def _why_not(
    node: Any, excluded: Mapping[str, str], weight_shape: Sequence[int] | None = None
) -> str | None:
    """Why TensorRT does not run ``node`` in FP8 (fast), or None. ``weight_shape``: the shape of
    its constant weight (Conv: K x C/g x R x S; Gemm/MatMul: B), when it has one."""
    if node.name in excluded:
        return excluded[node.name]
    if node.op_type in COMMUTING_OPS:
        return None  # decided by the layers around it (_decide)
    if node.op_type not in FP8_OP_TYPES:
        layers = ", ".join(FP8_OP_TYPES)
        return f"{node.op_type} has no FP8 Q/DQ path in TensorRT (FP8 layers: {layers})"
    if node.op_type == "Conv" and int(_attr(node, "group", 1)) != 1:
        return (
            f"grouped/depthwise Conv (group={_attr(node, 'group', 1)}): TensorRT has no FP8 "
            "kernels "
            "for it (NVIDIA/TensorRT#4524)"
        )
    shape = list(weight_shape or ())
    if node.op_type == "Conv" and len(shape) >= 3:
        k, c, taps = int(shape[0]), int(shape[1]), int(np.prod(shape[2:]))
        if k <= MIN_FP8_CHANNELS or c <= MIN_FP8_CHANNELS:
            return (
                f"Conv with {c} input and {k} output channels (<= {MIN_FP8_CHANNELS}): "
                "TensorRT's FP8 convolutions are no faster than FP16 there, and a first "
                "layer's has no FP8 kernel (NVIDIA/TensorRT#3987; ModelOpt excludes them too)"
            )
        if taps > MAX_FP8_FILTER:
            return (
                f"Conv filter of {taps} taps (> {MAX_FP8_FILTER}): no FP8 convolution kernel "
                "in TensorRT"
            )
    if node.op_type in ("Gemm", "MatMul") and len(shape) >= 2:
        trans = node.op_type == "Gemm" and _attr(node, "transB", 0)
        kn = (shape[-1], shape[-2]) if trans else shape[-2:]
        if min(int(kn[0]), int(kn[1])) < MIN_FP8_GEMM:
            return (
                f"{node.op_type} with K x N = {kn[0]} x {kn[1]} (< {MIN_FP8_GEMM}): a GEMV, "
                "no FP8 tensor-core kernel (ModelOpt excludes it too)"
            )
    return None


def _opset(m: Any) -> int:
    return next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 0)


def _raise_opset(m: Any, opset: int):
    import onnx
    from onnx import version_converter

    have = _opset(m)
    if have >= opset:
        return m
    try:
        out = version_converter.convert_version(m, opset)
    except Exception as exc:  # noqa: BLE001 - the converter raises RuntimeError/ValueError/...
        raise ValueError(
            f"trtcal: FP8 Q/DQ needs ONNX opset >= {opset}; converting this model from opset "
            f"{have} failed: {exc}"
        ) from None
    onnx.checker.check_model(out)
    return out


@dataclass
class _Pair:
    q: Any
    dq: Any
    weight: bool


def _pairs(graph: Any, inits: Mapping[str, Any]) -> list[_Pair]:
    from onnx import TensorProto

    producer = {o: n for n in graph.node for o in n.output}
    consts = {n.output[0] for n in graph.node if n.op_type == "Constant"}
    out = []
    for dq in graph.node:
        if dq.op_type != "DequantizeLinear":
            continue
        q = producer.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear" or len(q.input) < 3:
            continue
        zp = inits.get(q.input[2])
        if zp is None or zp.data_type != TensorProto.INT8:
            continue  # not trtcal's INT8 form (uint8, or already FP8): left as is
        out.append(_Pair(q, dq, q.input[0] in inits or q.input[0] in consts))
    return out


def _decide(
    graph: Any, pairs: list[_Pair], excluded: Mapping[str, str], inits: Mapping[str, Any]
) -> tuple[dict[str, str], dict[int, bool]]:
    """{node: why not FP8} for every consumer of a pair, and {pair index: FP8}.

    A pair goes FP8 iff all its users do; a layer iff all its quantized inputs do (a layer's
    inputs share one type). An op Q/DQ commute through (pooling, Concat, Resize) goes FP8 iff
    the pairs quantizing its output do too (FP8 in, FP8 out: TensorRT propagates the Q/DQ
    through it), and a residual Add iff the layer whose epilogue it fuses into does."""
    consumers = _users(graph)
    by_node: dict[Any, list[int]] = {}
    pair_users: dict[int, list[Any]] = {}
    for k, p in enumerate(pairs):
        users = consumers.get(p.dq.output[0], [])
        pair_users[k] = users
        for u in users:
            by_node.setdefault(u.name or id(u), []).append(k)
    nodes = {n.name or id(n): n for users in pair_users.values() for n in users}
    shapes = {
        key: _weight_shape(n, pairs, by_node.get(key, []), inits, graph) for key, n in nodes.items()
    }
    why = {key: _why_not(n, excluded, shapes[key]) for key, n in nodes.items()}
    after = {
        k2: [k for k, p in enumerate(pairs) if p.q.input[0] in n.output]
        for k2, n in nodes.items()
        if n.op_type in COMMUTING_OPS
    }
    for key, ks in after.items():
        if why[key] is None and not ks:
            why[key] = (
                f"its output is not quantized: {nodes[key].op_type} runs in FP8 only "
                "between FP8 layers"
            )
    fused = {key: _fused_layer(n, graph) for key, n in nodes.items() if n.op_type == "Add"}
    fp8 = {k: bool(users) for k, users in pair_users.items()}
    changed = True
    while changed:  # a pair goes FP8 iff all its users do; a user iff all its pairs do
        changed = False
        for k, users in pair_users.items():
            if fp8[k]:
                bad = next((u for u in users if why[u.name or id(u)] is not None), None)
                if bad is not None:
                    fp8[k] = False
                    changed = True
        for key, ks in by_node.items():
            if why[key] is not None:
                continue
            stuck = [k for k in ks if not fp8[k]]
            if stuck:
                t = pairs[stuck[0]].q.input[0]
                other = next(
                    (u.name for u in pair_users[stuck[0]] if (u.name or id(u)) != key), "?"
                )
                why[key] = f"its quantized input '{t}' is shared with '{other}', which is not FP8"
                changed = True
            elif key in after and any(not fp8[k] for k in after[key]):
                k = next(k for k in after[key] if not fp8[k])
                why[key] = (
                    f"its output '{pairs[k].q.input[0]}' is quantized for a layer that is not FP8"
                )
                changed = True
            elif (f := fused.get(key)) is not None and why.get(f[0], "") is not None:
                why[key] = (
                    f"the layer whose epilogue it fuses into ('{f[1]}') is not FP8"
                    if f[0] in why
                    else f"its fused input comes from '{f[1]}', which is not quantized"
                )
                changed = True
    return {str(k): v for k, v in why.items() if v is not None}, fp8


def _weight_shape(
    node: Any, pairs: list[_Pair], ks: list[int], inits: Mapping[str, Any], graph: Any
) -> list[int] | None:
    """The shape of the constant weight a quantized layer reads through one of its pairs."""
    for k in ks:
        p = pairs[k]
        if p.weight and p.dq.output[0] in node.input[1:2]:
            return list(_weight_array(p.q.input[0], inits, graph).shape)
    return None


def _fused_layer(add: Any, graph: Any) -> tuple[Any, str] | None:
    """(key, label) of the Conv/Gemm whose epilogue a residual Add fuses into: the producer,
    through pointwise epilogue ops, of its input that is not read through a pair."""
    from .placement import EPILOGUE_OPS

    producer = {o: n for n in graph.node for o in n.output}
    for t in add.input:
        n = producer.get(t)
        if n is None or n.op_type == "DequantizeLinear":
            continue
        for _ in range(6):
            if n is None:
                break
            if n.op_type in ("Conv", "ConvTranspose", "Gemm"):
                return (n.name or id(n), n.name or n.op_type)
            if n.op_type not in EPILOGUE_OPS and n.op_type != "Cast":
                break
            src = next(
                (i for i in n.input if i in producer and producer[i].op_type != "Constant"), None
            )
            n = producer.get(src) if src else None
    return None


def _users(graph: Any) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for n in graph.node:
        for i in n.input:
            out.setdefault(i, []).append(n)
    return out


def _weight_array(name: str, inits: Mapping[str, Any], graph: Any) -> np.ndarray:
    from onnx import numpy_helper

    if name in inits:
        return numpy_helper.to_array(inits[name])
    for n in graph.node:
        if n.op_type == "Constant" and n.output[0] == name:
            return numpy_helper.to_array(n.attribute[0].t)
    raise ValueError(f"trtcal: weight '{name}' is neither an initializer nor a Constant")


def convert_to_fp8(
    model: Any,
    fp8_table: Mapping[str, float] | None = None,
    *,
    int8_table: Mapping[str, float] | None = None,
    fallback: str = "float",
    exclude_nodes: Iterable[str] = (),
    precisions: Mapping[str, str] | None = None,
    opset: int = FP8_MIN_OPSET,
    output: str | os.PathLike[str] | None = None,
    placement_report: str | os.PathLike[str] | None = None,
    return_report: bool = False,
):
    """Turns the INT8 Q/DQ pairs of ``model`` into FP8 (E4M3FN) Q/DQ where TensorRT runs the
    consumer in FP8 (module docstring); the others stay INT8 or go float.

    Parameters
    ----------
    model : onnx.ModelProto, path or bytes
        An INT8 Q/DQ model (int8 zero points), e.g. :func:`trtcal.onnx.quantize`'s.
    fp8_table : {activation: FP8 amax}
        E.g. ``trtcal.fp8.fp8_amax(histograms, 'mse')``; activations missing from it keep the
        INT8 pair's amax (``scale * 127``, listed in ``report.rescaled``).
    int8_table : {activation: INT8 amax}
        Ranges for the activation pairs that stay INT8 (scale amax / 127); without it (or for a
        tensor missing from it) they keep the model's INT8 scale.
    fallback : 'float' (default; 'fp16' is the same) removes the pairs of layers TensorRT does
        not run in FP8 (fast): they run in the model's high precision (FP16 with
        :func:`trtcal.onnx.quantize`'s ``high_precision='fp16'``), as ModelOpt's FP8 mode leaves
        them; 'int8' keeps them INT8 (faster than FP16 for depthwise convolutions, NVIDIA's
        advice, but less accurate: docs/fp8.md).
    exclude_nodes : node names to keep out of FP8 (as the fallback says).
    precisions : {node name: 'fp8' | 'int8' | 'fp16'}, a per-layer choice (e.g.
        :func:`trtcal.precision_choice.choose_precisions`): 'int8' keeps the node's pairs INT8,
        'fp16' removes them (a pair read by an 'int8' node too stays INT8), 'fp8' is the default
        rule (FP8 where TensorRT supports it).
    opset : target opset (>= 19, the first with FLOAT8 Q/DQ); a lower model is converted.
    output : path to save the FP8 model to (written atomically).
    placement_report : a placement report (``trtcal.onnx.quantize``'s ``placement_report``) to
        which the FP8 section (:meth:`Fp8Report.placement_lines`) is appended, or a new file.
    return_report : also return an :class:`Fp8Report`.

    Returns
    -------
    onnx.ModelProto (and the report).
    """

    if fallback not in ("int8", "float", "fp16"):
        raise ValueError(
            f"trtcal: fallback must be 'float' (or 'fp16') or 'int8', got {fallback!r}"
        )
    fallback = "float" if fallback == "fp16" else fallback
    if int(opset) < FP8_MIN_OPSET:
        raise ValueError(f"trtcal: FP8 Q/DQ needs opset >= {FP8_MIN_OPSET}, got {opset}")
    from .quantize import _load  # a copy of a ModelProto; a path through the safe ONNX reader

    m = _raise_opset(_load(model), int(opset))
    graph = m.graph
    inits = {t.name: t for t in graph.initializer}
    pairs = _pairs(graph, inits)
    if not pairs:
        raise ValueError(
            "trtcal: the model has no INT8 QuantizeLinear/DequantizeLinear pairs to convert "
            "(write one with trtcal.onnx.quantize first)"
        )
    precisions = dict(precisions or {})
    bad = {v for v in precisions.values()} - {"fp8", "int8", "fp16"}
    if bad:
        raise ValueError(f"trtcal: precisions must be 'fp8', 'int8' or 'fp16', got {sorted(bad)}")
    excluded = {n: "excluded by the caller" for n in exclude_nodes}
    excluded.update({n: f"chosen {p.upper()}" for n, p in precisions.items() if p != "fp8"})
    to_float = {n for n, p in precisions.items() if p == "fp16"}
    to_int8 = {n for n, p in precisions.items() if p == "int8"}
    why, fp8 = _decide(graph, pairs, excluded, inits)
    users = _users(graph)
    report = Fp8Report(opset=_opset(m))
    groups = _scale_groups(graph, pairs)  # Concat / MaxPool / Resize: one scale in and out
    table = _group_amax(fp8_table or {}, groups)
    int8_amax = _group_amax(int8_table or {}, groups)
    drop_vi: set = set()
    removed: list[Any] = []
    casts: list[Any] = []
    rename: dict[str, str] = {}
    for k, p in enumerate(pairs):
        if not fp8[k]:
            names = {u.name for u in users.get(p.dq.output[0], [])}
            if (fallback == "float" and not names & to_int8) or (names and names <= to_float):
                removed += [p.q, p.dq]
                cast = _bypass(p, inits)
                if cast is None:
                    rename[p.dq.output[0]] = p.q.input[0]
                else:  # the pair also changed the type (FP32 graph input -> FP16 remainder)
                    casts.append(cast)
            elif int8_table and not p.weight and p.q.input[0] in int8_amax:
                _set_int8_scale(graph, p, inits, float(int8_amax[p.q.input[0]]))
            continue
        _pair_to_fp8(graph, p, inits, table, report)
        drop_vi.add(p.q.output[0])
    if removed:
        _remove_pairs(graph, removed, casts, rename)
    vi = [v for v in graph.value_info if v.name not in drop_vi and v.name not in rename]
    del graph.value_info[:]
    graph.value_info.extend(vi)
    _prune_initializers(graph)
    fp8_users = set()
    for k, p in enumerate(pairs):
        if fp8[k]:
            fp8_users.add(p.dq.output[0])
    for n in graph.node:
        key = n.name or n.output[0]
        if n.name in why or (not n.name and key in why):
            gone = (fallback == "float" and n.name not in to_int8) or n.name in to_float
            (report.float_nodes if gone else report.int8_nodes)[key] = why.get(
                n.name, why.get(key, "")
            )
        elif any(i in fp8_users for i in n.input):
            report.fp8_nodes.append(key)
    _mark(m, report)
    if output is not None:
        save_onnx(m, os.fspath(output))
    if placement_report is not None:
        path = os.fspath(placement_report)
        head = Path(path).read_text(encoding="utf-8") if os.path.isfile(path) else ""
        atomic_write(path, head + "\n".join(report.placement_lines()) + "\n")
    return (m, report) if return_report else m


def _pair_to_fp8(
    graph: Any, p: _Pair, inits: dict[str, Any], table: Mapping[str, float], report: Fp8Report
) -> None:
    """One Q/DQ pair's scale and zero point in E4M3FN: weights per channel from the weight itself,
    activations from ``table`` (else the INT8 scale's amax, listed in ``report.rescaled``)."""
    from onnx import numpy_helper

    old = inits[p.q.input[1]]
    s_old = numpy_helper.to_array(old)
    axis = _attr(p.q, "axis", 1) if s_old.ndim else None
    if p.weight:
        w = _weight_array(p.q.input[0], inits, graph)
        amax = weight_amax(w, axis)
        if s_old.ndim == 0:
            amax = np.asarray(amax).reshape(())
        report.weights[p.q.input[0]] = int(np.size(amax))
    else:
        t = p.q.input[0]
        if t in table:
            amax = np.asarray(float(table[t]))
        else:
            amax = s_old.astype(np.float64) * 127.0
            report.rescaled.append(t)
        report.activations[t] = float(np.max(amax))
    base = (p.q.name or p.q.output[0]) + "_fp8"
    dq_dtype = numpy_helper.to_array(inits[p.dq.input[1]]).dtype
    # the DequantizeLinear's scale type is the type of what it feeds (an FP16/BF16 remainder
    # reads an fp16 scale while its QuantizeLinear reads the fp32 graph input): the value is
    # rounded in the DQ's type and the Q gets the same value in its own type
    # a scale below the scale type's smallest normal (FP16: 6.1e-5, amax < 0.027) is raised to
    # it: the values then use E4M3's lower binades, still normal down to 2^-6 of that scale
    amax = np.maximum(amax, E4M3_MAX * float(np.finfo(dq_dtype).tiny))
    scale, zp = fp8_qdq_initializers(base, amax, dtype=dq_dtype)
    graph.initializer.extend([scale, zp])
    q_scale = scale
    if dq_dtype != s_old.dtype:
        q_scale = numpy_helper.from_array(
            numpy_helper.to_array(scale).astype(s_old.dtype), f"{base}_q_scale"
        )
        graph.initializer.append(q_scale)
    for n, sc in ((p.q, q_scale), (p.dq, scale)):
        n.input[1] = sc.name
        n.input[2] = zp.name


def _remove_pairs(graph: Any, removed: list[Any], casts: list[Any], rename: dict[str, str]) -> None:
    """Drops the pairs of layers left in float: a Cast takes a pair's place where it changed the
    type, else its readers read the pair's input."""
    ids = {id(n) for n in removed}
    by_out = {c.output[0]: c for c in casts}
    keep = []
    for n in graph.node:
        if id(n) not in ids:
            keep.append(n)
        elif n.op_type == "DequantizeLinear" and n.output[0] in by_out:
            keep.append(by_out[n.output[0]])  # in the pair's place: the order stays topological
    del graph.node[:]
    graph.node.extend(keep)
    outputs = {o.name for o in graph.output}
    for n in graph.node:
        for i, name in enumerate(n.input):
            if name in rename:
                n.input[i] = rename[name]
    for o in graph.output:  # a graph output read through a pair keeps its name
        if o.name in rename and o.name in outputs:
            raise ValueError(
                f"trtcal: graph output '{o.name}' is a DequantizeLinear output; use fallback='int8'"
            )


def _scale_groups(graph: Any, pairs: list[_Pair]) -> dict[str, set[str]]:
    """tensor -> the tensors that share its scale: the quantized inputs and the output of each
    Concat, MaxPool and Resize whose quantized inputs are pairs (as trtcal.onnx.placement groups
    them: FP8 Q/DQ commute through them only with one scale)."""
    src = {p.dq.output[0]: p.q.input[0] for p in pairs if not p.weight}
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for n in graph.node:
        if n.op_type not in SHARED_SCALE_OPS or not n.input or n.input[0] not in src:
            continue
        ins = [src[i] for i in (n.input if n.op_type == "Concat" else n.input[:1]) if i in src]
        for t in ins + [n.output[0]]:
            parent[find(t)] = find(ins[0])
    out: dict[str, set[str]] = {}
    for t in list(parent):
        out.setdefault(find(t), set()).add(t)
    return {t: g for g in out.values() for t in g}


def _group_amax(table: Mapping[str, float], groups: Mapping[str, set[str]]) -> dict[str, float]:
    """The table's amax, the largest of its group's for a tensor that shares a scale."""
    out = {t: float(a) for t, a in table.items()}
    for t, g in groups.items():
        known = [float(table[x]) for x in g if x in table and np.isfinite(table[x])]
        if known:
            out[t] = max(known)
    return out


def _bypass(p: _Pair, inits: Mapping[str, Any]) -> Any:
    """None when a removed pair's input and output have one type (the consumers read the input);
    else a Cast to the DequantizeLinear's type (its scale's), writing the pair's output."""
    from onnx import helper

    t_dq, t_q = inits[p.dq.input[1]].data_type, inits[p.q.input[1]].data_type
    if t_dq == t_q:
        return None
    return helper.make_node(
        "Cast",
        [p.q.input[0]],
        [p.dq.output[0]],
        to=t_dq,
        name=(p.dq.name or p.dq.output[0]) + "_cast",
    )


def _set_int8_scale(graph: Any, p: _Pair, inits: Mapping[str, Any], amax: float) -> None:
    """Points an INT8 pair at a new per-tensor scale amax / 127 (its own initializer: the old one
    may be shared)."""
    from onnx import numpy_helper

    old = numpy_helper.to_array(inits[p.q.input[1]])
    dq_dtype = numpy_helper.to_array(inits[p.dq.input[1]]).dtype
    if old.ndim or not (np.isfinite(amax) and amax > 0):
        return
    name = (p.q.name or p.q.output[0]) + "_int8_scale"
    value = np.asarray(amax / 127.0, dtype=dq_dtype)  # rounded in the DQ's type (see above)
    graph.initializer.append(numpy_helper.from_array(value, name))
    p.dq.input[1] = name
    if dq_dtype != old.dtype:
        name = name + "_q"
        graph.initializer.append(numpy_helper.from_array(value.astype(old.dtype), name))
    p.q.input[1] = name


def _prune_initializers(graph: Any) -> None:
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    for n in graph.node:  # subgraphs may read outer initializers
        for a in n.attribute:
            if a.g is not None:
                used |= {i for sn in a.g.node for i in sn.input}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def _mark(m: Any, report: Fp8Report) -> None:
    import json

    entry = json.dumps({"path": "FP8 (E4M3FN) explicit Q/DQ", **report.summary()})
    for p in m.metadata_props:
        if p.key == "trtcal.fp8":
            p.value = entry
            return
    p = m.metadata_props.add()
    p.key, p.value = "trtcal.fp8", entry
