"""Peak memory and time of ``trtcal calibrate`` through ONNX Runtime on a real text detector
(PP-OCR det, 320x320, tests/real_models.py) at the default batch (16), with and without the
runner's memory budget (``--max-memory``), and with and without ``--report``. Each case runs
in a fresh process (peak RSS from getrusage). CPU only.

    PYTHONPATH=python python benchmarks/bench_ort_memory.py [--samples 32] [--cases budget,report]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def _child(args) -> None:
    import resource

    from trtcal.cli import main

    t0 = time.perf_counter()
    rc = main(
        [
            "calibrate",
            args.model,
            "--data",
            args.data,
            "--method",
            "entropy",
            "--out-table",
            os.path.join(args.out, "t.json"),
            "--max-samples",
            str(args.samples),
            "--max-memory",
            str(args.max_memory),
            "--checkpoint",
            os.path.join(args.out, "ck.npz"),
        ]
        + (["--report", os.path.join(args.out, "report.html")] if args.report else [])
    )
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB -> GB
    print(json.dumps({"rc": rc, "seconds": dt, "peak_rss_gb": peak}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--cases", default="budget,report")
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--model")
    ap.add_argument("--data")
    ap.add_argument("--out")
    ap.add_argument("--max-memory", type=float, default=1.5)
    ap.add_argument("--report", action="store_true")
    args = ap.parse_args()
    if args.child:
        _child(args)
        return
    sys.path.insert(0, os.path.join(HERE, "..", "tests"))
    import real_models

    model = real_models.model_path("ppocr-det")
    if model is None:
        sys.exit(real_models.missing_reason("ppocr-det"))
    tmp = tempfile.mkdtemp(prefix="trtcal-mem-")
    data = real_models.save_npy("ppocr-det", args.samples, 0, os.path.join(tmp, "data"))
    cases = []
    if "budget" in args.cases:
        cases += [
            ("no budget (--max-memory 0), as before", 0.0, False),
            ("default --max-memory 1.5", 1.5, False),
        ]
    if "report" in args.cases:
        cases += [("default, with --report", 1.5, True)]
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(
            [os.path.join(HERE, "..", "python"), os.environ.get("PYTHONPATH", "")]
        ),
    )
    print(
        f"ppocr-det 320x320, {args.samples} samples, batch 16 (the default), entropy, ONNX Runtime "
        "CPU"
    )
    print(f"{'case':<42} {'seconds':>8} {'peak RSS GB':>12}")
    for label, mm, report in cases:
        out = tempfile.mkdtemp(dir=tmp)
        cmd = [
            sys.executable,
            __file__,
            "--child",
            "--model",
            model,
            "--data",
            data,
            "--out",
            out,
            "--samples",
            str(args.samples),
            "--max-memory",
            str(mm),
        ] + (["--report"] if report else [])
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        line = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
        if not line:
            print(f"{label:<42} failed: {res.stderr[-400:]}")
            continue
        r = json.loads(line[-1])
        print(f"{label:<42} {r['seconds']:8.1f} {r['peak_rss_gb']:12.2f}")


if __name__ == "__main__":
    main()
