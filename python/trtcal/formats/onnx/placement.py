"""Where Q/DQ go: TensorRT's explicit-quantization placement rules, one function per rule.

TensorRT 11 builds exactly the precision plan that the ONNX graph states (strongly typed
networks), so the positions of QuantizeLinear/DequantizeLinear decide which layers run in INT8
and which fusions TensorRT can make. The rules below follow TensorRT's developer guide,
section "Explicit Quantization" (docs anchor ``quantized-types-explicit-quantization``), in
particular its subsections "Q/DQ Layer-Placement Recommendations" (weighted ops, residual
element-wise additions), "Q/DQ Propagation" (DQ forward- and Q backward-propagation through
commuting layers such as pooling and resizing; equal scales across multi-input layers such as
Concat) and "Q/DQ Fusion" (which layer chains fuse with their Q/DQ).

Each rule is a function ``rule_*(view, node, options) -> list[Decision]``: for every input of
``node`` that the rule concerns it says whether that input gets a Q/DQ pair, and why. A
:class:`Placement` gathers the decisions of every rule, the per-channel weights, and the groups
of tensors that must share one scale (Concat inputs and output; MaxPool and nearest Resize,
whose input and output carry the same values). :func:`plan` runs every rule over a graph;
:mod:`trtcal.onnx.quantize` writes the Q/DQ nodes the plan asks for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

import numpy as np

GUIDE = "TensorRT developer guide, Explicit Quantization"
WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
POOLING_OPS = ("MaxPool", "AveragePool", "GlobalAveragePool")
RESIZE_OPS = ("Resize", "Upsample")
# ops that move data without computing on it: Q/DQ commute through them and TensorRT keeps
# their INT8 input INT8 (guide: "Q/DQ Propagation", commuting layers)
DATA_MOVEMENT_OPS = (
    "Reshape",
    "Transpose",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Slice",
    "Split",
    "Gather",
    "Identity",
    "Concat",
    "Pad",
    "Expand",
    "Tile",
)
# pointwise ops TensorRT fuses into a Conv/Gemm epilogue (with BatchNormalization folded)
EPILOGUE_OPS = (
    "BatchNormalization",
    "Relu",
    "LeakyRelu",
    "Clip",
    "Sigmoid",
    "Tanh",
    "HardSigmoid",
    "HardSwish",
    "Elu",
    "Selu",
    "Softplus",
    "PRelu",
    "Mul",
    "Add",
    "Div",
)
HIGH_PRECISION_OPS = (
    "Softmax",
    "LayerNormalization",
    "ReduceMean",
    "Pow",
    "Sqrt",
    "Erf",
    "InstanceNormalization",
    "GroupNormalization",
)
ALL_OP_TYPES = WEIGHTED_OPS + ("Add",) + POOLING_OPS + ("Concat",) + RESIZE_OPS
FLOAT_TYPES = (1, 10, 16)  # FLOAT, FLOAT16, BFLOAT16


@dataclass
class Decision:
    """One input of one node: quantized or left in float, by which rule and why."""

    tensor: str
    node: str
    op_type: str
    index: int
    quantize: bool
    rule: str
    reason: str


@dataclass
class WeightPlan:
    """A constant weight to quantize per channel along ``axis`` (None: per tensor)."""

    tensor: str
    node: str
    index: int
    axis: Optional[int]


@dataclass
class Placement:
    """What every rule decided for a graph (see :func:`plan`)."""

    decisions: List[Decision] = field(default_factory=list)
    weights: List[WeightPlan] = field(default_factory=list)
    shared: List[Set[str]] = field(default_factory=list)  # tensors that must share one scale

    def quantized(self) -> List[Decision]:
        return [d for d in self.decisions if d.quantize]

    def left_float(self) -> List[Decision]:
        return [d for d in self.decisions if not d.quantize]

    def scale_groups(self) -> Dict[str, Set[str]]:
        """tensor -> the set of tensors sharing its scale (union of overlapping groups)."""
        parent: Dict[str, str] = {}

        def find(x: str) -> str:
            while parent.setdefault(x, x) != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for g in self.shared:
            items = sorted(g)
            for t in items[1:]:
                parent[find(t)] = find(items[0])
        groups: Dict[str, Set[str]] = {}
        for t in list(parent):
            groups.setdefault(find(t), set()).add(t)
        return {t: g for g in groups.values() for t in g}


@dataclass
class PlacementOptions:
    """Which rules run and how (see :func:`plan`)."""

    op_types: Tuple[str, ...] = ALL_OP_TYPES
    residual_add: bool = True
    attention: bool = True
    head_sigmoid_float: bool = True


class GraphView:
    """Producers, consumers, constants and element types of an ONNX graph (read only)."""

    def __init__(self, model: Any, elem_types: Mapping[str, int]):
        from onnx import numpy_helper

        g = model.graph
        self.graph = g
        self.nodes = list(g.node)
        self.order = {id(n): i for i, n in enumerate(self.nodes)}
        self.producer = {o: n for n in self.nodes for o in n.output if o}
        self.consumers: Dict[str, List[Any]] = {}
        for n in self.nodes:
            for i in n.input:
                if i:
                    self.consumers.setdefault(i, []).append(n)
        self.outputs = {o.name for o in g.output}
        self.inputs = {i.name for i in g.input}
        self._inits = {t.name: t for t in g.initializer}
        self._consts = {n.output[0]: n for n in self.nodes if n.op_type == "Constant" and n.output}
        self.elem_types = dict(elem_types)
        self._np = numpy_helper

    def constant(self, name: str) -> Optional[np.ndarray]:
        """The value of an initializer or Constant node output, else None."""
        if name in self._inits:
            return self._np.to_array(self._inits[name])
        c = self._consts.get(name)
        if c is not None:
            for a in c.attribute:
                if a.name == "value":
                    return self._np.to_array(a.t)
        return None

    def is_constant(self, name: str) -> bool:
        return name in self._inits or name in self._consts

    def is_float_activation(self, name: str) -> bool:
        """A non-constant tensor of a float type (unknown types count as float)."""
        return (
            bool(name)
            and not self.is_constant(name)
            and self.elem_types.get(name, 1) in FLOAT_TYPES
        )

    def label(self, node: Any) -> str:
        return node.name or f"{node.op_type}({', '.join(node.output)})"


def _attr(node: Any, name: str, default: Any = None) -> Any:
    for a in node.attribute:
        if a.name == name:
            return (
                a.i
                if a.type == 2
                else a.s.decode()
                if a.type == 3
                else a.f
                if a.type == 1
                else default
            )
    return default


def weight_axis(node: Any, index: int, ndim: int) -> Optional[int]:
    """Per-channel axis of a weight input (guide: "Q/DQ Layer-Placement Recommendations":
    weights are quantized per output channel): Conv axis 0 (K of KCRS), ConvTranspose 1
    (C x K x R x S),
    Gemm 0 when transB else 1 (the N axis of B), MatMul the last axis of B; None: per tensor."""
    op = node.op_type
    if op in ("Conv", "ConvTranspose"):
        return (0 if op == "Conv" else 1) if index == 1 else None
    if op == "Gemm" and index == 1:
        return 0 if _attr(node, "transB", 0) else 1
    if op == "MatMul" and index == 1 and ndim >= 2:
        return ndim - 1
    return None


def _decision(
    view: GraphView, node: Any, idx: int, quantize: bool, rule: str, reason: str
) -> Decision:
    return Decision(node.input[idx], view.label(node), node.op_type, idx, quantize, rule, reason)


def rule_weighted_inputs(view: GraphView, node: Any, opts: PlacementOptions) -> List[Decision]:
    """Conv, ConvTranspose, Gemm and MatMul: Q/DQ on the activation inputs (guide, "Q/DQ
    Layer-Placement Recommendations": quantize all inputs of weighted operations, so that TensorRT
    runs them with INT8 inputs and fuses the DQ into the kernel). Constant weights are returned
    separately by :func:`weight_plans`. A MatMul of two activations is an attention MatMul
    (:func:`rule_attention_matmul`)."""
    if node.op_type not in WEIGHTED_OPS:
        return []
    acts = [i for i in (0, 1) if i < len(node.input) and view.is_float_activation(node.input[i])]
    if node.op_type == "MatMul" and acts == [0, 1]:
        return rule_attention_matmul(view, node, opts)
    return [
        _decision(
            view,
            node,
            i,
            True,
            "weighted-input",
            f"activation input of {node.op_type}: runs in INT8 with its DQ fused into the kernel",
        )
        for i in acts
    ]


def rule_attention_matmul(view: GraphView, node: Any, opts: PlacementOptions) -> List[Decision]:
    """A MatMul of two activations (Q.K^T, or Softmax(...).V): both inputs quantized so the
    batched GEMMs of attention run in INT8, while Softmax and LayerNorm stay in high precision
    (guide: "Q/DQ Layer-Placement Recommendations" and the MHA fusion notes: quantize the
    inputs of both BMMs; Softmax is computed in FP16/FP32). ``attention=False`` leaves them
    float."""
    if not opts.attention:
        return [
            _decision(
                view,
                node,
                i,
                False,
                "attention-matmul",
                "attention MatMul kept in high precision (attention=False)",
            )
            for i in (0, 1)
        ]
    return [
        _decision(
            view,
            node,
            i,
            True,
            "attention-matmul",
            "input of an attention MatMul (Q.K^T or "
            "Softmax.V): INT8 BMM; Softmax/LayerNorm stay in high precision",
        )
        for i in (0, 1)
    ]


def fused_backbone(view: GraphView, tensor: str, depth: int = 6) -> Optional[Any]:
    """The Conv/ConvTranspose/Gemm whose epilogue ``tensor`` is, or None.

    TensorRT fuses a weighted layer with the pointwise ops that follow it (BatchNormalization,
    activations, SiLU as Sigmoid*Mul, a bias or constant scale) when each intermediate tensor has no
    other consumer than the next op of the chain (SiLU's two uses of its input excepted).
    """
    n = view.producer.get(tensor)
    seen = 0
    while n is not None and seen < depth:
        seen += 1
        if n.op_type in ("Conv", "ConvTranspose", "Gemm"):
            return n
        if n.op_type not in EPILOGUE_OPS:
            return None
        acts = [i for i in n.input if view.is_float_activation(i)]
        if n.op_type == "Mul" and len(acts) == 2:  # SiLU / HardSwish: x * f(x)
            a, b = acts
            pa, pb = view.producer.get(a), view.producer.get(b)
            if pb is not None and pb.op_type in ("Sigmoid", "HardSigmoid") and pb.input[0] == a:
                nxt = a
            elif pa is not None and pa.op_type in ("Sigmoid", "HardSigmoid") and pa.input[0] == b:
                nxt = b
            else:
                return None
            allowed = 2
        elif len(acts) == 1:
            nxt, allowed = acts[0], 1
        else:
            return None
        if len(view.consumers.get(nxt, [])) > allowed or nxt in view.outputs:
            return None
        n = view.producer.get(nxt)
    return None


def rule_residual_add(view: GraphView, node: Any, opts: PlacementOptions) -> List[Decision]:
    """Residual Add: a DQ on the input that is NOT the fused branch (guide: "Q/DQ
    Layer-Placement Recommendations", element-wise addition: TensorRT fuses the add into the
    epilogue of the Conv producing one input when the other input arrives quantized). The fused
    branch is the one a weighted layer produces through its epilogue (:func:`fused_backbone`);
    when both are, the later-produced one fuses and the earlier (the skip connection) is
    quantized. An Add with a constant, or with no fusable
    branch, is elementwise arithmetic and stays float."""
    if node.op_type != "Add" or len(node.input) != 2:
        return []
    if not all(view.is_float_activation(i) for i in node.input):
        return []
    if not opts.residual_add:
        return [
            _decision(view, node, i, False, "residual-add", "residual_add=False") for i in (0, 1)
        ]
    # an input read by another op too stays materialized: its producer cannot fuse the add
    bb = [
        fused_backbone(view, i)
        if len(view.consumers.get(i, [])) == 1 and i not in view.outputs
        else None
        for i in node.input
    ]
    if bb[0] is None and bb[1] is None:
        return [
            _decision(
                view,
                node,
                i,
                False,
                "residual-add",
                "no input is a Conv/Gemm epilogue: not a residual add TensorRT fuses",
            )
            for i in (0, 1)
        ]
    if bb[0] is not None and bb[1] is not None:
        fused = 0 if view.order[id(bb[0])] > view.order[id(bb[1])] else 1
    else:
        fused = 0 if bb[0] is not None else 1
    other = 1 - fused
    return [
        _decision(
            view,
            node,
            other,
            True,
            "residual-add",
            f"skip branch of a residual add; input {fused} fuses into "
            f"{view.label(bb[fused])}'s epilogue",
        ),
        _decision(
            view,
            node,
            fused,
            False,
            "residual-add",
            f"fused branch: the add runs in {view.label(bb[fused])}'s epilogue",
        ),
    ]


def _feeds_quantized(
    view: GraphView, tensor: str, quantized_consumers: Set[str], depth: int = 4
) -> bool:
    """Whether ``tensor`` reaches an op with a quantized input through data-movement ops only."""
    for c in view.consumers.get(tensor, []):
        if view.label(c) in quantized_consumers:
            return True
        if depth and c.op_type in DATA_MOVEMENT_OPS and c.op_type != "Concat":
            if any(_feeds_quantized(view, o, quantized_consumers, depth - 1) for o in c.output):
                return True
    return False


def rule_pooling(
    view: GraphView, node: Any, opts: PlacementOptions, quantized: Set[str]
) -> List[Decision]:
    """MaxPool, AveragePool, GlobalAveragePool: Q/DQ on the input when the output feeds a
    quantized op (guide: "Q/DQ Propagation" and "Q/DQ Fusion": Q/DQ commute with pooling, so
    TensorRT swaps the DQ past the pool and runs it in INT8 instead of FP32 between two Q/DQ).
    MaxPool's input and output share one scale (max of INT8 values is exact)."""
    if node.op_type not in POOLING_OPS or not view.is_float_activation(node.input[0]):
        return []
    if not _feeds_quantized(view, node.output[0], quantized):
        return [
            _decision(
                view,
                node,
                0,
                False,
                "pooling",
                "its output feeds no quantized op: an INT8 pool would only add a reformat",
            )
        ]
    return [
        _decision(
            view,
            node,
            0,
            True,
            "pooling",
            f"{node.op_type} commutes with Q/DQ: runs in INT8 between quantized layers",
        )
    ]


def rule_concat(
    view: GraphView, node: Any, opts: PlacementOptions, quantized: Set[str]
) -> List[Decision]:
    """Concat: every input quantized with ONE scale shared by all inputs and the output (guide:
    "Q/DQ Propagation": a Q propagates backward through a Concat, fusing into its inputs, only
    when the scales are equal; TensorRT fuses the Q of a Concat's
    output into its inputs only when they share a scale; different scales cost a requantize per
    input). Only when the output feeds a quantized op and every input is a float activation."""
    if node.op_type != "Concat":
        return []
    idx = [i for i, t in enumerate(node.input) if t]
    if not all(view.is_float_activation(node.input[i]) for i in idx):
        return []  # shape arithmetic (int64) or constants
    if not _feeds_quantized(view, node.output[0], quantized):
        return [
            _decision(view, node, i, False, "concat", "its output feeds no quantized op")
            for i in idx
        ]
    return [
        _decision(
            view,
            node,
            i,
            True,
            "concat",
            "Concat input: one scale for all inputs and the output, "
            "so TensorRT concatenates in INT8 with no requantize",
        )
        for i in idx
    ]


def rule_resize(
    view: GraphView, node: Any, opts: PlacementOptions, quantized: Set[str]
) -> List[Decision]:
    """Resize/Upsample: Q/DQ on the data input when the output feeds a quantized op (guide:
    "Q/DQ Propagation": resizing commutes with per-tensor Q/DQ); nearest
    resizing copies values, so input and output share the scale."""
    if node.op_type not in RESIZE_OPS or not view.is_float_activation(node.input[0]):
        return []
    if not _feeds_quantized(view, node.output[0], quantized):
        return [_decision(view, node, 0, False, "resize", "its output feeds no quantized op")]
    return [
        _decision(
            view, node, 0, True, "resize", f"{node.op_type} commutes with Q/DQ: upsampling in INT8"
        )
    ]


def silu_edges(view: GraphView) -> List[Tuple[str, Any, Any]]:
    """(tensor, Sigmoid node, Mul node) of every SiLU written as ``Mul(x, Sigmoid(x))``."""
    out = []
    for n in view.nodes:
        if n.op_type != "Sigmoid":
            continue
        x = n.input[0]
        for m in view.consumers.get(n.output[0], []):
            if m.op_type == "Mul" and x in m.input:
                out.append((x, n, m))
    return out


def rule_silu(view: GraphView, placement: Placement) -> List[Decision]:
    """SiLU as Sigmoid*Mul: no Q/DQ on the Sigmoid's input or output edges inside the pattern, so
    TensorRT fuses Conv + Sigmoid + Mul into one kernel (guide: "Q/DQ Fusion": a Q/DQ between
    two pointwise ops splits their fusion; NVIDIA/TensorRT#3629). Removes any such decision."""
    inside = set()
    for x, sig, mul in silu_edges(view):
        inside.update(
            {(x, view.label(sig)), (x, view.label(mul)), (sig.output[0], view.label(mul))}
        )
    kept: List[Any] = []
    dropped: List[Any] = []
    for d in placement.decisions:
        (dropped if d.quantize and (d.tensor, d.node) in inside else kept).append(d)
    for d in dropped:
        kept.append(
            Decision(
                d.tensor,
                d.node,
                d.op_type,
                d.index,
                False,
                "silu",
                "inside a SiLU (Sigmoid*Mul): a Q/DQ here would split Conv+SiLU fusion",
            )
        )
    placement.decisions[:] = kept
    return dropped


def head_sigmoids(view: GraphView) -> List[Any]:
    """Sigmoid nodes that are no SiLU and reach a graph output through data-movement ops only:
    a detector head's class-score activation."""
    silu = {id(s) for _, s, _ in silu_edges(view)}
    out = []
    for n in view.nodes:
        if n.op_type == "Sigmoid" and id(n) not in silu and _reaches_output(view, n.output[0], 8):
            out.append(n)
    return out


def _reaches_output(view: GraphView, tensor: str, depth: int) -> bool:
    if tensor in view.outputs:
        return True
    return depth > 0 and any(
        c.op_type in DATA_MOVEMENT_OPS and _reaches_output(view, c.output[0], depth - 1)
        for c in view.consumers.get(tensor, [])
        if c.output
    )


def rule_head_sigmoid(
    view: GraphView, placement: Placement, opts: PlacementOptions
) -> List[Decision]:
    """Keeps a detector head's output Sigmoid out of INT8 (``head_sigmoid_float``): no Q/DQ on
    the tensors that flow, through data-movement ops only, into a head Sigmoid (its class logits
    then stay in high precision; Ultralytics does the same for TensorRT INT8 exports)."""
    if not opts.head_sigmoid_float:
        return []
    blocked: Set[str] = set()
    for s in head_sigmoids(view):
        stack = [s.input[0]]
        while stack:
            t = stack.pop()
            if t in blocked:
                continue
            blocked.add(t)
            p = view.producer.get(t)
            if p is not None and p.op_type in DATA_MOVEMENT_OPS:
                stack.extend(i for i in p.input if view.is_float_activation(i))
    dropped = [
        d
        for d in placement.decisions
        if d.quantize and d.tensor in blocked and d.rule != "weighted-input"
    ]
    for d in dropped:
        placement.decisions.remove(d)
        placement.decisions.append(
            Decision(
                d.tensor,
                d.node,
                d.op_type,
                d.index,
                False,
                "head-sigmoid",
                "feeds the detector head's Sigmoid (head_sigmoid_float)",
            )
        )
    return dropped


def weight_plans(view: GraphView, node: Any) -> List[WeightPlan]:
    """The constant float weights of a weighted op with their per-channel axes
    (:func:`weight_axis`)."""
    if node.op_type not in WEIGHTED_OPS:
        return []
    out = []
    for i in (0, 1):
        if i < len(node.input) and node.input[i]:
            w = view.constant(node.input[i])
            if w is not None:
                out.append(
                    WeightPlan(node.input[i], view.label(node), i, weight_axis(node, i, w.ndim))
                )
    return out


RuleFn = Callable[..., List[Decision]]
# rules that depend only on the node, then rules that depend on which ops are already quantized
LOCAL_RULES: Dict[str, RuleFn] = {
    "Conv": rule_weighted_inputs,
    "ConvTranspose": rule_weighted_inputs,
    "Gemm": rule_weighted_inputs,
    "MatMul": rule_weighted_inputs,
    "Add": rule_residual_add,
}
NEIGHBOUR_RULES: Dict[str, RuleFn] = {
    "MaxPool": rule_pooling,
    "AveragePool": rule_pooling,
    "GlobalAveragePool": rule_pooling,
    "Concat": rule_concat,
    "Resize": rule_resize,
    "Upsample": rule_resize,
}


def plan(
    model: Any,
    elem_types: Mapping[str, int],
    options: Optional[PlacementOptions] = None,
    skip: Iterable[str] = (),
) -> Placement:
    """Runs every placement rule over ``model``'s main graph.

    Parameters
    ----------
    model : onnx.ModelProto
    elem_types : tensor name -> ONNX element type (from shape inference; unknown = float)
    options : which op types and rules (:class:`PlacementOptions`)
    skip : labels of nodes left alone (excluded by the user, or already quantized)

    Returns
    -------
    Placement: decisions for every quantizable input, the weights, the shared-scale groups.
    Pooling, Concat and Resize are decided after the weighted ops and adds, in passes until
    nothing changes (a Concat feeding a MaxPool feeding a Conv is quantized all the way).
    """
    opts = options or PlacementOptions()
    view = GraphView(model, elem_types)
    skip = set(skip)
    out = Placement()
    for node in view.nodes:
        label = view.label(node)
        if label in skip or node.op_type not in opts.op_types:
            continue
        rule = LOCAL_RULES.get(node.op_type)
        if rule is not None:
            out.decisions.extend(rule(view, node, opts))
            out.weights.extend(weight_plans(view, node))
    neighbours = [
        n
        for n in view.nodes
        if n.op_type in NEIGHBOUR_RULES and n.op_type in opts.op_types and view.label(n) not in skip
    ]
    decided: Dict[str, List[Decision]] = {}
    for _ in range(len(neighbours) + 1):
        quantized = {d.node for d in out.decisions if d.quantize}
        quantized |= {
            view.label(n)
            for n in view.nodes
            if view.label(n) in decided and any(d.quantize for d in decided[view.label(n)])
        }
        changed = False
        for n in reversed(neighbours):  # consumers first: a chain resolves in few passes
            ds = NEIGHBOUR_RULES[n.op_type](view, n, opts, quantized)
            key = view.label(n)
            if [d.quantize for d in ds] != [d.quantize for d in decided.get(key, [])]:
                decided[key], changed = ds, True
                if any(d.quantize for d in ds):
                    quantized.add(key)
        if not changed:
            break
    for n in neighbours:
        ds = decided.get(view.label(n), [])
        out.decisions.extend(ds)
        if ds and all(d.quantize for d in ds):
            if (
                n.op_type == "Concat"
                or n.op_type == "MaxPool"
                or (n.op_type in RESIZE_OPS and _attr(n, "mode", "nearest") == "nearest")
            ):
                out.shared.append({n.input[d.index] for d in ds} | {n.output[0]})
    rule_silu(view, out)
    rule_head_sigmoid(view, out, opts)
    out.decisions.extend(
        rule_high_precision(view, n)
        for n in view.nodes
        if n.op_type in HIGH_PRECISION_OPS and n.input and view.is_float_activation(n.input[0])
    )
    return out


def rule_high_precision(view: GraphView, node: Any) -> Decision:
    """Softmax, LayerNorm (and its ReduceMean/Pow/Sqrt form), Erf: never quantized (guide:
    "Q/DQ Layer-Placement Recommendations": normalizations and Softmax run in FP16/FP32 for
    accuracy; TensorRT's MHA and LayerNorm fusions expect float inputs)."""
    return _decision(
        view,
        node,
        0,
        False,
        "high-precision",
        f"{node.op_type} kept in high precision (Softmax/normalization)",
    )


def report_lines(
    placement: Placement, model_ops: Optional[Sequence[Tuple[str, str, str]]] = None
) -> List[str]:
    """Human-readable placement report: quantized tensors then those left in float, with reasons."""
    lines = ["# Q/DQ placement (rules: " + GUIDE + ")", "", "## quantized"]
    for d in placement.quantized():
        lines.append(
            f"- {d.tensor} -> {d.node} [{d.op_type} input {d.index}]: {d.rule}: {d.reason}"
        )
    for w in placement.weights:
        ax = "per tensor" if w.axis is None else f"per channel, axis {w.axis}"
        lines.append(f"- {w.tensor} -> {w.node} [weight input {w.index}]: weight, {ax}")
    lines += ["", "## left in float"]
    for d in placement.left_float():
        lines.append(
            f"- {d.tensor} -> {d.node} [{d.op_type} input {d.index}]: {d.rule}: {d.reason}"
        )
    for t, node, why in model_ops or ():
        lines.append(f"- {t} -> {node}: {why}")
    return lines
