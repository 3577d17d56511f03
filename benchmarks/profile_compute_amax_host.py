"""Host time of ``trtcal.compute_amax`` over 1000 GPU collectors x 3 methods, without a GPU:
the extension is replaced by a stand-in whose calls cost nothing (states from real CPU
collectors, fixed candidate indices), so what is timed is trtcal's own Python and NumPy work
around the kernels (the kernels themselves took 2.44 ms on the H200). Prints the vectorised
path (compute_amax) and the general path (search_ranges, per-tensor host work) side by side.

    PYTHONPATH=python python benchmarks/profile_compute_amax_host.py [--tensors 1000]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import trtcal
from trtcal.core import _range_batch, range_search


class _State:
    """Stands in for the extension's HistogramState: a CPU collector's state."""

    def __init__(self, state: dict, ptr: int) -> None:
        self._s, self.counts_ptr = state, ptr

    def read(self, stream):
        return self._s


class _Ext:
    """Stands in for trtcal._C: the calls the range search makes, at no cost."""

    def histogram_read_states(self, states, stream, device):
        ss = [s._s for s in states]
        return {
            "exponent": np.array([s["exponent"] for s in ss], np.int32),
            "has_range": np.ones(len(ss), bool),
            "amax": np.array([s["amax"] for s in ss], np.float32),
        }

    def range_search_once(self, *, method, nbins, cands, with_curve, **_kw):
        T = nbins.size
        idx = (nbins - 1) if method == 3 else (cands[2::3] - 1)
        curve = np.zeros(int(cands[2::3].sum())) if with_curve else None
        return idx.astype(np.int32), np.full(T, -1, np.int32), np.zeros(T), curve

    def PrivateStream(self, device):  # noqa: N802 - the extension's name
        class _S:
            handle = 0

        return _S()

    def range_search_max_bins(self, method):
        return 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tensors", type=int, default=1000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    cols = {}
    for t in range(args.tensors):
        c = trtcal.HistogramCollector(2048, device="cpu", name=f"t{t}")
        c.update((rng.standard_t(3, 4000) * np.exp(rng.uniform(-5, 5))).astype(np.float32))
        state = c.state_dict()
        c._gpu, c._device, c._stream = _State(state, 0x7F0000000000 + 16384 * t), 0, 0
        cols[c.name] = c
    ext = _Ext()
    for mod in (_range_batch, range_search):
        mod.require_cuda = lambda what, _e=ext: _e
    range_search.cuda_available = lambda: True
    methods = ["entropy", "percentile", "mse"]

    def timed(fn, reps=7):
        fn()
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            ts.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(ts)

    fast = timed(lambda: trtcal.compute_amax(cols, methods))
    general = timed(lambda: trtcal.search_ranges(cols, methods), reps=3)
    print(
        f"{args.tensors} GPU collectors x {len(methods)} methods, host work only (the kernels: "
        "2.44 ms on the H200)"
    )
    print(f"  compute_amax (vectorised batch path)  {fast:8.2f} ms")
    print(f"  search_ranges (general, per tensor)   {general:8.2f} ms")


if __name__ == "__main__":
    main()
