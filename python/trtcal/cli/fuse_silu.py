"""`trtcal fuse-silu IN.onnx OUT.onnx`: Sigmoid+Mul -> one SiLU TensorRT plugin node."""

from __future__ import annotations

import argparse
import json
import os


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser(
        "fuse-silu",
        help="fuse every Mul(x, Sigmoid(x)) of an ONNX model into trtcal's SiLU plugin node",
        description=(
            "Rewrites every Mul(x, Sigmoid(x)) into one SiLU node (domain 'trtcal') that TensorRT's "
            "ONNX parser maps to trtcal's plugin (load it with trtcal.tensorrt.load_plugins() or "
            "trtexec --staticPlugins=$(python -c 'import trtcal; print(trtcal.plugin_library_path())')). "
            "With --scales, fused nodes become INT8: Q(scale_in) -> SiLU -> DQ(scale_out)."
        ),
    )
    p.add_argument("input", help="input .onnx model")
    p.add_argument("output", help="output .onnx model")
    p.add_argument("--scales", metavar="JSON",
                   help="JSON object {tensor name: INT8 scale (amax/127)} to make fused SiLUs INT8")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import onnx

    from ..onnx.fuse import fuse_silu, quantize_silu

    if not os.path.isfile(args.input):
        raise FileNotFoundError(f"trtcal: no such model: {args.input}")
    scales = None
    if args.scales:
        with open(args.scales, encoding="utf-8") as f:
            scales = json.load(f)
        if not isinstance(scales, dict) or not all(isinstance(v, (int, float)) for v in scales.values()):
            raise ValueError(f"trtcal: {args.scales} must hold a JSON object of tensor name -> scale")
    model = onnx.load(args.input)
    model, fused = fuse_silu(model, inplace=True)
    quantized = 0
    if scales is not None:
        model, quantized = quantize_silu(model, scales, inplace=True)
    large = model.ByteSize() > 2**31 - 1  # protobuf cannot serialise more in one file
    onnx.save(model, args.output, save_as_external_data=large)
    msg = f"fused {fused} Sigmoid+Mul pair(s) into SiLU"
    if scales is not None:
        msg += f"; {quantized} SiLU node(s) made INT8"
    print(f"{msg}; wrote {args.output}")
    return 0
