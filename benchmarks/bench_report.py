"""Time of ``--report`` on a real text detector (PP-OCR det, 320x320, 331 tensors): the
calibration once, then the report written by this checkout's report module (HTML and
Markdown) and, for comparison, by the per-tensor matplotlib report of an earlier commit
(``--old <commit>``, default the parent of the report rewrite). CPU only.

    PYTHONPATH=python python benchmarks/bench_report.py [--samples 16] [--old REV]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def _old_module(rev: str, tmp: str):
    src = subprocess.run(
        ["git", "-C", HERE, "show", f"{rev}:python/trtcal/calibration/report.py"],  # the old layout
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = os.path.join(tmp, "old_report.py")
    with open(path, "w") as f:
        f.write(src)
    spec = importlib.util.spec_from_file_location("old_report", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--old", default="cbcb639")
    args = ap.parse_args()
    sys.path.insert(0, os.path.join(HERE, "..", "tests"))
    import real_models

    from trtcal import calibrate
    from trtcal.evaluation import report as new

    model = real_models.model_path("ppocr-det")
    if model is None:
        sys.exit(real_models.missing_reason("ppocr-det"))
    x = real_models.inputs("ppocr-det", args.samples, 0)["x"]
    tmp = tempfile.mkdtemp(prefix="trtcal-report-")
    t0 = time.perf_counter()
    res = calibrate(model, x, method="all", progress=False, log=lambda s: None)
    t_cal = time.perf_counter() - t0
    print(
        f"ppocr-det 320x320, {args.samples} samples, --method all: {len(res.histograms)} tensors; "
        f"calibration {t_cal:.1f} s"
    )
    for label, fn in (
        ("new report, HTML (inline SVG)", lambda: new.write(os.path.join(tmp, "n.html"), res)),
        ("new report, Markdown (one SVG)", lambda: new.write(os.path.join(tmp, "n.md"), res)),
    ):
        t0 = time.perf_counter()
        fn()
        print(f"  {label:<44} {time.perf_counter() - t0:8.2f} s")
    if args.old:
        old = _old_module(args.old, tmp)
        t0 = time.perf_counter()
        old.write(os.path.join(tmp, "o.html"), res)
        print(
            f"  {'old report (' + args.old + '), HTML, matplotlib PNGs':<44} "
            f"{time.perf_counter() - t0:8.2f} s"
        )


if __name__ == "__main__":
    main()
