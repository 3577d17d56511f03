"""Statistics core: histogram and min/max on 268,435,456 values vs torch, CuPy and NumPy."""

from __future__ import annotations

import sys
from typing import Dict

import numpy as np

N = 268_435_456  # 1 GiB of float32


def run(ctx: Dict) -> Dict:
    import cupy as cp
    import torch

    import trtcal
    from timing import time_cpu, time_cuda, time_torch

    bw = ctx["bandwidth_tbs"]
    rows = []
    x = cp.random.standard_normal(N, dtype=cp.float32)
    xt = torch.as_tensor(x, device="cuda")
    torch.cuda.synchronize()

    def add(name, ms, nbytes, peer=None):
        floor_ms = nbytes / (bw * 1e12) * 1e3  # bytes read at the measured copy rate
        rows.append({"op": name, "ms": ms, "floor_ms": floor_ms, "of_floor": floor_ms / ms, "peer": peer})

    ext = trtcal._backend.require_cuda("benchmark")
    stream = cp.cuda.get_current_stream().ptr

    for dtype in ("float32", "float16", "bfloat16"):
        t = xt.to({"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype])
        view = trtcal._arrays.as_view(t, "x", stream)
        nbytes = N * t.element_size()
        g = trtcal.HistogramCollector(2048, device="cuda")
        g.update(t, stream=stream)  # fixes the range
        add(f"trtcal histogram |x| 2048 bins, update ({dtype})", time_cuda(lambda: g._gpu.update(view.ptr, view.dtype_code, N, stream)), nbytes)

        def ten():  # a calibration stream of updates: the launches of one overlap the last's kernels
            for _ in range(10):
                g._gpu.update(view.ptr, view.dtype_code, N, stream)
        add(f"trtcal histogram |x| 2048 bins, per update of 10 back to back ({dtype})",
            time_cuda(ten, warmup=1, iters=10) / 10, nbytes)
        mm = ext.MinMaxState(1, 0)
        mm.reset(stream)
        add(f"trtcal amax/minmax ({dtype})", time_cuda(lambda: mm.update(view.ptr, view.dtype_code, 1, N, stream)), nbytes)
        if dtype == "float32":
            def first():
                h = ext.HistogramState(2048, False, 0, stream)
                h.update(view.ptr, view.dtype_code, N, stream)
            add("trtcal histogram, first update (range unknown: 2 passes)", time_cuda(first), 2 * nbytes)
            big = x * 1e-3
            bview = trtcal._arrays.as_view(big, "x", stream)

            def grow():
                h = ext.HistogramState(2048, False, 0, stream)
                h.update(bview.ptr, 0, N, stream)
                h.update(view.ptr, 0, N, stream)  # grows the range: one extra pass
            add("trtcal histogram, update that grows the range (x2 updates)", time_cuda(grow), 4 * nbytes)
            s = trtcal.HistogramCollector(2048, signed=True, device="cuda")
            s.update(x)
            add("trtcal histogram signed 2048 bins, update", time_cuda(lambda: s._gpu.update(view.ptr, 0, N, stream)), nbytes)
            del big

    torch_stream = torch.cuda.current_stream()
    with torch.cuda.stream(torch_stream):
        t_aminmax = time_torch(lambda: torch.aminmax(xt))
        t_histc = time_torch(lambda: torch.histc(xt, bins=2048, min=-8, max=8))
        t_histc_abs = time_torch(lambda: torch.histc(xt.abs(), bins=2048, min=0, max=8))
    add("torch.aminmax (float32)", t_aminmax, N * 4, peer=True)
    add("torch.histc x 2048 bins", t_histc, N * 4, peer=True)
    add("torch.histc |x| 2048 bins", t_histc_abs, N * 4, peer=True)
    t_cupy = time_cuda(lambda: cp.histogram(x, bins=2048, range=(-8, 8)), warmup=2, iters=5)
    add("cupy.histogram 2048 bins", t_cupy, N * 4, peer=True)
    xs = cp.asnumpy(x[: N // 16])
    t_np = time_cpu(lambda: np.histogram(np.abs(xs), bins=2048, range=(0, 8)), warmup=0, iters=1) * 16
    add("numpy.histogram |x| (1/16 of the data, x16)", t_np, N * 4, peer=True)

    by = {r["op"]: r["ms"] for r in rows}
    h32 = by["trtcal histogram |x| 2048 bins, update (float32)"]
    summary = {
        "hist_vs_torch_histc_abs": by["torch.histc |x| 2048 bins"] / h32,
        "hist_vs_torch_histc": by["torch.histc x 2048 bins"] / h32,
        "hist_vs_cupy": by["cupy.histogram 2048 bins"] / h32,
        "amax_vs_torch_aminmax": by["torch.aminmax (float32)"] / by["trtcal amax/minmax (float32)"],
    }
    # "in proportion to their bytes": a 16-bit input's time over float32's (0.5 = proportional)
    for dt in ("float16", "bfloat16"):
        summary[f"hist_{dt}_over_float32"] = by[f"trtcal histogram |x| 2048 bins, update ({dt})"] / h32
        summary[f"amax_{dt}_over_float32"] = (by[f"trtcal amax/minmax ({dt})"]
                                              / by["trtcal amax/minmax (float32)"])
    del x, xt
    cp.get_default_memory_pool().free_all_blocks()
    torch.cuda.empty_cache()
    return {"title": "Statistics core (268,435,456 values)", "rows": rows, "summary": summary}


if __name__ == "__main__":
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from timing import copy_bandwidth_tbs

    res = run({"bandwidth_tbs": copy_bandwidth_tbs()})
    for r in res["rows"]:
        print(f"{r['op']:<62} {r['ms']:8.3f} ms  {100 * r['of_floor']:5.1f}% of floor")
    print(res["summary"])
