"""`trtcal merge STATE...`: combine collector states made on separate machines into one table.

Each STATE is a collector-state file (``trtcal.distributed.save_states``, or a merged state
from ``--out-state``) or a ``trtcal calibrate --shard R/N`` checkpoint, one per machine or rank,
each over its own part of the data. The merge is exact: the result equals one run over all the
data. Checkpoints must be the N shards of one run, each once and finished; ``--allow-partial``
merges a subset or unfinished shards, with a warning (see ``trtcal.distributed.merge_files``)."""

from __future__ import annotations

import argparse
import json
import sys

from ..core._files import output_set
from ..core.collectors import HistogramCollector
from ..core.version import __version__
from ..pipeline import outputs
from ..pipeline.distributed import merge_files, save_states
from ..pipeline.preflight import check_paths, check_writable


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser(
        "merge",
        help="merge collector states / checkpoints from separate machines into one table",
        description="Merges collector-state files or calibrate checkpoints, each made over its own "
        "shard of the "
        "data, exactly (the result equals one run over all the data), and writes the merged state, "
        "a JSON table and/or a TensorRT calibration cache. With no output option, prints the "
        "thresholds as JSON.",
    )
    p.add_argument(
        "states",
        nargs="+",
        metavar="STATE",
        help="collector-state .npz files, or the checkpoints of all N shards of one 'trtcal "
        "calibrate "
        "--shard R/N' run (ck.rank*-of-N.npz)",
    )
    p.add_argument("--out-state", help="merged collector states (.npz; can be merged again)")
    p.add_argument("--out-table", help="JSON table of thresholds with provenance")
    p.add_argument("--out-cache", help="TensorRT calibration cache (TensorRT <= 10)")
    p.add_argument(
        "--method",
        default="entropy",
        choices=["entropy", "percentile", "minmax", "mse", "all"],
        help="threshold method for the table and cache (default entropy)",
    )
    p.add_argument(
        "--flavor", default=None, help="range-search flavour, passed to trtcal.compute_amax"
    )
    p.add_argument(
        "--percentile", type=float, default=None, help="percentile for --method percentile"
    )
    p.add_argument("--tensorrt-version", help="X.Y of the TensorRT that will read the cache")
    p.add_argument(
        "--allow-partial",
        "--allow-incomplete",
        dest="allow_partial",
        action="store_true",
        help="merge even when shards of the run are missing or did not finish (a warning says "
        "which); "
        "the result then covers only part of the data",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

    outs = [
        ("--out-state", args.out_state),
        ("--out-table", args.out_table),
        ("--out-cache", args.out_cache),
    ]
    check_paths([("input", p) for p in args.states], outs)
    check_writable(outs)
    with output_set():  # every output written, then all renamed together (or none)
        return _merge(args)


def _merge(args: argparse.Namespace) -> int:
    merged, info = merge_files(args.states, allow_partial=args.allow_partial)
    say = lambda s: print(s, file=sys.stderr)  # noqa: E731
    for w in info["warnings"]:
        say(f"trtcal: warning: {w}")
    shards = info["shards"]
    which = ""
    if shards is not None and shards["world_size"] > 1:
        which = f" ({len(shards['ranks'])} of {shards['world_size']} shards)"
    nfiles = len(args.states)
    say(
        f"trtcal: merged {nfiles} file{'s' if nfiles != 1 else ''}{which}, {len(merged)} tensors"
        + (f", {info['samples']} samples" if info["samples"] is not None else "")
    )
    if args.out_state:
        save_states(args.out_state, merged, meta=info["state_meta"])  # lands with the other outputs
        say(f"trtcal: wrote merged state: {args.out_state}")
    if args.out_state and not (args.out_table or args.out_cache):
        return 0

    hists = {n: c.histogram() for n, c in merged.items() if isinstance(c, HistogramCollector)}
    methods = list(outputs.METHODS) if args.method == "all" else [args.method]
    params = (
        {"percentile": {"percentile": args.percentile}} if args.percentile is not None else None
    )
    amax = outputs.thresholds(hists, methods, args.flavor, params)
    if not (args.out_table or args.out_cache):
        print(json.dumps(amax, indent=1))
        return 0
    trt = args.tensorrt_version or outputs.DEFAULT_TENSORRT
    prov = {
        "tool": "trtcal merge",
        "trtcal_version": __version__,
        "merged_from": info["files"],
        "samples": info["samples"],
        "flavor": args.flavor,
        "tensorrt_version": trt,
    }
    bins = {c.bins for c in merged.values() if isinstance(c, HistogramCollector)}
    if len(bins) == 1:
        prov["bins"] = bins.pop()
    if args.percentile is not None:
        prov["percentile"] = args.percentile
    if shards is not None and (shards["missing"] or info["unfinished"]):
        prov["partial"] = {
            "world_size": shards["world_size"],
            "missing_shards": shards["missing"],
            "unfinished": info["unfinished"],
        }
    several = len(methods) > 1
    for m in methods:
        table = outputs.make_table(amax[m], dict(prov, method=m))
        if args.out_table:
            path = _with_method(args.out_table, m) if several else args.out_table
            say(f"trtcal: wrote table: {outputs.write_json(table, path)}")
        if args.out_cache:
            path = _with_method(args.out_cache, m) if several else args.out_cache
            say(f"trtcal: wrote cache: {outputs.write_cache(table, path, trt, m)}")
    return 0


def _with_method(path: str, method: str) -> str:
    import os

    root, ext = os.path.splitext(path)
    return f"{root}.{method}{ext}"
