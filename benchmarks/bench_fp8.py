"""FP8 (E4M3): the range search on the E4M3 grid against ModelOpt's FP8 path, in one process, and
an accuracy table on real trained models (INT8, FP8 and a per-layer mix), per output head.

    python benchmarks/bench_fp8.py                      # everything that runs here (CPU)
    python benchmarks/bench_fp8.py --part search        # range-search timing only
    python benchmarks/bench_fp8.py --part accuracy      # the accuracy table only
    python benchmarks/bench_fp8.py --part accuracy --models ppocr-cls --eval 64 --no-mixed
    python benchmarks/bench_fp8.py --part headroom      # FP8 ranges above the calibrated amax
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

    return trtcal.calibrate(
        rm.model_path(name),
        rm.inputs(name, N_CALIB, 0),
        method=list(methods),
        batch_size=4,
        progress=False,
        log=lambda s: None,
        checkpoint=None,
        op_types=OPS,
    )


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
            base = k[: -len("|counts")]
            model = base.split("|")[0]
            # the occupied bins, as trtcal's own search sees a Histogram
            c, e = z[k], z[base + "|edges"]
            last = int(np.flatnonzero(c)[-1]) + 1 if c.any() else 1
            out.setdefault(model, {})[base] = (c[:last], e[: last + 1])
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
            cpu = (
                _once_ms(lambda hs=hs, m=m: trtcal.fp8.fp8_search(hs, m, device="cpu"))
                if m in cpu_methods
                else float("nan")
            )
            row = {"model": name, "tensors": len(hs), "method": m, "cpu_ms": cpu}
            if gpu:
                row["gpu_ms"] = _ms(
                    lambda hs=hs, m=m: trtcal.fp8.fp8_search(hs, m, device="cuda"), iters=5
                )
                if m in cpu_methods:
                    a = trtcal.fp8.fp8_search(hs, m, device="cpu")
                    b = trtcal.fp8.fp8_search(hs, m, device="cuda")
                    row["same_amax"] = all(
                        np.float64(a[t].amax).tobytes() == np.float64(b[t].amax).tobytes()
                        for t in hs
                    )
            rows.append(row)
    print("\n## FP8 range search over a model's activation histograms (one call, every tensor)\n")
    print(
        "| model | tensors | method | trtcal CPU reference ms | trtcal GPU ms | GPU amax == "
        "reference |"
    )
    print("|---|---:|---|---:|---:|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['tensors']} | fp8-{r['method']} | {r['cpu_ms']:.1f} | "
            f"{r.get('gpu_ms', float('nan')):.2f} | {r.get('same_amax', 'n/a')} |"
        )
    return rows


def _modelopt_fp8(path: str, calib, out: str, method: str) -> float:
    """ModelOpt's ONNX FP8 with its defaults (FP16 remainder, as trtcal's export), timed."""
    from modelopt.onnx.quantization import quantize

    t0 = time.perf_counter()
    quantize(
        path,
        quantize_mode="fp8",
        calibration_data=calib,
        output_path=out,
        calibration_method=method,
    )
    return time.perf_counter() - t0


def _session(model):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    data = model if isinstance(model, str) else model.SerializeToString()
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of (cx, cy, w, h) boxes, row by row."""

    def corners(x):
        return (
            x[:, 0] - x[:, 2] / 2,
            x[:, 1] - x[:, 3] / 2,
            x[:, 0] + x[:, 2] / 2,
            x[:, 1] + x[:, 3] / 2,
        )

    ax0, ay0, ax1, ay1 = corners(a.astype(np.float64))
    bx0, by0, bx1, by1 = corners(b.astype(np.float64))
    inter = np.clip(np.minimum(ax1, bx1) - np.maximum(ax0, bx0), 0, None) * np.clip(
        np.minimum(ay1, by1) - np.maximum(ay0, by0), 0, None
    )
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return inter / np.maximum(union, 1e-12)


def heads(name: str, y: np.ndarray, yq: np.ndarray) -> dict:
    def sqnr(a, b):
        return float(
            10
            * np.log10((a.astype(np.float64) ** 2).sum() / max(float(((a - b) ** 2).sum()), 1e-30))
        )

    if name == "yolov8n-nudenet":
        keep, kq = y[:, 4:, :].max(axis=1) > 0.25, yq[:, 4:, :].max(axis=1) > 0.25
        bx, bq = y[:, :4, :].transpose(0, 2, 1)[keep], yq[:, :4, :].transpose(0, 2, 1)[keep]
        return {
            "boxes SQNR dB": sqnr(bx, bq),
            "boxes mean IoU": float(_box_iou(bx, bq).mean()),
            "scores SQNR dB": sqnr(y[:, 4:], yq[:, 4:]),
            "detections kept (IoU of sets)": float((keep & kq).sum() / max((keep | kq).sum(), 1)),
        }
    return {
        "top-1 agreement": float(np.mean(y.argmax(-1) == yq.argmax(-1))),
        "output SQNR dB": sqnr(y, yq),
    }


def _swap_ranges(path: str, amax) -> object:
    """ModelOpt's FP8 model with each per-tensor activation scale replaced by trtcal's amax /
    448."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(path)
    inits = {t.name: t for t in m.graph.initializer}
    for q in m.graph.node:
        if q.op_type in ("QuantizeLinear", "DequantizeLinear") and q.input[1] in inits:
            t = (
                q.input[0]
                if q.op_type == "QuantizeLinear"
                else q.input[0].replace("_QuantizeLinear_Output", "")
            )
            old = numpy_helper.to_array(inits[q.input[1]])
            if t in amax and old.ndim == 0:
                inits[q.input[1]].CopyFrom(
                    numpy_helper.from_array(
                        np.asarray(amax[t] / 448.0, dtype=old.dtype), q.input[1]
                    )
                )
    return m


def _precisions(path: str) -> str:
    """'FP8 a, INT8 b' layers of a Q/DQ model: nodes reading a DequantizeLinear, by zero-point
    type."""
    import onnx
    from onnx import TensorProto

    m = onnx.load(path)
    inits = {t.name: t for t in m.graph.initializer}
    kind = {
        n.output[0]: inits[n.input[2]].data_type
        for n in m.graph.node
        if n.op_type == "DequantizeLinear" and len(n.input) > 2 and n.input[2] in inits
    }
    layers: dict = {}
    for n in m.graph.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            for i in n.input:
                if i in kind:
                    layers[n.name or n.output[0]] = kind[i]
    f8 = sum(1 for v in layers.values() if v == TensorProto.FLOAT8E4M3FN)
    return f"{f8} layers FP8, {len(layers) - f8} INT8"


def _cli_calibrate(path: str, data: str, out: str, method: str, ckpt: str, fp8: bool) -> float:
    """``trtcal calibrate MODEL --data DATA [--quant-dtype fp8] --method M --out-qdq OUT``, the
    product's export (TensorRT's placement, FP16 remainder), in this process; the first run of
    a model makes the statistics pass, the others resume from its checkpoint."""
    from trtcal.cli import main as cli

    args = [
        "calibrate",
        path,
        "--data",
        data,
        "--method",
        method,
        "--batch-size",
        "4",
        "--out-qdq",
        out,
        "--placement-report",
        out + ".placement.txt",
        "--checkpoint",
        ckpt,
        "-q",
    ]
    if fp8:
        args += ["--quant-dtype", "fp8"]
    if os.path.exists(ckpt):
        args.append("--resume")
    t0 = time.perf_counter()
    if cli(args) != 0:
        raise RuntimeError(f"trtcal calibrate failed: {' '.join(args)}")
    return time.perf_counter() - t0


def _print_tables(rows: list, models, suffix: str = "") -> None:
    """One Markdown table per model: a row per variant, a column per measured value."""
    for name in models:
        rs = [r for r in rows if r["model"] == name]
        if not rs:
            continue
        keys = [k for k in rs[0] if k not in ("model", "variant")]
        print(f"\n{name}{suffix}\n")
        print("| variant | " + " | ".join(keys) + " |")
        print("|---|" + "---:|" * len(keys))
        for r in rs:
            print(f"| {r['variant']} | " + " | ".join(f"{r[k]:.3f}" for k in keys) + " |")


def part_accuracy(
    models=MODELS,
    n_calib: int = N_CALIB,
    n_eval: int = N_EVAL,
    mixed: bool = True,
    fp8_methods=("fp8-mse", "minmax", "fp8-kl"),
) -> list:
    import real_models as rm

    from trtcal.precision_choice import choose_precisions, ort_scorer

    rows, timing = [], []
    tmp = tempfile.mkdtemp(prefix="bench_fp8_")
    for name in models:
        if rm.model_path(name) is None or not rm.images_available():
            print(f"(skipped {name}: {rm.missing_reason(name)})")
            continue
        path = rm.model_path(name)
        ev = rm.inputs(name, n_eval, 1)
        y = _session(path).run(None, ev)[0]

        def add(label, model, name=name, y=y, ev=ev):
            rows.append(
                {
                    "model": name,
                    "variant": label,
                    **heads(name, y, _session(model).run(None, ev)[0]),
                }
            )
            print(f"  {name}: {label}: done", flush=True)

        data = rm.save_npy(name, n_calib, 0, os.path.join(tmp, name))
        ckpt = os.path.join(tmp, f"{name}.ckpt.npz")
        out = os.path.join(tmp, f"{name}.int8.onnx")
        _cli_calibrate(path, data, out, "mse", ckpt, fp8=False)
        add("INT8 mse (trtcal calibrate --method mse)", out)
        for m in fp8_methods:
            out = os.path.join(tmp, f"{name}.fp8.{m}.onnx")
            dt = _cli_calibrate(path, data, out, m, ckpt, fp8=True)
            add(f"FP8 {m} (trtcal calibrate --quant-dtype fp8; {_precisions(out)})", out)
            timing.append(
                {
                    "model": name,
                    "what": f"trtcal calibrate --quant-dtype fp8 --method {m} (resumed)",
                    "s": dt,
                }
            )
        calib = rm.inputs(name, n_calib, 0)
        for cm in ("max", "entropy"):
            out = os.path.join(tmp, f"{name}.modelopt.{cm}.onnx")
            try:
                dt = _modelopt_fp8(path, calib, out, cm)
            except Exception as exc:  # noqa: BLE001 - a peer's failure is a table row, not a crash
                print(
                    f"(ModelOpt FP8 {cm} failed on {name}: {type(exc).__name__}: {str(exc)[:200]})"
                )
                continue
            add(f"FP8 {cm} (ModelOpt ONNX: INT8 {cm} x 448/127; {_precisions(out)})", out)
            timing.append({"model": name, "what": f"ModelOpt ONNX FP8 end to end ({cm})", "s": dt})
            if cm == "max":  # ModelOpt's placement and weights, trtcal's ranges
                res = trtcal.calibrate(
                    path,
                    calib,
                    method="fp8-mse",
                    batch_size=4,
                    progress=False,
                    log=lambda s: None,
                    checkpoint=None,
                )
                add(
                    "ModelOpt's placement and weights, trtcal fp8-mse ranges",
                    _swap_ranges(
                        out,
                        {t: a for t, a in res.amax["fp8-mse"].items() if np.isfinite(a) and a > 0},
                    ),
                )
        if mixed:
            t1 = time.perf_counter()
            res = trtcal.calibrate(
                path,
                calib,
                method=["fp8-mse", "mse"],
                batch_size=4,
                progress=False,
                log=lambda s: None,
                checkpoint=None,
            )
            f8 = {t: a for t, a in res.amax["fp8-mse"].items() if np.isfinite(a) and a > 0}
            i8 = {t: a for t, a in res.amax["mse"].items() if np.isfinite(a) and a > 0}
            sc = ort_scorer(
                ev,
                y,
                "top1" if name != "yolov8n-nudenet" else "sqnr",
                select=(lambda a: a[:, :4, :]) if name == "yolov8n-nudenet" else None,
            )
            floor = {"yolov8n-nudenet": (40.0, 30.0)}.get(name)
            kw = (
                {"min_layer_score": floor[0], "min_score": floor[1]}
                if floor
                else {"tolerance": 0.0}
            )
            ch = choose_precisions(path, i8, f8, sc, **kw)
            c = ch.counts()
            add(
                f"mixed per layer, chosen on these inputs (fp8 {c['fp8']}, int8 {c['int8']}, fp16 "
                f"{c['fp16']}; "
                f"{time.perf_counter() - t1:.0f} s)",
                ch.model,
            )
    print(
        f"\n## Accuracy against the float model, per output head (ONNX Runtime CPU; {n_calib} "
        "calibration, "
        f"{n_eval} held-out crops)\n"
    )
    _print_tables(rows, models, f" ({n_eval} held-out inputs)")
    print("\n## CPU time, same process, same data\n")
    print("| model | path | seconds |")
    print("|---|---|---:|")
    for t in timing:
        print(f"| {t['model']} | {t['what']} | {t['s']:.1f} |")
    return rows


def _scaled_pairs(model, factor: float, weights: bool):
    """A copy of an FP8 Q/DQ model with every activation (or every weight) pair's scale times
    ``factor``: headroom above the calibrated range."""
    import onnx
    from onnx import TensorProto, numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    inits = {t.name: t for t in m.graph.initializer}
    done = set()
    for n in m.graph.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(n.input) < 3:
            continue
        if inits.get(n.input[2]) is None or inits[n.input[2]].data_type != TensorProto.FLOAT8E4M3FN:
            continue
        old = numpy_helper.to_array(inits[n.input[1]])
        if (old.ndim > 0) != weights or n.input[1] in done:  # weights per channel, activations not
            continue
        inits[n.input[1]].CopyFrom(
            numpy_helper.from_array((old.astype(np.float64) * factor).astype(old.dtype), n.input[1])
        )
        done.add(n.input[1])
    return m


WEIGHT_FACTORS = (2, 3, 4, 6, 8, 10, 12, 12.44, 13, 16, 24)


def part_headroom(models=MODELS, n_calib: int = N_CALIB, n_eval: int = N_EVAL) -> list:
    """FP8 ranges above the calibrated amax (ModelOpt's rescaling puts E4M3's 448 at 12.44 x amax):
    trtcal's export with its activation ranges (fp8-mse or max) times 1, 4, 12.44, and with its
    weight scales times WEIGHT_FACTORS (every weight's E4M3 SQNR unchanged: a perturbation that
    shows how much a head moves for nothing)."""
    import onnx
    import real_models as rm

    from trtcal.onnx.fp8 import convert_to_fp8

    rows = []
    tmp = tempfile.mkdtemp(prefix="bench_fp8_headroom_")
    for name in models:
        if rm.model_path(name) is None or not rm.images_available():
            print(f"(skipped {name}: {rm.missing_reason(name)})")
            continue
        path = rm.model_path(name)
        ev = rm.inputs(name, n_eval, 1)
        y = _session(path).run(None, ev)[0]
        res = trtcal.calibrate(
            path,
            rm.inputs(name, n_calib, 0),
            method=["fp8-mse", "minmax"],
            batch_size=4,
            progress=False,
            log=lambda s: None,
            checkpoint=None,
            out_qdq=os.path.join(tmp, f"{name}.qdq.onnx"),
            qdq_options={"high_precision": "fp16"},
        )
        q = onnx.load(res.files["qdq.fp8-mse"])
        tables = {
            m: {t: a for t, a in res.amax[m].items() if np.isfinite(a) and a > 0}
            for m in ("fp8-mse", "minmax")
        }
        for m, k in (
            ("fp8-mse", 1),
            ("fp8-mse", 4),
            ("minmax", 1),
            ("minmax", 4),
            ("minmax", 12.44),
        ):
            f8 = convert_to_fp8(q, {t: a * k for t, a in tables[m].items()})
            rows.append(
                {
                    "model": name,
                    "variant": f"activations {m} x {k}",
                    **heads(name, y, _session(f8).run(None, ev)[0]),
                }
            )
        base = convert_to_fp8(q, tables["fp8-mse"])
        for k in WEIGHT_FACTORS:
            rows.append(
                {
                    "model": name,
                    "variant": f"fp8-mse; weight scales x {k}",
                    **heads(name, y, _session(_scaled_pairs(base, k, True)).run(None, ev)[0]),
                }
            )
        print(f"  {name}: done", flush=True)
    print(
        f"\n## FP8 range headroom on trtcal's export ({n_calib} calibration, {n_eval} held-out "
        "crops)\n"
    )
    _print_tables(rows, models)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=["all", "search", "accuracy", "headroom"], default="all")
    ap.add_argument("--hists", help="histograms written by --save-hists (no models needed)")
    ap.add_argument("--save-hists", help="write the real models' histograms here and stop")
    ap.add_argument(
        "--cpu-methods", default="mse,kl", help="searches timed on the CPU too (comma-separated)"
    )
    ap.add_argument(
        "--no-mixed", action="store_true", help="skip the per-layer choice (slow on the CPU)"
    )
    ap.add_argument(
        "--models", default=",".join(MODELS), help="accuracy: real models (comma-separated)"
    )
    ap.add_argument(
        "--calib", type=int, default=N_CALIB, help="accuracy: calibration crops (seed 0)"
    )
    ap.add_argument("--eval", type=int, default=N_EVAL, help="accuracy: held-out crops (seed 1)")
    ap.add_argument(
        "--fp8-methods",
        default="fp8-mse,minmax,fp8-kl",
        help="accuracy: trtcal calibrate --quant-dtype fp8 --method values (comma-separated)",
    )
    a = ap.parse_args()
    if a.save_hists:
        save_hists(a.save_hists)
        return
    print(f"trtcal FP8 benchmark; CUDA build: {trtcal.cuda_available()}")
    if a.part in ("all", "search"):
        part_search(a.hists, tuple(a.cpu_methods.split(",")))
    if a.part == "headroom":
        part_headroom(tuple(a.models.split(",")), a.calib, a.eval)
    if a.part in ("all", "accuracy"):
        part_accuracy(
            tuple(a.models.split(",")),
            a.calib,
            a.eval,
            mixed=not a.no_mixed,
            fp8_methods=tuple(a.fp8_methods.split(",")),
        )


if __name__ == "__main__":
    main()
