"""The public API at the kernels' speed: trtcal.amax, HistogramCollector.update, trtcal.histogram,
trtcal.percentile and trtcal.compute_amax against torch.aminmax, torch.histc and
cupy.percentile at 2^20 and 2^28 values (the rows are built in bench_stats.run_public)."""

from __future__ import annotations

from typing import Dict


def run(ctx: Dict) -> Dict:
    from bench_stats import run_public

    return run_public(ctx)
