"""Where the single-tensor range-search time goes (H200): for one and for 1000 2048-bin
histograms and each method, the GPU time of one launch between CUDA events, the time per
launch of 200 back-to-back launches (the kernels alone once the host keeps ahead), and the host
time of one launch call. Prints one table; used to steer csrc/kernels/range_search.cu.

    python benchmarks/profile_range_search.py
"""

import statistics
import sys
import time

import cupy as cp
import numpy as np

sys.path.insert(0, __file__.rsplit("/", 1)[0])

from bench_range_search import _hists  # noqa: E402
from timing import time_cuda  # noqa: E402

from trtcal.core.range_search import _GpuBatch, _items, _prepare, _spec  # noqa: E402


def main() -> None:
    rng = np.random.default_rng(0)
    stream = cp.cuda.get_current_stream().ptr
    for count in (1, 1000):
        hs = _hists(rng, count)
        for method, flavor in (("entropy", None), ("percentile", None), ("mse", None)):
            items, _ = _items(hs)
            s = _spec(method, flavor, {})
            b = _GpuBatch([_prepare(it, s) for it in items], s, 0, stream=stream)
            one = time_cuda(lambda: b.launch(stream), warmup=5, iters=30, flush_l2=False)
            reps = 200

            def many():
                for _ in range(reps):
                    b.launch(stream)

            per = time_cuda(many, warmup=1, iters=5, flush_l2=False) / reps
            cp.cuda.runtime.deviceSynchronize()
            hts = []
            for _ in range(50):
                t0 = time.perf_counter()
                b.launch(stream)
                hts.append((time.perf_counter() - t0) * 1e3)
            cp.cuda.runtime.deviceSynchronize()
            shape = getattr(b, "shape", None)
            print(
                f"{count:5d} tensors {method:<10} one launch {one * 1e3:8.1f} us   back-to-back "
                f"{per * 1e3:8.1f} us/launch"
                f"   host {statistics.median(hts) * 1e3:6.1f} us/call   blocks {b.plan.blocks}"
                f"{'   shape ' + str(shape) if shape else ''}"
            )


if __name__ == "__main__":
    main()
