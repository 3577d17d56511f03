"""`trtcal analyze`: find the layers that break INT8; re-range them or keep them in float."""

from __future__ import annotations

import argparse
import json
import sys

from ..sensitivity import DEFAULT_THRESHOLDS, METRICS
from ._common import add_data_arguments, add_evaluation_arguments


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser(
        "analyze", help="find the layers that break INT8 and write a Q/DQ model without them",
        description="Enables INT8 one layer at a time in graph order, measures the outputs against FP32, and "
                    "keeps a layer in float when it drops the similarity below --threshold (later layers are "
                    "measured without it). Marked layers are first tried with other methods' ranges. Results "
                    "and the statistics are cached in --out-dir, so a re-run with another threshold reuses "
                    "every measurement (a re-run with other data or settings collects and measures again).")
    add_data_arguments(p)
    p.add_argument("--method", default="entropy", help="base ranges: one method, e.g. entropy, entropy:tensorrt, "
                   "percentile:99.99, minmax, mse (default entropy: its first flavor); 'all' is refused "
                   "(trtcal compare ranks every method)")
    p.add_argument("--alternatives", default="percentile,mse,minmax,entropy",
                   help="methods tried on marked layers (comma-separated, or 'all'; 'none' for none)")
    p.add_argument("--threshold", type=float, default=None,
                   help="minimum similarity of the worst model output; default per --metric: "
                        + ", ".join(f"{m} {t:g}{' dB' if m == 'sqnr_db' else ''}" for m, t in DEFAULT_THRESHOLDS.items())
                        + " (20 dB: noise power 1%% of the signal's, about cosine 0.995)")
    p.add_argument("--metric", default="cosine", choices=list(METRICS),
                   help="cosine similarity or SQNR in dB of the worst model output (default cosine)")
    p.add_argument("--out-dir", default="trtcal-analyze", help="where results and the caches go")
    p.add_argument("--out-qdq", help="the Q/DQ model (default <out-dir>/<model>.analyzed.qdq.onnx)")
    p.add_argument("--no-cache", action="store_true",
                   help="collect the statistics and measure everything again (the caches are not read)")
    p.add_argument("--no-plots", action="store_true")
    add_evaluation_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..sensitivity import analyze
    from ..calibration.data import parse_preprocess

    say = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr))
    alts = None if args.alternatives.strip().lower() in ("", "none") else args.alternatives
    res = analyze(args.model, args.data, args.eval_data, method=args.method, alternatives=alts,
                  threshold=args.threshold, metric=args.metric, batch_size=args.batch_size,
                  max_samples=args.max_samples, eval_samples=args.eval_samples,
                  preprocess=parse_preprocess(args.preprocess), input_name=args.input_name, runner=args.runner,
                  evaluate=args.evaluate,
                  out_dir=args.out_dir, out_qdq=args.out_qdq, cache=not args.no_cache, plots=not args.no_plots,
                  progress=not args.quiet, log=say)
    if args.json:
        print(json.dumps(res.to_dict(), indent=1, default=str))
    else:
        print(res.format_table())
        for n in res.notes:
            print(f"note: {n}")
        print(f"measured {res.measured} configuration(s), {res.cached} from the cache")
    return 0
