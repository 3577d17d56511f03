"""Explicit INT8 quantization of an ONNX model from a calibration table: QuantizeLinear /
DequantizeLinear pairs where TensorRT wants them. This is the only INT8 path of TensorRT 11
(and the recommended one of TensorRT 10).

Placement (TensorRT's Q/DQ placement guidance, as ModelOpt and pytorch-quantization export):

* the activation inputs of Conv, ConvTranspose, Gemm and MatMul: per tensor,
  scale = amax / 127 from the table, int8 zero point 0;
* their constant weights: per channel (Conv axis 0, ConvTranspose 1, Gemm 0 if transB else 1,
  MatMul the last dim), scale = max|w| / 127 per channel, computed here from the weights;
* the residual input of an Add whose other input a weighted layer produces (so that
  TensorRT fuses the add into that layer's INT8 kernel).

Weights stay float initializers followed by QuantizeLinear -> DequantizeLinear: the form
TensorRT's ONNX parser consumes most commonly (it folds the weight Q at build time) and the
one ModelOpt and pytorch-quantization export. Biases are not quantized. Only the main graph
is rewritten (not the bodies of If/Loop/Scan).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .. import _qdq
from ..table import match_names

PATH = "explicit Q/DQ (ONNX QuantizeLinear/DequantizeLinear)"
_MIN_OPSET = 13  # per-axis QuantizeLinear/DequantizeLinear
_FLOAT16_SCALE_OPSET = 19


@dataclass
class QuantizeReport:
    """What :func:`quantize` did."""

    path: str = PATH
    opset: int = 0
    activations: Dict[str, float] = field(default_factory=dict)   # tensor -> scale
    weights: Dict[str, Tuple[Optional[int], int]] = field(default_factory=dict)  # name -> (axis, channels)
    zero_weight_channels: Dict[str, int] = field(default_factory=dict)
    quantized_nodes: List[str] = field(default_factory=list)
    skipped: Dict[str, str] = field(default_factory=dict)          # node -> reason
    missing: List[str] = field(default_factory=list)               # activations not in the table
    unused: List[str] = field(default_factory=list)                # table names the graph does not use
    silu_int8: int = 0                                             # fused SiLU nodes made INT8

    def summary(self) -> Dict[str, Any]:
        return {"path": self.path, "opset": self.opset, "activations": len(self.activations),
                "weights": len(self.weights), "nodes": len(self.quantized_nodes),
                "skipped": len(self.skipped), "missing": len(self.missing)}


def quantize(model: Any, table: Mapping[str, float], *,
             op_types: Sequence[str] = _qdq.DEFAULT_OP_TYPES,
             exclude_nodes: Union[str, Iterable[str]] = (),
             exclude_op_types: Iterable[str] = (),
             opset: Optional[int] = None,
             quantize_weights: bool = True,
             per_channel: bool = True,
             residual_add: bool = True,
             missing: str = "error",
             silu: bool = True,
             output: Optional[Union[str, "os.PathLike[str]"]] = None,
             return_report: bool = False):
    """Inserts Q/DQ into a copy of ``model`` from ``table`` (tensor name -> amax).

    Parameters
    ----------
    model : onnx.ModelProto, path or bytes
    table : CalibrationTable or mapping name -> amax
        Ranges of the activations (weights are measured here).
    op_types : op types to quantize (default Conv, ConvTranspose, Gemm, MatMul, Add).
    exclude_nodes : node names or globs (``'/head/*'``) left in float.
    exclude_op_types : op types left in float.
    opset : target opset of the default domain; default: the model's, raised to 13 (needed
        for per-channel Q/DQ) with ONNX's version converter when lower.
    quantize_weights, per_channel : weight Q/DQ on, per channel (else per tensor).
    residual_add : quantize the residual input of an Add fed by a weighted layer.
    missing : 'error' (default) raises when an activation to quantize is not in the table;
        'skip' leaves that input in float and lists it in the report.
    silu : give each fused SiLU node (:func:`trtcal.onnx.fuse_silu`) whose input and output are in
        the table its INT8 scales as the plugin fields ``scale_in``/``scale_out`` (amax/127), so
        one INT8 SiLU plugin replaces Sigmoid, Mul and their Q/DQ (see
        :func:`trtcal.onnx.quantize_silu`).
    output : path to save the quantized model to.
    return_report : also return a :class:`QuantizeReport`.

    Returns
    -------
    onnx.ModelProto (and the report). Graph inputs and outputs keep their names and types;
    the model's ``metadata_props`` get a ``trtcal.quantize`` entry naming the path used.
    Raises ValueError naming the tensor when an amax is 0 or not finite.
    """
    import onnx
    from onnx import helper, numpy_helper

    if missing not in ("error", "skip"):
        raise ValueError(f"trtcal: missing must be 'error' or 'skip', got {missing!r}")
    unknown = set(op_types) - set(_qdq.DEFAULT_OP_TYPES)
    if unknown:
        raise ValueError(f"trtcal: cannot quantize op types {sorted(unknown)}; accepted: {_qdq.DEFAULT_OP_TYPES}")
    m = _load(model)
    m = _set_opset(m, opset)
    report = QuantizeReport(opset=_default_opset(m))
    graph = m.graph
    excluded_types = set(exclude_op_types)
    node_names = [n.name for n in graph.node if n.name]
    excluded_nodes = set(match_names(node_names, exclude_nodes)) if exclude_nodes else set()
    if isinstance(exclude_nodes, str) and exclude_nodes and not excluded_nodes:
        raise ValueError(f"trtcal: exclude_nodes {exclude_nodes!r} matches no node name")

    inits = {t.name: t for t in graph.initializer}
    consts = {n.output[0]: n for n in graph.node if n.op_type == "Constant" and n.output}
    producer = {o: n for n in graph.node for o in n.output}
    elem_types = _elem_types(m)
    taken = _all_names(m)

    def weight_of(name: str) -> Optional[np.ndarray]:
        if name in inits:
            return numpy_helper.to_array(inits[name])
        c = consts.get(name)
        if c is not None:
            for a in c.attribute:
                if a.name == "value":
                    return numpy_helper.to_array(a.t)
        return None

    def fresh(base: str) -> str:
        name, i = base, 1
        while name in taken:
            name, i = f"{base}_{i}", i + 1
        taken.add(name)
        return name

    def produced_by_weighted(name: str) -> bool:
        n = producer.get(name)
        while n is not None and n.op_type == "BatchNormalization":  # unfolded BN after a conv
            n = producer.get(n.input[0])
        return n is not None and n.op_type in _qdq.WEIGHTED_OPS

    def float_scale_type(name: str) -> int:
        t = elem_types.get(name, onnx.TensorProto.FLOAT)
        if t == onnx.TensorProto.FLOAT:
            return t
        if t in (onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16) and report.opset >= _FLOAT16_SCALE_OPSET:
            return t
        raise ValueError(
            f"trtcal: tensor '{name}' has ONNX element type {onnx.TensorProto.DataType.Name(t)}; Q/DQ at opset "
            f"{report.opset} needs float32 (float16/bfloat16 need opset >= {_FLOAT16_SCALE_OPSET}: pass opset=19)")

    new_inits: List[Any] = []
    qdq_of: Dict[Tuple[str, Optional[int]], str] = {}  # (tensor, axis) -> dequantized name

    def add_qdq(src: str, scale: np.ndarray, axis: Optional[int], scale_type: int) -> Tuple[str, list]:
        key = (src, axis)
        if key in qdq_of:
            return qdq_of[key], []
        base = src.replace(":", "_")
        np_type = onnx.helper.tensor_dtype_to_np_dtype(scale_type)
        s = numpy_helper.from_array(np.asarray(scale).astype(np_type), fresh(f"{base}_scale"))
        zp = numpy_helper.from_array(np.zeros(np.shape(scale), dtype=np.int8), fresh(f"{base}_zero_point"))
        new_inits.extend([s, zp])
        q_out, dq_out = fresh(f"{base}_quantized"), fresh(f"{base}_dequantized")
        kw = {} if axis is None else {"axis": int(axis)}
        q = helper.make_node("QuantizeLinear", [src, s.name, zp.name], [q_out],
                             name=fresh(f"{base}_QuantizeLinear"), **kw)
        dq = helper.make_node("DequantizeLinear", [q_out, s.name, zp.name], [dq_out],
                              name=fresh(f"{base}_DequantizeLinear"), **kw)
        qdq_of[key] = dq_out
        return dq_out, [q, dq]

    def activation(node, idx: int) -> Optional[list]:
        src = node.input[idx]
        if src not in table:
            if missing == "error":
                raise KeyError(
                    f"trtcal: tensor '{src}' (input {idx} of {node.op_type} node '{node.name}') is not in the "
                    "calibration table; calibrate it, exclude the node, or pass missing='skip'")
            if src not in report.missing:
                report.missing.append(src)
            return None
        scale = _qdq.activation_scale(table, src)
        dq_out, nodes = add_qdq(src, np.float32(scale), None, float_scale_type(src))
        report.activations[src] = scale
        node.input[idx] = dq_out
        return nodes

    def weight(node, idx: int, w: np.ndarray, axis: Optional[int]) -> list:
        src = node.input[idx]
        if not np.issubdtype(w.dtype, np.floating):
            raise ValueError(f"trtcal: weight '{src}' of node '{node.name}' has dtype {w.dtype}; expected float")
        ax = axis if per_channel else None
        scales, zero = _qdq.weight_scales(w, ax, src)
        wtype = elem_types.get(src) or onnx.helper.np_dtype_to_tensor_dtype(w.dtype)
        dq_out, nodes = add_qdq(src, scales, ax, float_scale_type_of(src, wtype))
        report.weights[src] = (ax, int(scales.size))
        if zero:
            report.zero_weight_channels[src] = zero
        node.input[idx] = dq_out
        return nodes

    def float_scale_type_of(name: str, t: int) -> int:
        elem_types.setdefault(name, t)
        return float_scale_type(name)

    new_nodes: List[Any] = []
    for node in graph.node:
        label = node.name or f"{node.op_type}({', '.join(node.output)})"
        if node.op_type not in op_types:
            new_nodes.append(node)
            continue
        if node.op_type in excluded_types or (node.name and node.name in excluded_nodes):
            report.skipped[label] = "excluded"
            new_nodes.append(node)
            continue
        inputs = list(node.input)
        already = [i for i in inputs if i and producer.get(i) is not None and producer[i].op_type == "DequantizeLinear"]
        if already:
            report.skipped[label] = "already has Q/DQ inputs"
            new_nodes.append(node)
            continue
        added: List[Any] = []
        if node.op_type == "Add":
            if not residual_add or len(inputs) != 2 or any(weight_of(i) is not None for i in inputs):
                new_nodes.append(node)
                continue
            for idx in _qdq.residual_add_inputs([produced_by_weighted(i) for i in inputs]):
                added += activation(node, idx) or []
        else:
            for idx in (0, 1):
                if idx >= len(inputs) or not inputs[idx]:
                    continue
                w = weight_of(inputs[idx])
                if w is None:
                    added += activation(node, idx) or []
                elif quantize_weights:
                    added += weight(node, idx, w, _weight_axis_for(node, idx, w))
        if node.input[:2] != inputs[:2] or added:
            report.quantized_nodes.append(label)
        new_nodes.extend(added)
        new_nodes.append(node)

    del graph.node[:]
    graph.node.extend(new_nodes)
    graph.initializer.extend(new_inits)
    if silu:
        from .fuse import is_silu_node, quantize_silu

        silu_scales = {}
        for node in graph.node:
            if is_silu_node(node) and node.input[0] in table and node.output[0] in table:
                for t in (node.input[0], node.output[0]):
                    silu_scales[t] = _qdq.activation_scale(table, t)
                    report.activations[t] = silu_scales[t]
        if silu_scales:
            m, report.silu_int8 = quantize_silu(m, silu_scales, inplace=True)
            graph = m.graph
    used = set(report.activations)
    report.unused = [n for n in table if n not in used]
    kept = [p for p in m.metadata_props if p.key != "trtcal.quantize"]
    del m.metadata_props[:]
    m.metadata_props.extend(kept)
    meta = m.metadata_props.add()
    meta.key, meta.value = "trtcal.quantize", json.dumps(report.summary())
    try:
        onnx.checker.check_model(m)
    except onnx.checker.ValidationError as exc:
        raise ValueError(f"trtcal: the Q/DQ model fails ONNX's checker ({str(exc).strip().splitlines()[0]}); "
                         "check the input model with onnx.checker.check_model") from exc
    if output is not None:
        from .._files import save_onnx  # atomic (temporary file, fsync, rename)

        save_onnx(m, os.fspath(output))
    return (m, report) if return_report else m


def _weight_axis_for(node, idx: int, w: np.ndarray) -> Optional[int]:
    """Per-channel axis of input ``idx`` when it is the op's weight, else None (per tensor)."""
    if node.op_type in ("Conv", "ConvTranspose"):
        return _qdq.weight_axis(node.op_type, w.ndim) if idx == 1 else None
    if node.op_type == "Gemm" and idx == 1:
        trans_b = any(a.name == "transB" and a.i for a in node.attribute)
        return _qdq.weight_axis("Gemm", w.ndim, trans_b)
    if node.op_type == "MatMul" and idx == 1 and w.ndim >= 2:
        return _qdq.weight_axis("MatMul", w.ndim)
    return None


def _load(model: Any):
    import onnx

    if isinstance(model, onnx.ModelProto):
        m = onnx.ModelProto()
        m.CopyFrom(model)
        return m
    if isinstance(model, (bytes, bytearray)):
        return onnx.load_from_string(bytes(model))
    if isinstance(model, (str, os.PathLike)):
        return onnx.load(os.fspath(model))
    raise TypeError(f"trtcal: model must be an onnx.ModelProto, a path or bytes, not {type(model).__name__}")


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
        raise ValueError(f"trtcal: opset {target} is too old: per-channel QuantizeLinear/DequantizeLinear "
                         f"need opset >= {_MIN_OPSET}")
    if target == current:
        return m
    try:
        return version_converter.convert_version(m, target)
    except Exception as exc:  # the converter raises several types
        raise ValueError(f"trtcal: cannot convert the model from opset {current} to {target} ({exc}); "
                         "convert it first or pass the model's own opset") from None


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
    names = {t.name for t in g.initializer} | {vi.name for vi in list(g.input) + list(g.output) + list(g.value_info)}
    for n in g.node:
        names.update(n.input)
        names.update(n.output)
        if n.name:
            names.add(n.name)
    return names
