"""End-to-end calibration.

GPU: a ResNet-50 (torchvision, random weights) at batch 32, FP32 forward alone vs forward with
trtcal statistics on every leaf-module output through PyTorch hooks (device tensors straight to
the CUDA kernels), and, when the tensorrt module is present, an FP32 TensorRT engine with every
layer output marked, execute alone vs execute + statistics.

CPU: ``trtcal.calibrate`` vs ONNX Runtime's static-quantization calibrators (``create_calibrator``,
what ``quantize_static`` runs) on the same ONNX CNN and data, entropy and percentile: wall time
and peak resident memory, each in a fresh subprocess, at N and 4N samples (ONNX Runtime keeps
every batch's activations; trtcal's memory does not grow).

    python benchmarks/bench_calibrate.py [--cpu-only] [--gpu-only] [--samples N]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from typing import Any, Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

CPU_SIZE, CPU_WIDTH = 64, 32  # demo CNN at 64x64 with 32 channels
CPU_BATCH = 16


# ------------------------------------------------------------------------------------------
# GPU: ResNet-50 batch 32
# ------------------------------------------------------------------------------------------
def _bytes_per_forward(model: Any, x: Any, capture: str) -> int:
    """Bytes of the float activations one forward hands to the statistics (a counting pass)."""
    import torch

    import trtcal.torch as ttorch

    seen = {"n": 0}
    probe = ttorch.TorchCollector(model, capture=capture)
    probe._add = lambda base, out: seen.__setitem__(
        "n",
        seen["n"]
        + sum(t.numel() * t.element_size() for t in ttorch._tensors(out) if t.is_floating_point()),
    )
    with torch.no_grad():
        model(x)
    probe.remove()
    return seen["n"]


def gpu_rows(batch: int = 32, bw_tbs: float = 0.0) -> Dict[str, Any]:
    import torch
    import torchvision
    from timing import time_torch

    import trtcal.torch as ttorch

    torch.backends.cudnn.benchmark = True
    model = torchvision.models.resnet50(weights=None).cuda().eval()
    x = torch.randn(batch, 3, 224, 224, device="cuda")
    rows: List[Dict[str, Any]] = []
    labels = {
        "outputs": "every leaf-module output",
        "inputs": "the conv/linear inputs (TensorRT's Q/DQ points)",
    }
    # Interleaved rounds (forward alone, then with each tensor set's hooks), medians over the
    # rounds: a single forward-alone figure taken first drifted by +-10% with the GPU's clocks.
    # The forward alone runs under torch.no_grad, as the hooked forward does.
    stats = {c: None for c in labels}
    info: Dict[str, Any] = {}
    times: Dict[str, List[float]] = {"forward": [], **{c: [] for c in labels}}

    def plain():
        with torch.no_grad():
            model(x)

    for _ in range(5):
        times["forward"].append(time_torch(plain, warmup=5, iters=20, flush_l2=False))
        for capture in labels:
            hooks = ttorch.TorchCollector(model, capture=capture, stats=stats[capture])
            for _ in range(3):
                hooks.forward(x)  # learns the in-place tensors; fixes the ranges
            torch.cuda.synchronize()
            times[capture].append(
                time_torch(lambda: hooks.forward(x), warmup=3, iters=20, flush_l2=False)
            )
            hooks.remove()
            stats[capture] = hooks.stats
            info[capture] = len(hooks.stats.names)
    fwd = statistics.median(times["forward"])
    rows.append(
        {
            "op": f"ResNet-50 FP32 forward, batch {batch} (PyTorch, cuDNN defaults, no_grad)",
            "ms": fwd,
        }
    )
    summary = {}
    for capture in ("inputs", "outputs"):
        ntensors = info[capture]
        nbytes = _bytes_per_forward(model, x, capture)
        floor = nbytes / (bw_tbs * 1e12) * 1e3 if bw_tbs else float("nan")
        with_stats = statistics.median(times[capture])
        rows.append(
            {
                "op": f"forward + trtcal statistics of {labels[capture]}: {ntensors} tensors, "
                f"{nbytes / 1e9:.2f} GB (hooks, device tensors)",
                "ms": with_stats,
            }
        )
        summary[f"torch hooks ({capture}): statistics overhead"] = (
            f"{100 * (with_stats / fwd - 1):.1f}% of the forward time ({ntensors} tensors, "
            f"{nbytes / 1e9:.2f} GB; "
            f"reading them once is {100 * floor / fwd:.0f}% of the forward; target <= 10%; medians "
            "of 5 "
            f"interleaved rounds, per-round overheads "
            + ", ".join(
                f"{100 * (w / f - 1):.0f}%" for w, f in zip(times[capture], times["forward"])
            )
            + ")"
        )
    trt = trt_rows(model, x)
    rows += trt.get("rows", [])
    summary.update(trt.get("summary", {}))
    return {"rows": rows, "summary": summary, "note": trt.get("note", "")}


def trt_rows(model: Any, x: Any) -> Dict[str, Any]:
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        return {"note": "TensorRT rows skipped: no tensorrt module on this machine."}
    import torch
    from timing import time_torch

    from trtcal.pipeline.collect import ActivationStats
    from trtcal.pipeline.runners import TensorRTRunner

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "resnet50.onnx")
        torch.onnx.export(
            model,
            x,
            path,
            input_names=["images"],
            output_names=["logits"],
            opset_version=17,
            dynamo=False,
        )
        runner = TensorRTRunner(path, batch_size=x.shape[0])
    host = x.cpu().numpy()
    runner.run({"images": host})
    stream = torch.cuda.ExternalStream(runner._alloc.stream_handle(runner.stream))
    ctx, h = runner.context, runner._alloc.stream_handle(runner.stream)
    with torch.cuda.stream(stream):
        exec_ms = time_torch(lambda: ctx.execute_async_v3(h), warmup=10, iters=30, flush_l2=False)
        stats = ActivationStats(runner.tensors)
        acts = {n: runner._buffers[n] for n in runner.tensors}

        def step():
            ctx.execute_async_v3(h)
            stats.add(acts, stream=runner.stream)

        step()
        both_ms = time_torch(step, warmup=5, iters=30, flush_l2=False)
    n = len(runner.tensors)
    return {
        "rows": [
            {
                "op": "ResNet-50 FP32 TensorRT engine, every layer output marked: execute",
                "ms": exec_ms,
            },
            {
                "op": f"execute + trtcal statistics of all {n} marked outputs (device buffers)",
                "ms": both_ms,
            },
        ],
        "summary": {
            "tensorrt: statistics overhead": f"{100 * (both_ms / exec_ms - 1):.1f}% of the engine "
            "time "
            f"({n} tensors)"
        },
    }


# ------------------------------------------------------------------------------------------
# CPU: trtcal.calibrate vs ONNX Runtime calibrators, each in a fresh process
# ------------------------------------------------------------------------------------------
_CHILD = r"""
import json, sys, time
sys.path.insert(0, {python!r})
import numpy as np
tool, method, model, data, batch = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4],
int(sys.argv[5])
x = np.load(data, mmap_mode="r")
t0 = time.perf_counter()
if tool == "trtcal":
    import trtcal
    res = trtcal.calibrate(model, data, method=method, batch_size=batch, progress=False, log=lambda
    s: None)
    amax = res.amax.get(method, res.amax.get("minmax"))
    note = "" if method in res.amax else "compute_amax missing: statistics only"
else:
    import onnxruntime.quantization.calibrate as oc
    class Reader(oc.CalibrationDataReader):
        def __init__(self):
            self.i = 0
        def get_next(self):
            if self.i >= len(x):
                return None
            b = {{"images": np.ascontiguousarray(x[self.i:self.i + batch])}}
            self.i += batch
            return b
    import tempfile, os
    d = tempfile.mkdtemp()
    cm = {{"entropy": oc.CalibrationMethod.Entropy,
           "percentile": oc.CalibrationMethod.Percentile}}[method]
    cal = oc.create_calibrator(model, [], augmented_model_path=os.path.join(d, "aug.onnx"),
    calibrate_method=cm,
                               extra_options={{"symmetric": True}})
    cal.collect_data(Reader())
    amax = dict(cal.compute_data().data)
    note = ""
wall = time.perf_counter() - t0
# VmHWM: this process's own peak RSS. (ru_maxrss would not do: Linux carries the parent's
# high-water mark across fork+exec, so a child of a large benchmark process reports the parent's.)
peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024.0
print(json.dumps({{"wall_s": wall, "peak_mb": peak, "tensors": len(amax), "note": note}}))
"""


def _child(tool: str, method: str, model: str, data: str, batch: int) -> Dict[str, Any]:
    code = _CHILD.format(python=os.path.join(ROOT, "python"))
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", ""))
    p = subprocess.run(
        [sys.executable, "-c", code, tool, method, model, data, str(batch)],
        capture_output=True,
        text=True,
        timeout=3600,
        env={k: v for k, v in env.items() if v},
    )
    if p.returncode != 0:
        raise RuntimeError(f"{tool} {method} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def cpu_rows(samples: int = 256, scale: int = 10) -> Dict[str, Any]:
    import numpy as np

    sys.path.insert(0, os.path.join(ROOT, "python"))
    from trtcal.pipeline.demo import build_model, synthetic_image

    rows: List[Dict[str, Any]] = []
    summary: Dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        model = os.path.join(d, "cnn.onnx")
        build_model(model, size=CPU_SIZE, width=CPU_WIDTH)
        rng = np.random.default_rng(0)
        for n in (samples, samples * scale):
            data = os.path.join(d, f"data{n}.npy")
            arr = np.lib.format.open_memmap(
                data, mode="w+", dtype=np.float32, shape=(n, 3, CPU_SIZE, CPU_SIZE)
            )
            for i in range(n):
                arr[i] = synthetic_image(rng, CPU_SIZE).transpose(2, 0, 1) / np.float32(255)
            arr.flush()
            del arr
            for method in ("entropy", "percentile"):
                for tool in ("trtcal", "onnxruntime"):
                    r = _child(tool, method, model, data, CPU_BATCH)
                    label = (
                        "trtcal.calibrate" if tool == "trtcal" else "ONNX Runtime create_calibrator"
                    )
                    rows.append(
                        {
                            "op": f"{label} {method}, {n} samples: wall (peak RSS "
                            f"{r['peak_mb']:.0f} MB)" + (f" [{r['note']}]" if r["note"] else ""),
                            "ms": 1e3 * r["wall_s"],
                            "peak_mb": r["peak_mb"],
                            "peer": tool != "trtcal",
                            "tool": tool,
                            "method": method,
                            "samples": n,
                        }
                    )
        for method in ("entropy", "percentile"):
            for n in (samples, samples * scale):
                t = next(
                    r
                    for r in rows
                    if r["tool"] == "trtcal" and r["method"] == method and r["samples"] == n
                )
                o = next(
                    r
                    for r in rows
                    if r["tool"] != "trtcal" and r["method"] == method and r["samples"] == n
                )
                summary[f"{method}, {n} samples: time ONNX Runtime / trtcal"] = o["ms"] / t["ms"]
                summary[f"{method}, {n} samples: peak MB trtcal vs ONNX Runtime"] = (
                    f"{t['peak_mb']:.0f} vs {o['peak_mb']:.0f}"
                )
            lo, hi = (
                next(
                    r
                    for r in rows
                    if r["tool"] == "trtcal" and r["method"] == method and r["samples"] == k
                )
                for k in (samples, samples * scale)
            )
            summary[f"{method}: trtcal peak memory, {scale}x the samples"] = (
                f"{lo['peak_mb']:.0f} -> {hi['peak_mb']:.0f} MB "
                f"({100 * (hi['peak_mb'] / lo['peak_mb'] - 1):+.1f}%)"
            )
    return {"rows": rows, "summary": summary}


def run(ctx: Dict[str, Any]) -> Dict[str, Any]:
    rows: List[Dict[str, Any]] = []
    summary: Dict[str, Any] = {}
    notes = []
    if not ctx.get("cpu_only"):
        g = gpu_rows(bw_tbs=ctx.get("bandwidth_tbs", 0.0))
        rows += g["rows"]
        summary.update(g["summary"])
        if g.get("note"):
            notes.append(g["note"])
    if not ctx.get("gpu_only"):
        try:
            import onnxruntime  # noqa: F401

            c = cpu_rows(ctx.get("samples", 256))
            rows += c["rows"]
            summary.update(c["summary"])
        except ImportError:
            notes.append("CPU comparison skipped: onnxruntime is not installed.")
    notes.append(
        f"CPU rows: demo CNN {CPU_SIZE}x{CPU_SIZE}, width {CPU_WIDTH}, batch {CPU_BATCH}, all "
        "float "
        "activations, one fresh process per row (peak RSS includes the Python runtime and "
        "libraries)."
    )
    return {
        "title": "End-to-end calibration",
        "rows": rows,
        "summary": summary,
        "note": " ".join(notes),
    }


if __name__ == "__main__":
    import argparse

    sys.path.insert(0, HERE)
    ap = argparse.ArgumentParser()
    ap.add_argument("--cpu-only", action="store_true")
    ap.add_argument("--gpu-only", action="store_true")
    ap.add_argument("--samples", type=int, default=256)
    a = ap.parse_args()
    res = run({"cpu_only": a.cpu_only, "gpu_only": a.gpu_only, "samples": a.samples})
    for r in res["rows"]:
        print(f"{r['op']:<110} {r['ms']:10.1f} ms")
    for k, v in res["summary"].items():
        print(f"{k}: {v:.2f}" if isinstance(v, float) else f"{k}: {v}")
    print(res["note"])
