"""Exact percentile of 2^28 values on the H200 across data shapes and q: the median time of
``trtcal.percentile`` (CUDA events, L2 flushed), checked against a full sort once per case. Used to
steer csrc/kernels/select.cu and python/trtcal/core/percentile.py.

    python benchmarks/profile_percentile.py [log2_n]
"""

import sys

import cupy as cp
import numpy as np

sys.path.insert(0, __file__.rsplit("/", 1)[0])

from timing import time_cuda  # noqa: E402

import trtcal  # noqa: E402
from trtcal.core.percentile import lerp, virtual_index  # noqa: E402

mod = sys.modules["trtcal.percentile"]


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


def breakdown(x) -> None:
    """Where the time of one bracketed call goes: the sample + partition call alone (host
    wall time: it waits), a one-pass reference (amax), and the whole percentile."""
    import time

    from trtcal.core._backend import require_cuda

    ext = require_cuda("profile")
    stream = cp.cuda.get_current_stream().ptr
    dev = x.device.id
    for t in (0.9999, 0.999, 0.5):
        walls = []
        for _ in range(10):
            cp.cuda.runtime.deviceSynchronize()
            t0 = time.perf_counter()
            r = int(t * (x.size - 1))
            got = ext.select_bracket(
                x.data.ptr,
                0,
                x.size,
                True,
                mod._SAMPLE_RUNS,
                t,
                min(1.0, t + 1e-8),
                mod._SAMPLE_SIGMAS,
                max(1 << 20, x.size >> 4),
                [r, r + 1],
                stream,
                dev,
            )
            walls.append((time.perf_counter() - t0) * 1e3)
        print(
            f"select_bracket t={t}: {sorted(walls)[5]:.3f} ms wall; below/equal/inside/nan "
            f"{got[:4]}, "
            f"(status, key) {got[7]}"
        )
    print(f"trtcal.amax (one pass): {time_cuda(lambda: trtcal.amax(x), warmup=2, iters=10):.3f} ms")


def main() -> None:
    n = 1 << (int(sys.argv[1]) if len(sys.argv) > 1 else 28)
    print(f"n = {n}")
    breakdown(cp.random.default_rng(0).standard_normal(n, dtype=cp.float32))
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
