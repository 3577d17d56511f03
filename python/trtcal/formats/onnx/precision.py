"""The precision of everything a Q/DQ model leaves unquantized: FP32, FP16 or BF16.

TensorRT 11 builds strongly typed networks: each layer runs in the type its ONNX tensors have,
and no builder flag turns FP32 layers into FP16 any more. So the graph itself must be cast (what
ModelOpt's AutoCast / ``high_precision_dtype`` does). :func:`cast_remainder` does it with no
ModelOpt dependency, and uses what only a calibrator has: the range of every activation.

Rules
-----
* A node runs in the low type when ONNX's schema for it (at the model's opset) accepts that type
  for its float inputs and outputs; otherwise (no kernel for the type, a custom domain, ops whose
  output type an attribute sets) it stays FP32, and Casts join it to its neighbours.
* Inputs whose schema type is fixed ``tensor(float)`` (Resize's ``scales``) stay FP32.
* A tensor whose calibrated amax exceeds the type's largest finite value (FP16: 65504) would
  overflow to inf: its producer and consumers stay FP32. A tensor whose amax is below the
  type's smallest normal (FP16: 6.1e-5) would lose its precision to subnormals: also FP32.
  The table holds amax only, so "underflow" is judged on amax (every value is at most amax);
  pass ``smallest`` (tensor -> smallest nonzero |x|, e.g. the lower edge of a histogram's first
  non-empty bin) to also keep tensors whose small values would flush to zero.
* DequantizeLinear (and a weight's QuantizeLinear) take the low type, their scales too (opset >= 19;
  BF16 kernels for Conv and pooling need opset 22). Each scale is first rounded UP to a value the
  low type holds exactly (so a Q left in float32 and its low-type DQ agree, and nothing clips);
  scales widened by more than 1/256 (subnormal FP16 scales of near-zero weight channels) are
  listed. A QuantizeLinear of an activation keeps its input's type (no Cast before a Q).
* Graph inputs and outputs keep their declared types (``keep_io_types=True``), with a Cast at the
  boundary; ``keep_io_types=False`` declares them in the low type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

DTYPES = ("fp32", "fp16", "bf16")
MIN_OPSET = {"fp32": 13, "fp16": 19, "bf16": 22}
# largest finite value, smallest normal
LIMITS = {"fp16": (65504.0, 2.0**-14), "bf16": (3.3895313892515355e38, 2.0**-126)}
SUBNORMAL_MIN = {"fp16": 2.0**-24, "bf16": 2.0**-133}
_FLOAT = 1
# a Q/DQ scale whose rounding to the low type moves it by more than this keeps its pair in FP32
# (FP16 subnormal scales down to 2^-16 round within it; the smallest weight channels do not)
SCALE_RTOL = 2.0**-8


def check_dtype(dtype: str) -> str:
    """'fp32', 'fp16' or 'bf16' (also accepts float32/float16/bfloat16); ValueError otherwise."""
    alias = {
        "float32": "fp32",
        "float16": "fp16",
        "bfloat16": "bf16",
        "half": "fp16",
        "float": "fp32",
    }
    d = alias.get(str(dtype).lower(), str(dtype).lower())
    if d not in DTYPES:
        raise ValueError(
            f"trtcal: high precision type must be one of {', '.join(DTYPES)}, got {dtype!r}"
        )
    return d


def onnx_type(dtype: str) -> int:
    from onnx import TensorProto

    return {"fp32": TensorProto.FLOAT, "fp16": TensorProto.FLOAT16, "bf16": TensorProto.BFLOAT16}[
        check_dtype(dtype)
    ]


@dataclass
class PrecisionReport:
    """What :func:`cast_remainder` did."""

    dtype: str
    low_nodes: int = 0
    fp32_nodes: Dict[str, str] = field(default_factory=dict)  # node -> why it stays FP32
    kept_fp32: Dict[str, str] = field(default_factory=dict)  # tensor -> range reason
    casts: int = 0
    converted_initializers: int = 0
    widened_scales: Dict[str, float] = field(default_factory=dict)  # scale -> factor (> 1 + 1/256)

    def lines(self) -> List[str]:
        out = [
            f"## high precision: {self.dtype} ({self.low_nodes} nodes in {self.dtype}, "
            f"{len(self.fp32_nodes)} in fp32, {self.casts} casts)"
        ]
        out += [f"- tensor {t} stays fp32: {why}" for t, why in self.kept_fp32.items()]
        out += [f"- node {n} stays fp32: {why}" for n, why in self.fp32_nodes.items()]
        out += [
            f"- scale {n} widened x{f:.3g} to be representable in {self.dtype}"
            for n, f in self.widened_scales.items()
        ]
        return out


def range_problems(
    table: Mapping[str, float], dtype: str, smallest: Optional[Mapping[str, float]] = None
) -> Dict[str, str]:
    """{tensor: reason} for the tensors whose calibrated range ``dtype`` cannot hold: amax above
    its largest finite value, amax below its smallest normal, or (``smallest``) a smallest
    nonzero magnitude below its smallest subnormal."""
    d = check_dtype(dtype)
    if d == "fp32":
        return {}
    big, tiny = LIMITS[d]
    out = {}
    for t, a in table.items():
        a = float(a)
        if not np.isfinite(a) or a > big:
            out[t] = f"amax {a:.6g} exceeds {d}'s largest value {big:.6g}"
        elif 0 < a < tiny:
            out[t] = (
                f"amax {a:.3g} is below {d}'s smallest normal {tiny:.3g} (all values subnormal)"
            )
    for t, s in (smallest or {}).items():
        if t not in out and 0 < float(s) < SUBNORMAL_MIN[d]:
            out[t] = f"smallest nonzero |x| {float(s):.3g} flushes to zero in {d}"
    return out


def cast_remainder(
    model: Any,
    dtype: str = "fp16",
    *,
    table: Optional[Mapping[str, float]] = None,
    smallest: Optional[Mapping[str, float]] = None,
    keep_io_types: bool = True,
    keep_fp32: Tuple[str, ...] = (),
) -> Tuple[Any, PrecisionReport]:
    """Casts every float32 computation of ``model`` (a Q/DQ model or any model) to ``dtype``.

    Parameters
    ----------
    model : onnx.ModelProto (modified in place and returned); default-domain opset >= 19 for
        fp16, >= 22 for bf16.
    dtype : 'fp16', 'bf16' or 'fp32' (no change).
    table : tensor -> amax (a CalibrationTable): tensors outside ``dtype``'s range stay FP32.
    smallest : tensor -> smallest nonzero |x| observed (optional, see :func:`range_problems`).
    keep_io_types : graph inputs/outputs keep their declared float32 types (Casts at the edges).
    keep_fp32 : node names kept in FP32.

    Returns
    -------
    (model, PrecisionReport).
    """
    import onnx

    d = check_dtype(dtype)
    report = PrecisionReport(dtype=d)
    if d == "fp32":
        return model, report
    opset = next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET[d]:
        raise ValueError(
            f"trtcal: casting to {d} needs opset >= {MIN_OPSET[d]}, the model has {opset}"
        )
    problems = range_problems(table or {}, d, smallest)
    caster = _Caster(model, d, opset, report)
    for t, why in problems.items():
        if t in caster.types:
            report.kept_fp32[t] = why
    caster.run(set(report.kept_fp32), set(keep_fp32), keep_io_types)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:  # a rule above is wrong: say so clearly
        raise ValueError(
            f"trtcal: the {d} model fails ONNX's checker ({str(exc).strip().splitlines()[0]})"
        ) from exc
    return model, report


class _Caster:
    """One pass over the graph in topological order, choosing each node's type and casting."""

    def __init__(self, model: Any, dtype: str, opset: int, report: PrecisionReport):
        import onnx

        self.onnx = onnx
        self.m = model
        self.g = model.graph
        self.low = onnx_type(dtype)
        self.dtype = dtype
        self.opset = opset
        self.report = report
        try:
            inferred = onnx.shape_inference.infer_shapes(model)
        except Exception:  # best effort: unknown tensors are treated as non-float
            inferred = model
        self.types: Dict[str, int] = {}
        gi = inferred.graph
        for vi in list(gi.input) + list(gi.output) + list(gi.value_info):
            if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
                self.types[vi.name] = vi.type.tensor_type.elem_type
        self.inits = {t.name: t for t in self.g.initializer}
        for t in self.g.initializer:
            self.types[t.name] = t.data_type
        self.cur = dict(self.types)  # current type of every tensor as rewritten
        self.consumers: Dict[str, List[Any]] = {}
        for n in self.g.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.names = {t for n in self.g.node for t in list(n.input) + list(n.output)} | set(
            self.inits
        )
        self.names |= {n.name for n in self.g.node} | {v.name for v in self.g.input}
        self.cached: Dict[Tuple[str, int], str] = {}
        self.new_inits: List[Any] = []
        self._maxabs: Dict[str, float] = {}
        self.const_nodes = {
            n.output[0]: n for n in self.g.node if n.op_type == "Constant" and n.output
        }

    def fresh(self, base: str) -> str:
        name, i = base, 1
        while name in self.names:
            name, i = f"{base}_{i}", i + 1
        self.names.add(name)
        return name

    def schema(self, node: Any):
        if node.domain not in ("", "ai.onnx"):
            return None
        try:
            return self.onnx.defs.get_schema(node.op_type, self.opset, "")
        except Exception:  # unknown op at this opset
            return None

    @staticmethod
    def _formal(params: list, i: int):
        if not params:
            return None
        return params[i] if i < len(params) else params[-1]

    def node_type(self, node: Any, kept: set, keep_nodes: set) -> Tuple[int, Optional[str]]:
        """(type the node computes in, reason when FP32)."""
        floats_in = [t for t in node.input if t and self.types.get(t) == _FLOAT]
        floats_out = [t for t in node.output if t and self.types.get(t) == _FLOAT]
        if node.name and node.name in keep_nodes:
            return _FLOAT, "kept in fp32 by the caller"
        if not floats_in and not floats_out:
            return _FLOAT, None
        hit = [t for t in floats_in + floats_out if t in kept]
        if hit:
            return (
                _FLOAT,
                f"tensor {hit[0]} stays fp32 ({self.report.kept_fp32.get(hit[0], 'range')})",
            )
        big = [t for t in floats_in if self._constant_max(t) > LIMITS[self.dtype][0]]
        if big:
            return _FLOAT, f"constant {big[0]} holds values beyond {self.dtype}'s range"
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            return self._qdq_type(node)
        if node.op_type == "Cast":
            return self.low, None
        if node.op_type == "Constant":
            if node.output and self._constant_max(node.output[0]) > LIMITS[self.dtype][0]:
                return _FLOAT, f"constant holds values beyond {self.dtype}'s range"
            return self.low, None
        schema = self.schema(node)
        if schema is None:
            return (
                _FLOAT,
                f"no {self.dtype} schema for {node.domain or 'ai.onnx'}::{node.op_type} at opset "
                f"{self.opset}",
            )
        if not floats_in:
            return _FLOAT, None  # output type set by an attribute (ConstantOfShape, Range, ...)
        allowed = {c.type_param_str: c.allowed_type_strs for c in schema.type_constraints}
        want = {"fp16": "tensor(float16)", "bf16": "tensor(bfloat16)"}[self.dtype]
        for i, t in enumerate(node.input):
            if t in floats_in:
                f = self._formal(list(schema.inputs), i)
                if f is not None and f.type_str in allowed and want not in allowed[f.type_str]:
                    return (
                        _FLOAT,
                        f"{node.op_type} has no {self.dtype} kernel at opset {self.opset}",
                    )
        return self.low, None

    def _constant_max(self, name: str) -> float:
        """Largest |value| of an initializer or Constant-node output (0 for other tensors)."""
        if name not in self._maxabs:
            t = self.inits.get(name)
            if t is None and name in self.const_nodes:
                t = next((a.t for a in self.const_nodes[name].attribute if a.name == "value"), None)
            a = self.onnx.numpy_helper.to_array(t) if t is not None else np.zeros(0)
            ok = a.size and np.issubdtype(a.dtype, np.floating)
            self._maxabs[name] = float(np.abs(a.astype(np.float64)).max()) if ok else 0.0
        return self._maxabs[name]

    def _qdq_type(self, node: Any) -> Tuple[int, Optional[str]]:
        """A QuantizeLinear of an activation takes the type its input already has (no Cast in front
        of a Q: a graph input stays float32 into its Q); a weight's Q and every DequantizeLinear
        take the low type (their scales were made representable by :meth:`round_scales`), unless
        a scale exceeds the type's range."""
        x = node.input[0]
        if node.op_type == "QuantizeLinear" and x not in self.inits and self.cur.get(x) == _FLOAT:
            return _FLOAT, None
        if self._constant_max(node.input[1]) > LIMITS[self.dtype][0]:
            return _FLOAT, f"scale {node.input[1]} exceeds {self.dtype}'s range"
        return self.low, None

    def round_scales(self) -> None:
        """Rounds every Q/DQ scale initializer UP to a value the low type holds exactly (at least
        its smallest subnormal), in place: the Q (which may stay float32) and its DQ (in the low
        type) then use the same scale, and rounding up never clips. A rounding that widens a
        scale by more than 1/256 (subnormal FP16 scales of near-zero weight channels) is counted
        in the report."""
        names = {
            n.input[1]
            for n in self.g.node
            if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 1
        }
        for name in sorted(names):
            t = self.inits.get(name)
            if (
                t is None
                or t.data_type != _FLOAT
                or self._constant_max(name) > LIMITS[self.dtype][0]
            ):
                continue
            v = self.onnx.numpy_helper.to_array(t).astype(np.float32)
            up = round_up(v, self.dtype)
            if not np.array_equal(up, v):
                widened = float(np.max(up.astype(np.float64) / np.where(v > 0, v, 1.0)))
                if widened > 1 + SCALE_RTOL:
                    self.report.widened_scales[name] = widened
                t.CopyFrom(self.onnx.numpy_helper.from_array(up, name))

    def as_type(self, name: str, t: int, before: List[Any]) -> str:
        """``name`` in type ``t``: itself, a converted initializer, or a Cast (appended to
        ``before``)."""
        if self.cur.get(name) == t or self.cur.get(name) not in (_FLOAT, self.low):
            return name
        key = (name, t)
        if key in self.cached:
            return self.cached[key]
        suffix = {_FLOAT: "fp32", self.low: self.dtype}[t]
        if name in self.inits:
            arr = self.onnx.numpy_helper.to_array(self.inits[name])
            new = self.onnx.numpy_helper.from_array(
                _convert(arr, t), self.fresh(f"{name}_{suffix}")
            )
            self.new_inits.append(new)
            self.report.converted_initializers += 1
            out = new.name
        else:
            out = self.fresh(f"{name}_{suffix}")
            before.append(
                self.onnx.helper.make_node(
                    "Cast", [name], [out], to=t, name=self.fresh(f"Cast_{out}")
                )
            )
            self.report.casts += 1
        self.cur[out] = t
        self.cached[key] = out
        return out

    def run(self, kept: set, keep_nodes: set, keep_io_types: bool) -> None:
        onnx = self.onnx
        if not keep_io_types:
            for vi in self.g.input:
                if vi.type.tensor_type.elem_type == _FLOAT and vi.name not in kept:
                    vi.type.tensor_type.elem_type = self.low
                    self.cur[vi.name] = self.low
        self.round_scales()
        new_nodes: List[Any] = []
        for node in list(self.g.node):
            t, why = self.node_type(node, kept, keep_nodes)
            label = node.name or f"{node.op_type}({', '.join(node.output)})"
            if why:
                self.report.fp32_nodes[label] = why
            before: List[Any] = []
            schema = self.schema(node)
            params = list(schema.inputs) if schema is not None else []
            for i, name in enumerate(node.input):
                if not name or self.cur.get(name) not in (_FLOAT, self.low):
                    continue
                f = self._formal(params, i)
                fixed = f is not None and f.type_str == "tensor(float)"
                node.input[i] = self.as_type(name, _FLOAT if fixed else t, before)
            if t == self.low and node.op_type == "Cast":
                for a in node.attribute:
                    if a.name == "to" and a.i == _FLOAT:
                        a.i = self.low
            if t == self.low and node.op_type == "Constant":
                for a in node.attribute:
                    if a.name == "value" and a.t.data_type == _FLOAT:
                        a.t.CopyFrom(
                            onnx.numpy_helper.from_array(
                                _convert(onnx.numpy_helper.to_array(a.t), t), a.t.name
                            )
                        )
            for o in node.output:
                if o and self.types.get(o) == _FLOAT:
                    self.cur[o] = t
            if t == self.low and (
                self.types.get(node.output[0] if node.output else "") == _FLOAT
                or node.op_type == "QuantizeLinear"
            ):
                self.report.low_nodes += 1
            new_nodes.extend(before)
            new_nodes.append(node)
        del self.g.node[:]
        self.g.node.extend(new_nodes)
        used = {i for n in self.g.node for i in n.input}
        keep_inits = [
            x
            for x in self.g.initializer
            if x.name in used or x.name in {o.name for o in self.g.output}
        ]
        del self.g.initializer[:]
        self.g.initializer.extend(keep_inits + self.new_inits)
        self._outputs(keep_io_types)
        self._value_info()

    def _outputs(self, keep_io_types: bool) -> None:
        onnx = self.onnx
        for vo in self.g.output:
            if self.cur.get(vo.name) != self.low or vo.type.tensor_type.elem_type != _FLOAT:
                continue
            if not keep_io_types:
                vo.type.tensor_type.elem_type = self.low
                continue
            inner = self.fresh(f"{vo.name}_{self.dtype}")
            for n in self.g.node:
                for i, x in enumerate(n.input):
                    if x == vo.name:
                        n.input[i] = inner
                for i, x in enumerate(n.output):
                    if x == vo.name:
                        n.output[i] = inner
            self.g.node.append(
                onnx.helper.make_node(
                    "Cast", [inner], [vo.name], to=_FLOAT, name=self.fresh(f"Cast_{vo.name}")
                )
            )
            self.cur[inner], self.cur[vo.name] = self.low, _FLOAT
            self.report.casts += 1

    def _value_info(self) -> None:
        keep = []
        for vi in self.g.value_info:
            t = self.cur.get(vi.name)
            if t is not None and vi.type.HasField("tensor_type"):
                vi.type.tensor_type.elem_type = t
            keep.append(vi)
        del self.g.value_info[:]
        self.g.value_info.extend(keep)


def round_up(v: np.ndarray, dtype: str) -> np.ndarray:
    """float32 ``v`` (positive scales) rounded up to values ``dtype`` ('fp16', 'bf16') holds
    exactly, never below its smallest positive value; returned as float32."""
    v = np.asarray(v, dtype=np.float32)
    if dtype == "fp16":
        h = np.maximum(v, np.float32(SUBNORMAL_MIN["fp16"])).astype(np.float16)
        h = np.where(h.astype(np.float32) < v, np.nextafter(h, np.float16(np.inf)), h)
        return h.astype(np.float32)
    bits = np.maximum(v, np.float32(SUBNORMAL_MIN["bf16"])).view(np.uint32)
    low = bits & np.uint32(0xFFFF)
    bits = (bits & np.uint32(0xFFFF0000)) + np.where(low != 0, np.uint32(0x10000), np.uint32(0))
    return bits.astype(np.uint32).view(np.float32)


def _convert(arr: np.ndarray, t: int) -> np.ndarray:
    """``arr`` as ONNX type ``t`` (float32, float16 or bfloat16 via ml_dtypes)."""
    import onnx

    np_type = onnx.helper.tensor_dtype_to_np_dtype(t)
    return np.asarray(arr).astype(np_type)
