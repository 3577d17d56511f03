"""How the statistics kernels scale with size: 1M to 1G float32 values, trtcal vs torch,
as GB/s against the measured copy bandwidth; writes sweep.png beside RESULTS.md."""

from __future__ import annotations

import os
import sys
from typing import Dict


def run(ctx: Dict) -> Dict:
    import cupy as cp
    import torch
    from timing import time_cuda, time_torch

    import trtcal

    ext = trtcal.core._backend.require_cuda("benchmark")
    stream = cp.cuda.get_current_stream().ptr
    bw = ctx["bandwidth_tbs"]
    rows, series = (
        [],
        {"trtcal histogram": [], "torch.histc |x|": [], "trtcal amax": [], "torch.aminmax": []},
    )
    sizes = [1 << k for k in range(20, 31, 2)]  # 1M .. 1G
    for n in sizes:
        x = cp.random.standard_normal(n, dtype=cp.float32)
        xt = torch.as_tensor(x, device="cuda")
        torch.cuda.synchronize()
        g = ext.HistogramState(2048, False, 0, stream)
        g.update(int(x.data.ptr), 0, n, stream)
        mm = ext.MinMaxState(1, 0)
        mm.reset(stream)
        t = {
            "trtcal histogram": time_cuda(lambda: g.update(int(x.data.ptr), 0, n, stream)),
            "trtcal amax": time_cuda(lambda: mm.update(int(x.data.ptr), 0, 1, n, stream)),
            "torch.histc |x|": time_torch(lambda: torch.histc(xt.abs(), bins=2048, min=0, max=8)),
            "torch.aminmax": time_torch(lambda: torch.aminmax(xt)),
        }
        floor = n * 4 / (bw * 1e12) * 1e3
        for k, ms in t.items():
            series[k].append(n * 4 / (ms * 1e-3) / 1e9)
            rows.append(
                {
                    "op": f"{k}, n = 2^{n.bit_length() - 1}",
                    "ms": ms,
                    "floor_ms": floor,
                    "of_floor": floor / ms,
                    "peer": k.startswith("torch"),
                }
            )
        del x, xt
    cp.get_default_memory_pool().free_all_blocks()
    torch.cuda.empty_cache()
    note = (
        "Read throughput (GB/s of input) by size; the dashed line is the measured copy bandwidth."
    )
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        for k, v in series.items():
            ax.plot(sizes, v, marker="o", label=k, linestyle="--" if k.startswith("torch") else "-")
        ax.axhline(bw * 1e3, color="gray", linestyle=":", label="copy bandwidth")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("float32 values")
        ax.set_ylabel("GB/s read")
        ax.legend()
        ax.set_title("trtcal statistics vs torch on the H200")
        fig.tight_layout()
        path = os.path.join(ctx.get("out", "."), "sweep.png")
        fig.savefig(path, dpi=110)
        note += " Plot: sweep.png."
    except ImportError:
        note += " (matplotlib missing: no plot)"
    return {"title": "Size sweep, 1M to 1G values (float32)", "rows": rows, "note": note}


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from timing import copy_bandwidth_tbs

    r = run({"bandwidth_tbs": copy_bandwidth_tbs(), "out": "."})
    for row in r["rows"]:
        print(f"{row['op']:<40} {row['ms']:8.3f} ms {100 * row['of_floor']:5.0f}%")
