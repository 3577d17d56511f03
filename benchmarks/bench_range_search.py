"""Range search: entropy / percentile / MSE amax per tensor, trtcal (GPU and CPU reference)
against ModelOpt's and ONNX Runtime's searches, and the exact percentile of 2^28 values
against cupy.percentile / torch.kthvalue / torch.quantile. Run through benchmarks/run.py
(``run(ctx)``) or standalone: ``python benchmarks/bench_range_search.py [--cpu-only]``."""

from __future__ import annotations

import statistics
import sys
import time
from typing import Dict, List

import numpy as np

BINS = 2048
TENSORS = 1000
N_PERCENTILE = 268_435_456

try:  # the shared helper (benchmarks/timing.py); a minimal stand-in when run elsewhere
    from timing import time_cpu, time_cuda
except ImportError:  # pragma: no cover

    def time_cpu(fn, warmup: int = 1, iters: int = 5) -> float:
        for _ in range(warmup):
            fn()
        ts = []
        for _ in range(iters):
            t0 = time.perf_counter()
            fn()
            ts.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(ts)

    def time_cuda(fn, warmup: int = 5, iters: int = 20, flush_l2: bool = False) -> float:
        import cupy as cp

        for _ in range(warmup):
            fn()
        s = cp.cuda.get_current_stream()
        ts = []
        for _ in range(iters):
            a, b = cp.cuda.Event(), cp.cuda.Event()
            a.record(s)
            fn()
            b.record(s)
            b.synchronize()
            ts.append(cp.cuda.get_elapsed_time(a, b))
        return statistics.median(ts)


def _hists(rng, count: int) -> Dict[str, tuple]:
    out = {}
    for t in range(count):
        x = np.abs(rng.standard_t(3, 20000))
        c = np.histogram(x, BINS, range=(0, x.max()))[0] * int(rng.integers(1, 200))
        out[f"t{t}"] = (c.astype(np.int64), np.linspace(0, float(x.max()), BINS + 1))
    return out


def _cpu_rows(rows: List[dict], rng) -> Dict[str, float]:
    import trtcal
    from trtcal.core.percentile import percentile as _  # noqa: F401  (import check)

    x = rng.standard_t(3, 4_000_000).astype(np.float32)
    a = np.abs(x)
    hist, edges = np.histogram(a, bins=BINS, range=(0, a.max()))
    by = {}

    def add(op, ms, peer=False):
        rows.append({"op": op, "ms": ms, "peer": peer})
        by[op] = ms

    add(
        "trtcal CPU reference entropy, 1 tensor (pytorch_quantization)",
        time_cpu(lambda: trtcal.compute_amax((hist, edges), "entropy", device="cpu"), iters=5),
    )
    add(
        "trtcal CPU reference mse, 1 tensor",
        time_cpu(lambda: trtcal.compute_amax((hist, edges), "mse", device="cpu")),
    )
    try:
        from onnxruntime.quantization.calibrate import HistogramCollector

        hc = HistogramCollector("entropy", False, BINS, 128, 99.99, "same")
        hc.collect({"t": x})
        entry = hc.histogram_dict["t"]
        add(
            "ONNX Runtime get_entropy_threshold, 1 tensor",
            time_cpu(lambda: hc.get_entropy_threshold(entry, 128), warmup=0, iters=1),
            peer=True,
        )
        add(
            "trtcal CPU reference entropy, 1 tensor (onnxruntime flavor)",
            time_cpu(
                lambda: trtcal.compute_amax({"t": entry}, "entropy", "onnxruntime", device="cpu")
            ),
        )
    except ImportError:
        pass
    try:
        import modelopt.torch.quantization.calib.histogram as mh

        add(
            "ModelOpt _compute_amax_entropy, 1 tensor",
            time_cpu(
                lambda: mh._compute_amax_entropy(hist.copy(), edges, 8, False, 1, 128),
                warmup=0,
                iters=1,
            ),
            peer=True,
        )
    except ImportError:
        pass
    return by


def run(ctx: Dict) -> Dict:
    import trtcal

    rng = np.random.default_rng(0)
    rows: List[dict] = []
    by = _cpu_rows(rows, rng)
    summary = {}
    ref = by["trtcal CPU reference entropy, 1 tensor (pytorch_quantization)"]
    if "ONNX Runtime get_entropy_threshold, 1 tensor" in by:
        summary["cpu_reference_entropy_vs_onnxruntime"] = (
            by["ONNX Runtime get_entropy_threshold, 1 tensor"] / ref
        )
        summary["cpu_reference_ort_flavor_vs_onnxruntime"] = (
            by["ONNX Runtime get_entropy_threshold, 1 tensor"]
            / by["trtcal CPU reference entropy, 1 tensor (onnxruntime flavor)"]
        )
    if "ModelOpt _compute_amax_entropy, 1 tensor" in by:
        summary["cpu_reference_entropy_vs_modelopt"] = (
            by["ModelOpt _compute_amax_entropy, 1 tensor"] / ref
        )
    if ctx.get("cpu_only") or not trtcal.cuda_available():
        return {"title": "Range search (CPU only)", "rows": rows, "summary": summary}

    import cupy as cp

    from trtcal.core.range_search import _GpuBatch, _items, _prepare, _spec

    stream = cp.cuda.get_current_stream().ptr

    def batch(hists, method, flavor=None, **params):
        items, _ = _items(hists)
        s = _spec(method, flavor, params)
        return _GpuBatch([_prepare(it, s) for it in items], s, 0, stream=stream)

    one = _hists(rng, 1)
    ten = _hists(rng, 10)
    many = _hists(rng, TENSORS)
    shapes = []
    for label, hs in (("1 tensor", one), ("10 tensors", ten), (f"{TENSORS} tensors", many)):
        plans = {m: batch(hs, m) for m in ("entropy", "percentile", "mse")}
        shapes += [f"{m} {label}: {p.shape}" for m, p in plans.items()]
        for m, p in plans.items():
            ms = time_cuda(lambda p=p: p.launch(stream), flush_l2=False)
            rows.append({"op": f"trtcal GPU {m}, {label} x {BINS} bins (one launch)", "ms": ms})
            by[rows[-1]["op"]] = ms
        ms = time_cuda(lambda: [p.launch(stream) for p in plans.values()], flush_l2=False)
        rows.append(
            {"op": f"trtcal GPU entropy + percentile + mse, {label} x {BINS} bins", "ms": ms}
        )
        by[rows[-1]["op"]] = ms
    signed = {}
    for t in range(TENSORS):
        x = rng.standard_t(3, 20000)
        r = np.abs(x).max()
        signed[f"s{t}"] = (np.histogram(x, BINS, range=(-r, r))[0], np.linspace(-r, r, BINS + 1))
    p = batch(signed, "entropy", "onnxruntime")
    rows.append(
        {
            "op": f"trtcal GPU entropy (onnxruntime flavor), {TENSORS} tensors",
            "ms": time_cuda(lambda: p.launch(stream), flush_l2=False),
        }
    )
    one_e = by[f"trtcal GPU entropy, 1 tensor x {BINS} bins (one launch)"]
    if "ModelOpt _compute_amax_entropy, 1 tensor" in by:
        summary["gpu_entropy_1_tensor_vs_modelopt"] = (
            by["ModelOpt _compute_amax_entropy, 1 tensor"] / one_e
        )
    if "ONNX Runtime get_entropy_threshold, 1 tensor" in by:
        summary["gpu_entropy_1_tensor_vs_onnxruntime"] = (
            by["ONNX Runtime get_entropy_threshold, 1 tensor"] / one_e
        )
    all_ms = by[f"trtcal GPU entropy + percentile + mse, {TENSORS} tensors x {BINS} bins"]
    summary["targets"] = (
        f"1 tensor entropy {one_e * 1e3:.1f} us (target <= 50 us); {TENSORS} tensors all three "
        f"{all_ms:.2f} ms (target <= 10 ms)"
    )

    # exact percentile of 2^28 float32 values
    x = cp.random.standard_normal(N_PERCENTILE, dtype=cp.float32)
    ms = time_cuda(lambda: trtcal.percentile(x, 99.99), warmup=2, iters=10)
    # floor: one read of the data (the bracketed select reads it once)
    rows.append(
        {
            "op": "trtcal.percentile(|x|, 99.99), 268,435,456 float32 (exact)",
            "ms": ms,
            "floor_ms": x.nbytes / (ctx.get("bandwidth_tbs", 4.0) * 1e12) * 1e3,
        }
    )
    rows[-1]["of_floor"] = rows[-1]["floor_ms"] / ms
    ax = cp.abs(x)
    rows.append(
        {
            "op": "cupy.percentile(|x|, 99.99) (abs precomputed)",
            "peer": True,
            "ms": time_cuda(lambda: cp.percentile(ax, 99.99), warmup=1, iters=3),
        }
    )
    summary["percentile_vs_cupy"] = rows[-1]["ms"] / ms
    ah = cp.asnumpy(ax)  # NumPy on the host copy (the copy itself is not timed)
    rows.append(
        {
            "op": "numpy.percentile(|x|, 99.99) on the host (abs precomputed)",
            "peer": True,
            "ms": time_cpu(lambda: np.percentile(ah, 99.99), warmup=0, iters=3),
        }
    )
    summary["percentile_vs_numpy"] = rows[-1]["ms"] / ms
    del ah
    try:
        import torch

        xt = torch.as_tensor(ax, device="cuda")
        k = int(0.9999 * (N_PERCENTILE - 1)) + 1
        rows.append(
            {
                "op": "torch.kthvalue(|x|) (abs precomputed)",
                "peer": True,
                "ms": time_cuda(lambda: torch.kthvalue(xt, k), warmup=1, iters=3),
            }
        )
        try:
            torch.quantile(xt, 0.9999)
            note = "torch.quantile accepted the input"
        except RuntimeError as exc:
            note = f"torch.quantile refuses: {str(exc).splitlines()[0]}"
        del xt
    except ImportError:
        note = "torch not installed"
    note += ". Launch shapes (threads, group, chunk, blocks): " + "; ".join(shapes)
    del x, ax
    cp.get_default_memory_pool().free_all_blocks()
    return {
        "title": f"Range search ({TENSORS} tensors x {BINS} bins) and exact percentile (2^28 "
        "values)",
        "rows": rows,
        "summary": summary,
        "note": note,
    }


if __name__ == "__main__":
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    res = run({"cpu_only": "--cpu-only" in sys.argv})
    for r in res["rows"]:
        print(f"{r['op'] + (' (peer)' if r.get('peer') else ''):<80} {r['ms']:10.4f} ms")
    for k, v in res["summary"].items():
        print(f"{k}: {v:.1f}x" if isinstance(v, float) else f"{k}: {v}")
    if res.get("note"):
        print(res["note"])
