"""`trtcal cache`: show, diff and convert TensorRT calibration caches and trtcal JSON tables."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Any, Dict, List, Tuple

from ..formats import cache as tc
from ..formats.table import CalibrationTable, _json_float
from ..pipeline.preflight import check_paths, check_writable


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser(
        "cache", help="show, diff or convert TensorRT calibration caches and trtcal tables"
    )
    cmds = p.add_subparsers(dest="cache_command", metavar="ACTION")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    show = cmds.add_parser(
        "show",
        help="list tensor, scale and amax of a cache or a JSON table",
        description="Lists every tensor with its scale, amax and cache hex. Negative and NaN "
        "scales (invalid for TensorRT) and zero scales (no range) are shown and "
        'warned about per tensor on stderr (and under "warnings" with --json).',
    )
    show.add_argument("file")
    show.add_argument("--json", action="store_true", help="print JSON instead of a table")
    show.add_argument("--sort", choices=("file", "name", "amax"), default="file")
    show.set_defaults(func=run_show)

    diff = cmds.add_parser(
        "diff",
        help="which tensors moved between two caches/tables, and by how much",
        description="Exit status (as diff(1)): 0 when the two hold the same scales, 1 when "
        "they differ, 2 on an error (a file missing or not a cache/table, a bad "
        "--rtol).",
    )
    diff.add_argument("a")
    diff.add_argument("b")
    diff.add_argument(
        "--rtol",
        type=_tolerance,
        default=0.0,
        help="ignore relative changes up to this, a finite number >= 0 "
        "(default 0: any change of the float32 scale)",
    )
    diff.add_argument("--json", action="store_true")
    diff.set_defaults(func=run_diff)

    conv = cmds.add_parser("convert", help="JSON table <-> cache, or a cache with a new header")
    conv.add_argument("input")
    conv.add_argument("output")
    conv.add_argument(
        "--to",
        choices=("cache", "json"),
        default=None,
        help="output format (default: json for *.json outputs, cache otherwise)",
    )
    conv.add_argument(
        "--tensorrt-version",
        default=None,
        help="TensorRT version of the cache header (default: the input cache's, "
        f"else {tc.DEFAULT_TENSORRT_VERSION})",
    )
    conv.add_argument(
        "--algorithm",
        choices=tc.ALGORITHMS,
        default=None,
        help="calibration algorithm of the header (default: the input cache's, "
        f"else {tc.DEFAULT_ALGORITHM})",
    )
    conv.set_defaults(func=run_convert)


def _tolerance(text: str) -> float:
    """``--rtol``: a finite number >= 0 (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a relative tolerance is a finite number >= 0")
    return value


def _error(exc: BaseException) -> None:
    """Prints ``trtcal: error: ...`` as the CLI's main does (one ``trtcal:`` prefix)."""
    msg = str(exc)
    print(
        f"trtcal: error: {msg[len('trtcal: ') :] if msg.startswith('trtcal: ') else msg}",
        file=sys.stderr,
    )


def load_table(path: str) -> Tuple[CalibrationTable, str]:
    """A table from a JSON table or a TensorRT cache, and a one-line description of the file.

    Raises FileNotFoundError for a missing file and ValueError for a directory, an unreadable
    file or one that is neither a cache nor a trtcal table."""
    if os.path.isdir(path):
        raise ValueError(
            f"trtcal: {path} is a directory, not a calibration cache or trtcal JSON table"
        )
    try:
        with open(path, "rb") as f:
            head = f.read(64).lstrip()
    except FileNotFoundError:
        raise FileNotFoundError(f"trtcal: no such file: {path}") from None
    except OSError as exc:
        raise ValueError(f"trtcal: cannot read {path}: {exc.strerror or exc}") from None
    if head.startswith(b"{"):
        t = CalibrationTable.from_json(path)
        return t, f"trtcal table ({t.provenance.method or 'unknown method'})"
    t = CalibrationTable.from_cache(path)
    c = t._cache
    assert c is not None  # from_cache keeps the cache it read
    return t, f"TensorRT {c.tensorrt_version} cache, {c.algorithm} ({c.header.strip()})"


def scale_warnings(table: CalibrationTable) -> List[Tuple[str, str]]:
    """``(tensor, problem)`` for each negative, NaN or zero scale
    (:func:`trtcal.formats.cache.scale_problem`)."""
    return [(n, p) for n in table if (p := tc.scale_problem(table[n] / 127)) is not None]


def run_show(args: argparse.Namespace) -> int:
    table, what = load_table(args.file)
    names = list(table)
    if args.sort == "name":
        names.sort()
    elif args.sort == "amax":
        names.sort(key=lambda n: -table[n] if not math.isnan(table[n]) else math.inf)
    warnings = scale_warnings(table)
    if args.json:
        rows = [
            {
                "tensor": n,
                "scale": _json_float(table[n] / 127),
                "amax": _json_float(table[n]),
                "hex": tc.scale_to_hex(table[n] / 127),
            }
            for n in names
        ]
        json.dump(
            {
                "file": args.file,
                "kind": what,
                "tensors": rows,
                "warnings": [{"tensor": n, "problem": p} for n, p in warnings],
            },
            sys.stdout,
            indent=2,
        )
        print()
    else:
        flagged = (
            f", {len(warnings)} with a negative, NaN or zero scale (warnings on stderr)"
            if warnings
            else ""
        )
        print(f"{args.file}: {what}, {len(table)} tensors{flagged}")
        width = max([len("tensor")] + [len(n) for n in names])
        print(f"{'tensor':<{width}}  {'scale':>14}  {'amax':>14}  hex")
        for n in names:
            a = table[n]
            print(f"{n:<{width}}  {a / 127:>14.8g}  {a:>14.8g}  {tc.scale_to_hex(a / 127)}")
    sys.stdout.flush()  # the table first, then its warnings
    for n, problem in warnings:
        print(
            f"trtcal: warning: {args.file}: tensor '{n}' (hex {tc.scale_to_hex(table[n] / 127)}): "
            f"{problem}",
            file=sys.stderr,
        )
    return 0


def diff_tables(a: CalibrationTable, b: CalibrationTable, rtol: float = 0.0) -> Dict[str, Any]:
    """Names only in A, only in B, and the tensors whose scale changed, biggest change first.

    A change is compared on float32 scales (what a cache stores); ``ratio`` is amax_b / amax_a.
    """
    only_a = [n for n in a if n not in b]
    only_b = [n for n in b if n not in a]
    moved: List[Dict[str, Any]] = []
    for n in a:
        if n not in b:
            continue
        sa, sb = tc.to_float32(a[n] / 127), tc.to_float32(b[n] / 127)
        if tc.float32_bits(sa) == tc.float32_bits(sb):
            continue
        x, y = a[n], b[n]
        if x > 0 and math.isfinite(x) and math.isfinite(y):
            ratio = y / x
            rel = abs(y - x) / x
        else:
            ratio = math.inf if y != x else 1.0
            rel = math.inf
        if rel <= rtol:
            continue
        moved.append({"tensor": n, "amax_a": x, "amax_b": y, "ratio": ratio, "rel_change": rel})
    moved.sort(key=lambda r: -abs(math.log(r["ratio"])) if 0 < r["ratio"] < math.inf else -math.inf)
    return {
        "only_in_a": only_a,
        "only_in_b": only_b,
        "changed": moved,
        "unchanged": sum(1 for n in a if n in b) - len(moved),
    }


def run_diff(args: argparse.Namespace) -> int:
    """Exit status as diff(1): 0 same scales, 1 different, 2 error (reported here, not by main)."""
    try:
        a, what_a = load_table(args.a)
        b, what_b = load_table(args.b)
    except (ValueError, TypeError, OSError) as exc:
        _error(exc)
        return 2
    d = diff_tables(a, b, args.rtol)
    if args.json:
        out = dict(d)
        out["changed"] = [
            {k: (_json_float(v) if isinstance(v, float) else v) for k, v in r.items()}
            for r in d["changed"]
        ]
        json.dump({"a": args.a, "b": args.b, **out}, sys.stdout, indent=2)
        print()
    else:
        print(f"A: {args.a}: {what_a}, {len(a)} tensors")
        print(f"B: {args.b}: {what_b}, {len(b)} tensors")
        print(
            f"{d['unchanged']} unchanged, {len(d['changed'])} changed, "
            f"{len(d['only_in_a'])} only in A, {len(d['only_in_b'])} only in B"
        )
        if d["changed"]:
            width = max(len("tensor"), *(len(r["tensor"]) for r in d["changed"]))
            print(f"{'tensor':<{width}}  {'amax A':>12}  {'amax B':>12}  {'B/A':>9}")
            for r in d["changed"]:
                print(
                    f"{r['tensor']:<{width}}  {r['amax_a']:>12.6g}  {r['amax_b']:>12.6g}  "
                    f"{r['ratio']:>9.4f}"
                )
        for label, key in (("only in A", "only_in_a"), ("only in B", "only_in_b")):
            for n in d[key]:
                print(f"{label}: {n}")
    return 1 if (d["changed"] or d["only_in_a"] or d["only_in_b"]) else 0


def run_convert(args: argparse.Namespace) -> int:

    check_paths([("input", args.input)], [("output", args.output)])
    table, what = load_table(args.input)
    bad = table.invalid()
    if bad:
        raise ValueError(
            f"trtcal: {args.input}: tensor '{bad[0][0]}' has {bad[0][1]}"
            + (f" (and {len(bad) - 1} more tensor(s))" if len(bad) > 1 else "")
            + ", which TensorRT cannot use; nothing written"
        )
    check_writable([("output", args.output)])
    to = args.to or ("json" if args.output.lower().endswith(".json") else "cache")
    if to == "json":
        if args.tensorrt_version or args.algorithm:
            raise ValueError("--tensorrt-version and --algorithm apply to cache outputs only")
        table.to_json(args.output)
        print(f"wrote {args.output}: trtcal table, {len(table)} tensors (from {what})")
    else:
        table.to_cache(
            args.output, tensorrt_version=args.tensorrt_version, algorithm=args.algorithm
        )
        header = tc.read_cache(args.output).header.strip()
        print(
            f"wrote {args.output}: TensorRT calibration cache {header}, {len(table)} tensors (from "
            f"{what})"
        )
    return 0
