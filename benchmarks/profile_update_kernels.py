"""Where does a statistics update's time go? For 2^28 values per dtype: the device time of
each kernel of a histogram update and an amax update (CUPTI through torch.profiler), and the
update timed with CUDA events under three L2 treatments before each sample: none, the write
flush (`fill` of 256 MB: leaves ~50 MB of dirty lines that the timed kernel must write back)
and a read flush (a sum over 256 MB: leaves clean lines, evicted for free).

    python benchmarks/profile_update_kernels.py
"""

import sys

import cupy as cp
import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, __file__.rsplit("/", 1)[0])

from timing import _flush_l2, copy_bandwidth_tbs, time_cuda  # noqa: E402

import trtcal  # noqa: E402

N = 1 << 28


def kernel_table(fn, reps: int = 20) -> str:
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            _flush_l2("read")
            fn()
        torch.cuda.synchronize()
    rows = []
    for e in prof.key_averages():
        if e.device_time_total <= 0 or any(
            s in e.key.lower() for s in ("reduce", "cub", "cupy_sum")
        ):
            continue
        rows.append(
            f"    {e.device_time_total / e.count:8.1f} us x{e.count // reps:<2d} {e.key[:110]}"
        )
    return "\n".join(rows)


def main() -> None:
    ext = trtcal.core._backend.require_cuda("profile")
    stream = cp.cuda.get_current_stream().ptr
    bw = copy_bandwidth_tbs()
    print(f"copy bandwidth {bw:.2f} TB/s (read + write)")
    x32 = cp.random.standard_normal(N, dtype=cp.float32)
    xt = torch.as_tensor(x32, device="cuda")
    for name, dt in (
        ("float32", torch.float32),
        ("float16", torch.float16),
        ("bfloat16", torch.bfloat16),
    ):
        t = xt.to(dt)
        view = trtcal.core._arrays.as_view(t, "x", stream)
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
            modes = (("none", False), ("write", "write"), ("read", "read"))
            times = {m: time_cuda(fn, iters=30, flush_l2=f) for m, f in modes}
            print(
                f"{name:9s} {op:14s} floor {floor:.3f} ms | "
                + " | ".join(f"{m} {v:.3f} ms ({floor / v:4.0%})" for m, v in times.items())
            )
            print(kernel_table(fn))


if __name__ == "__main__":
    main()
