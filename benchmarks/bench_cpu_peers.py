"""Range search on the CPU, one 2048-bin tensor: trtcal's NumPy reference (the CPU path)
side by side with ModelOpt's and ONNX Runtime's searches on the same histogram, in one process.

    python benchmarks/bench_cpu_peers.py        (needs onnxruntime; nvidia-modelopt + torch
    optional)
"""

from __future__ import annotations

import os
import platform
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from timing import time_cpu  # noqa: E402


def main() -> int:
    import trtcal

    rng = np.random.default_rng(0)
    x = np.abs(rng.standard_t(3, 4_000_000)).astype(np.float32)  # the facts file's |t(3)| sample
    counts, edges = np.histogram(x, bins=2048, range=(0, float(x.max())))
    rows = []

    def row(name, fn, iters=3):
        ms = time_cpu(fn, warmup=1, iters=iters)
        rows.append((name, ms, fn()))

    for m in ("entropy", "percentile", "mse"):
        row(
            f"trtcal reference {m} (default flavor)",
            lambda m=m: trtcal.compute_amax((counts, edges), m, device="cpu"),
            iters=5,
        )
    try:
        import modelopt.torch.quantization.calib.histogram as mh

        row(
            "ModelOpt _compute_amax_entropy",
            lambda: float(mh._compute_amax_entropy(counts.copy(), edges, 8, False, 1, 128)),
            1,
        )
        row(
            "ModelOpt _compute_amax_percentile",
            lambda: float(mh._compute_amax_percentile(counts.copy(), edges, 99.99)),
            3,
        )
    except Exception as exc:  # noqa: BLE001
        rows.append((f"ModelOpt: not run ({type(exc).__name__}: {exc})", float("nan"), None))
    try:
        from onnxruntime.quantization.calibrate import HistogramCollector

        signed_counts, signed_edges = np.histogram(
            np.concatenate([x, -x[: x.size // 2]]),
            bins=2048,
            range=(-float(x.max()), float(x.max())),
        )
        hc = HistogramCollector("entropy", False, 2048, 128, 99.999, "same")
        entry = (signed_counts, signed_edges, float(-x.max()), float(x.max()))
        row(
            "ONNX Runtime get_entropy_threshold (2048 signed bins)",
            lambda: hc.get_entropy_threshold(entry, 128),
            1,
        )
        row(
            "trtcal reference entropy, onnxruntime flavor (same histogram)",
            lambda: trtcal.compute_amax(
                (signed_counts, signed_edges, float(-x.max()), float(x.max())),
                "entropy",
                "onnxruntime",
                device="cpu",
            ),
            3,
        )
    except ImportError as exc:
        rows.append((f"ONNX Runtime: not run ({exc})", float("nan"), None))
    print(
        f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}"
    )
    print("| search, one 2048-bin tensor | median ms | result |\n|---|---:|---|")
    for name, ms, res in rows:
        print(f"| {name} | {ms:.3f} | {res} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
