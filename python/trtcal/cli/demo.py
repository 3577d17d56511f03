"""`trtcal demo`: the statistics API on synthetic activations (no model, no GPU needed)."""

from __future__ import annotations

import argparse

import numpy as np


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser("demo", help="collect statistics of synthetic activations and print them")
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--device", default=None, help="'cpu' or 'cuda' (default: cuda when available)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import trtcal

    device = args.device or ("cuda" if trtcal.cuda_available() else "cpu")
    rng = np.random.default_rng(0)
    hist = trtcal.HistogramCollector(2048, device=device, name="demo/relu_out")
    mm = trtcal.MinMaxCollector(axis=1, device=device, name="demo/relu_out")
    for b in range(args.batches):
        x = (rng.standard_t(4, size=(8, 16, 32, 32)) * (1 + b / 4)).astype(np.float32)
        if device != "cpu":
            import cupy as cp  # noqa: F401  (device demo uses CuPy arrays)

            x = cp.asarray(x)
        hist.update(x)
        mm.update(x)
    h = hist.histogram()
    r = mm.result()
    print(f"trtcal {trtcal.__version__} on {device}: {hist.batches} batches, {h.total} values")
    print(f"  range R = {h.range} (power-of-two grid), amax = {h.amax:.4f}, non-finite = {h.nonfinite}")
    print(f"  per-channel amax (axis 1): {np.round(r['amax'][:4], 3)} ...")
    return 0
