"""`trtcal compare`: rank calibration methods by the accuracy of their INT8 or FP8 (Q/DQ) model."""

from __future__ import annotations

import argparse
import json

from ..api.compare import compare
from ..formats.table import CalibrationTable
from ..pipeline.data import parse_preprocess
from ._common import (
    add_data_arguments,
    add_evaluation_arguments,
    add_quant_arguments,
    add_task_arguments,
    config_from_args,
    say_for,
)


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser(
        "compare",
        help=(
            "which calibration method keeps the model accurate (one statistics pass, every method)"
        ),
        description="Collects the activation histograms once, computes every method's ranges "
        "(min-max; entropy "
        "flavors; percentile 99.9/99.99/99.999; MSE), runs each Q/DQ model (in TensorRT or ONNX "
        "Runtime: see --evaluate) against the FP32 model (in ONNX Runtime) and ranks the methods "
        "by "
        "the task metric of the worst head (detections kept, top-1 agreement, mask IoU; see "
        "--task), "
        "then the worst head's SQNR. Writes CSV/JSON, plots, one table per "
        "method and the recommended Q/DQ model to --out-dir.",
    )
    add_data_arguments(p)
    p.add_argument(
        "--methods",
        default=None,
        help="comma-separated: minmax, entropy[:flavor], percentile[:p], mse, all; with "
        "--quant-dtype fp8: fp8-mse, fp8-kl, minmax, percentile[:p] (default: all, "
        "or with fp8 fp8-mse,fp8-kl,minmax)",
    )
    p.add_argument(
        "--table",
        action="append",
        default=[],
        metavar="LABEL=PATH",
        help="also compare a table (trtcal JSON or TensorRT cache); repeatable",
    )
    p.add_argument(
        "--out-dir", default="trtcal-compare", help="where results go (default ./trtcal-compare)"
    )
    p.add_argument("--no-layers", action="store_true", help="skip the per-layer SQNR")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument(
        "--precisions",
        default=None,
        metavar="LIST",
        help="also measure the per-layer choice among these (e.g. int8,fp8,fp16; see "
        "trtcal analyze --precisions) as the row 'mixed'",
    )
    add_quant_arguments(p)
    add_task_arguments(p)
    add_evaluation_arguments(p)
    p.set_defaults(func=run)


def _load_table(spec: str):
    label, sep, path = spec.partition("=")
    if not sep or not label or not path:
        raise ValueError(f"--table expects LABEL=PATH, got {spec!r}")
    if path.endswith(".json"):
        return label, CalibrationTable.from_json(path)
    return label, CalibrationTable.from_cache(path)


def run(args: argparse.Namespace) -> int:
    tables = dict(_load_table(s) for s in args.table)
    cfg = config_from_args(args, preprocess=parse_preprocess(args.preprocess), log=say_for(args))
    res = compare(
        args.model,
        config=cfg,
        methods=args.methods,
        tables=tables or None,
        per_layer=not args.no_layers,
        out_dir=args.out_dir,
        plots=not args.no_plots,
        precisions=args.precisions,
    )
    if args.json:
        print(json.dumps(res.to_dict(), indent=1, default=str))
    else:
        print(res.format_table())
        for n in res.notes:
            print(f"note: {n}")
        if "recommended_qdq" in res.files:
            print(f"Q/DQ model with the recommended ranges: {res.files['recommended_qdq']}")
    return 0
