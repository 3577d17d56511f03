"""One timing helper for every benchmark: CUDA events, warm-up, optional L2 flush, median."""

from __future__ import annotations

import os
import statistics
import time
from typing import Callable, List, Optional, Union

_flush_buf = None
_delay_kernel = None


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


def _gpu_delay(us: float) -> None:
    """Keeps the current CuPy stream busy for ``us`` microseconds (a one-thread kernel spinning
    on %globaltimer), so that everything the host queues meanwhile starts back to back."""
    global _delay_kernel
    import cupy as cp

    if _delay_kernel is None:
        _delay_kernel = cp.RawKernel(
            r"""
extern "C" __global__ void trtcal_bench_delay(unsigned long long ns) {
  unsigned long long t0, t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  do { asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t)); } while (t - t0 < ns);
}""",
            "trtcal_bench_delay",
        )
    _delay_kernel((1,), (1,), (cp.uint64(int(us * 1000)),))


def time_cuda(
    fn: Callable[[], object],
    warmup: int = 5,
    iters: int = 20,
    flush_l2: Union[bool, str] = True,
    delay_us: Optional[float] = None,
) -> float:
    """Median milliseconds of ``fn``'s GPU work on CuPy's current stream, timed with CUDA events.
    ``flush_l2``: True or "read" (evict L2 before each sample), "write" (the old fill), False.

    ``delay_us`` (default 300, or $TRTCAL_BENCH_DELAY_US): before each sample the stream is held
    busy this long, so the start event
    fires only after the host has queued ``fn``: the sample is the GPU time of ``fn``, not
    its host time (Python argument handling) when the GPU would otherwise wait for it. Without
    it, host overhead beyond the flush's ~70 us was charged to the kernel: in a full run, after
    other benchmarks had left CPU threads busy, SiLU timed up to 0.11 ms slower than alone
    while torch's SiLU (less host work per call) did not (benchmarks/NOTES.md)."""
    import cupy as cp

    if delay_us is None:
        delay_us = float(os.environ.get("TRTCAL_BENCH_DELAY_US", "300"))
    for _ in range(warmup):
        fn()
    stream = cp.cuda.get_current_stream()
    times: List[float] = []
    for _ in range(iters):
        if flush_l2:
            _flush_l2("write" if flush_l2 == "write" else "read")
        if delay_us:
            _gpu_delay(delay_us)
        start, stop = cp.cuda.Event(), cp.cuda.Event()
        start.record(stream)
        fn()
        stop.record(stream)
        stop.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, stop))
    return statistics.median(times)


def time_torch(
    fn: Callable[[], object], warmup: int = 5, iters: int = 20, flush_l2: bool = True
) -> float:
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
