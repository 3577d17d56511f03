"""FP8 (E4M3): the range search on the E4M3 grid against ModelOpt's FP8 path, in one process, and
an accuracy table on real trained models (INT8, FP8 and a per-layer mix), per output head.

    python benchmarks/bench_fp8.py                      # everything that runs here (CPU)
    python benchmarks/bench_fp8.py --part search        # range-search timing only
    python benchmarks/bench_fp8.py --part accuracy      # the accuracy table only
    python benchmarks/bench_fp8.py --save-hists h.npz   # write the real models' histograms
    python benchmarks/bench_fp8.py --part search --hists h.npz   # time them (e.g. on the GPU)

Timing (a): trtcal's FP8 MSE and KL searches over every activation histogram of a model (the
float64 reference on the CPU; the CUDA kernels, one launch for all tensors, when the GPU build is
present), and ModelOpt's ONNX FP8 path end to end (ONNX Runtime's INT8 calibration, then its
int8_to_fp8 rescaling, ``modelopt.onnx.quantization.quantize(quantize_mode='fp8')``) against
trtcal's end to end (one statistics pass, FP8 MSE ranges, Q/DQ, FP8 conversion), same data.
Accuracy (b): ONNX Runtime on the CPU (basic graph optimizations, docs/fp8.md), held-out crops
(seed 1), calibration crops seed 0.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
try:  # the installed package (with its CUDA build) first, else the checkout's sources
    import trtcal
except ImportError:  # pragma: no cover
    sys.path.insert(0, str(ROOT / "python"))
    import trtcal
import trtcal.fp8

OPS = ["Conv", "Gemm", "MatMul", "Add"]
MODELS = ("yolov8n-nudenet", "ppocr-cls", "ppocr-rec")
N_CALIB, N_EVAL = 16, 16


def _ms(fn, iters: int = 3) -> float:
    fn()
    ts = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts)


def _calibrate(name: str, methods):
    import real_models as rm

    return trtcal.calibrate(rm.model_path(name), rm.inputs(name, N_CALIB, 0), method=list(methods),
                            batch_size=4, progress=False, log=lambda s: None, checkpoint=None, op_types=OPS)


def save_hists(path: str) -> None:
    arrays = {}
    for name in MODELS:
        res = _calibrate(name, ["minmax"])
        for t, h in res.histograms.items():
            if h.status == "ok":
                arrays[f"{name}|{t}|counts"] = np.asarray(h.counts)
                arrays[f"{name}|{t}|edges"] = np.asarray(h.edges)
    np.savez_compressed(path, **arrays)
    print(f"wrote {len(arrays) // 2} histograms to {path}")


def load_hists(path: str):
    z = np.load(path)
    out = {}
    for k in z.files:
        if k.endswith("|counts"):
            base = k[:-len("|counts")]
            model = base.split("|")[0]
            # the occupied bins, as trtcal's own search sees a Histogram
            c, e = z[k], z[base + "|edges"]
            last = int(np.flatnonzero(c)[-1]) + 1 if c.any() else 1
            out.setdefault(model, {})[base] = (c[:last], e[:last + 1])
    return out


def _once_ms(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def part_search(hists_path: str | None, cpu_methods=("mse", "kl")) -> list:
    rows = []
    if hists_path:
        groups = load_hists(hists_path)
    else:
        groups = {}
        for name in MODELS:
            res = _calibrate(name, ["minmax"])
            groups[name] = {t: h for t, h in res.histograms.items() if h.status == "ok"}
    gpu = trtcal.cuda_available()
    for name, hs in groups.items():
        for m in ("mse", "kl"):
            cpu = _once_ms(lambda hs=hs, m=m: trtcal.fp8.fp8_search(hs, m, device="cpu")) if m in cpu_methods else float("nan")
            row = {"model": name, "tensors": len(hs), "method": m, "cpu_ms": cpu}
            if gpu:
                row["gpu_ms"] = _ms(lambda hs=hs, m=m: trtcal.fp8.fp8_search(hs, m, device="cuda"), iters=5)
                if m in cpu_methods:
                    a = trtcal.fp8.fp8_search(hs, m, device="cpu")
                    b = trtcal.fp8.fp8_search(hs, m, device="cuda")
                    row["same_amax"] = all(np.float64(a[t].amax).tobytes() == np.float64(b[t].amax).tobytes()
                                           for t in hs)
            rows.append(row)
    print("\n## FP8 range search over a model's activation histograms (one call, every tensor)\n")
    print("| model | tensors | method | trtcal CPU reference ms | trtcal GPU ms | GPU amax == reference |")
    print("|---|---:|---|---:|---:|---|")
    for r in rows:
        print(f"| {r['model']} | {r['tensors']} | fp8-{r['method']} | {r['cpu_ms']:.1f} | "
              f"{r.get('gpu_ms', float('nan')):.2f} | {r.get('same_amax', 'n/a')} |")
    return rows


def _modelopt_fp8(path: str, calib, out: str, method: str) -> float:
    from modelopt.onnx.quantization import quantize

    t0 = time.perf_counter()
    quantize(path, quantize_mode="fp8", calibration_data=calib, output_path=out, calibration_method=method,
             high_precision_dtype="fp32")
    return time.perf_counter() - t0


def _session(model):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    data = model if isinstance(model, str) else model.SerializeToString()
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def heads(name: str, y: np.ndarray, yq: np.ndarray) -> dict:
    def sqnr(a, b):
        return float(10 * np.log10((a.astype(np.float64) ** 2).sum() / max(float(((a - b) ** 2).sum()), 1e-30)))
    if name == "yolov8n-nudenet":
        keep, kq = y[:, 4:, :].max(axis=1) > 0.25, yq[:, 4:, :].max(axis=1) > 0.25
        bx, bq = y[:, :4, :].transpose(0, 2, 1)[keep], yq[:, :4, :].transpose(0, 2, 1)[keep]
        return {"boxes SQNR dB": sqnr(bx, bq), "scores SQNR dB": sqnr(y[:, 4:], yq[:, 4:]),
                "detections kept (IoU of sets)": float((keep & kq).sum() / max((keep | kq).sum(), 1))}
    return {"top-1 agreement": float(np.mean(y.argmax(-1) == yq.argmax(-1))), "output SQNR dB": sqnr(y, yq)}


def _swap_ranges(path: str, amax) -> object:
    """ModelOpt's FP8 model with each per-tensor activation scale replaced by trtcal's amax / 448."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(path)
    inits = {t.name: t for t in m.graph.initializer}
    for q in m.graph.node:
        if q.op_type == "QuantizeLinear" and q.input[0] in amax and q.input[1] in inits:
            old = numpy_helper.to_array(inits[q.input[1]])
            if old.ndim == 0:
                inits[q.input[1]].CopyFrom(numpy_helper.from_array(
                    np.asarray(amax[q.input[0]] / 448.0, dtype=old.dtype), q.input[1]))
    return m


def part_accuracy(mixed: bool = True) -> list:
    import real_models as rm

    from trtcal.onnx.fp8 import convert_to_fp8
    from trtcal.precision_choice import choose_precisions, ort_scorer

    rows, timing = [], []
    tmp = tempfile.mkdtemp(prefix="bench_fp8_")
    for name in MODELS:
        if rm.model_path(name) is None or not rm.images_available():
            print(f"(skipped {name}: {rm.missing_reason(name)})")
            continue
        path = rm.model_path(name)
        ev = rm.inputs(name, N_EVAL, 1)
        y = _session(path).run(None, ev)[0]

        def add(label, model, name=name, y=y, ev=ev):
            rows.append({"model": name, "variant": label, **heads(name, y, _session(model).run(None, ev)[0])})

        t0 = time.perf_counter()
        res = _calibrate(name, ["entropy", "minmax"])
        t_pass = time.perf_counter() - t0
        f8 = {}
        for m in ("mse", "kl", "max"):
            t1 = time.perf_counter()
            got = trtcal.fp8.fp8_amax(res.histograms, m, on_degenerate="flag", device="cpu")
            f8[m] = ({k: v for k, v in got.items() if np.isfinite(v)}, time.perf_counter() - t1)
        q = trtcal.onnx.quantize(path, res.amax["entropy"], missing="skip")
        add("INT8 entropy (trtcal)", q)
        for m in ("max", "mse", "kl"):
            t1 = time.perf_counter()
            fm, rep = convert_to_fp8(q, f8[m][0], return_report=True)
            t_conv = time.perf_counter() - t1
            add(f"FP8 {m} (trtcal; {len(rep.int8_nodes)} layers left INT8)", fm)
            if m == "mse":
                timing.append({"model": name, "what": "trtcal end to end (pass + fp8-mse + Q/DQ + FP8)",
                               "s": t_pass + f8[m][1] + t_conv})
        calib = rm.inputs(name, N_CALIB, 0)
        for cm in ("max", "entropy"):
            out = os.path.join(tmp, f"{name}.modelopt.{cm}.onnx")
            try:
                dt = _modelopt_fp8(path, calib, out, cm)
            except Exception as exc:  # noqa: BLE001 - a peer's failure is a table row, not a crash
                print(f"(ModelOpt FP8 {cm} failed on {name}: {type(exc).__name__}: {str(exc)[:200]})")
                continue
            add(f"FP8 {cm} (ModelOpt ONNX: INT8 {cm} x 448/127)", out)
            timing.append({"model": name, "what": f"ModelOpt ONNX FP8 end to end ({cm})", "s": dt})
            if cm == "max":  # a controlled comparison: ModelOpt's placement and weights, trtcal's ranges
                for m in ("max", "mse"):
                    add(f"ModelOpt's placement and weights, trtcal FP8 {m} ranges", _swap_ranges(out, f8[m][0]))
        if mixed:
            t1 = time.perf_counter()
            sc = ort_scorer(ev, y, "top1" if name != "yolov8n-nudenet" else "sqnr",
                            select=(lambda a: a[:, :4, :]) if name == "yolov8n-nudenet" else None)
            floor = {"yolov8n-nudenet": (40.0, 30.0)}.get(name)
            kw = {"min_layer_score": floor[0], "min_score": floor[1]} if floor else {"tolerance": 0.0}
            ch = choose_precisions(path, res.amax["entropy"], f8["mse"][0], sc, **kw)
            c = ch.counts()
            add(f"mixed per layer (fp8 {c['fp8']}, int8 {c['int8']}, fp16 {c['fp16']}; "
                f"{time.perf_counter() - t1:.0f} s)", ch.model)
    print("\n## Accuracy against the float model, per output head (ONNX Runtime CPU)\n")
    for name in MODELS:
        rs = [r for r in rows if r["model"] == name]
        if not rs:
            continue
        keys = [k for k in rs[0] if k not in ("model", "variant")]
        print(f"\n{name} ({N_EVAL} held-out inputs)\n")
        print("| variant | " + " | ".join(keys) + " |")
        print("|---|" + "---:|" * len(keys))
        for r in rs:
            print(f"| {r['variant']} | " + " | ".join(f"{r[k]:.3f}" for k in keys) + " |")
    print("\n## End-to-end CPU time, same process, same data\n")
    print("| model | path | seconds |")
    print("|---|---|---:|")
    for t in timing:
        print(f"| {t['model']} | {t['what']} | {t['s']:.1f} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=["all", "search", "accuracy"], default="all")
    ap.add_argument("--hists", help="histograms written by --save-hists (no models needed)")
    ap.add_argument("--save-hists", help="write the real models' histograms here and stop")
    ap.add_argument("--cpu-methods", default="mse,kl", help="searches timed on the CPU too (comma-separated)")
    ap.add_argument("--no-mixed", action="store_true", help="skip the per-layer choice (slow on the CPU)")
    a = ap.parse_args()
    if a.save_hists:
        save_hists(a.save_hists)
        return
    print(f"trtcal FP8 benchmark; CUDA build: {trtcal.cuda_available()}")
    if a.part in ("all", "search"):
        part_search(a.hists, tuple(a.cpu_methods.split(",")))
    if a.part in ("all", "accuracy"):
        part_accuracy(mixed=not a.no_mixed)


if __name__ == "__main__":
    main()
