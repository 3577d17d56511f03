"""One timing helper for every benchmark: CUDA events, warm-up, optional L2 flush, median."""

from __future__ import annotations

import statistics
import time
from typing import Callable, List, Union

_flush_buf = None


def _flush_l2(mode: str = "read") -> None:
    """Evict the L2 cache by READING 256 MB (> the H200's 60 MB L2); ``mode="write"`` fills the
    buffer instead (the old way, kept for comparison in profile_update_kernels.py).

    A write flush (``fill``) leaves ~50 MB of dirty lines that the timed kernel would have to
    write back first: ~15 us charged to every measurement, whatever its size (it broke the
    comparison of float16 with float32). A read leaves clean lines, which are evicted for free,
    so the timed kernel starts from a cold, clean cache (benchmarks/profile_update_kernels.py).
    """
    global _flush_buf
    import cupy as cp

    if _flush_buf is None:
        _flush_buf = cp.ones(32 << 20, dtype=cp.int64)
    if mode == "write":
        _flush_buf.fill(1)
    else:
        _flush_buf.sum()


def time_cuda(fn: Callable[[], object], warmup: int = 5, iters: int = 20,
              flush_l2: Union[bool, str] = True) -> float:
    """Median milliseconds of ``fn`` on CuPy's current stream, timed with CUDA events.
    ``flush_l2``: True or "read" (evict L2 before each sample), "write" (the old fill), False."""
    import cupy as cp

    for _ in range(warmup):
        fn()
    stream = cp.cuda.get_current_stream()
    times: List[float] = []
    for _ in range(iters):
        if flush_l2:
            _flush_l2("write" if flush_l2 == "write" else "read")
        start, stop = cp.cuda.Event(), cp.cuda.Event()
        start.record(stream)
        fn()
        stop.record(stream)
        stop.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, stop))
    return statistics.median(times)


def time_torch(fn: Callable[[], object], warmup: int = 5, iters: int = 20, flush_l2: bool = True) -> float:
    """Median milliseconds of ``fn`` on PyTorch's current stream (CUDA events)."""
    import torch

    for _ in range(warmup):
        fn()
    times: List[float] = []
    for _ in range(iters):
        if flush_l2:
            _flush_l2()
            torch.cuda.synchronize()
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    return statistics.median(times)


def time_cpu(fn: Callable[[], object], warmup: int = 1, iters: int = 5) -> float:
    """Median milliseconds of a host function (wall clock)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def copy_bandwidth_tbs(nbytes: int = 1 << 30) -> float:
    """Device-to-device copy bandwidth in TB/s, counting bytes read plus bytes written."""
    import cupy as cp

    a = cp.empty(nbytes, dtype=cp.uint8)
    b = cp.empty_like(a)
    a.fill(3)
    ms = time_cuda(lambda: b.__setitem__(Ellipsis, a), warmup=3, iters=20, flush_l2=False)
    return 2 * nbytes / (ms * 1e-3) / 1e12
