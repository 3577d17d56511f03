"""The one place where calibration meets the range-search and table APIs.

``trtcal.compute_amax`` turns histograms into thresholds; ``trtcal.CalibrationTable`` holds
them with provenance and writes the TensorRT cache and JSON; ``trtcal.onnx.quantize`` writes
the Q/DQ model.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union

import numpy as np

from ..core._files import save_onnx
from ..core.fp8 import fp8_amax
from ..core.range_search import FLAVORS, compute_amax
from ..core.results import Histogram
from ..formats._qdq import DEFAULT_OP_TYPES
from ..formats.table import CalibrationTable
from .runners import load_onnx

METHODS = ("entropy", "percentile", "mse", "minmax")
DEFAULT_TENSORRT = "10.16"


class OutputUnavailable(RuntimeError):
    """No output can be made (e.g. method 'auto' found no method it can compute)."""


def method_flavors(
    methods: Iterable[str], flavor: Union[None, str, Mapping[str, Optional[str]]]
) -> Dict[str, Optional[str]]:
    """{method: flavor or None (the default)} for ``methods``, checked before any data is read.

    A flavor name applies to the requested methods that have it (``onnxruntime`` is both an
    entropy and a percentile flavor); naming one that none of them has, or giving a mapping
    with a flavor its method lacks, raises ValueError listing what each method accepts.
    """

    methods = list(methods)
    accepted = "; ".join(f"{m}: {', '.join(FLAVORS[m])}" for m in methods if m in FLAVORS)
    out: Dict[str, Optional[str]] = {m: None for m in methods}
    if flavor is None:
        return out
    if isinstance(flavor, Mapping):
        for m, fl in flavor.items():
            if m not in out:
                raise ValueError(
                    f"trtcal: a flavor was given for method {m!r}, which this run does not compute "
                    f"(methods: {', '.join(methods)})"
                )
            if fl is not None and fl not in FLAVORS.get(m, ()):
                raise ValueError(
                    f"trtcal: unknown {m} flavor {fl!r}; accepted: {', '.join(FLAVORS.get(m, ()))}"
                )
            out[m] = fl
        return out
    hits = [m for m in methods if flavor in FLAVORS.get(m, ())]
    if not hits:
        raise ValueError(
            f"trtcal: no requested method has the flavor {flavor!r} (accepted: {accepted})"
        )
    for m in hits:
        out[m] = flavor
    return out


def needs_signed(flavors: Mapping[str, Optional[str]]) -> bool:
    """Whether a flavor searches a signed histogram (ONNX Runtime's, over [-R, R)): the
    collectors then keep x, and the |x| methods search it folded."""
    return any(fl == "onnxruntime" for fl in flavors.values())


def thresholds(
    hists: Mapping[str, Histogram],
    methods: Iterable[str],
    flavor: Union[None, str, Mapping[str, Optional[str]]] = None,
    params: Optional[Mapping[str, Any]] = None,
) -> Dict[str, Dict[str, float]]:
    """{method: {tensor: amax}} from the collected histograms (one histogram, every method).

    ``flavor``: one name (applied to the methods that have it, see :func:`method_flavors`) or
    {method: flavor}. Tensors whose histogram has no range (all values zero, or no finite
    values) get no threshold from any method (never a zero scale); :func:`no_range` lists them.
    """
    params = dict(params or {})
    methods = list(methods)
    flavors = method_flavors(methods, flavor)
    out: Dict[str, Dict[str, float]] = {}
    usable = {n: h for n, h in hists.items() if h.status == "ok"}
    for m in methods:
        if m == "minmax":
            out[m] = {n: float(h.amax) for n, h in usable.items()}
            continue
        if m.startswith("fp8-"):  # FP8 E4M3 ranges searched on the E4M3 grid (trtcal.fp8)
            got: Any = fp8_amax(dict(usable), m[4:], on_degenerate="flag") if usable else {}
            out[m] = {n: float(a) for n, a in got.items() if np.isfinite(a)}  # the rest stay float
            continue
        kw: Dict[str, Any] = dict(params.get(m, {})) if isinstance(params.get(m), Mapping) else {}
        if flavors[m] is not None:
            kw["flavor"] = flavors[m]
        # trtcal Histograms (not raw pairs): the search then knows the exact amax and runs over
        # the occupied bins of the power-of-two grid
        res = compute_amax(dict(usable), method=m, **kw) if usable else {}
        out[m] = {n: float(res[n]) for n in usable}
    return out


CLIP_WARN = 0.01  # a threshold that saturates more than this fraction of a tensor's values is named


def clipped_fraction(h: Histogram, amax: float) -> float:
    """Fraction of the tensor's finite values beyond ``amax``, which saturate to +-127.

    A value equal to ``amax`` quantizes exactly to +-127 and is not saturated: a threshold at or
    above the tensor's largest |x| (``h.amax``; min-max's threshold) saturates nothing. Otherwise
    the values of every bin whose lower edge (|x|) is at least ``amax`` are counted: exact for
    thresholds on a bin edge (entropy, percentile) except that values equal to the edge itself
    are counted too; for a threshold inside a bin (MSE) that bin is left out, so it is a lower
    bound."""
    if h.status != "ok" or not np.isfinite(amax) or h.total == 0:
        return 0.0
    if amax >= float(h.amax):
        return 0.0
    edges = h.edges
    lo = edges[:-1]
    hi = edges[1:]
    beyond = (lo >= amax) | (hi <= -amax) if h.signed else lo >= amax
    return float(h.counts[beyond].sum()) / float(h.total)


def clipping(
    hists: Mapping[str, Histogram], amax: Mapping[str, Mapping[str, float]]
) -> Dict[str, Dict[str, float]]:
    """{method: {tensor: clipped fraction}} (see :func:`clipped_fraction`)."""
    return {
        m: {n: clipped_fraction(hists[n], a) for n, a in per.items() if n in hists}
        for m, per in amax.items()
    }


# ops whose outputs hold integers (or booleans) whatever their inputs
_INTEGER_OPS = {
    "Shape",
    "Size",
    "ArgMax",
    "ArgMin",
    "NonZero",
    "Floor",
    "Ceil",
    "Round",
    "Sign",
    "Equal",
    "Greater",
    "Less",
    "GreaterOrEqual",
    "LessOrEqual",
    "Not",
    "And",
    "Or",
    "Xor",
    "IsNaN",
    "IsInf",
    "Range",
    "ConstantOfShape",
}
# ops whose outputs are integer-valued when all their (data) inputs are
_INTEGER_PRESERVING = {
    "Cast",
    "Add",
    "Sub",
    "Mul",
    "Neg",
    "Abs",
    "Max",
    "Min",
    "Concat",
    "Gather",
    "GatherElements",
    "Unsqueeze",
    "Squeeze",
    "Reshape",
    "Slice",
    "Identity",
    "Expand",
    "Tile",
    "Transpose",
    "ReduceMax",
    "ReduceMin",
    "ReduceSum",
    "ReduceProd",
    "Relu",
    "Flatten",
    "Split",
    "Where",
    "Mod",
    "Clip",
}
_INTEGER_ELEM_TYPES = {
    2,
    3,
    4,
    5,
    6,
    7,
    9,
    12,
    13,
}  # uint8, int8, uint16, int16, int32, int64, bool, uint32, uint64


def unflaggable(model: Any) -> Dict[str, str]:
    """{tensor: reason} of the float tensors whose saturation warnings would mislead: 'shape'
    and 'constant' tensors (computed from constants and the inputs' shapes only: no data path
    from a model input except through Shape/Size) and 'integer-valued' tensors (from integer ops,
    integer
    inputs or casts of them, through ops that keep integers integers). Static: read from the
    graph, not from the values."""
    try:
        m = load_onnx(model)
    except Exception:  # noqa: BLE001 - no graph to read: nothing is exempt
        return {}
    from onnx import numpy_helper

    g = m.graph
    consts = {i.name for i in g.initializer}
    integer = {i.name for i in g.input if i.type.tensor_type.elem_type in _INTEGER_ELEM_TYPES}
    for i in g.initializer:
        if i.data_type in _INTEGER_ELEM_TYPES:
            integer.add(i.name)
        elif (
            i.data_type in (1, 10, 11) and int(np.prod(i.dims)) <= 64
        ):  # small float constants: integral?
            v = numpy_helper.to_array(i)
            if np.all(np.isfinite(v)) and np.all(v == np.round(v)):
                integer.add(i.name)
    data = {i.name for i in g.input if i.name not in consts}  # tensors that depend on input values
    out: Dict[str, str] = {}
    shaped: set = set()
    for n in g.node:
        ins = [i for i in n.input if i]
        from_shape = n.op_type in ("Shape", "Size") or any(i in shaped for i in ins)
        depends = n.op_type not in ("Shape", "Size") and any(i in data for i in ins)
        if n.op_type == "Constant":
            is_int = any(
                a.name == "value"
                and (
                    a.t.data_type in _INTEGER_ELEM_TYPES
                    or (
                        a.t.data_type == 1
                        and np.all(
                            numpy_helper.to_array(a.t) == np.round(numpy_helper.to_array(a.t))
                        )
                    )
                )
                for a in n.attribute
            )
        elif n.op_type == "Cast":
            to = next((a.i for a in n.attribute if a.name == "to"), 1)
            is_int = to in _INTEGER_ELEM_TYPES or (bool(ins) and ins[0] in integer)
        else:
            is_int = n.op_type in _INTEGER_OPS or (
                n.op_type in _INTEGER_PRESERVING and bool(ins) and all(i in integer for i in ins)
            )
        for o in n.output:
            if depends:
                data.add(o)
            if is_int:
                integer.add(o)
            if from_shape:
                shaped.add(o)
            if not depends:
                out[o] = "shape" if from_shape else "constant"
            elif is_int:
                out[o] = "integer-valued"
    return out


def saturation_warnings(
    clipped: Mapping[str, Mapping[str, float]],
    exempt: Mapping[str, str],
    effects: Optional[Mapping[str, Mapping[str, Mapping[str, Any]]]] = None,
) -> List[str]:
    """The warnings for tensors saturated beyond :data:`CLIP_WARN`, one per method, leaving out
    shape, constant and integer-valued tensors (``exempt``, see :func:`unflaggable`). Ranked by
    the measured effect of giving the tensor a wider (min-max) range on the task metric, largest
    gain first, when ``effects`` ({method: {tensor: {"metric", "sqnr_db", "text"}}}, from auto's
    refinements) has them, then by saturated share (the warning says which)."""
    lines = []
    for m, per in clipped.items():
        heavy = [(n, f) for n, f in per.items() if f > CLIP_WARN and n not in exempt]
        if not heavy:
            continue
        eff = dict((effects or {}).get(m, {}))
        measured = [n for n, _ in heavy if n in eff]

        def key(
            nf: Tuple[str, float], eff: Dict[str, Any] = eff
        ) -> Tuple[int, float, float, float]:
            e = eff.get(nf[0])
            return (0, -e["metric"], -e["sqnr_db"], -nf[1]) if e else (1, 0.0, 0.0, -nf[1])

        heavy.sort(key=key)
        names = [
            f"'{n}' ({f:.1%}"
            + (f"; with min-max range: {eff[n]['text']}" if n in eff else "")
            + ")"
            for n, f in heavy[:5]
        ]
        more = f" and {len(heavy) - 5} more" if len(heavy) > 5 else ""
        if measured:
            order = (
                "ranked by the measured effect of un-clipping on the task metric (largest gain "
                "first), then "
                "by saturated share"
            )
        elif eff:
            order = (
                "ranked by saturated share (auto measured the effect of other tensors, not of "
                "these)"
            )
        else:
            order = "ranked by saturated share (no evaluation data measured their effect)"
        skipped = sum(1 for n, f in per.items() if f > CLIP_WARN and n in exempt)
        lines.append(
            f"trtcal: {m} saturates more than {CLIP_WARN:.0%} of the values of {len(heavy)} "
            "tensor(s), "
            f"{order}: "
            + ", ".join(names)
            + more
            + (f"; {skipped} shape/integer-valued tensor(s) not counted" if skipped else "")
            + " (check them in the report; another method may suit them)"
        )
    return lines


def no_range(hists: Mapping[str, Histogram]) -> Dict[str, str]:
    """{tensor: status} of the histograms without a range ('all-zero', 'empty', 'nonfinite')."""
    return {n: h.status for n, h in hists.items() if h.status != "ok"}


# provenance keys of a calibration run -> fields of trtcal.formats.table.Provenance (the rest go to
# extra)
_PROVENANCE_FIELDS = {
    "method": "method",
    "flavor": "flavor",
    "bins": "bins",
    "samples": "num_samples",
    "batches": "num_batches",
    "nonfinite": "nonfinite",
    "trtcal_version": "trtcal_version",
    "percentile": "percentile",
}


def make_table(amax: Mapping[str, float], provenance: Mapping[str, Any]):
    """A :class:`trtcal.CalibrationTable` of one method's thresholds with provenance.

    Run facts with a Provenance field (method, flavor, bins, samples, batches, ...) fill it;
    everything else (model, data, preprocessing, runner, tensorrt_version, ...) goes to
    ``provenance.extra``, where the cache writer also finds the TensorRT version.
    """
    prov: Dict[str, Any] = {}
    extra: Dict[str, Any] = {}
    for k, v in provenance.items():
        if k in _PROVENANCE_FIELDS:
            if v is not None:
                prov[_PROVENANCE_FIELDS[k]] = v
        else:
            extra[k] = v
    prov["extra"] = extra
    return CalibrationTable(dict(amax), provenance=prov)


def write_json(table: Any, path: str) -> str:
    table.to_json(path)
    return path


def write_cache(table: Any, path: str, tensorrt_version: Optional[str], method: str) -> str:
    """TensorRT's text cache. The header names EntropyCalibration2 whatever ``method`` chose
    the scales: TensorRT skips a cache whose algorithm differs from its calibrator's, and
    trtexec's calibrator (the consumer of ``trtexec --calib``) is an IInt8EntropyCalibrator2,
    so a ``MinMaxCalibration`` header would make trtexec recalibrate on its own random data
    (NVIDIA/TensorRT#3430). trtcal's TensorRT calibrators re-head a cache for their own
    algorithm, and ``trtcal cache convert --algorithm`` rewrites the header for other consumers."""
    table.to_cache(
        path, tensorrt_version=tensorrt_version or DEFAULT_TENSORRT, algorithm="EntropyCalibration2"
    )
    return path


def qdq_op_types(op_types: Optional[Iterable[str]]) -> Tuple[str, ...]:
    """The op types a Q/DQ model quantizes: trtcal's defaults, or those of them the run chose
    (``--op-types``); ValueError when the choice holds none of them."""

    if not op_types:
        return tuple(DEFAULT_OP_TYPES)
    chosen = tuple(t for t in DEFAULT_OP_TYPES if t in set(op_types))
    if not chosen:
        raise ValueError(
            f"trtcal: none of the op types {sorted(set(op_types))} is one a Q/DQ model quantizes "
            f"({', '.join(DEFAULT_OP_TYPES)}): choose one of them with --op-types, or drop "
            "--out-qdq"
        )
    return chosen


def write_qdq(
    model: Any,
    table: Any,
    path: str,
    op_types: Optional[Iterable[str]] = None,
    *,
    high_precision: str = "fp16",
    placement_report: Optional[str] = None,
    head_sigmoid_float: bool = True,
) -> Tuple[str, List[str]]:
    """The Q/DQ ONNX model of the ops of ``op_types`` (see :func:`qdq_op_types`), placed by
    TensorRT's rules (:mod:`trtcal.onnx.placement`), with everything not quantized cast to
    ``high_precision`` (default fp16: TensorRT 11 networks are strongly typed, so an FP32
    remainder would run in FP32); tensors whose range fp16 cannot hold stay FP32. Returns the path
    and the activations it had to leave in float: inputs of those ops with no usable range (not
    calibrated, or amax 0: all-zero activations; ``missing='skip'``). ``placement_report``: a text
    file listing every tensor quantized and why, and every quantizable one left in float and why.
    ``head_sigmoid_float``: keep a detector head's output Sigmoid out of INT8 (default)."""
    from ..formats.onnx import quantize  # needs the optional onnx package

    usable = {n: a for n, a in table.items() if a > 0 and np.isfinite(a)}
    qmodel, report = quantize(
        model,
        usable,
        op_types=qdq_op_types(op_types),
        missing="skip",
        high_precision=high_precision,
        placement_report=placement_report,
        head_sigmoid_float=head_sigmoid_float,
        return_report=True,
    )

    save_onnx(qmodel, path)  # atomic, with the run's other outputs
    return path, list(report.missing)


def trtexec_lines(
    qdq: Optional[str] = None, cache: Optional[str] = None, model: Optional[str] = None
) -> List[str]:
    """The ``trtexec`` commands that build an engine from what was written, for TensorRT 10 and 11.

    * calibration cache (TensorRT <= 10 only; 11 removed implicit INT8): ``--int8 --calib=``;
    * Q/DQ model, TensorRT 11: ``--stronglyTyped`` only (11 has no --int8/--fp16/--calib: the types
      come from the graph, the FP16/BF16 remainder included);
    * Q/DQ model, TensorRT 10: ``--stronglyTyped`` (the graph's types, as 11), or ``--int8 --fp16``
      (weakly typed: TensorRT may also run the float layers in FP16 / INT8).
    """
    lines = []
    if cache:
        lines.append(
            f"TensorRT <= 10 (calibration cache):  trtexec --onnx={model or 'model.onnx'} --int8 "
            f"--calib={cache}"
        )
    if qdq:
        lines.append(f"TensorRT 11 (explicit Q/DQ):         trtexec --onnx={qdq} --stronglyTyped")
        lines.append(
            f"TensorRT 10 (explicit Q/DQ):         trtexec --onnx={qdq} --stronglyTyped   "
            f"(or --int8 --fp16: TensorRT picks the float layers' precision)"
        )
    return lines


def amax_array(values: Mapping[str, float]) -> np.ndarray:
    return np.asarray(list(values.values()), dtype=np.float64)
