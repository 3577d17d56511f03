"""Accuracy of every calibration method, of ``auto`` and of ``analyze``, per head, on real models.

For each real trained model of ``tests/real_models.py`` (YOLOv8n detector with SiLU, PP-OCR
text detector, direction classifier; ``--models`` adds ppocr-rec): one statistics pass over 64
calibration samples (seed 0), every method's ranges from it (min-max, entropy in both |x|
flavors, percentile 99.9/99.99/99.999, MSE), ``auto`` (trtcal.evaluation.auto.choose) and
``analyze`` with its default settings, every result reported on 16 held-out samples (seed 1).
``auto`` and ``analyze`` choose twice: on a separate selection set of 16 samples (seed 2;
nothing reported was tuned on), and ``auto`` also on the held-out set itself (what
``--eval-data`` gives a user; those numbers are in-sample; ``--analyze-in-sample`` does the same
for analyze). The Q/DQ models run in ONNX Runtime (INT8 rounding
simulated in float). Per head: detector box SQNR, class-score SQNR, reference detections kept
(score >= 0.1, NMS, same class, IoU > 0.5); classifier top-1 agreement; text detector
probability-map SQNR and mask IoU at 0.3.

    PYTHONPATH=python python benchmarks/bench_accuracy.py [--models a,b] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, os.path.join(HERE, "..", "python"))

import real_models as rm  # noqa: E402

from trtcal import calibrate  # noqa: E402
from trtcal import tasks as tk  # noqa: E402
from trtcal.evaluation import auto as auto_mod  # noqa: E402
from trtcal.evaluation import measure as ev  # noqa: E402
from trtcal.onnx import quantize  # noqa: E402

MODELS = ("yolov8n-nudenet", "ppocr-cls", "ppocr-det")
METHODS = (
    "minmax",
    "entropy:pytorch_quantization",
    "entropy:tensorrt",
    "percentile:99.9",
    "percentile:99.99",
    "percentile:99.999",
    "mse",
)
# ppocr-det's probability map is thresholded at 0.3 by DBNet's post-processing
SLICES = {"ppocr-det": "sigmoid_0.tmp_0=mask@0.3"}
# the detector finds few objects in skimage's photos at YOLO's usual 0.25 (6 in the 16 held-out
# images); 0.1 gives 10, so that one detection is not a sixth of the metric
SCORE_THRESHOLD = {"yolov8n-nudenet": 0.1}


def _measure(proto: Any, amax_or_model: Any, reference: Any, evalset: Any, spec: Any) -> Any:
    qm = amax_or_model
    if isinstance(amax_or_model, dict):
        qm = quantize(proto, amax_or_model, missing="skip")
    stats, _ = ev.measure_task(qm, reference, evalset, spec)
    return stats


def _row(label: str, s: Any, extra: str = "") -> Dict[str, Any]:
    r: Dict[str, Any] = {
        "method": label,
        "metric": s.metric,
        "text": s.describe_metric(),
        "worst_head_sqnr_db": s.worst_sqnr,
        "extra": extra,
    }
    for h in s.head_rows():
        if h["kind"] == "detections":
            r["detections"] = f"{h['detections_kept']}/{h['detections_reference']}"
            r["detections_quantized"] = h["detections_quantized"]
        else:
            r[f"{h['kind']}_sqnr_db"] = h["sqnr_db"]
            if "top1_agreement" in h:
                r["top1"] = h["top1_agreement"]
            if "mask_iou" in h:
                r["mask_iou"] = h["mask_iou"]
    return r


def run_model(
    name: str, n_cal: int, n_eval: int, log: Any, analyze_on: Any = ("selection set",)
) -> Dict[str, Any]:
    from trtcal.api.analyze import analyze
    from trtcal.pipeline.runners import load_onnx

    path = rm.model_path(name)
    cal = rm.inputs(name, n_cal, 0)
    held = rm.inputs(name, n_eval, 1)
    select = rm.inputs(name, n_eval, 2)
    t0 = time.perf_counter()
    res = calibrate(path, cal, method="minmax", batch_size=16, progress=False, log=lambda s: None)
    t_stats = time.perf_counter() - t0
    proto = load_onnx(path)
    reference = ev.Reference(proto)
    evalset = ev.EvalSet(held, reference.specs, 16)
    thr = SCORE_THRESHOLD.get(name)
    spec = ev.task_spec(reference, evalset, "auto", SLICES.get(name), thr)
    ranges, _ = auto_mod.candidate_ranges(res.histograms, METHODS)
    rows: List[Dict[str, Any]] = []
    stats: Dict[str, Any] = {}
    for label, amax in ranges.items():
        stats[label] = _measure(proto, amax, reference, evalset, spec)
        rows.append(_row(label, stats[label]))
        log(f"{name}: {label}: {tk.heads_text(stats[label])}")
    best_single = tk.ranked(stats)[0]
    for tag, judge in (("selection set", select), ("held-out set itself", held)):
        t0 = time.perf_counter()
        d = auto_mod.choose(
            path,
            res.histograms,
            judge,
            eval_description=tag,
            eval_samples=n_eval,
            batch_size=16,
            output_slices=SLICES.get(name),
            score_threshold=thr,
        )
        t_auto = time.perf_counter() - t0
        s_auto = _measure(proto, d.amax, reference, evalset, spec)
        alt = ", ".join(sorted(set(d.overrides.values())))
        extra = d.method + (f" + {len(d.overrides)} tensor(s) {alt}" if d.overrides else "")
        note = f"{extra}; {d.runs} runs, {t_auto:.0f} s"
        rows.append(_row(f"auto (judged on the {tag})", s_auto, note))
        log(f"{name}: auto ({tag}): {tk.heads_text(s_auto)} ({rows[-1]['extra']})")
        if tag not in analyze_on:
            continue
        t0 = time.perf_counter()
        a = analyze(
            path,
            cal,
            judge,
            calibration=res,
            batch_size=16,
            output_slices=SLICES.get(name),
            score_threshold=thr,
            cache=False,
            plots=False,
            progress=False,
            log=lambda s: None,
        )
        t_an = time.perf_counter() - t0
        s_an = _measure(proto, a.model, reference, evalset, spec)
        rows.append(
            _row(
                f"analyze (judged on the {tag})",
                s_an,
                a.summary_text() + f"; {a.measured} runs, {t_an:.0f} s",
            )
        )
        log(f"{name}: analyze ({tag}): {tk.heads_text(s_an)} ({rows[-1]['extra']})")
    return {
        "model": name,
        "task": spec.describe(),
        "statistics_seconds": t_stats,
        "best_single": best_single,
        "rows": rows,
    }


def markdown(result: Dict[str, Any]) -> str:
    rows = result["rows"]
    task = result["task"].split(" ")[0]
    cols = [("method", "method")]
    if task == "detect":
        cols += [
            ("class-score SQNR dB", "scores_sqnr_db"),
            ("box SQNR dB", "boxes_sqnr_db"),
            ("detections kept", "detections"),
        ]
    elif task == "classify":
        cols += [("top-1 agreement", "top1"), ("probs SQNR dB", "probs_sqnr_db")]
    elif task == "segment":
        cols += [("mask IoU @0.3", "mask_iou"), ("map SQNR dB", "mask_sqnr_db")]
    cols += [("notes", "extra")]
    out = [
        f"**{result['model']}** ({result['task']})",
        "",
        "| " + " | ".join(c for c, _ in cols) + " |",
        "|" + "---|" * len(cols),
    ]
    for r in rows:
        cells = []
        for _, k in cols:
            v = r.get(k, "")
            if k == "top1" and v != "":
                v = f"{100 * v:.2f}%"
            elif k == "mask_iou" and v != "":
                v = f"{v:.4f}"
            elif isinstance(v, float):
                v = f"{v:.2f}"
            cells.append(str(v))
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--calibration", type=int, default=64)
    p.add_argument("--eval", type=int, default=16)
    p.add_argument("--json", default=None)
    p.add_argument(
        "--analyze-in-sample",
        action="store_true",
        help="also run analyze judged on the held-out set itself (L more runs per model)",
    )
    args = p.parse_args()
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    results = []
    for name in args.models.split(","):
        if rm.model_path(name) is None:
            print(f"skipped {name}: {rm.missing_reason(name)}")
            continue
        on = ("selection set",) + (("held-out set itself",) if args.analyze_in_sample else ())
        results.append(run_model(name, args.calibration, args.eval, log, on))
        print(markdown(results[-1]) + "\n", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
