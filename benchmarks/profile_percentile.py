"""Exact percentile of 2^28 values on the H200 across data shapes and q: the median time of
``trtcal.percentile`` (CUDA events, L2 flushed), checked against a full sort once per case. Used to steer csrc/kernels/select.cu and python/trtcal/percentile.py.

    python benchmarks/profile_percentile.py [log2_n]
"""

import sys

import cupy as cp
import numpy as np

sys.path.insert(0, __file__.rsplit("/", 1)[0])

from timing import time_cuda  # noqa: E402

import trtcal  # noqa: E402
from trtcal.percentile import lerp, virtual_index  # noqa: E402


def cases(n: int):
    g = cp.random.default_rng(0)
    x = g.standard_normal(n, dtype=cp.float32)
    yield "normal", x
    t = cp.asarray(np.random.default_rng(1).standard_t(3, size=n // 16).astype(np.float32))
    yield "student-t(3)", cp.tile(t, 16)
    yield "relu(normal) (half zeros)", cp.maximum(x, 0)
    yield "normal float16", x.astype(cp.float16)
    # periodic data: every 2048th value is large (a strided sample would see all or none)
    p = x.copy()
    p[::2048] *= 100
    yield "normal + every 2048th x100", p


def main() -> None:
    n = 1 << (int(sys.argv[1]) if len(sys.argv) > 1 else 28)
    print(f"n = {n}")
    for label, x in cases(n):
        s = cp.sort(cp.abs(x.astype(cp.float32)))
        for q in (99.99, 99.9, 99.999, 50.0):
            ms = time_cuda(lambda: trtcal.percentile(x, q), warmup=2, iters=10)
            got = trtcal.percentile(x, q)
            vi = virtual_index(n, q)
            lo = int(vi)
            a, b = float(s[lo]), float(s[min(lo + 1, n - 1)])
            want = lerp(a, b, vi - lo)
            ok = "ok" if got == want else f"MISMATCH sorted: {want!r}"
            print(f"{label:<28} q={q:<7} {ms:7.3f} ms  {got:.7g}  {ok}", flush=True)
        del s


if __name__ == "__main__":
    main()
