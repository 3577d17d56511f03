"""Statistics core: histogram and min/max on 268,435,456 values vs torch, CuPy and NumPy; and
the public API (``trtcal.amax``, ``HistogramCollector.update``, ``trtcal.histogram``,
``trtcal.percentile``, ``trtcal.compute_amax``) side by side with ``torch.aminmax``,
``torch.histc`` and ``cupy.percentile`` at 2^20 and 2^28 values (``run_public``; standalone:
``python benchmarks/bench_stats.py --public``)."""

from __future__ import annotations

import sys
from typing import Dict

import numpy as np

N = 268_435_456  # 1 GiB of float32


def run(ctx: Dict) -> Dict:
    import cupy as cp
    import torch
    from timing import time_cpu, time_cuda, time_torch

    import trtcal

    bw = ctx["bandwidth_tbs"]
    rows = []
    x = cp.random.standard_normal(N, dtype=cp.float32)
    xt = torch.as_tensor(x, device="cuda")
    torch.cuda.synchronize()

    def add(name, ms, nbytes, peer=None):
        floor_ms = nbytes / (bw * 1e12) * 1e3  # bytes read at the measured copy rate
        rows.append(
            {"op": name, "ms": ms, "floor_ms": floor_ms, "of_floor": floor_ms / ms, "peer": peer}
        )

    ext = trtcal.core._backend.require_cuda("benchmark")
    stream = cp.cuda.get_current_stream().ptr

    for dtype in ("float32", "float16", "bfloat16"):
        t = xt.to(
            {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]
        )
        view = trtcal.core._arrays.as_view(t, "x", stream)
        nbytes = N * t.element_size()
        g = trtcal.HistogramCollector(2048, device="cuda")
        g.update(t, stream=stream)  # fixes the range
        add(
            f"trtcal histogram |x| 2048 bins, update ({dtype})",
            time_cuda(lambda: g._gpu.update(view.ptr, view.dtype_code, N, stream)),
            nbytes,
        )

        # a calibration stream of updates: the launches of one overlap the last's kernels
        def ten():
            for _ in range(10):
                g._gpu.update(view.ptr, view.dtype_code, N, stream)

        add(
            f"trtcal histogram |x| 2048 bins, per update of 10 back to back ({dtype})",
            time_cuda(ten, warmup=1, iters=10) / 10,
            nbytes,
        )
        mm = ext.MinMaxState(1, 0)
        mm.reset(stream)
        add(
            f"trtcal amax/minmax ({dtype})",
            time_cuda(lambda: mm.update(view.ptr, view.dtype_code, 1, N, stream)),
            nbytes,
        )
        if dtype == "float32":

            def first():
                h = ext.HistogramState(2048, False, 0, stream)
                h.update(view.ptr, view.dtype_code, N, stream)

            add(
                "trtcal histogram, first update (range unknown: 2 passes)",
                time_cuda(first),
                2 * nbytes,
            )
            big = x * 1e-3
            bview = trtcal.core._arrays.as_view(big, "x", stream)

            def grow():
                h = ext.HistogramState(2048, False, 0, stream)
                h.update(bview.ptr, 0, N, stream)
                h.update(view.ptr, 0, N, stream)  # grows the range: one extra pass

            add(
                "trtcal histogram, update that grows the range (x2 updates)",
                time_cuda(grow),
                4 * nbytes,
            )
            s = trtcal.HistogramCollector(2048, signed=True, device="cuda")
            s.update(x)
            add(
                "trtcal histogram signed 2048 bins, update",
                time_cuda(lambda: s._gpu.update(view.ptr, 0, N, stream)),
                nbytes,
            )
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
    t_np = (
        time_cpu(lambda: np.histogram(np.abs(xs), bins=2048, range=(0, 8)), warmup=0, iters=1) * 16
    )
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
        summary[f"hist_{dt}_over_float32"] = (
            by[f"trtcal histogram |x| 2048 bins, update ({dt})"] / h32
        )
        summary[f"amax_{dt}_over_float32"] = (
            by[f"trtcal amax/minmax ({dt})"] / by["trtcal amax/minmax (float32)"]
        )
    del x, xt
    cp.get_default_memory_pool().free_all_blocks()
    torch.cuda.empty_cache()
    return {"title": "Statistics core (268,435,456 values)", "rows": rows, "summary": summary}


PUBLIC_SIZES = (1 << 20, 1 << 28)


def run_public(ctx: Dict) -> Dict:
    """The public API as a user calls it, against the peers' one-call equivalents, on CuPy's
    current stream (PyTorch shares it: both use the legacy default stream here). GPU time from
    CUDA events with a cold L2 and the host's launches queued behind a 300 us busy kernel
    (timing.time_cuda), so host work before the first launch is hidden but every wait, copy
    back and allocation inside the call is counted; the one-shot calls return host values
    and therefore wait, torch.aminmax/histc return device tensors and do not."""
    import cupy as cp
    import torch
    from timing import time_cpu, time_cuda

    import trtcal

    rows = []
    summary: Dict = {}

    def add(name, ms, peer=False):
        rows.append({"op": name, "ms": ms, "peer": peer})
        return ms

    for n in PUBLIC_SIZES:
        tag = "2^20" if n == 1 << 20 else "2^28"
        x = cp.random.standard_normal(n, dtype=cp.float32)
        xt = torch.as_tensor(x, device="cuda")
        stream = cp.cuda.get_current_stream().ptr
        ext = trtcal.core._backend.require_cuda("benchmark")
        mm = ext.MinMaxState(1, 0)
        mm.reset(stream)
        kernel = add(
            f"kernel alone: minmax update, {tag}",
            time_cuda(lambda: mm.update(x.data.ptr, 0, 1, n, stream)),
        )
        t_amax = add(f"trtcal.amax(x), {tag}", time_cuda(lambda: trtcal.amax(x)))
        t_aminmax = add(f"torch.aminmax(x), {tag}", time_cuda(lambda: torch.aminmax(xt)), peer=True)
        c = trtcal.HistogramCollector(2048)
        c.update(x)  # fixes the range: later updates read the batch once
        t_upd = add(f"HistogramCollector(2048).update(x), {tag}", time_cuda(lambda: c.update(x)))
        t_histc = add(
            f"torch.histc(x, 2048), {tag}",
            time_cuda(lambda: torch.histc(xt, bins=2048, min=-8, max=8)),
            peer=True,
        )
        add(f"trtcal.histogram(x) (one-shot, waits), {tag}", time_cuda(lambda: trtcal.histogram(x)))
        t_pct = add(
            f"trtcal.percentile(x, 99.99) (exact, waits), {tag}",
            time_cuda(
                lambda: trtcal.percentile(x, 99.99), warmup=2, iters=10 if n > 1 << 20 else 20
            ),
        )
        t_cpct = add(
            f"cupy.percentile(x, 99.99), {tag}",
            time_cuda(lambda: cp.percentile(x, 99.99), warmup=1, iters=5 if n > 1 << 20 else 20),
            peer=True,
        )
        # host time of one call, no GPU wait hidden (wall clock, median)
        add(
            f"trtcal.amax(x) wall clock per call (host + GPU), {tag}",
            time_cpu(lambda: trtcal.amax(x), 5, 50),
        )
        add(
            f"HistogramCollector.update(x) host time per call, {tag}",
            time_cpu(lambda: c.update(x), 5, 50),
        )
        cp.cuda.runtime.deviceSynchronize()
        summary[f"amax_over_torch_aminmax_{tag}"] = t_amax / t_aminmax
        summary[f"hist_update_over_torch_aminmax_{tag}"] = t_upd / t_aminmax
        summary[f"hist_update_over_torch_histc_{tag}"] = t_upd / t_histc
        summary[f"amax_over_kernel_{tag}"] = t_amax / kernel
        summary[f"percentile_over_cupy_{tag}"] = t_pct / t_cpct
        del x, xt, c
        cp.get_default_memory_pool().free_all_blocks()
        torch.cuda.empty_cache()

    # compute_amax through the public API: GPU collectors (their counts stay on the GPU)
    rng = np.random.default_rng(0)
    cols = {}
    for t in range(1000):
        c = trtcal.HistogramCollector(2048, name=f"t{t}")
        c.update(
            cp.asarray((rng.standard_t(3, 20000) * np.exp(rng.uniform(-5, 5))).astype(np.float32))
        )
        cols[c.name] = c
    one = {"t0": cols["t0"]}
    methods = ["entropy", "percentile", "mse"]
    cp.cuda.runtime.deviceSynchronize()
    t_all = add(
        "trtcal.compute_amax(1000 GPU collectors, [entropy, percentile, mse]) wall clock",
        time_cpu(lambda: trtcal.compute_amax(cols, methods), 2, 15),
    )
    add(
        "trtcal.compute_amax(1 GPU collector, entropy) wall clock",
        time_cpu(lambda: trtcal.compute_amax(one), 5, 50),
    )
    add(
        "trtcal.search_ranges(1000 GPU collectors, 3 methods) wall clock (general path, curves)",
        time_cpu(lambda: trtcal.search_ranges(cols, methods), 1, 3),
    )
    summary["compute_amax_1000x3_ms"] = t_all
    return {
        "title": "Public API vs peers (2^20 and 2^28 float32 values; 1000 collectors)",
        "rows": rows,
        "summary": summary,
    }


if __name__ == "__main__":
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from timing import copy_bandwidth_tbs

    if "--public" in sys.argv:
        res = run_public({})
        for r in res["rows"]:
            print(f"{r['op'] + (' (peer)' if r.get('peer') else ''):<92} {r['ms']:9.4f} ms")
        for k, v in res["summary"].items():
            print(f"{k}: {v:.3f}")
        sys.exit(0)
    res = run({"bandwidth_tbs": copy_bandwidth_tbs()})
    for r in res["rows"]:
        print(f"{r['op']:<62} {r['ms']:8.3f} ms  {100 * r['of_floor']:5.1f}% of floor")
    print(res["summary"])
