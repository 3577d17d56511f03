"""`trtcal demo`: the statistics API on synthetic activations (no model, no GPU needed)."""

from __future__ import annotations

import argparse

import numpy as np

from ..core._backend import require_cuda


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser("demo", help="collect statistics of synthetic activations and print them")
    p.add_argument("--batches", type=_positive, default=8, help="synthetic batches (default 8)")
    p.add_argument(
        "--device",
        default=None,
        choices=["cpu", "cuda"],
        help=(
            "'cpu' or 'cuda' (default: cuda when available; cuda needs CuPy for the device arrays)"
        ),
    )
    p.set_defaults(func=run)


def _positive(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def run(args: argparse.Namespace) -> int:
    import trtcal

    device = args.device or ("cuda" if trtcal.cuda_available() else "cpu")
    if device == "cuda":
        require_cuda("trtcal demo --device cuda")
        try:
            import cupy  # noqa: F401  (the device demo's arrays)
        except ImportError:
            raise RuntimeError(
                "trtcal: demo --device cuda makes its arrays with CuPy, which is not installed "
                "(pip install cupy-cuda12x, or run --device cpu)"
            ) from None
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
    print(
        f"  range R = {h.range} (power-of-two grid), amax = {h.amax:.4f}, non-finite = "
        f"{h.nonfinite}"
    )
    print(f"  per-channel amax (axis 1): {np.round(r['amax'][:4], 3)} ...")
    return 0
