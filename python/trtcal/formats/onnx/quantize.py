"""Explicit INT8 quantization of an ONNX model from a calibration table: QuantizeLinear /
DequantizeLinear pairs where TensorRT wants them. This is the only INT8 path of TensorRT 11
(and the recommended one of TensorRT 10).

Where the Q/DQ go is decided by :mod:`trtcal.onnx.placement`, one function per rule of
TensorRT's explicit-quantization guide: the activation inputs of Conv, ConvTranspose, Gemm and
MatMul (attention MatMuls included), the skip branch of residual Adds, pooling, Concat (one
scale shared by all inputs and the output) and Resize; nothing inside a SiLU (Sigmoid*Mul), and
optionally nothing in front of a detector head's Sigmoid. Activation scales are amax / 127 from
the table (the largest amax of a shared-scale group), int8 zero point 0; constant weights are
quantized per channel (Conv axis 0, ConvTranspose 1, Gemm 0 if transB else 1, MatMul the last
dim), scale = max|w| / 127 per channel, computed here from the weights.

Weights stay float initializers followed by QuantizeLinear -> DequantizeLinear: the form
TensorRT's ONNX parser consumes most commonly (it folds the weight Q at build time) and the
one ModelOpt and pytorch-quantization export. Biases are not quantized. Only the main graph
is rewritten (not the bodies of If/Loop/Scan). ``high_precision='fp16'``/``'bf16'`` then casts
everything left in float (:mod:`trtcal.onnx.precision`): TensorRT 11 networks are strongly
typed, so an FP32 remainder runs in FP32.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ...core._files import (
    atomic_write,
    save_onnx,  # atomic (temporary file, fsync, rename)
)
from ...core.names import match_names
from .. import _qdq
from .._onnx_files import load_onnx  # external data confined to the model's folder
from . import placement as _placement

PATH = "explicit Q/DQ (ONNX QuantizeLinear/DequantizeLinear)"
_MIN_OPSET = 13  # per-axis QuantizeLinear/DequantizeLinear
_FLOAT16_SCALE_OPSET = 19


@dataclass
class QuantizeReport:
    """What :func:`quantize` did."""

    path: str = PATH
    opset: int = 0
    activations: Dict[str, float] = field(default_factory=dict)  # tensor -> scale
    weights: Dict[str, Tuple[Optional[int], int]] = field(
        default_factory=dict
    )  # name -> (axis, channels)
    zero_weight_channels: Dict[str, int] = field(default_factory=dict)
    quantized_nodes: List[str] = field(default_factory=list)
    skipped: Dict[str, str] = field(default_factory=dict)  # node -> reason
    missing: List[str] = field(default_factory=list)  # activations not in the table
    unused: List[str] = field(default_factory=list)  # table names the graph does not use
    silu_int8: int = 0  # fused SiLU nodes made INT8
    placement: Optional[_placement.Placement] = None  # every rule's decisions
    shared_scales: List[List[str]] = field(default_factory=list)  # tensors quantized with one scale
    high_precision: str = "fp32"
    precision: Any = None  # trtcal.onnx.precision.PrecisionReport

    def summary(self) -> Dict[str, Any]:
        return {
            "path": self.path,
            "opset": self.opset,
            "activations": len(self.activations),
            "weights": len(self.weights),
            "nodes": len(self.quantized_nodes),
            "skipped": len(self.skipped),
            "missing": len(self.missing),
            "high_precision": self.high_precision,
        }

    def placement_lines(self) -> List[str]:
        """The placement report: every tensor quantized and why, every quantizable one left in
        float and why, and (with a high-precision remainder) the tensors kept in FP32."""
        lines = _placement.report_lines(self.placement or _placement.Placement())
        lines += [f"- {t}: not in the calibration table (missing='skip')" for t in self.missing]
        lines += [f"- node {n}: {why} (no rule applied)" for n, why in self.skipped.items()]
        for group in self.shared_scales:
            lines.append(f"- shared scale: {', '.join(group)}")
        if self.precision is not None:
            lines += [""] + self.precision.lines()
        return lines


def quantize(
    model: Any,
    table: Mapping[str, float],
    *,
    op_types: Sequence[str] = _qdq.DEFAULT_OP_TYPES,
    exclude_nodes: Union[str, Iterable[str]] = (),
    exclude_op_types: Iterable[str] = (),
    opset: Optional[int] = None,
    quantize_weights: bool = True,
    per_channel: bool = True,
    residual_add: bool = True,
    missing: str = "error",
    silu: bool = True,
    attention: bool = True,
    head_sigmoid_float: bool = True,
    high_precision: str = "fp32",
    keep_io_types: bool = True,
    placement_report: Optional[Union[str, "os.PathLike[str]"]] = None,
    output: Optional[Union[str, "os.PathLike[str]"]] = None,
    return_report: bool = False,
):
    """Inserts Q/DQ into a copy of ``model`` from ``table`` (tensor name -> amax).

    Parameters
    ----------
    model : onnx.ModelProto, path or bytes
    table : CalibrationTable or mapping name -> amax
        Ranges of the activations (weights are measured here).
    op_types : op types the placement rules may quantize (default: Conv, ConvTranspose, Gemm,
        MatMul, Add, MaxPool, AveragePool, GlobalAveragePool, Concat, Resize, Upsample).
    exclude_nodes : node names or globs (``'/head/*'``) left in float.
    exclude_op_types : op types left in float.
    opset : target opset of the default domain; default: the model's, raised to 13 (needed
        for per-channel Q/DQ; 19 for an FP16 remainder, 22 for BF16) with ONNX's version
        converter when lower.
    quantize_weights, per_channel : weight Q/DQ on, per channel (else per tensor).
    residual_add : quantize the skip branch of residual Adds.
    missing : 'error' (default) raises when an activation to quantize is not in the table;
        'skip' leaves that input in float and lists it in the report.
    silu : give each fused SiLU node (:func:`trtcal.onnx.fuse_silu`) whose input and output are in
        the table its INT8 scales as the plugin fields ``scale_in``/``scale_out`` (amax/127).
    attention : quantize MatMuls of two activations (attention's Q.K^T and Softmax.V).
    head_sigmoid_float : keep a detector head's output Sigmoid (and what feeds it through
        data-movement ops) out of INT8.
    high_precision : 'fp32' (default here), 'fp16' or 'bf16': the type everything not quantized
        is cast to (:func:`trtcal.onnx.precision.cast_remainder`); tensors whose calibrated range
        the type cannot hold stay FP32 and are named in the report.
    keep_io_types : graph inputs and outputs keep their declared types (Casts at the boundary).
    placement_report : path of a text file listing every tensor quantized and why, and every
        quantizable tensor left in float and why (also ``report.placement_lines()``).
    output : path to save the quantized model to.
    return_report : also return a :class:`QuantizeReport`.

    Returns
    -------
    onnx.ModelProto (and the report). Graph inputs and outputs keep their names (and, unless
    ``keep_io_types=False``, their types); the model's ``metadata_props`` get a
    ``trtcal.quantize`` entry naming the path used.
    Raises ValueError naming the tensor when an amax is 0 or not finite.
    """

    from . import precision as _precision

    if missing not in ("error", "skip"):
        raise ValueError(f"trtcal: missing must be 'error' or 'skip', got {missing!r}")
    unknown = set(op_types) - set(_placement.ALL_OP_TYPES)
    if unknown:
        raise ValueError(
            f"trtcal: cannot quantize op types {sorted(unknown)}; accepted: "
            f"{', '.join(_placement.ALL_OP_TYPES)}"
        )
    low = _precision.check_dtype(high_precision)
    m = _load(model)
    if opset is None and low != "fp32":
        opset = max(_default_opset(m), _precision.MIN_OPSET[low])
    m = _set_opset(m, opset)
    report = QuantizeReport(opset=_default_opset(m), high_precision=low)
    if low != "fp32" and report.opset < _precision.MIN_OPSET[low]:
        raise ValueError(
            f"trtcal: a {low} remainder needs opset >= {_precision.MIN_OPSET[low]} "
            f"({low} Q/DQ scales and kernels); got opset {report.opset}"
        )
    graph = m.graph
    node_names = [n.name for n in graph.node if n.name]
    excluded_nodes = set(match_names(node_names, exclude_nodes)) if exclude_nodes else set()
    if isinstance(exclude_nodes, str) and exclude_nodes and not excluded_nodes:
        raise ValueError(f"trtcal: exclude_nodes {exclude_nodes!r} matches no node name")
    elem_types = _elem_types(m)
    view = _placement.GraphView(m, elem_types)
    skip = _skipped_nodes(view, set(exclude_op_types), excluded_nodes, report)
    opts = _placement.PlacementOptions(
        op_types=tuple(t for t in op_types if t not in set(exclude_op_types)),
        residual_add=residual_add,
        attention=attention,
        head_sigmoid_float=head_sigmoid_float,
    )
    plan = _placement.plan(m, elem_types, opts, skip=skip)
    report.placement = plan
    writer = _QDQWriter(m, view, elem_types, report)
    groups = plan.scale_groups()
    amax = _effective_amax(table, groups)
    node_of = {view.label(n): n for n in graph.node}
    inserted: Dict[str, List[Any]] = {}  # node label -> Q/DQ nodes to put in front of it
    for d in plan.quantized():
        node = node_of[d.node]
        if d.tensor not in amax:
            if missing == "error":
                raise KeyError(
                    f"trtcal: tensor '{d.tensor}' (input {d.index} of {node.op_type} node "
                    f"'{node.name}') is not in "
                    "the calibration table; calibrate it, exclude the node, or pass missing='skip'"
                )
            if d.tensor not in report.missing:
                report.missing.append(d.tensor)
            continue
        scale = _qdq.activation_scale(amax, d.tensor)
        dq_out, nodes = writer.qdq(d.tensor, np.float32(amax[d.tensor]), None)
        report.activations[d.tensor] = scale
        node.input[d.index] = dq_out
        inserted.setdefault(d.node, []).extend(nodes)
        if d.node not in report.quantized_nodes:
            report.quantized_nodes.append(d.node)
    if quantize_weights:
        for w in plan.weights:
            node = node_of[w.node]
            arr = view.constant(w.tensor)
            assert arr is not None  # the plan holds constant weights only
            dq_out, nodes = writer.weight(node, w.tensor, arr, w.axis if per_channel else None)
            node.input[w.index] = dq_out
            inserted.setdefault(w.node, []).extend(nodes)
            if w.node not in report.quantized_nodes:
                report.quantized_nodes.append(w.node)
    report.shared_scales = [
        sorted(g)
        for g in {id(g): g for g in groups.values()}.values()
        if len(g & set(report.activations)) > 1
    ]
    _splice(graph, view, inserted, writer.new_inits)
    if silu:
        m, graph = _silu_scales(m, table, report)
    used = set(report.activations)
    report.unused = [n for n in table if n not in used]
    if low != "fp32":
        m, report.precision = _precision.cast_remainder(
            m, low, table=table, keep_io_types=keep_io_types
        )
    _finish(m, report, output, placement_report)
    return (m, report) if return_report else m


def _splice(
    graph: Any, view: "_placement.GraphView", inserted: Mapping[str, List[Any]], inits: List[Any]
) -> None:
    """Puts each node's Q/DQ pairs right in front of it (the graph stays topologically sorted)."""
    new_nodes: List[Any] = []
    for node in graph.node:
        new_nodes.extend(inserted.get(view.label(node), []))
        new_nodes.append(node)
    del graph.node[:]
    graph.node.extend(new_nodes)
    graph.initializer.extend(inits)


def _skipped_nodes(
    view: "_placement.GraphView", excluded_types: set, excluded_nodes: set, report: QuantizeReport
) -> set:
    """Labels of nodes no rule may touch: excluded by the user, or already fed by a DQ."""
    skip = set()
    for node in view.nodes:
        if node.op_type not in _placement.ALL_OP_TYPES:
            continue
        label = view.label(node)
        if node.op_type in excluded_types or (node.name and node.name in excluded_nodes):
            report.skipped[label] = "excluded"
            skip.add(label)
        elif any(
            i
            and view.producer.get(i) is not None
            and view.producer[i].op_type == "DequantizeLinear"
            for i in node.input
        ):
            report.skipped[label] = "already has Q/DQ inputs"
            skip.add(label)
    return skip


def _effective_amax(table: Mapping[str, float], groups: Mapping[str, set]) -> Dict[str, float]:
    """amax per tensor: the table's, or for a tensor of a shared-scale group the largest amax of
    the group's tensors that the table has (a Concat's output range is its inputs' widest)."""
    out: Dict[str, float] = {}
    for t, g in groups.items():
        known = [float(table[x]) for x in g if x in table]
        if known:
            out[t] = max(known)
    for t in table:
        out.setdefault(t, float(table[t]))
    return out


class _QDQWriter:
    """Makes Q/DQ node pairs and their scale/zero-point initializers, one pair per (tensor,
    axis)."""

    def __init__(
        self,
        m: Any,
        view: "_placement.GraphView",
        elem_types: Dict[str, int],
        report: QuantizeReport,
        quant_dtype: str = "int8",
    ):
        self.taken = _all_names(m)
        self.elem_types = elem_types
        self.report = report
        self.view = view
        self.quant_dtype = quant_dtype
        self.new_inits: List[Any] = []
        self.qdq_of: Dict[Tuple[str, Optional[int]], str] = {}

    def fresh(self, base: str) -> str:
        name, i = base, 1
        while name in self.taken:
            name, i = f"{base}_{i}", i + 1
        self.taken.add(name)
        return name

    def scale_type(self, name: str, default: Optional[int] = None) -> int:
        import onnx

        t = self.elem_types.get(name, default or onnx.TensorProto.FLOAT)
        if t == onnx.TensorProto.FLOAT:
            return t
        if (
            t in (onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)
            and self.report.opset >= _FLOAT16_SCALE_OPSET
        ):
            return t
        raise ValueError(
            f"trtcal: tensor '{name}' has ONNX element type {onnx.TensorProto.DataType.Name(t)}; "
            "Q/DQ at opset "
            f"{self.report.opset} needs float32 (float16/bfloat16 need opset >= "
            f"{_FLOAT16_SCALE_OPSET}: pass opset=19)"
        )

    def qdq(
        self, src: str, amax: Any, axis: Optional[int], scale_type: Optional[int] = None
    ) -> Tuple[str, list]:
        """(dequantized tensor name, [Q, DQ]) for ``src`` with ``amax`` (scalar or per channel)."""
        import onnx
        from onnx import helper, numpy_helper

        key = (src, axis)
        if key in self.qdq_of:
            return self.qdq_of[key], []
        st = scale_type or self.scale_type(src)
        base = src.replace(":", "_")
        scale, zero = _qdq.scale_zero_point(
            amax, self.quant_dtype, onnx.helper.tensor_dtype_to_np_dtype(st)
        )
        s = numpy_helper.from_array(scale, self.fresh(f"{base}_scale"))
        zp = numpy_helper.from_array(zero, self.fresh(f"{base}_zero_point"))
        self.new_inits.extend([s, zp])
        q_out, dq_out = self.fresh(f"{base}_quantized"), self.fresh(f"{base}_dequantized")
        kw = {} if axis is None else {"axis": int(axis)}
        q = helper.make_node(
            "QuantizeLinear",
            [src, s.name, zp.name],
            [q_out],
            name=self.fresh(f"{base}_QuantizeLinear"),
            **kw,
        )
        dq = helper.make_node(
            "DequantizeLinear",
            [q_out, s.name, zp.name],
            [dq_out],
            name=self.fresh(f"{base}_DequantizeLinear"),
            **kw,
        )
        self.qdq_of[key] = dq_out
        return dq_out, [q, dq]

    def weight(self, node: Any, src: str, w: np.ndarray, axis: Optional[int]) -> Tuple[str, list]:
        import onnx

        if not np.issubdtype(w.dtype, np.floating):
            raise ValueError(
                f"trtcal: weight '{src}' of node '{node.name}' has dtype {w.dtype}; expected float"
            )
        scales, zero = _qdq.weight_scales(w, axis, src)
        wtype = self.elem_types.get(src) or onnx.helper.np_dtype_to_tensor_dtype(w.dtype)
        dq_out, nodes = self.qdq(
            src, scales.astype(np.float64) * _qdq.INT8_MAX, axis, self.scale_type(src, wtype)
        )
        self.report.weights[src] = (axis, int(scales.size))
        if zero:
            self.report.zero_weight_channels[src] = zero
        return dq_out, nodes


def _silu_scales(m: Any, table: Mapping[str, float], report: QuantizeReport):
    from .fuse import is_silu_node, quantize_silu

    silu_scales = {}
    for node in m.graph.node:
        if is_silu_node(node) and node.input[0] in table and node.output[0] in table:
            for t in (node.input[0], node.output[0]):
                silu_scales[t] = _qdq.activation_scale(table, t)
                report.activations[t] = silu_scales[t]
    if silu_scales:
        m, report.silu_int8 = quantize_silu(m, silu_scales, inplace=True)  # type: ignore[misc]
    return m, m.graph


def _finish(m: Any, report: QuantizeReport, output: Any, placement_report: Any) -> None:
    import onnx

    kept = [p for p in m.metadata_props if p.key != "trtcal.quantize"]
    del m.metadata_props[:]
    m.metadata_props.extend(kept)
    meta = m.metadata_props.add()
    meta.key, meta.value = "trtcal.quantize", json.dumps(report.summary())
    try:
        onnx.checker.check_model(m)
    except onnx.checker.ValidationError as exc:
        raise ValueError(
            f"trtcal: the Q/DQ model fails ONNX's checker ({str(exc).strip().splitlines()[0]}); "
            "check the input model with onnx.checker.check_model"
        ) from exc
    if output is not None:
        save_onnx(m, os.fspath(output))
    if placement_report is not None:
        atomic_write(os.fspath(placement_report), "\n".join(report.placement_lines()) + "\n")


def _load(model: Any):
    import onnx

    if isinstance(model, onnx.ModelProto):
        m = onnx.ModelProto()
        m.CopyFrom(model)
        return m
    if isinstance(model, (bytes, bytearray)):
        return onnx.load_from_string(bytes(model))
    if isinstance(model, (str, os.PathLike)):
        return load_onnx(model)
    raise TypeError(
        f"trtcal: model must be an onnx.ModelProto, a path or bytes, not {type(model).__name__}"
    )


def _default_opset(m) -> int:
    for o in m.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    raise ValueError("trtcal: the model imports no default-domain opset")


def _set_opset(m, opset: Optional[int]):
    from onnx import version_converter

    current = _default_opset(m)
    target = max(current, _MIN_OPSET) if opset is None else int(opset)
    if target < _MIN_OPSET:
        raise ValueError(
            f"trtcal: opset {target} is too old: per-channel QuantizeLinear/DequantizeLinear "
            f"need opset >= {_MIN_OPSET}"
        )
    if target == current:
        return m
    try:
        return version_converter.convert_version(m, target)
    except Exception as exc:  # the converter raises several types
        raise ValueError(
            f"trtcal: cannot convert the model from opset {current} to {target} ({exc}); "
            "convert it first or pass the model's own opset"
        ) from None


def _elem_types(m) -> Dict[str, int]:
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(m)
    except Exception:  # inference is best effort: unknown tensors count as float32
        inferred = m
    g = inferred.graph
    out = {}
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
            out[vi.name] = vi.type.tensor_type.elem_type
    for t in g.initializer:
        out[t.name] = t.data_type
    return out


def _all_names(m) -> set:
    g = m.graph
    names = {t.name for t in g.initializer} | {
        vi.name for vi in list(g.input) + list(g.output) + list(g.value_info)
    }
    for n in g.node:
        names.update(n.input)
        names.update(n.output)
        if n.name:
            names.add(n.name)
    return names
