"""INT8, FP8 and the per-layer INT8/FP8/FP16 choice, per output head, through ``trtcal compare``.

For each real trained model (tests/real_models.py): one statistics pass over ``--cal`` samples
(seed 0, Conv activations, 256 bins so the CPU-only E4M3 searches stay quick), then
``trtcal.compare`` twice on ``--eval`` held-out samples (seed 1): INT8 (entropy, minmax,
percentile:99.99) plus the row 'mixed' (``precisions='int8,fp8,fp16'``: per layer the fastest
precision, documented speed order unless TensorRT is installed, that keeps the task metric within
one unit), and FP8 (``quant_dtype='fp8'``: fp8-mse, minmax as FP8 Q/DQ models). The Q/DQ models
run in ONNX Runtime on the CPU. Per head: the task metric (top-1 agreement, detections kept, mask
IoU) and each head's SQNR.

    PYTHONPATH=python python benchmarks/bench_fp8_compare.py [--models ppocr-cls,ppocr-det]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, os.path.join(HERE, "..", "python"))

import real_models as rm  # noqa: E402

import trtcal  # noqa: E402
from trtcal.pipeline import calibration_pass  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="ppocr-cls")
    ap.add_argument("--cal", type=int, default=16)
    ap.add_argument("--eval", type=int, default=8)
    args = ap.parse_args()
    print("| model | quant | method | task metric | per head | search s |")
    print("|---|---|---|---|---|---|")
    for name in args.models.split(","):
        if rm.model_path(name) is None:
            print(f"| {name} | skipped: {rm.missing_reason(name)} | | | | |")
            continue
        path = rm.model_path(name)
        cfg = trtcal.CalibrationConfig(
            data=rm.inputs(name, args.cal, 0),
            eval_data=rm.inputs(name, args.eval, 1),
            batch_size=8,
            bins=256,
            op_types=["Conv"],
            progress=False,
            log=lambda s: None,
        )
        cal = calibration_pass.statistics(path, cfg)
        t0 = time.perf_counter()
        runs = [
            (
                "int8",
                trtcal.compare(
                    path,
                    config=cfg,
                    calibration=cal,
                    methods="entropy,minmax,percentile:99.99",
                    precisions="int8,fp8,fp16",
                    per_layer=False,
                    plots=False,
                ),
            ),
            (
                "fp8",
                trtcal.compare(
                    path,
                    config=cfg,
                    calibration=cal,
                    quant_dtype="fp8",
                    methods="fp8-mse,minmax",
                    per_layer=False,
                    plots=False,
                ),
            ),
        ]
        for quant, res in runs:
            for m in res.ranked:
                s = m.summary
                q = "mixed" if m.label == "mixed" else quant
                secs = "" if m.search_seconds is None else f"{m.search_seconds:.2f}"
                cells = [name, q, m.label, s.get("task_text", ""), s.get("heads", ""), secs]
                print("| " + " | ".join(cells) + " |")
        for n in runs[0][1].notes:
            if n.startswith("mixed:"):
                print(f"<!-- {name}: {n} -->")
        print(f"<!-- {name}: {time.perf_counter() - t0:.0f} s -->")


if __name__ == "__main__":
    main()
