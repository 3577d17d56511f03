"""Ranges into a TensorRT ``INetworkDefinition`` built in code (or parsed from ONNX).

* :func:`apply_dynamic_ranges` (TensorRT <= 10, implicit INT8): ``ITensor.set_dynamic_range(
  -amax, amax)`` on every tensor the table names; reports what is missing on each side.
* :func:`quantize_network` (TensorRT 10 and 11, explicit INT8): ``add_quantize`` /
  ``add_dequantize`` before Conv, Deconv and MatrixMultiply layers and on residual adds, with
  the placement and scales of :func:`trtcal.onnx.quantize`.

Both take numpy weights through ``trt.Weights``; TensorRT does not copy them until the
engine is built, so the returned report holds them: keep it alive until then.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .. import _qdq
from ..table import match_names
from ._runtime import load_tensorrt, require_implicit_int8

DYNAMIC_RANGE_PATH = "implicit INT8 (ITensor.set_dynamic_range)"
QDQ_PATH = "explicit Q/DQ (INetworkDefinition.add_quantize/add_dequantize)"


# ---------------------------------------------------------------------- dynamic ranges


@dataclass
class DynamicRangeReport:
    path: str = DYNAMIC_RANGE_PATH
    applied: Dict[str, float] = field(default_factory=dict)  # tensor -> amax set
    missing_in_table: List[str] = field(default_factory=list)  # network tensors without a range
    missing_in_network: List[str] = field(default_factory=list)  # table names the network lacks
    invalid: Dict[str, str] = field(default_factory=dict)  # tensor -> why it was not set
    failed: List[str] = field(default_factory=list)  # set_dynamic_range returned False


def plan_dynamic_ranges(
    network_tensors: Sequence[str], table: Mapping[str, float]
) -> DynamicRangeReport:
    """Which ranges go where, from names alone: the network's float tensors (in network
    order) against the table. A range is usable when amax is finite and positive."""
    report = DynamicRangeReport()
    present = set(network_tensors)
    for name in network_tensors:
        if name not in table:
            report.missing_in_table.append(name)
            continue
        amax = float(table[name])
        if not math.isfinite(amax) or amax <= 0:
            report.invalid[name] = f"amax {amax} is not a positive finite number"
            continue
        report.applied[name] = amax
    report.missing_in_network = [n for n in table if n not in present]
    return report


def network_tensors(network: Any, trt: Any = None) -> List[Any]:
    """The network's inputs and layer outputs that can carry an INT8 range: execution
    tensors of a float or int8 type (no shape tensors, no outputs of shape layers)."""
    trt = trt or load_tensorrt("network_tensors")
    kinds = {trt.float32, trt.float16, trt.int8}
    if hasattr(trt, "bfloat16"):
        kinds.add(trt.bfloat16)
    seen, out = set(), []

    def add(t: Any) -> None:
        if t is None or t.name in seen:
            return
        if getattr(t, "is_shape_tensor", False) or t.dtype not in kinds:
            return
        seen.add(t.name)
        out.append(t)

    for i in range(network.num_inputs):
        add(network.get_input(i))
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type == trt.LayerType.SHAPE:
            continue
        for j in range(layer.num_outputs):
            add(layer.get_output(j))
    return out


def apply_dynamic_ranges(
    network: Any, table: Mapping[str, float], *, strict: bool = False
) -> DynamicRangeReport:
    """Sets ``[-amax, amax]`` on every network tensor the table names (TensorRT <= 10).

    Returns a :class:`DynamicRangeReport`: the ranges set, the network tensors the table
    lacks (TensorRT then runs them in higher precision or fails to build, depending on the
    flags), the table names the network lacks, and ranges refused (amax 0 or not finite).
    ``strict`` raises instead when the table lacks a network tensor or holds an unusable range.
    Remember ``config.set_flag(trt.BuilderFlag.INT8)``; no calibrator is needed.
    """
    trt = require_implicit_int8("apply_dynamic_ranges (ITensor.set_dynamic_range)")
    tensors = network_tensors(network, trt)
    by_name = {t.name: t for t in tensors}
    report = plan_dynamic_ranges([t.name for t in tensors], table)
    if strict and (report.missing_in_table or report.invalid):
        bad = report.missing_in_table[:5] + list(report.invalid)[:5]
        raise ValueError(
            f"trtcal: {len(report.missing_in_table)} network tensors have no range and "
            f"{len(report.invalid)} have an unusable one (first: {bad})"
        )
    for name, amax in report.applied.items():
        t = by_name[name]
        if hasattr(t, "set_dynamic_range"):
            ok = t.set_dynamic_range(-amax, amax)
        else:  # older bindings expose a property
            t.dynamic_range = (-amax, amax)
            ok = True
        if ok is False:
            report.failed.append(name)
    return report


# ---------------------------------------------------------------------- explicit Q/DQ


@dataclass
class NetworkQuantizeReport:
    path: str = QDQ_PATH
    activations: Dict[str, float] = field(default_factory=dict)
    weights: Dict[str, Tuple[Optional[int], int]] = field(default_factory=dict)
    quantized_layers: List[str] = field(default_factory=list)
    skipped: Dict[str, str] = field(default_factory=dict)
    missing: List[str] = field(default_factory=list)
    keepalive: List[np.ndarray] = field(
        default_factory=list, repr=False
    )  # weights TensorRT points to


def quantize_network(
    network: Any,
    table: Mapping[str, float],
    *,
    op_types: Sequence[str] = _qdq.DEFAULT_OP_TYPES,
    exclude_layers: Union[str, Iterable[str]] = (),
    quantize_weights: bool = True,
    per_channel: bool = True,
    residual_add: bool = True,
    missing: str = "error",
) -> NetworkQuantizeReport:
    """Adds Q/DQ layers to ``network`` from ``table`` (explicit INT8; TensorRT 10 and 11).

    Conv (``CONVOLUTION``), ConvTranspose (``DECONVOLUTION``) and MatMul
    (``MATRIX_MULTIPLY``) get a per-tensor Q/DQ on their activation inputs and a per-channel
    Q/DQ on their weights (kernel weights become a constant input tensor); ``ELEMENTWISE``
    SUM layers get Q/DQ on the residual input (see :func:`trtcal.onnx.quantize`). Gemm is
    MatrixMultiply in TensorRT. Keep the returned report alive until the engine is built.
    """
    trt = load_tensorrt("quantize_network")
    if missing not in ("error", "skip"):
        raise ValueError(f"trtcal: missing must be 'error' or 'skip', got {missing!r}")
    LT = trt.LayerType
    kinds = {
        LT.CONVOLUTION: "Conv",
        LT.DECONVOLUTION: "ConvTranspose",
        LT.MATRIX_MULTIPLY: "MatMul",
        LT.ELEMENTWISE: "Add",
    }
    wanted = set(op_types) | ({"MatMul"} if "Gemm" in op_types else set())
    layers = [
        _downcast(network.get_layer(i), trt) for i in range(network.num_layers)
    ]  # before we add any
    excluded = (
        set(match_names([lay.name for lay in layers], exclude_layers)) if exclude_layers else set()
    )
    producer = {lay.get_output(j).name: lay for lay in layers for j in range(lay.num_outputs)}
    report = NetworkQuantizeReport()
    dq_of: Dict[Tuple[str, Optional[int]], Any] = {}

    def constant(arr: np.ndarray) -> Any:
        arr = np.array(
            arr, order="C", copy=True
        )  # keeps 0-D scales 0-D (ascontiguousarray would not)
        report.keepalive.append(arr)
        return network.add_constant(arr.shape, trt.Weights(arr)).get_output(0)

    def qdq(tensor: Any, scale: np.ndarray, axis: Optional[int]) -> Any:
        key = (tensor.name, axis)
        if key in dq_of:
            return dq_of[key]
        s = constant(np.asarray(scale, dtype=np.float32))
        q = _add_quantize(network, trt, tensor, s)
        q.name = f"{tensor.name}_QuantizeLinear"
        if axis is not None:
            q.axis = int(axis)
        dq = _add_dequantize(network, trt, q.get_output(0), s, tensor.dtype)
        dq.name = f"{tensor.name}_DequantizeLinear"
        if axis is not None:
            dq.axis = int(axis)
        dq_of[key] = dq.get_output(0)
        return dq_of[key]

    def activation(layer: Any, idx: int) -> bool:
        t = layer.get_input(idx)
        if t.name not in table:
            if missing == "error":
                raise KeyError(
                    f"trtcal: tensor '{t.name}' (input {idx} of layer '{layer.name}') is not in "
                    "the calibration table; calibrate it, exclude the layer, or pass missing='skip'"
                )
            report.missing.append(t.name)
            return False
        scale = _qdq.activation_scale(table, t.name)
        layer.set_input(idx, qdq(t, np.float32(scale), None))
        report.activations[t.name] = scale
        return True

    def weight_tensor(t: Any) -> Optional[np.ndarray]:
        p = producer.get(t.name)
        if p is None or p.type != LT.CONSTANT:
            return None
        w = np.asarray(p.weights)
        return w.reshape(tuple(p.shape)) if w.size == int(np.prod(tuple(p.shape))) else w

    def weight(layer: Any, idx: int, t: Any, w: np.ndarray, axis: Optional[int]) -> None:
        ax = axis if per_channel else None
        scales, _ = _qdq.weight_scales(w, ax, t.name)
        layer.set_input(idx, qdq(t, scales, ax))
        report.weights[t.name] = (ax, int(scales.size))

    for layer in layers:
        kind = kinds.get(layer.type)
        if kind is None or kind not in wanted:
            continue
        if layer.name in excluded:
            report.skipped[layer.name] = "excluded"
            continue
        inputs = [layer.get_input(i) for i in range(layer.num_inputs)]
        if any(
            t is not None
            and producer.get(t.name) is not None
            and producer[t.name].type == LT.DEQUANTIZE
            for t in inputs
        ):
            report.skipped[layer.name] = "already has Q/DQ inputs"
            continue
        changed = False
        if kind == "Add":
            if layer.op != trt.ElementWiseOperation.SUM or not residual_add or len(inputs) != 2:
                continue
            if any(weight_tensor(t) is not None for t in inputs):
                continue
            flags = [_from_weighted(producer, t, LT) for t in inputs]
            for idx in _qdq.residual_add_inputs(flags):
                changed |= activation(layer, idx)
        elif kind in ("Conv", "ConvTranspose"):
            changed |= activation(layer, 0)
            if quantize_weights:
                changed |= _quantize_kernel(
                    network, trt, layer, kind, weight, weight_tensor, constant
                )
        else:  # MatMul
            for idx, op in ((0, layer.op0), (1, layer.op1)):
                t = inputs[idx]
                w = weight_tensor(t)
                if w is None:
                    changed |= activation(layer, idx)
                elif quantize_weights:
                    axis = None
                    if idx == 1 and w.ndim >= 2 and op != trt.MatrixOperation.VECTOR:
                        axis = w.ndim - 2 if op == trt.MatrixOperation.TRANSPOSE else w.ndim - 1
                    weight(layer, idx, t, w, axis)
                    changed = True
        if changed:
            report.quantized_layers.append(layer.name)
    return report


def _quantize_kernel(network, trt, layer, kind, weight, weight_tensor, constant) -> bool:
    """Per-channel Q/DQ on a Conv/Deconv kernel: the kernel input tensor when set, else the
    layer's kernel weights moved into a constant input (TensorRT wants empty kernel weights
    once input 1 is given)."""
    kt = layer.get_input(1) if layer.num_inputs > 1 else None
    axis = 0 if kind == "Conv" else 1
    if kt is not None:
        w = weight_tensor(kt)
        if w is None:
            return False  # a computed kernel: leave it
        weight(layer, 1, kt, w, axis)
        return True
    k = np.asarray(layer.kernel)
    if k.size == 0:
        return False
    groups = int(getattr(layer, "num_groups", 1) or 1)
    maps = int(layer.num_output_maps)
    ks = tuple(layer.kernel_size_nd)
    per = int(np.prod(ks))
    if kind == "Conv":
        shape = (maps, k.size // (maps * per)) + ks
    else:  # deconv kernel: C_in x (K / groups) x R x S
        shape = (k.size // ((maps // groups) * per), maps // groups) + ks
    w = k.reshape(shape).astype(np.float32 if k.dtype != np.float16 else np.float16)
    kt = constant(w)
    kt.name = f"{layer.name}_kernel"
    weight(layer, 1, kt, w, axis)
    layer.kernel = trt.Weights()  # the kernel now comes from input 1
    return True


_LAYER_CLASSES = {
    "CONVOLUTION": "IConvolutionLayer",
    "DECONVOLUTION": "IDeconvolutionLayer",
    "MATRIX_MULTIPLY": "IMatrixMultiplyLayer",
    "ELEMENTWISE": "IElementWiseLayer",
    "CONSTANT": "IConstantLayer",
    "SCALE": "IScaleLayer",
}


def _downcast(layer: Any, trt: Any) -> Any:
    """``get_layer`` returns a plain ILayer; its type-specific attributes (kernel, op, weights)
    appear once its class is set to the layer's own (what TensorRT's Python samples do)."""
    cls = getattr(trt, _LAYER_CLASSES.get(layer.type.name, ""), None)
    if cls is not None:
        layer.__class__ = cls
    return layer


def _from_weighted(producer: Mapping[str, Any], t: Any, LT: Any) -> bool:
    p = producer.get(t.name)
    while p is not None and p.type == LT.SCALE:  # batch norm folded into a scale layer
        p = producer.get(p.get_input(0).name)
    return p is not None and p.type in (LT.CONVOLUTION, LT.DECONVOLUTION, LT.MATRIX_MULTIPLY)


def _add_quantize(network, trt, tensor, scale):
    try:
        return network.add_quantize(tensor, scale, trt.int8)
    except TypeError:  # TensorRT 8.x: two-argument form, output is int8
        return network.add_quantize(tensor, scale)


def _add_dequantize(network, trt, tensor, scale, out_type):
    try:
        return network.add_dequantize(tensor, scale, out_type)
    except TypeError:
        return network.add_dequantize(tensor, scale)
