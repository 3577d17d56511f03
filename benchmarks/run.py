"""Benchmark entry point: runs every bench_*.py side by side in one process on the GPU and
writes RESULTS.md and results.json (date, GPU, driver, command, measured copy bandwidth).

    python benchmarks/run.py [--out DIR] [--only stats,silu,...]
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import subprocess
import sys
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

BENCHES = ["stats", "public", "sweep", "range_search", "silu", "calibrate"]


def gpu_info() -> dict:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
        name, driver, mem = [s.strip() for s in out.splitlines()[0].split(",")]
        return {"gpu": name, "driver": driver, "memory": mem}
    except Exception:  # noqa: BLE001
        return {"gpu": "unknown", "driver": "unknown", "memory": "unknown"}


def fmt_ms(v: float) -> str:
    return f"{v:.3f}" if v < 100 else f"{v:.0f}"


def to_markdown(meta: dict, results: dict) -> str:
    lines = [
        "# trtcal benchmark results",
        "",
        f"- date: {meta['date']}",
        f"- GPU: {meta['gpu']} ({meta['memory']}), driver {meta['driver']}, CUDA runtime "
        f"{meta['cuda_runtime']}",
        f"- measured device copy bandwidth: {meta['bandwidth_tbs']:.2f} TB/s (bytes read + bytes "
        "written); a kernel's floor is its bytes read at that rate",
        f"- command: `{meta['command']}`",
        f"- software: Python {meta['python']}, {meta['versions']}",
        "",
    ]
    for name, res in results.items():
        if "error" in res:
            lines += [f"## {name}", "", "```", res["error"].strip()[-2000:], "```", ""]
            continue
        lines += [f"## {res.get('title', name)}", ""]
        if res.get("note"):
            lines += [res["note"], ""]
        lines += ["| operation | median ms | floor ms | % of floor |", "|---|---:|---:|---:|"]
        for r in res["rows"]:
            if "ms" not in r:
                continue
            floor = r.get("floor_ms")
            lines.append(
                f"| {r['op']}{' (peer)' if r.get('peer') else ''} | {fmt_ms(r['ms'])} | "
                f"{fmt_ms(floor) if floor else '-'} | {100 * r['of_floor']:.0f}% |"
                if floor
                else f"| {r['op']}{' (peer)' if r.get('peer') else ''} | {fmt_ms(r['ms'])} | - | - "
                "|"
            )
        if res.get("summary"):
            lines += [
                "",
                "Ratios (same run; `_vs_`: peer time / trtcal time; `_over_`: time over time):",
                "",
            ]
            lines += [_ratio_line(k, v) for k, v in res["summary"].items()]
        lines.append("")
    return "\n".join(lines)


def _ratio_line(key: str, value: object) -> str:
    if not isinstance(value, float):
        return f"- {key}: {value}"
    return f"- {key}: {value:.2f}" if "_over_" in key else f"- {key}: {value:.1f}x"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", HERE))
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    only = [s for s in args.only.split(",") if s]
    os.makedirs(args.out, exist_ok=True)  # benches write files (sweep.png) there as they go
    import cupy as cp
    import numpy as np
    import torch
    from timing import copy_bandwidth_tbs

    import trtcal

    meta = dict(gpu_info())
    meta.update(
        date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        command="python benchmarks/run.py" + (f" --only {args.only}" if only else ""),
        python=platform.python_version(),
        versions=f"trtcal {trtcal.__version__}, numpy {np.__version__}, cupy {cp.__version__}, "
        f"torch {torch.__version__}",
        cuda_runtime=cp.cuda.runtime.runtimeGetVersion(),
        bandwidth_tbs=copy_bandwidth_tbs(),
    )
    ctx = {"bandwidth_tbs": meta["bandwidth_tbs"], "out": args.out}
    results = {}
    for name in BENCHES:
        if only and name not in only:
            continue
        try:
            mod = importlib.import_module(f"bench_{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"bench_{name}":
                continue
            raise
        print(f"== bench_{name}", flush=True)
        try:
            results[name] = mod.run(ctx)
        except Exception:  # noqa: BLE001 - one failing bench must not hide the others
            results[name] = {"error": traceback.format_exc()}
            print(results[name]["error"], flush=True)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1, default=float)
    md = to_markdown(meta, results)
    with open(os.path.join(args.out, "RESULTS.md"), "w") as f:
        f.write(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
