"""Q/DQ placement and precision remainder on real trained models (issue 17).

For each real model of tests/real_models.py: calibrates max ranges on ONNX Runtime FP32
activations (16 crops, seed 0), writes trtcal's Q/DQ model with an FP32 and an FP16 remainder and
ModelOpt's (modelopt.onnx.quantization.quantize, int8, max calibration on the same data, FP32
remainder), and prints

* Q/DQ per op type: the number of inputs of each op type fed by a DequantizeLinear (weights
  included), for trtcal and ModelOpt;
* accuracy vs the FP32 model on 16 held-out crops (seed 1), per output head;
* model size.

Run:  PYTHONPATH=python python benchmarks/bench_placement.py [--models yolov8n-nudenet,ppocr-det]
      [--no-modelopt] [--calib 16] [--eval 16]
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import real_models  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

import trtcal  # noqa: E402
from trtcal.onnx import quantize  # noqa: E402


def run(model, feeds, reduce=None, basic=False):
    """Outputs of ``model`` over ``feeds`` in batches of 4 (concatenated, or ``reduce``d per batch).
    ``basic``: ONNX Runtime's basic graph optimizations only. FP16-remainder models need it: ORT's
    CPU Q/DQ fusions (QLinearConv, QLinearConcat, ...) accept float32 scales only, so with its
    default level it refuses them; with basic it runs every Q/DQ node as QuantizeLinear /
    DequantizeLinear with float16 scales and the rest in float16."""
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if basic:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    res = []
    n = len(next(iter(feeds.values())))
    for i in range(0, n, 4):  # small batches: bounded memory
        out = sess.run(None, {k: v[i : i + 4] for k, v in feeds.items()})
        res.append([reduce(o) for o in out] if reduce else out)
    if reduce:
        return {k: max(r[j] for r in res) for j, k in enumerate(names)}
    return {k: np.concatenate([r[j] for r in res]) for j, k in enumerate(names)}


def calibrate(model, feeds):
    """max ranges of every float activation (graph inputs and node outputs) on ORT FP32."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    inferred = onnx.shape_inference.infer_shapes(probe)
    types = {
        vi.name: vi.type.tensor_type.elem_type
        for vi in list(inferred.graph.value_info) + list(inferred.graph.output)
    }
    have = {o.name for o in probe.graph.output}
    for n in probe.graph.node:
        for o in n.output:
            if (
                o
                and o not in have
                and types.get(o) == TensorProto.FLOAT
                and n.op_type != "Constant"
            ):
                probe.graph.output.append(helper.make_tensor_value_info(o, TensorProto.FLOAT, None))

    def amax(v):
        return float(np.abs(v).max()) if v.dtype == np.float32 and v.size else -1.0

    acts = run(probe, feeds, reduce=amax)
    acts.update({k: amax(v) for k, v in feeds.items()})
    return trtcal.CalibrationTable({k: a for k, a in acts.items() if a > 0}, method="max")


def qdq_counts(model):
    """{consumer op type: number of its inputs fed by a DequantizeLinear}."""
    cons = collections.defaultdict(list)
    for n in model.graph.node:
        for i in n.input:
            cons[i].append(n)
    c = collections.Counter()
    for n in model.graph.node:
        if n.op_type == "DequantizeLinear":
            for k in cons[n.output[0]]:
                c[k.op_type] += 1
    return dict(c)


def modelopt_model(path, feeds, workdir):
    from modelopt.onnx.quantization import quantize as mo_quantize

    src = os.path.join(workdir, "model.onnx")
    shutil.copy(path, src)
    out = os.path.join(workdir, "model.modelopt.onnx")
    mo_quantize(
        src,
        quantize_mode="int8",
        calibration_data=feeds,
        calibration_method="max",
        output_path=out,
        high_precision_dtype="fp32",
        calibration_eps=["cpu"],
        log_level="ERROR",
    )
    return onnx.load(out)


def _rel_rms(a, b):
    return float(np.linalg.norm((a - b).ravel()) / max(np.linalg.norm(b.ravel()), 1e-12))


def accuracy(name, ref, got):
    """Per-head agreement of ``got`` with the FP32 outputs ``ref`` (first output of the model)."""
    r, g = next(iter(ref.values())).astype(np.float64), next(iter(got.values())).astype(np.float64)
    if name == "yolov8n-nudenet":
        boxes_r, boxes_g = r[:, :4], g[:, :4]
        cls_r, cls_g = r[:, 4:], g[:, 4:]
        keep_r = (
            cls_r.max(1) > 0.25
        )  # detections of FP32 (before NMS): anchors whose best score > 0.25
        kept = keep_r & (cls_g.max(1) > 0.25) & (cls_r.argmax(1) == cls_g.argmax(1))
        return {
            "boxes rel-rms": _rel_rms(boxes_g, boxes_r),
            "boxes max|err| px": float(np.abs(boxes_g - boxes_r).max()),
            "scores max|err|": float(np.abs(cls_g - cls_r).max()),
            "detections kept": f"{int(kept.sum())}/{int(keep_r.sum())}",
        }
    if name == "ppocr-det":
        mr, mg = r > 0.3, g > 0.3
        iou = float((mr & mg).sum() / max((mr | mg).sum(), 1))
        return {
            "prob-map rel-rms": _rel_rms(g, r),
            "prob max|err|": float(np.abs(g - r).max()),
            "text-mask IoU": iou,
        }
    top_r, top_g = r.argmax(-1), g.argmax(-1)
    return {"prob rel-rms": _rel_rms(g, r), "top-1 agreement": float((top_r == top_g).mean())}


# reductions that onnx.reference computes in the tensor's own type (numpy mean of a bfloat16 array
# accumulates in bfloat16: 50% error on PP-OCR cls' first SE pool); TensorRT accumulates in FP32,
# so the BF16 rows keep them FP32 to measure BF16 rounding, not the runner's accumulation
_REDUCTIONS = ("GlobalAveragePool", "AveragePool", "ReduceMean", "ReduceSum")


def bf16_row(name, m, table, held, n):
    """INT8 + BF16 remainder in onnx.reference on the first ``n`` held-out crops (reductions kept
    FP32, see _REDUCTIONS), and in the label the error of a pure BF16 cast of the float model."""
    from onnx import version_converter
    from onnx.reference import ReferenceEvaluator

    from trtcal.onnx import precision

    m = onnx.ModelProto.FromString(m.SerializeToString())
    for i, node in enumerate(m.graph.node):
        node.name = node.name or f"node{i}"
    keep = tuple(node.name for node in m.graph.node if node.op_type in _REDUCTIONS)
    x = {k: v[:n] for k, v in held.items()}
    ref = run(m, x)
    q = quantize(m, table, missing="skip", opset=22)
    q, _ = precision.cast_remainder(q, "bf16", table=table, keep_fp32=keep)
    got = dict(zip([o.name for o in q.graph.output], ReferenceEvaluator(q).run(None, x)))
    m22 = version_converter.convert_version(m, 22)
    pure, _ = precision.cast_remainder(m22, "bf16", keep_fp32=keep)
    pure_out = ReferenceEvaluator(pure).run(None, x)[0]
    r0 = next(iter(ref.values()))
    label = (
        f"trtcal INT8 + BF16 remainder (onnx.reference, {n} crops, reductions FP32; pure BF16 "
        f"cast: rel-rms {_rel_rms(pure_out.astype(np.float64), r0.astype(np.float64)):.3g})"
    )
    return (label, qdq_counts(q), len(q.SerializeToString()), accuracy(name, ref, got))


def fmt(d):
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in d.items())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="yolov8n-nudenet,ppocr-det,ppocr-cls,ppocr-rec")
    ap.add_argument("--calib", type=int, default=16)
    ap.add_argument("--eval", type=int, default=16)
    ap.add_argument("--no-modelopt", action="store_true")
    ap.add_argument(
        "--bf16-reference",
        type=int,
        default=0,
        metavar="N",
        help="also run the INT8 + BF16-remainder model (and a pure BF16 cast) in onnx.reference "
        "on N held-out crops (ONNX Runtime's CPU has no bfloat16 QuantizeLinear; slow)",
    )
    args = ap.parse_args(argv)
    for name in args.models.split(","):
        path = real_models.model_path(name)
        if path is None:
            print(f"## {name}: {real_models.missing_reason(name)}")
            continue
        m = onnx.load(path)
        calib, held = (
            real_models.inputs(name, args.calib, 0),
            real_models.inputs(name, args.eval, 1),
        )
        t0 = time.time()
        table = calibrate(m, calib)
        ref = run(m, held)
        print(
            f"## {name}  ({os.path.basename(path)}, {os.path.getsize(path) / 1e6:.2f} MB FP32; "
            f"calibration "
            f"{args.calib} crops, evaluation {args.eval} held-out crops)"
        )
        rows = []
        for hp in ("fp32", "fp16"):
            q, rep = quantize(m, table, missing="skip", high_precision=hp, return_report=True)
            got = run(q, held, basic=hp != "fp32")
            rows.append(
                (
                    f"trtcal INT8 + {hp.upper()} remainder",
                    qdq_counts(q),
                    len(q.SerializeToString()),
                    accuracy(name, ref, got),
                )
            )
            if hp == "fp16" and rep.precision is not None:
                kept = rep.precision.kept_fp32
                print(
                    f"   fp16 remainder: {rep.precision.low_nodes} nodes fp16, "
                    f"{len(rep.precision.fp32_nodes)} "
                    f"fp32, {rep.precision.casts} casts; tensors kept fp32 by range: {len(kept)}"
                    + (
                        f" ({', '.join(list(kept)[:4])}{'...' if len(kept) > 4 else ''})"
                        if kept
                        else ""
                    )
                )
        if args.bf16_reference:
            rows.append(bf16_row(name, m, table, held, args.bf16_reference))
        if not args.no_modelopt:
            with tempfile.TemporaryDirectory() as d:
                try:
                    mo = modelopt_model(path, calib, d)
                    rows.append(
                        (
                            "ModelOpt INT8 + FP32 remainder",
                            qdq_counts(mo),
                            len(mo.SerializeToString()),
                            accuracy(name, ref, run(mo, held)),
                        )
                    )
                except Exception as exc:  # ModelOpt optional: say why
                    print(
                        f"   ModelOpt failed: {type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:200]}"
                    )
        ops = sorted({k for _, c, _, _ in rows for k in c})
        print("| model | " + " | ".join(ops) + " | size MB | accuracy vs FP32 |")
        print("|---|" + "---|" * (len(ops) + 2))
        for label, c, size, acc in rows:
            print(
                f"| {label} | "
                + " | ".join(str(c.get(k, 0)) for k in ops)
                + f" | {size / 1e6:.2f} | {fmt(acc)} |"
            )
        print(f"   ({time.time() - t0:.0f} s)")
        print()


if __name__ == "__main__":
    main()
