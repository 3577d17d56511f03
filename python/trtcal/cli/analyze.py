"""`trtcal analyze`: find the layers that break INT8; re-range them or keep them in float."""

from __future__ import annotations

import argparse
import json

from ..api.analyze import analyze
from ..evaluation.sensitivity import DEFAULT_THRESHOLDS, METRICS
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
        "analyze",
        help="find the layers that break INT8 and write a Q/DQ model without them",
        description="By default (--metric task): measures every method's INT8 model by the task "
        "metric "
        "(detections kept, top-1 agreement, mask IoU; then the worst head's SQNR), the effect of "
        "each layer in float, then tries other methods' ranges on the most sensitive layers and "
        "float fallback for them, and keeps the result only if it beats the best single method "
        "(else returns that method's model and says so). With --metric cosine|sqnr_db: enables "
        "INT8 one layer at a time in graph order and keeps a layer in float when it drops the "
        "similarity below --threshold (marked layers are first tried with other ranges). Results "
        "and the statistics are cached in --out-dir, so a re-run with another threshold reuses "
        "every measurement (a re-run with other data or settings collects and measures again).",
    )
    add_data_arguments(p)
    p.add_argument(
        "--method",
        default="auto",
        help="base ranges: auto (default: the best measured method) or one "
        "method, e.g. entropy, entropy:tensorrt, percentile:99.99, minmax, mse; with "
        "--quant-dtype fp8: fp8-mse, fp8-kl, minmax, percentile; 'all' is refused "
        "(trtcal compare ranks every method); with --precisions: the INT8 (default "
        "entropy) or FP8 (default fp8-mse) ranges",
    )
    p.add_argument(
        "--alternatives",
        default=None,
        help="candidate methods, also tried on layers (comma-separated, or 'all'; "
        "'none' for none; default percentile,mse,minmax,entropy, with --quant-dtype fp8 "
        "fp8-mse,fp8-kl,minmax,percentile)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="--metric cosine|sqnr_db: minimum similarity of the worst model output; default per "
        "--metric: "
        + ", ".join(
            f"{m} {t:g}{' dB' if m == 'sqnr_db' else ''}" for m, t in DEFAULT_THRESHOLDS.items()
        )
        + " (20 dB: noise power 1%% of the signal's, about cosine 0.995)",
    )
    p.add_argument(
        "--metric",
        default=None,
        choices=list(METRICS),
        help="task (the default without --threshold: the task metric of the worst head, see "
        "--task), "
        "or the cosine similarity (the default with --threshold) or SQNR in dB of the worst model "
        "output, judged against --threshold",
    )
    p.add_argument(
        "--search-layers",
        type=int,
        default=8,
        help="--metric task: the most sensitive layers whose ranges are searched (default 8)",
    )
    p.add_argument(
        "--max-float", type=int, default=4, help="--metric task: float fallbacks tried (default 4)"
    )
    add_quant_arguments(p)
    p.add_argument(
        "--precisions",
        default=None,
        metavar="LIST",
        help="choose per layer among these (e.g. int8,fp8,fp16) by the task metric: the "
        "fastest precision (measured in TensorRT when its module is present, else "
        "docs/fp8.md's table) that keeps the metric within --tolerance of the "
        "float model's; writes the mixed Q/DQ model",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=None,
        help="--precisions: the task metric drop a layer may cause (default one unit: "
        "one row, one detection)",
    )
    add_task_arguments(p)
    p.add_argument("--out-dir", default="trtcal-analyze", help="where results and the caches go")
    p.add_argument("--out-qdq", help="the Q/DQ model (default <out-dir>/<model>.analyzed.qdq.onnx)")
    p.add_argument(
        "--high-precision",
        choices=["fp16", "bf16", "fp32"],
        default="fp16",
        help="type of everything the written Q/DQ model leaves unquantized (default fp16: TensorRT "
        "11 "
        "builds the graph's types; the search itself measures an FP32 remainder)",
    )
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="collect the statistics and measure everything again (the caches are not read)",
    )
    p.add_argument("--no-plots", action="store_true")
    add_evaluation_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args, preprocess=parse_preprocess(args.preprocess), log=say_for(args))
    options = {}
    if args.alternatives is not None:
        none = args.alternatives.strip().lower() in ("", "none")
        options["alternatives"] = None if none else args.alternatives
    res = analyze(
        args.model,
        config=cfg,
        threshold=args.threshold,
        metric=args.metric,
        search_layers=args.search_layers,
        max_float=args.max_float,
        precisions=args.precisions,
        tolerance=args.tolerance,
        out_dir=args.out_dir,
        out_qdq=args.out_qdq,
        cache=not args.no_cache,
        plots=not args.no_plots,
        **options,
    )
    if args.json:
        print(json.dumps(res.to_dict(), indent=1, default=str))
    else:
        print(res.format_table())
        for n in res.notes:
            print(f"note: {n}")
        print(f"measured {res.measured} configuration(s), {res.cached} from the cache")
    return 0
