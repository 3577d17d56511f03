"""Where does a statistics update's time go? For 2^28 values per dtype: the device time of
each kernel of a histogram update and an amax update (CUPTI through torch.profiler), and the
update timed with CUDA events under three L2 treatments before each sample: none, the write
flush (`fill` of 256 MB: leaves ~50 MB of dirty lines that the timed kernel must write back)
and a read flush (a sum over 256 MB: leaves clean lines, evicted for free).

    python benchmarks/profile_update_kernels.py
"""

import statistics
import sys

import cupy as cp
import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, __file__.rsplit("/", 1)[0])

from timing import copy_bandwidth_tbs  # noqa: E402

import trtcal  # noqa: E402

N = 1 << 28
_buf = cp.empty(256 << 20, dtype=cp.uint8)
_buf64 = _buf.view(cp.int64)


def flush(mode: str) -> None:
    if mode == "write":
        _buf.fill(1)
    elif mode == "read":
        _buf64.sum()


def time_events(fn, mode: str, iters: int = 30) -> float:
    stream = cp.cuda.get_current_stream()
    for _ in range(5):
        fn()
    t = []
    for _ in range(iters):
        flush(mode)
        a, b = cp.cuda.Event(), cp.cuda.Event()
        a.record(stream)
        fn()
        b.record(stream)
        b.synchronize()
        t.append(cp.cuda.get_elapsed_time(a, b))
    return statistics.median(t)


def kernel_table(fn, reps: int = 20) -> str:
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            flush("read")
            fn()
        torch.cuda.synchronize()
    rows = []
    for e in prof.key_averages():
        if e.device_time_total <= 0 or any(s in e.key.lower() for s in ("reduce", "cub", "cupy_sum")):
            continue
        rows.append(f"    {e.device_time_total / e.count:8.1f} us x{e.count // reps:<2d} {e.key[:110]}")
    return "\n".join(rows)


def main() -> None:
    ext = trtcal._backend.require_cuda("profile")
    stream = cp.cuda.get_current_stream().ptr
    bw = copy_bandwidth_tbs()
    print(f"copy bandwidth {bw:.2f} TB/s (read + write)")
    x32 = cp.random.standard_normal(N, dtype=cp.float32)
    xt = torch.as_tensor(x32, device="cuda")
    for name, dt in (("float32", torch.float32), ("float16", torch.float16), ("bfloat16", torch.bfloat16)):
        t = xt.to(dt)
        view = trtcal._arrays.as_view(t, "x", stream)
        g = trtcal.HistogramCollector(2048, device="cuda")
        g.update(t, stream=stream)
        mm = ext.MinMaxState(1, 0)
        mm.reset(stream)
        ops = {
            "hist update": lambda: g._gpu.update(view.ptr, view.dtype_code, N, stream),
            "amax update": lambda: mm.update(view.ptr, view.dtype_code, 1, N, stream),
        }
        if name == "float32":
            ops["torch.aminmax"] = lambda: torch.aminmax(xt)
        floor = N * t.element_size() / (bw * 1e12) * 1e3
        for op, fn in ops.items():
            times = {m: time_events(fn, m) for m in ("none", "write", "read")}
            print(f"{name:9s} {op:14s} floor {floor:.3f} ms | " +
                  " | ".join(f"{m} {v:.3f} ms ({floor / v:4.0%})" for m, v in times.items()))
            print(kernel_table(fn))
        del t, view


if __name__ == "__main__":
    main()
