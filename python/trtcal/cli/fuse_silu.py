"""`trtcal fuse-silu IN.onnx OUT.onnx`: Sigmoid+Mul -> one SiLU TensorRT plugin node."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Dict, List, Set

from ..core._files import save_onnx
from ..formats.table import JSON_FORMAT, CalibrationTable
from ..pipeline.preflight import check_paths, check_writable, model_files

PLUGIN_HINT = (
    "trtcal.tensorrt.load_plugins(), or trtexec --staticPlugins=<path to libtrtcal_plugins.so>, "
    "the path trtcal.plugin_library_path() returns"
)


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser(
        "fuse-silu",
        help="fuse every Mul(x, Sigmoid(x)) of an ONNX model into trtcal's SiLU plugin node",
        description=(
            "Rewrites every Mul(x, Sigmoid(x)) into one SiLU node (domain 'trtcal') that "
            "TensorRT's "
            f"ONNX parser maps to trtcal's plugin: load it with {PLUGIN_HINT}. "
            "ONNX Runtime cannot load the output (it has no kernel for the custom op trtcal:SiLU); "
            "trtcal.onnx.expand_silu() turns the SiLU nodes back into Sigmoid+Mul (or DQ, Sigmoid, "
            "Mul, Q for INT8 ones). A pattern whose Sigmoid output is read by anything else too is "
            "left alone and listed. With --scales, fused nodes become INT8: Q(scale_in) -> SiLU -> "
            "DQ(scale_out); each SiLU left float is listed with the missing or invalid scale. "
            "Exit status: 0 on success, also when nothing was fused (a warning says so); 1 on an "
            "error (the input is not an ONNX model, --scales is invalid)."
        ),
    )
    p.add_argument("input", help="input .onnx model")
    p.add_argument(
        "output", help="output .onnx model (needs TensorRT and trtcal's plugin library to run)"
    )
    p.add_argument(
        "--scales",
        metavar="JSON",
        help="INT8 scales (amax/127) to make fused SiLUs INT8: a JSON object {tensor name: scale}, "
        'inline (\'{"x": 0.05, "y": 0.04}\') or in a file, or a trtcal calibration table '
        "file (scale = amax/127). Each scale must be positive and finite",
    )
    p.set_defaults(func=run)


def parse_scales(text: str) -> Dict[str, float]:
    """``--scales``: inline JSON or a JSON file path -> {tensor name: scale}.

    The JSON is an object of tensor name -> scale (amax/127), or a trtcal calibration table
    (``"format": "trtcal.calibration-table"``, whose amax values are divided by 127). Raises
    ValueError naming the source and every tensor whose scale is not positive and finite.
    """
    from ..formats.onnx.fuse import scale_problem

    source = "--scales"
    if os.path.isfile(text):
        source = f"--scales file {text}"
        with open(text, encoding="utf-8") as f:
            text = f.read()
    elif not text.lstrip().startswith(("{", "[")):
        kind = "a directory" if os.path.isdir(text) else "no file"
        raise ValueError(
            f"trtcal: --scales {text!r} is {kind} and not inline JSON; pass a JSON file or a "
            "JSON object such as '{\"x\": 0.05}'"
        )
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"trtcal: {source} is not valid JSON ({exc})") from None
    if isinstance(data, dict) and data.get("format") == JSON_FORMAT:
        table = CalibrationTable.from_dict(data, source)
        data = {name: table[name] / 127.0 for name in table}
    if not isinstance(data, dict):
        raise TypeError(
            f"trtcal: {source} must be a JSON object of tensor name -> scale, "
            f"not {type(data).__name__}"
        )
    problems = [
        f"tensor '{name}': {why}"
        for name, value in data.items()
        if (why := scale_problem(value)) is not None
    ]
    if problems:
        raise ValueError(
            f"trtcal: {source}: invalid scale(s): {'; '.join(problems)} "
            "(a scale is amax/127, positive and finite)"
        )
    return {name: float(value) for name, value in data.items()}


def load_model(path: str) -> "Any":
    """The ONNX model at ``path``; ValueError saying so when the file is not one."""
    import onnx

    if os.path.isdir(path):
        raise ValueError(f"trtcal: {path} is a directory, not an ONNX model")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"trtcal: no such model: {path}")
    with open(path, "rb") as f:
        head = f.read(64).lstrip()
    try:
        model = onnx.load(path)
    except OSError:
        raise
    except Exception as exc:  # noqa: BLE001 - protobuf DecodeError / json_format.ParseError, onnx errors
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        looks = " (it looks like JSON)" if head.startswith((b"{", b"[")) else ""
        raise ValueError(f"trtcal: {path} is not an ONNX model{looks}: {detail}") from None
    if not model.HasField("graph") or not (model.graph.node or model.graph.output):
        looks = " (it looks like JSON)" if head.startswith((b"{", b"[")) else ""
        raise ValueError(f"trtcal: {path} is not an ONNX model{looks}: it has no graph")
    return model


def _tensor_names(model: "Any") -> Set[str]:
    """Every tensor name of the model and its subgraphs."""
    from ..formats.onnx.fuse import _graphs

    names: Set[str] = set()
    for g in _graphs(model.graph):
        names.update(i.name for i in g.input)
        names.update(o.name for o in g.output)
        names.update(i.name for i in g.initializer)
        for n in g.node:
            names.update(n.input)
            names.update(n.output)
    names.discard("")
    return names


def _quoted(names: List[str], limit: int = 10) -> str:
    shown = ", ".join(f"'{n}'" for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def run(args: argparse.Namespace) -> int:
    from ..formats.onnx.fuse import _graphs, fuse_silu, is_silu_node

    def warn(msg: str) -> None:
        print(f"trtcal: warning: {msg}", file=sys.stderr)

    check_paths(
        [("input", p) for p in model_files(args.input)] + [("--scales", args.scales)],
        [("output", args.output)],
    )
    check_writable([("output", args.output)])
    scales = parse_scales(args.scales) if args.scales else None
    model = load_model(args.input)
    tensors = _tensor_names(model) if scales is not None else set()
    model, fused, report = fuse_silu(model, scales=scales, inplace=True, return_report=True)  # type: ignore[misc]
    silu_nodes = sum(is_silu_node(n) for g in _graphs(model.graph) for n in g.node)
    save_onnx(model, args.output)  # atomic; external data beside it past protobuf's 2 GB

    msg = f"fused {fused} Sigmoid+Mul pair(s) into SiLU"
    if scales is not None:
        msg += f"; {report.quantized} SiLU node(s) made INT8"
    print(f"{msg}; wrote {args.output}")
    if report.not_fused:
        print(
            f"skipped {len(report.not_fused)} Mul(x, Sigmoid(x)) pattern(s): fusing would drop a "
            "Sigmoid "
            "output that something else reads:"
        )
        for mul, why in report.not_fused:
            print(f"  Mul '{mul}': {why}")
    if scales is not None:
        if report.stayed_float:
            print(f"{len(report.stayed_float)} SiLU node(s) stayed float:")
            for node, why in report.stayed_float:
                print(f"  SiLU '{node}': {why}")
        if report.already_int8:
            print(f"{report.already_int8} SiLU node(s) were INT8 already (left alone)")
        unmatched = [n for n in scales if n not in tensors]
        if unmatched:
            warn(
                f"--scales names {len(unmatched)} tensor(s) not in {args.input}: "
                f"{_quoted(unmatched)}"
            )
        unused = [n for n in scales if n in tensors and n not in report.scales_read]
        if unused:
            print(
                f"{len(unused)} scale(s) of --scales are for tensors that are no SiLU input or "
                "output (unused)"
            )
    if fused == 0:
        if report.not_fused:
            warn(
                f"nothing fused: all {len(report.not_fused)} Mul(x, Sigmoid(x)) pattern(s) of "
                f"{args.input} "
                "were skipped (listed above)"
            )
        elif silu_nodes:
            warn(
                f"nothing fused: {args.input} has no Mul(x, Sigmoid(x)) left (it already has "
                f"{silu_nodes} SiLU node(s))"
            )
        else:
            warn(
                f"nothing fused: {args.input} has no Mul(x, Sigmoid(x)) pattern; {args.output} is "
                "the same model"
            )
    if silu_nodes:
        print(
            f"note: {args.output} uses the custom op trtcal:SiLU, which ONNX Runtime cannot load; "
            "it is for "
            f"TensorRT with trtcal's plugin library: {PLUGIN_HINT}. trtcal.onnx.expand_silu() "
            "turns the SiLU "
            "nodes back into standard ONNX ops"
        )
    return 0
