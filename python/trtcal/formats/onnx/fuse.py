"""SiLU fusion for TensorRT: ``Mul(x, Sigmoid(x))`` -> one ``SiLU`` plugin node.

TensorRT's ONNX parser has no importer for ``SiLU``, so it looks the op up as a plugin named
``SiLU`` with the node's ``plugin_version`` and ``plugin_namespace`` attributes: trtcal's
plugin library (:func:`trtcal.tensorrt.plugins.load_plugins`). Node attributes named by the
plugin's fields (``scale_in``, ``scale_out``) become its INT8 scales.

:func:`quantize_silu` turns fused SiLU nodes INT8: ``Q(scale_in) -> SiLU -> DQ(scale_out)``,
so TensorRT feeds the plugin int8 codes and one exact table replaces Sigmoid, Mul and the
Q/DQ between them. :func:`expand_silu` is the inverse (for ONNX Runtime and checks).

ONNX Runtime cannot load a model with ``trtcal:SiLU`` nodes (no kernel for the custom op):
such a model is for TensorRT with trtcal's plugin library; :func:`expand_silu` gives back a
model ONNX Runtime runs. With ``return_report=True``, :func:`fuse_silu` and
:func:`quantize_silu` also return a :class:`SiluReport` saying which patterns were not fused
and which SiLU nodes stayed float, and why.
"""

from __future__ import annotations

import copy
import math
import os
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Mapping, Optional, Set, Tuple, Union

import numpy as np

try:
    import onnx
    from onnx import helper, numpy_helper
except ImportError as exc:  # pragma: no cover - optional dependency
    raise ImportError("trtcal.onnx needs the onnx package: pip install 'trtcal[onnx]'") from exc

SILU_OP = "SiLU"
SILU_DOMAIN = "trtcal"
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = "trtcal"

ModelLike = Union[onnx.ModelProto, str, "os.PathLike[str]"]

__all__ = [
    "SILU_DOMAIN",
    "SILU_OP",
    "SiluReport",
    "expand_silu",
    "fuse_silu",
    "is_silu_node",
    "quantize_silu",
    "scale_problem",
]


@dataclass
class SiluReport:
    """What :func:`fuse_silu` and :func:`quantize_silu` did, and what they left alone and why.

    Attributes
    ----------
    fused : int
        Sigmoid+Mul pairs fused into SiLU nodes.
    not_fused : list of (str, str)
        ``(Mul node, reason)`` for each ``Mul(x, Sigmoid(x))`` left alone (its Sigmoid output
        is read by something else too, so fusing would lose it).
    quantized : int
        SiLU nodes made INT8.
    already_int8 : int
        SiLU nodes that already had ``scale_in`` / ``scale_out`` (left alone).
    stayed_float : list of (str, str)
        ``(SiLU node, reason)`` for each SiLU node not made INT8 (missing or invalid scales).
    scales_read : set of str
        Tensor names whose scale was looked up (inputs and outputs of float SiLU nodes).
    """

    fused: int = 0
    not_fused: List[Tuple[str, str]] = field(default_factory=list)
    quantized: int = 0
    already_int8: int = 0
    stayed_float: List[Tuple[str, str]] = field(default_factory=list)
    scales_read: Set[str] = field(default_factory=set)


def scale_problem(value: Any) -> Optional[str]:
    """Why ``value`` is not a usable INT8 scale (a positive finite float32), or None when it is."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        return f"{value!r} is not a number"
    try:
        with np.errstate(over="ignore", under="ignore"):
            s = float(np.float32(float(value)))
    except OverflowError:  # an int beyond float64
        s = math.inf
    if math.isnan(s):
        return "NaN is not a scale"
    if math.isinf(s):
        return f"{value!r} is not finite in float32"
    if s < 0:
        return f"{value!r} is negative"
    if s == 0:
        return f"{value!r} is zero in float32 (no range)"
    return None


def fuse_silu(
    model: ModelLike,
    *,
    scales: Optional[Mapping[str, float]] = None,
    inplace: bool = False,
    return_report: bool = False,
) -> Union[Tuple[onnx.ModelProto, int], Tuple[onnx.ModelProto, int, SiluReport]]:
    """Rewrites every ``Mul(x, Sigmoid(x))`` into one ``SiLU`` node (either input order).

    A pair is fused only when the Sigmoid's output feeds nothing but that Mul (no other node,
    subgraph or graph output). The SiLU node keeps the Mul's output name, so graph outputs,
    value_info and calibration tables keyed by tensor name stay valid. Subgraphs (If, Loop,
    Scan) are fused too. Idempotent; a graph without the pattern is returned unchanged.

    Parameters
    ----------
    model : onnx.ModelProto or path
    scales : mapping tensor name -> INT8 scale (amax / 127), optional
        When given, the fused nodes are then made INT8 with :func:`quantize_silu`.
    inplace : bool
        Modify ``model`` itself instead of a copy.
    return_report : bool
        Also return a :class:`SiluReport` (patterns not fused and why; with ``scales``, the
        SiLU nodes that stayed float and why).

    Returns
    -------
    (model, fused) : the rewritten model and the number of Sigmoid+Mul pairs fused;
    ``(model, fused, report)`` with ``return_report=True``.
    """
    model = _load(model, inplace)
    report = SiluReport()
    fused = sum(_fuse_graph(g, report.not_fused) for g in _graphs(model.graph))
    report.fused = fused
    if fused:
        _declare_domain(model)
    if scales is not None:
        _quantize(model, scales, report)
    return (model, fused, report) if return_report else (model, fused)


def quantize_silu(
    model: ModelLike,
    scales: Optional[Mapping[str, float]] = None,
    *,
    inplace: bool = False,
    return_report: bool = False,
) -> Union[Tuple[onnx.ModelProto, int], Tuple[onnx.ModelProto, int, SiluReport]]:
    """Makes fused SiLU nodes INT8: ``x -> Q(scale_in) -> SiLU[int8] -> DQ(scale_out) -> y``.

    The input scale comes from a DequantizeLinear already feeding the SiLU (the SiLU then reads
    its int8 input directly) or from ``scales[x]``; the output scale from a QuantizeLinear that
    is the SiLU output's only consumer (it is absorbed) or from ``scales[y]``. Both are written
    as the node's float attributes ``scale_in`` / ``scale_out`` (the plugin's fields). Nodes
    without both scales, or with a scale that is not positive and finite in float32
    (:func:`scale_problem`), stay float; nodes already INT8 are left alone.

    Returns
    -------
    (model, quantized) : the model and the number of SiLU nodes made INT8;
    ``(model, quantized, report)`` with ``return_report=True`` (:class:`SiluReport`: which
    nodes stayed float and why).
    """
    model = _load(model, inplace)
    report = SiluReport()
    count = _quantize(model, scales, report)
    return (model, count, report) if return_report else (model, count)


def _quantize(
    model: onnx.ModelProto, scales: Optional[Mapping[str, float]], report: SiluReport
) -> int:
    scales = dict(scales or {})
    count = sum(_quantize_graph(g, scales, report) for g in _graphs(model.graph))
    report.quantized += count
    if count:
        _declare_domain(model)
    return count


def expand_silu(model: ModelLike, *, inplace: bool = False) -> Tuple[onnx.ModelProto, int]:
    """Replaces every SiLU node by its definition (runnable in ONNX Runtime).

    Float SiLU -> ``Mul(x, Sigmoid(x))``; INT8 SiLU -> ``Q(Mul(d, Sigmoid(d)), scale_out)`` with
    ``d = DQ(x, scale_in)``. Returns (model, expanded).
    """
    model = _load(model, inplace)
    count = sum(_expand_graph(g) for g in _graphs(model.graph))
    if count and not any(is_silu_node(n) for g in _graphs(model.graph) for n in g.node):
        kept = [o for o in model.opset_import if o.domain != SILU_DOMAIN]
        del model.opset_import[:]
        model.opset_import.extend(kept)
    return model, count


def is_silu_node(node: onnx.NodeProto) -> bool:
    """True for a trtcal SiLU node."""
    return node.op_type == SILU_OP and node.domain == SILU_DOMAIN


# ---- graph walking ------------------------------------------------------------------


def _load(model: ModelLike, inplace: bool) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        return model if inplace else copy.deepcopy(model)
    if isinstance(model, (str, os.PathLike)):
        return onnx.load(os.fspath(model))
    raise TypeError(f"trtcal: expected an onnx.ModelProto or a path, got {type(model).__name__}")


def _graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """The graph and all its subgraphs, innermost first."""
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _graphs(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _graphs(g)
    yield graph


def _subgraph_inputs(node: onnx.NodeProto) -> Set[str]:
    """Every tensor name read inside the node's subgraphs (outer-scope captures included)."""
    names: Set[str] = set()
    for attr in node.attribute:
        subs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
        for g in subs:
            for g2 in _graphs(g):
                for n in g2.node:
                    names.update(n.input)
                names.update(o.name for o in g2.output)
    return names


def _uses(graph: onnx.GraphProto) -> Dict[str, int]:
    """How many times each tensor is read in this graph (subgraph reads and outputs count)."""
    uses: Dict[str, int] = defaultdict(int)
    for node in graph.node:
        for name in node.input:
            if name:
                uses[name] += 1
        for name in _subgraph_inputs(node):
            uses[name] += 1
    for out in graph.output:
        uses[out.name] += 1
    return uses


def _producers(graph: onnx.GraphProto) -> Dict[str, onnx.NodeProto]:
    return {out: node for node in graph.node for out in node.output if out}


def _unique_name(base: str, taken: Set[str]) -> str:
    name, i = base, 1
    while name in taken:
        name = f"{base}_{i}"
        i += 1
    taken.add(name)
    return name


def _declare_domain(model: onnx.ModelProto) -> None:
    if not any(o.domain == SILU_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(SILU_DOMAIN, 1))


def _replace_nodes(graph: onnx.GraphProto, nodes: List[onnx.NodeProto]) -> None:
    del graph.node[:]
    graph.node.extend(nodes)


# ---- fusion -------------------------------------------------------------------------


def _node_label(node: onnx.NodeProto) -> str:
    """``Add 'name'`` (the first output when the node has no name)."""
    return f"{node.op_type} '{node.name or (node.output[0] if node.output else '?')}'"


def _other_readers(graph: onnx.GraphProto, tensor: str, reader: onnx.NodeProto) -> str:
    """What reads ``tensor`` besides ``reader``, for a message."""
    parts = [_node_label(n) for n in graph.node if n is not reader and tensor in n.input]
    parts += [
        f"the subgraph of {_node_label(n)}" for n in graph.node if tensor in _subgraph_inputs(n)
    ]
    if any(o.name == tensor for o in graph.output):
        parts.append("a graph output")
    if sum(1 for name in reader.input if name == tensor) > 1:
        parts.append(f"{_node_label(reader)} twice")
    return ", ".join(parts) or "something else"


def _fuse_graph(graph: onnx.GraphProto, not_fused: Optional[List[Tuple[str, str]]] = None) -> int:
    uses = _uses(graph)
    producers = _producers(graph)
    node_names = {n.name for n in graph.node if n.name}
    drop: Set[int] = set()
    replace: Dict[int, onnx.NodeProto] = {}
    for mul in graph.node:
        if mul.op_type != "Mul" or mul.domain not in ("", "ai.onnx") or len(mul.input) != 2:
            continue
        for k in (0, 1):
            sig = producers.get(mul.input[k])
            x = mul.input[1 - k]
            if (
                sig is None
                or sig.op_type != "Sigmoid"
                or sig.domain not in ("", "ai.onnx")
                or len(sig.input) != 1
                or sig.input[0] != x
                or id(sig) in drop
            ):
                continue
            if uses.get(sig.output[0], 0) != 1:  # the Sigmoid feeds something else too
                if not_fused is not None:
                    readers = _other_readers(graph, sig.output[0], mul)
                    not_fused.append(
                        (
                            mul.name or mul.output[0],
                            f"the Sigmoid output '{sig.output[0]}' is also read by {readers}",
                        )
                    )
                continue
            silu = helper.make_node(
                SILU_OP,
                [x],
                [mul.output[0]],
                name=_unique_name(f"{mul.name or mul.output[0]}/SiLU", node_names),
                domain=SILU_DOMAIN,
                plugin_version=PLUGIN_VERSION,
                plugin_namespace=PLUGIN_NAMESPACE,
            )
            drop.add(id(sig))
            replace[id(mul)] = silu
            break
    if not replace:
        return 0
    _replace_nodes(graph, [replace.get(id(n), n) for n in graph.node if id(n) not in drop])
    return len(replace)


# ---- INT8 ---------------------------------------------------------------------------


def _attr(node: onnx.NodeProto, name: str):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return None


def _constant(
    graph: onnx.GraphProto, name: str, producers: Dict[str, onnx.NodeProto]
) -> Optional[np.ndarray]:
    for init in graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    node = producers.get(name)
    if node is not None and node.op_type == "Constant":
        value = _attr(node, "value")
        if isinstance(value, onnx.TensorProto):
            return numpy_helper.to_array(value)
    return None


def _per_tensor_int8_scale(
    graph: onnx.GraphProto, node: onnx.NodeProto, producers: Dict[str, onnx.NodeProto]
) -> Optional[float]:
    """The scale of a per-tensor, zero-point-0, int8 Q/DQ node, or None."""
    scale = _constant(graph, node.input[1], producers) if len(node.input) > 1 else None
    if scale is None or scale.size != 1:
        return None
    if len(node.input) > 2 and node.input[2]:
        zp = _constant(graph, node.input[2], producers)
        if zp is None or zp.dtype != np.int8 or zp.size != 1 or int(zp.reshape(())) != 0:
            return None
    else:
        return (
            None  # no zero point: uint8 by default (QuantizeLinear) or unknown (DequantizeLinear)
        )
    s = float(np.asarray(scale, dtype=np.float32).reshape(()))
    return s if np.isfinite(s) and s > 0 else None


def _quantize_graph(
    graph: onnx.GraphProto, scales: Mapping[str, float], report: Optional[SiluReport] = None
) -> int:
    report = report if report is not None else SiluReport()
    producers = _producers(graph)
    uses = _uses(graph)
    consumers: Dict[str, List[onnx.NodeProto]] = defaultdict(list)
    for n in graph.node:
        for name in n.input:
            consumers[name].append(n)
    taken_nodes = {n.name for n in graph.node if n.name}
    taken_tensors = (
        set(producers) | {i.name for i in graph.input} | {i.name for i in graph.initializer}
    )
    new_nodes: List[onnx.NodeProto] = []
    absorbed: Set[int] = set()
    bypassed: Set[str] = set()  # outputs of DQ nodes the SiLU no longer reads
    count = 0

    def scale_initializer(base: str, value: float) -> str:
        name = _unique_name(base, taken_tensors)
        graph.initializer.append(numpy_helper.from_array(np.array(value, dtype=np.float32), name))
        return name

    def zero_point(base: str) -> str:
        name = _unique_name(base, taken_tensors)
        graph.initializer.append(numpy_helper.from_array(np.array(0, dtype=np.int8), name))
        return name

    def from_table(name: str, side: str, why: List[str], qdq: Optional[str]) -> Optional[float]:
        """The scale of ``name`` from ``scales``, or None with the reason appended to ``why``."""
        if name not in scales:
            hint = f" (its {qdq} is not per-tensor int8 with zero point 0)" if qdq else ""
            why.append(f"no scale for its {side} '{name}'{hint}")
            return None
        problem = scale_problem(scales[name])
        if problem is not None:
            why.append(f"invalid scale for its {side} '{name}': {problem}")
            return None
        return float(np.float32(scales[name]))

    plan: Dict[int, Tuple[List[onnx.NodeProto], List[onnx.NodeProto]]] = {}
    for node in graph.node:
        if not is_silu_node(node):
            continue
        if _attr(node, "scale_in") is not None:
            report.already_int8 += 1
            continue
        x, y = node.input[0], node.output[0]
        report.scales_read.update((x, y))
        why: List[str] = []
        # input side: an existing DQ, or a scale from the table
        dq = producers.get(x)
        is_dq = dq is not None and dq.op_type == "DequantizeLinear"
        s_in = _per_tensor_int8_scale(graph, dq, producers) if is_dq else None
        x_int8 = dq.input[0] if dq is not None and s_in is not None else None
        if s_in is None:
            s_in = from_table(x, "input", why, "DequantizeLinear" if is_dq else None)
        # output side: a Q that is the only reader, or a scale from the table
        q_nodes = consumers.get(y, [])
        q = (
            q_nodes[0]
            if len(q_nodes) == 1 and uses.get(y, 0) == 1 and q_nodes[0].op_type == "QuantizeLinear"
            else None
        )
        s_out = _per_tensor_int8_scale(graph, q, producers) if q is not None else None
        if s_out is None:
            s_out = from_table(y, "output", why, "QuantizeLinear" if q is not None else None)
            q = None
        if why or s_in is None or s_out is None:
            report.stayed_float.append((node.name or y, "; ".join(why)))
            continue
        if x_int8 is not None:
            bypassed.add(x)
        before: List[onnx.NodeProto] = []
        after: List[onnx.NodeProto] = []
        if x_int8 is None:
            x_int8 = _unique_name(f"{x}/int8", taken_tensors)
            before.append(
                helper.make_node(
                    "QuantizeLinear",
                    [
                        x,
                        scale_initializer(f"{x}/silu_scale", s_in),
                        zero_point(f"{x}/silu_zero_point"),
                    ],
                    [x_int8],
                    name=_unique_name(f"{node.name}/QuantizeLinear", taken_nodes),
                )
            )
        if q is not None:
            y_int8 = q.output[0]
            absorbed.add(id(q))
        else:
            y_int8 = _unique_name(f"{y}/int8", taken_tensors)
            after.append(
                helper.make_node(
                    "DequantizeLinear",
                    [
                        y_int8,
                        scale_initializer(f"{y}/silu_scale", s_out),
                        zero_point(f"{y}/silu_zero_point"),
                    ],
                    [y],
                    name=_unique_name(f"{node.name}/DequantizeLinear", taken_nodes),
                )
            )
        del node.input[:]
        node.input.append(x_int8)
        del node.output[:]
        node.output.append(y_int8)
        node.attribute.extend(
            [helper.make_attribute("scale_in", s_in), helper.make_attribute("scale_out", s_out)]
        )
        plan[id(node)] = (before, after)
        count += 1
    if not count:
        return 0
    for n in graph.node:
        if id(n) in absorbed:
            continue
        before, after = plan.get(id(n), ([], []))
        new_nodes.extend(before)
        new_nodes.append(n)
        new_nodes.extend(after)
    _replace_nodes(graph, new_nodes)
    # DequantizeLinear nodes that only fed the SiLU inputs are now dead.
    uses = _uses(graph)
    _replace_nodes(
        graph,
        [
            n
            for n in graph.node
            if not (
                n.op_type == "DequantizeLinear"
                and n.output[0] in bypassed
                and uses.get(n.output[0], 0) == 0
            )
        ],
    )
    return count


# ---- expansion ----------------------------------------------------------------------


def _expand_graph(graph: onnx.GraphProto) -> int:
    taken_nodes = {n.name for n in graph.node if n.name}
    taken_tensors = (
        set(_producers(graph)) | {i.name for i in graph.input} | {i.name for i in graph.initializer}
    )
    new_nodes: List[onnx.NodeProto] = []
    count = 0

    def const(value: float, dtype: type, name: str) -> str:
        name = _unique_name(name, taken_tensors)
        graph.initializer.append(numpy_helper.from_array(np.array(value, dtype=dtype), name))
        return name

    for node in graph.node:
        if not is_silu_node(node):
            new_nodes.append(node)
            continue
        count += 1
        x, y = node.input[0], node.output[0]
        base = node.name or y
        s_in, s_out = _attr(node, "scale_in"), _attr(node, "scale_out")
        if s_in is not None and s_out is not None:
            d = _unique_name(f"{base}/dequantized", taken_tensors)
            m = _unique_name(f"{base}/silu", taken_tensors)
            new_nodes.append(
                helper.make_node(
                    "DequantizeLinear",
                    [
                        x,
                        const(s_in, np.float32, f"{base}/scale_in"),
                        const(0, np.int8, f"{base}/zero_point_in"),
                    ],
                    [d],
                    name=_unique_name(f"{base}/DequantizeLinear", taken_nodes),
                )
            )
            x, final = d, y
            y = m
        else:
            final = None
        s = _unique_name(f"{base}/sigmoid", taken_tensors)
        new_nodes.append(
            helper.make_node("Sigmoid", [x], [s], name=_unique_name(f"{base}/Sigmoid", taken_nodes))
        )
        new_nodes.append(
            helper.make_node("Mul", [x, s], [y], name=_unique_name(f"{base}/Mul", taken_nodes))
        )
        if final is not None:
            new_nodes.append(
                helper.make_node(
                    "QuantizeLinear",
                    [
                        y,
                        const(s_out, np.float32, f"{base}/scale_out"),
                        const(0, np.int8, f"{base}/zero_point_out"),
                    ],
                    [final],
                    name=_unique_name(f"{base}/QuantizeLinear", taken_nodes),
                )
            )
    if count:
        _replace_nodes(graph, new_nodes)
    return count
