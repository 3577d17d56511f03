"""`trtcal migrate`: a TensorRT <= 10 calibration cache (or a trtcal JSON table) -> the TensorRT 11
Q/DQ ONNX model with the same ranges.

TensorRT 11 removed calibration caches, calibrators and dynamic ranges; its only INT8 path is
explicit Q/DQ in the ONNX model. This command maps the cache's tensor names to the model's ONNX
tensor names, places Q/DQ by TensorRT's rules (:mod:`trtcal.onnx.placement`) with scale = the
cache's scale (amax / 127), casts the rest to ``--high-precision`` and reports the names left
unmatched on either side.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

from ..formats.table import CalibrationTable
from ..pipeline.outputs import trtexec_lines
from .cache import load_table

_UNNAMED = re.compile(r"^\(Unnamed Layer\* ?(\d+)\) \[([^\]]+)\](_output(_\d+)?)?$")
_LAYER_SUFFIX = re.compile(r"^(.*) \[[^\]]+\](_output(_\d+)?)?$")


@dataclass
class NameMap:
    """How the names of a cache/table were matched to ONNX tensor names."""

    mapping: Dict[str, str] = field(default_factory=dict)  # cache name -> ONNX tensor
    how: Dict[str, str] = field(default_factory=dict)  # cache name -> 'exact' or the variant
    unmatched: Dict[str, str] = field(default_factory=dict)  # cache name -> why
    ambiguous: Dict[str, List[str]] = field(default_factory=dict)  # cache name -> candidates


def _variants(name: str) -> Iterable[Tuple[str, str]]:
    """(candidate ONNX name, rule) for a TensorRT tensor name, most specific first."""
    m = _LAYER_SUFFIX.match(name)
    if m:
        yield m.group(1), "layer-type suffix ' [Type]_output' removed"
    for suffix in ("_output_0", "_output", ":0"):
        if name.endswith(suffix):
            yield name[: -len(suffix)], f"suffix '{suffix}' removed"
    yield name + ":0", "':0' added (TensorFlow-style name)"
    m2 = re.match(r"^(.*)_(\d+)$", name)
    if m2:
        yield m2.group(1), "TensorRT's '_N' de-duplication suffix removed"


def map_names(cache_names: Iterable[str], onnx_names: Iterable[str]) -> NameMap:
    """Maps TensorRT cache tensor names to ONNX tensor names.

    TensorRT's ONNX parser names each tensor after its ONNX tensor, so most names match exactly.
    Others are tried in order: a ``' [LayerType]_output'`` suffix removed, ``_output``/``:0``
    suffixes removed or ``:0`` added, a trailing ``_N`` removed; a variant is used only when it
    names exactly one ONNX tensor that no exact match took. ``(Unnamed Layer* N) [Type]_output``
    names are outputs of layers TensorRT made itself (shuffles, constants, reformats): they
    have no ONNX tensor and are reported, not guessed from the layer index.
    """
    onnx_set = set(onnx_names)
    out = NameMap()
    names = list(cache_names)
    taken = {n for n in names if n in onnx_set}
    for n in names:
        if n in onnx_set:
            out.mapping[n], out.how[n] = n, "exact"
            continue
        if _UNNAMED.match(n):
            out.unmatched[n] = (
                "output of a layer TensorRT created itself (no ONNX tensor; its range is "
                "recomputed by TensorRT 11 from the Q/DQ around it)"
            )
            continue
        hits = [(c, why) for c, why in _variants(n) if c in onnx_set and c not in taken]
        distinct = sorted({c for c, _ in hits})
        if len(distinct) == 1:
            out.mapping[n], out.how[n] = distinct[0], hits[0][1]
            taken.add(distinct[0])
        elif distinct:
            out.ambiguous[n] = distinct
            out.unmatched[n] = f"ambiguous: matches {', '.join(distinct)}"
        else:
            out.unmatched[n] = "no ONNX tensor of this name (or of a known TensorRT variant of it)"
    return out


def onnx_tensor_names(model) -> List[str]:
    """Every tensor name of the main graph: inputs, node outputs, initializers."""
    g = model.graph
    names = [i.name for i in g.input] + [o for n in g.node for o in n.output if o]
    return names + [t.name for t in g.initializer]


def migrate(
    model_path: str,
    table_path: str,
    out_qdq: str,
    *,
    high_precision: str = "fp16",
    placement_report: Optional[str] = None,
    keep_io_types: bool = True,
    exclude_nodes: Tuple[str, ...] = (),
) -> Dict[str, Any]:
    """Writes the Q/DQ model of ``model_path`` with the ranges of ``table_path`` (a TensorRT cache
    or a trtcal JSON table) to ``out_qdq``; returns a summary: names mapped and how, names unmatched
    on the cache side (with reasons) and on the ONNX side (tensors the placement quantizes that
    the cache has no usable range for), and entries with unusable scales."""
    import onnx

    from ..formats.onnx import quantize

    if not os.path.isfile(model_path):
        raise FileNotFoundError(f"trtcal: no such model: {model_path}")
    if os.path.abspath(out_qdq) in (os.path.abspath(model_path), os.path.abspath(table_path)):
        raise ValueError(
            f"trtcal: --out-qdq {out_qdq} would overwrite an input; choose another path"
        )
    table, what = load_table(table_path)
    try:
        model = onnx.load(model_path)
    except Exception as exc:  # protobuf raises several types
        raise ValueError(f"trtcal: {model_path} is not a readable ONNX model ({exc})") from None
    names = map_names(list(table), onnx_tensor_names(model))
    bad = {n: a for n, a in table.items() if not (math.isfinite(a) and a > 0)}
    ranges = CalibrationTable(
        {names.mapping[n]: a for n, a in table.items() if n in names.mapping and n not in bad}
    )
    _, rep = quantize(
        model,
        ranges,
        missing="skip",
        high_precision=high_precision,
        keep_io_types=keep_io_types,
        exclude_nodes=list(exclude_nodes),
        placement_report=placement_report,
        output=out_qdq,
        return_report=True,
    )
    renamed = {
        n: (names.mapping[n], names.how[n]) for n in names.mapping if names.how[n] != "exact"
    }
    return {
        "source": f"{table_path}: {what}",
        "entries": len(table),
        "mapped": len(names.mapping),
        "renamed": renamed,
        "unmatched_cache": names.unmatched,
        "unusable_scales": {n: f"amax {a}" for n, a in bad.items()},
        "unmatched_onnx": list(rep.missing),
        "quantized_tensors": len(rep.activations),
        "weights": len(rep.weights),
        "high_precision": rep.high_precision,
        "kept_fp32": dict(rep.precision.kept_fp32) if rep.precision is not None else {},
        "out_qdq": os.path.abspath(out_qdq),
    }


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser(
        "migrate",
        help="TensorRT <= 10 calibration cache (or trtcal table) -> TensorRT 11 Q/DQ ONNX model",
        description="Writes MODEL with QuantizeLinear/DequantizeLinear placed by TensorRT's "
        "explicit-quantization "
        "rules, each scale taken from CACHE (a TensorRT calibration cache or a trtcal JSON table), "
        "and everything else cast to --high-precision: the model TensorRT 11 (which has no caches "
        "and no --int8/--fp16) builds with --stronglyTyped. Cache names are matched to ONNX tensor "
        "names; the names unmatched on either side are listed.",
    )
    p.add_argument("model", help="the float ONNX model the cache was calibrated for")
    p.add_argument("cache", help="TensorRT calibration cache or trtcal JSON table")
    p.add_argument("--out-qdq", required=True, help="the Q/DQ ONNX model to write")
    p.add_argument(
        "--high-precision",
        choices=("fp32", "fp16", "bf16"),
        default="fp16",
        help="type of everything not quantized (default fp16; TensorRT 11 runs FP32 layers in "
        "FP32)",
    )
    p.add_argument(
        "--cast-io",
        action="store_true",
        help="declare the graph inputs/outputs in the --high-precision type too (default: keep "
        "them)",
    )
    p.add_argument(
        "--placement-report",
        help="text file: every tensor quantized and why, every quantizable one "
        "left in float and why",
    )
    p.add_argument(
        "--exclude-nodes",
        action="append",
        default=[],
        metavar="PATTERN",
        help="node names or globs left in float; repeatable",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    s = migrate(
        args.model,
        args.cache,
        args.out_qdq,
        high_precision=args.high_precision,
        placement_report=args.placement_report,
        keep_io_types=not args.cast_io,
        exclude_nodes=tuple(args.exclude_nodes),
    )
    if args.json:
        print(json.dumps(s, indent=1))
    else:
        _print(s)

    for line in trtexec_lines(qdq=s["out_qdq"]):
        print(line)
    return 0


def _print(s: Mapping[str, Any]) -> None:
    err = sys.stderr
    print(
        f"trtcal: {s['source']}: {s['entries']} entries, {s['mapped']} matched to ONNX tensors",
        file=err,
    )
    for n, (t, how) in dict(s["renamed"]).items():
        print(f"trtcal:   {n!r} -> {t!r} ({how})", file=err)
    unmatched = dict(s["unmatched_cache"])
    if unmatched:
        print(
            f"trtcal: {len(unmatched)} cache name(s) match no ONNX tensor (their ranges are not "
            "used):",
            file=err,
        )
        for n, why in unmatched.items():
            print(f"trtcal:   {n}: {why}", file=err)
    for n, why in dict(s["unusable_scales"]).items():
        print(f"trtcal: cache entry {n} has no usable range ({why}): left in float", file=err)
    missing = list(s["unmatched_onnx"])
    if missing:
        print(
            f"trtcal: {len(missing)} ONNX tensor(s) TensorRT's rules quantize have no range in the "
            "cache and "
            f"stay in float: {', '.join(missing)}",
            file=err,
        )
    kept = dict(s["kept_fp32"])
    if kept:
        print(
            f"trtcal: {len(kept)} tensor(s) stay fp32 (range beyond {s['high_precision']}): "
            f"{', '.join(kept)}",
            file=err,
        )
    print(
        f"trtcal: wrote {s['out_qdq']}: {s['quantized_tensors']} activations and "
        f"{s['weights']} weights "
        f"quantized, the rest {s['high_precision']}",
        file=err,
    )
