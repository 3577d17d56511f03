"""`trtcal calibrate`: calibrate an ONNX model over a dataset (streaming, resumable).

With no model, calibrates a small CNN on synthetic images that trtcal builds itself."""

from __future__ import annotations

import argparse
import json
import os

from ..api.calibrate import calibrate
from ..pipeline.data import Preprocess, parse_preprocess
from ._common import add_quant_arguments, add_task_arguments, config_from_args, say_for


def _floats(text: str):
    return tuple(float(v) for v in text.split(","))


def _size(text: str):
    parts = [int(v) for v in text.lower().replace("x", ",").split(",")]
    return parts[0] if len(parts) == 1 else tuple(parts)


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser(
        "calibrate",
        help="calibrate a model over a dataset (no model: a built-in demo)",
        description="Runs MODEL over the data once, collects a histogram per activation (constant "
        "memory), "
        "and writes the ranges TensorRT uses: a calibration cache (TensorRT <= 10), a Q/DQ ONNX "
        "model "
        "(10/11), a JSON table and a report. With no MODEL, calibrates a small CNN on synthetic "
        "images built in --out-dir (default ./trtcal-demo-out).",
    )
    p.add_argument("model", nargs="?", help="ONNX model (omit for the demo)")
    p.add_argument(
        "--data",
        help="image folder or file, .npy/.npz file or folder of them, or (several model inputs) "
        "a folder with one subfolder per input, files paired by name",
    )
    p.add_argument(
        "--method",
        default=None,
        choices=["auto", "entropy", "percentile", "minmax", "mse", "all", "fp8-mse", "fp8-kl"],
        help="threshold method (default auto: every method's Q/DQ model is measured on held-out "
        "samples "
        "by the task metric, plus up to 8 per-tensor refinements, and the best is written; 'all' "
        "for the demo; fp8-mse with --quant-dtype fp8); all come from one pass",
    )
    p.add_argument(
        "--flavor",
        default=None,
        choices=["pytorch_quantization", "tensorrt", "onnxruntime"],
        help="range-search flavour, applied to the methods that have it (entropy: "
        "pytorch_quantization "
        "(default), tensorrt, onnxruntime; percentile: pytorch_quantization (default), "
        "onnxruntime); "
        "onnxruntime collects signed histograms",
    )
    p.add_argument(
        "--percentile",
        type=float,
        default=None,
        help="percentile for --method percentile/all (default 99.99; 99.999 with --flavor "
        "onnxruntime)",
    )
    add_quant_arguments(p)  # calibrate: fp8 defaults to --method fp8-mse
    add_task_arguments(p)
    p.add_argument(
        "--eval-data",
        default=None,
        metavar="PATH",
        help="held-out samples (same forms as --data): --method auto judges on them (default: the "
        "last "
        "--eval-samples calibration samples, left out of the statistics), and with --report and "
        "--out-qdq the report shows the Q/DQ model's accuracy against FP32 per output head",
    )
    p.add_argument(
        "--eval-samples",
        type=int,
        default=None,
        help="--method auto: held-out samples (default 16)",
    )
    p.add_argument(
        "--auto-refinements",
        type=int,
        default=None,
        help=(
            "--method auto: per-tensor refinements tried after the methods (default 8; 0 for none)"
        ),
    )
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument(
        "--max-memory",
        type=float,
        default=1.5,
        metavar="GB",
        help="ONNX Runtime returns every activation of a run at once: batches are split into "
        "sub-batches whose activations fit this many GB (default 1.5; 0: no limit). "
        "The table does not depend on it",
    )
    p.add_argument(
        "--bins",
        type=int,
        default=2048,
        help="histogram bins per tensor (default 2048, as TensorRT's)",
    )
    p.add_argument("--max-samples", type=int, default=None)
    _add_output_arguments(p)
    p.add_argument("--runner", default="auto", choices=["auto", "onnxruntime", "tensorrt"])
    p.add_argument(
        "--tensors",
        action="append",
        default=None,
        metavar="PATTERN",
        help="calibrate only tensors whose names match (glob, or re:REGEX); repeatable",
    )
    p.add_argument(
        "--op-types",
        default=None,
        help="calibrate only the activations these op types read and write (comma-separated, e.g. "
        "Conv,Gemm)",
    )
    p.add_argument(
        "--input-name",
        help="model input that a folder of images or arrays feeds, when the model has "
        "several (a folder per input needs none)",
    )
    _add_preprocess_arguments(p)
    _add_distributed_arguments(p)
    p.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress bar and no messages on stderr but errors; the TensorRT commands to run "
        "next "
        "still go to stdout",
    )
    p.set_defaults(func=run)


def _add_output_arguments(p: argparse.ArgumentParser) -> None:
    """What calibrate writes (cache, Q/DQ model, table, report) and its checkpoints."""
    p.add_argument("--out-cache", help="TensorRT calibration cache (TensorRT <= 10)")
    p.add_argument(
        "--out-qdq", help="ONNX model with QuantizeLinear/DequantizeLinear (TensorRT 10/11)"
    )
    p.add_argument(
        "--high-precision",
        choices=["fp16", "bf16", "fp32"],
        default="fp16",
        help="--out-qdq: type of everything not quantized (default fp16; TensorRT 11 builds the "
        "graph's "
        "types, so an fp32 remainder runs in FP32); tensors whose range fp16 cannot hold stay fp32",
    )
    p.add_argument(
        "--placement-report",
        help="--out-qdq: text file listing every tensor quantized and why, and "
        "every quantizable one left in float and why",
    )
    p.add_argument(
        "--head-sigmoid-int8",
        action="store_true",
        help="--out-qdq: quantize a detector head's output Sigmoid too (by default it stays in "
        "high precision: class scores are what decide detections)",
    )
    p.add_argument("--out-table", help="JSON table of thresholds with provenance")
    p.add_argument(
        "--report",
        help="report file: .md (Markdown + one SVG of the histograms) or .html (self-contained)",
    )
    p.add_argument("--out-dir", help="demo only: where the demo model, data and outputs go")
    p.add_argument(
        "--checkpoint",
        help="checkpoint file (default: next to the first output, <model>.trtcal-ckpt.npz)",
    )
    p.add_argument(
        "--checkpoint-every", type=int, default=50, help="batches between checkpoints (default 50)"
    )
    p.add_argument(
        "--checkpoint-seconds",
        type=float,
        default=300.0,
        help="seconds between checkpoints, whichever of this and --checkpoint-every comes first "
        "(default 300; 0 disables the time-based checkpoints)",
    )
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    p.add_argument(
        "--skip-bad", action="store_true", help="skip (and report) bad samples instead of stopping"
    )
    p.add_argument(
        "--tensorrt-version",
        help="X.Y of the TensorRT that will read the outputs (default: the installed "
        "tensorrt module's, else 10.16)",
    )


def _add_preprocess_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("image preprocessing (printed and saved in the table's provenance)")
    g.add_argument(
        "--preprocess", help='all of it as JSON or a JSON file: {"resize": 256, "crop": 224, ...}'
    )
    g.add_argument("--resize", type=_size, help="N (shorter side) or HxW")
    g.add_argument("--resize-mode", choices=["shorter", "exact", "letterbox"])
    g.add_argument("--crop", type=_size, help="center crop N or HxW")
    g.add_argument("--scale", type=float, help="pixel multiplier (default 1/255)")
    g.add_argument("--mean", type=_floats, help="per-channel mean, e.g. 0.485,0.456,0.406")
    g.add_argument("--std", type=_floats, help="per-channel std, e.g. 0.229,0.224,0.225")
    g.add_argument("--bgr", action="store_true", help="BGR channel order (default RGB)")
    g.add_argument("--nhwc", action="store_true", help="NHWC layout (default NCHW)")
    g.add_argument("--interpolation", choices=["bilinear", "bicubic", "nearest", "lanczos"])


def _add_distributed_arguments(p: argparse.ArgumentParser) -> None:
    d = p.add_argument_group("many GPUs / hosts (exact: the table equals a one-process run's)")
    d.add_argument(
        "--distributed",
        action="store_true",
        help="one rank of a torch.distributed job: launch with torchrun --nproc-per-node N -m "
        "trtcal "
        "calibrate ... --distributed (multi-node: torchrun's --nnodes/--rdzv-endpoint)",
    )
    d.add_argument(
        "--dist-backend",
        default="auto",
        choices=["auto", "nccl", "gloo"],
        help="process-group backend (auto: NCCL when every process of a node has a GPU of its own, "
        "else Gloo)",
    )
    d.add_argument(
        "--dist-timeout",
        type=float,
        default=240.0,
        help="minutes a rank waits for the others (a failed rank reports when the others finish)",
    )
    d.add_argument(
        "--shard",
        type=_shard,
        help="R/N: calibrate only shard R of N, with no process group (separate machines); writes "
        "only "
        "the shard's checkpoint, merged by 'trtcal merge'",
    )


def _shard(text: str):
    try:
        r, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected R/N (e.g. 0/4), got {text!r}") from None
    if not 0 <= r < n:
        raise argparse.ArgumentTypeError(f"shard R/N needs 0 <= R < N, got {text!r}")
    return r, n


def _init_process_group(args: argparse.Namespace) -> bool:
    """Joins the torchrun job (env://) unless a group exists; returns True when it created one."""
    import datetime

    try:
        import torch
        import torch.distributed as dist
    except ImportError:
        raise RuntimeError("--distributed needs PyTorch (pip install torch)") from None
    if dist.is_initialized():
        return False
    missing = [
        v for v in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ
    ]
    if missing:
        raise RuntimeError(
            "--distributed needs a torch.distributed launcher that sets "
            + ", ".join(missing)
            + ": run  torchrun --nproc-per-node N -m trtcal calibrate ... --distributed"
        )
    backend = args.dist_backend
    local = int(os.environ.get("LOCAL_RANK", 0))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", local + 1))
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if backend == "auto":
        # NCCL needs a GPU of its own per process; more processes than GPUs share them over gloo
        backend = "nccl" if gpus and local_world <= gpus else "gloo"
    if backend == "nccl" and local >= gpus:
        raise RuntimeError(
            f"--dist-backend nccl needs one GPU per process: local rank {local} of {local_world} "
            f"with {gpus} GPU(s) visible; run at most {gpus} processes per node, or use "
            "--dist-backend gloo (processes then share the GPUs)"
        )
    kw = {}
    if gpus:
        torch.cuda.set_device(local % gpus)
        if backend == "nccl":
            kw["device_id"] = torch.device("cuda", local)
    dist.init_process_group(backend, timeout=datetime.timedelta(minutes=args.dist_timeout), **kw)
    return True


def _preprocess(args: argparse.Namespace):
    base = parse_preprocess(args.preprocess)
    fields = {}
    for key in ("resize", "resize_mode", "crop", "scale", "mean", "std", "interpolation"):
        v = getattr(args, key)
        if v is not None:
            fields[key] = v
    if args.bgr:
        fields["channel_order"] = "BGR"
    if args.nhwc:
        fields["layout"] = "NHWC"
    if "resize" in fields and "resize_mode" not in fields and not isinstance(fields["resize"], int):
        fields["resize_mode"] = "exact"
    if base is None and not fields:
        return None
    import dataclasses

    return dataclasses.replace(base or Preprocess(), **fields) if fields else base


def run(args: argparse.Namespace) -> int:
    if args.model is None and args.data is not None:
        raise ValueError("--data needs a MODEL")
    if args.model is not None and args.data is None:
        raise ValueError("give the calibration data with --data (or no MODEL for the demo)")
    if (args.distributed or args.shard) and args.model is None:
        raise ValueError(
            "--distributed and --shard need a MODEL and --data (the demo runs in one process)"
        )
    if args.distributed and args.shard:
        raise ValueError("--distributed and --shard exclude each other")
    checkpoint = (
        args.checkpoint
        if args.checkpoint is not None or args.model is None
        else _default_checkpoint(args)
    )
    if args.shard and not checkpoint:
        raise ValueError("--shard needs --checkpoint (the demo has no shards)")
    say = say_for(args)
    method = args.method or (
        "fp8-mse" if args.quant_dtype == "fp8" else "all" if args.model is None else "auto"
    )
    cfg = config_from_args(
        args,
        method=method,
        params=_params(args),
        preprocess=_preprocess(args),
        checkpoint=checkpoint,
        log=say,
    )
    created = _init_process_group(args) if args.distributed else False
    try:
        result = calibrate(
            args.model,
            config=cfg,
            out_cache=args.out_cache,
            out_qdq=args.out_qdq,
            out_table=args.out_table,
            report=args.report,
            out_dir=args.out_dir,
            qdq_options={
                "placement_report": args.placement_report,
                "head_sigmoid_float": not args.head_sigmoid_int8,
            },
        )
    finally:
        if created:
            import torch.distributed as dist

            dist.destroy_process_group()
    if (args.distributed and int(os.environ.get("RANK", 0)) != 0) or args.shard:
        return 0  # rank 0 prints for the job; a shard's result is its checkpoint
    if checkpoint and os.path.exists(checkpoint):
        say(
            f"trtcal: checkpoint kept at {checkpoint}: --resume writes outputs again (another "
            "method, other "
            "files) with no inference pass; delete it when done"
        )
    _report(args, result)
    return 0


def _params(args: argparse.Namespace):
    params = (
        {"percentile": {"percentile": args.percentile}} if args.percentile is not None else None
    )
    if args.auto_refinements is not None:
        if args.auto_refinements < 0:
            raise ValueError(f"--auto-refinements must be >= 0, got {args.auto_refinements}")
        params = dict(params or {}, auto={"refinements": args.auto_refinements})
    return params


def _default_checkpoint(args: argparse.Namespace) -> str:
    """Next to the first output, <model>.trtcal-ckpt.npz; never inside the data folder."""
    first = next(
        (p for p in (args.out_table, args.out_cache, args.out_qdq, args.report) if p), None
    )
    d = os.path.dirname(os.path.abspath(first)) if first else os.getcwd()
    data_dir = os.path.realpath(args.data) if args.data and os.path.isdir(args.data) else None
    if data_dir and (os.path.realpath(d) + os.sep).startswith(data_dir + os.sep):
        d = os.path.dirname(
            data_dir
        )  # never inside the data folder, where it would be read as data
    return os.path.join(d, os.path.splitext(os.path.basename(args.model))[0] + ".trtcal-ckpt.npz")


def _report(args, result) -> None:
    if not (args.out_cache or args.out_qdq or args.out_table or args.report or args.model is None):
        # nothing asked to be written: print the thresholds
        print(json.dumps(result.amax, indent=1))
    elif args.model is None and not args.quiet:
        print(
            f"trtcal: demo done: {result.samples} samples, {len(result.histograms)} tensors; "
            f"outputs in {os.path.abspath(args.out_dir or 'trtcal-demo-out')}"
        )
    if args.quiet and result.next_steps:
        print("\n".join(result.next_steps))
