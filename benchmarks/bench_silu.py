"""SiLU on 268,435,456 elements (H200): trtcal against torch.nn.functional.silu, same run.

Targets (issue 7): float16 <= 0.29 ms, float32 <= 0.55 ms, INT8 -> INT8 <= 0.15 ms.
Standalone: ``python benchmarks/bench_silu.py [--n N] [--iters K]`` prints a markdown table
for benchmarks/RESULTS.md; ``run(ctx)`` returns the same rows as a dict.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Dict, List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from timing import time_cuda  # benchmarks/timing.py: median ms with CUDA events

N = 268_435_456
TARGET_MS = {"float16": 0.29, "float32": 0.55, "int8": 0.15}
SCALE_IN, SCALE_OUT = 0.0473, 0.0291


def _opt(ctx: Any, key: str, default: Any) -> Any:
    if ctx is None:
        return default
    if isinstance(ctx, dict):
        return ctx.get(key, default)
    return getattr(ctx, key, default)


def run(ctx: Any = None) -> Dict[str, Any]:
    import torch

    import trtcal

    n = int(_opt(ctx, "n", N))
    warmup, iters = int(_opt(ctx, "warmup", 10)), int(_opt(ctx, "iters", 50))
    dev = "cuda"
    rows: List[Dict[str, Any]] = []

    def add(op: str, dtype: str, bytes_moved: int, fn, torch_fn=None) -> None:
        ms = time_cuda(fn, warmup=warmup, iters=iters)
        row = {
            "op": op,
            "dtype": dtype,
            "n": n,
            "trtcal_ms": ms,
            "trtcal_GBps": bytes_moved / ms / 1e6,
        }
        if torch_fn is not None:
            tms = time_cuda(torch_fn, warmup=warmup, iters=iters)
            row.update({"torch_ms": tms, "torch_GBps": bytes_moved / tms / 1e6})
        if dtype in TARGET_MS and op in ("silu", "silu_int8"):
            row["target_ms"] = TARGET_MS[dtype]
            row["meets_target"] = ms <= TARGET_MS[dtype]
        # the common row format of benchmarks/run.py: floor = bytes read + written at the copy rate
        bw = _opt(ctx, "bandwidth_tbs", None)
        floor = bytes_moved / (bw * 1e12) * 1e3 if bw else None
        target = f", target <= {TARGET_MS[dtype]:.2f} ms" if "target_ms" in row else ""
        label = f"trtcal.{op} ({dtype}{target})"
        row.update(op=label, ms=ms, floor_ms=floor, of_floor=(floor / ms) if floor else None)
        rows.append(row)
        if torch_fn is not None:
            rows.append(
                {
                    "op": f"torch.nn.functional.silu ({dtype})",
                    "ms": row["torch_ms"],
                    "floor_ms": floor,
                    "of_floor": (floor / row["torch_ms"]) if floor else None,
                    "peer": True,
                }
            )

    for dtype in ("float16", "float32", "bfloat16"):
        td = getattr(torch, dtype)
        x = torch.randn(n, dtype=td, device=dev) * 4
        y = torch.empty_like(x)
        size = x.element_size()
        q = torch.empty(n, dtype=torch.int8, device=dev)
        add(
            "silu",
            dtype,
            2 * n * size,
            lambda x=x, y=y: trtcal.silu(x, y),
            lambda x=x: torch.nn.functional.silu(x),
        )
        add(
            "silu_float_to_int8",
            dtype,
            n * (size + 1),
            lambda x=x, q=q: trtcal.silu_float_to_int8(x, SCALE_OUT, q),
        )
        add(
            "silu_int8_to_float",
            dtype,
            n * (size + 1),
            lambda q=q, y=y: trtcal.silu_int8_to_float(q, SCALE_IN, out=y),
        )
        x = y = q = None  # free before the next dtype
        torch.cuda.empty_cache()

    q = torch.randint(-128, 128, (n,), dtype=torch.int8, device=dev)
    qo = torch.empty_like(q)
    add("silu_int8", "int8", 2 * n, lambda: trtcal.silu_int8(q, SCALE_IN, SCALE_OUT, qo))
    summary = {
        f"torch silu / trtcal silu ({r['dtype']})": r["torch_ms"] / r["trtcal_ms"]
        for r in rows
        if "torch_ms" in r
    }
    return {
        "title": f"SiLU, {n:,} elements",
        "name": "silu",
        "device": torch.cuda.get_device_name(),
        "rows": rows,
        "summary": summary,
        "markdown": markdown([r for r in rows if "trtcal_ms" in r]),
    }


def markdown(rows: List[Dict[str, Any]]) -> str:
    lines = [
        "| op | dtype | elements | trtcal ms | GB/s | torch F.silu ms | target ms |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        torch_ms = f"{r['torch_ms']:.3f}" if "torch_ms" in r else ""
        target = ""
        if "target_ms" in r:
            target = f"{r['target_ms']:.2f} ({'met' if r['meets_target'] else 'MISSED'})"
        lines.append(
            f"| {r['op']} | {r['dtype']} | {r['n']:,} | {r['trtcal_ms']:.3f} | "
            f"{r['trtcal_GBps']:.0f} "
            f"| {torch_ms} | {target} |"
        )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=N)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--iters", type=int, default=50)
    args = p.parse_args()
    result = run(vars(args))
    print(f"SiLU on {result['device']}\n")
    print(result["markdown"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
