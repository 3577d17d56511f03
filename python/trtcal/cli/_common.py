"""Arguments that `trtcal compare`, `trtcal analyze` and `trtcal calibrate` share."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

from ..evaluation.measure import check_counts
from ..evaluation.tasks import TASKS
from ..pipeline.config import CalibrationConfig


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    """MODEL, --data, --eval-data, --batch-size, --max-samples, --eval-samples."""
    p.add_argument("model", help="ONNX model")
    p.add_argument(
        "--data", required=True, help="calibration data: image folder, .npy/.npz file or folder"
    )
    p.add_argument("--eval-data", help="held-out evaluation data (default: the calibration data)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--max-samples", type=int, default=None, help="calibration samples to use")
    p.add_argument("--eval-samples", type=int, default=None, help="evaluation samples to use")


def add_evaluation_arguments(p: argparse.ArgumentParser) -> None:
    """--runner, --evaluate, --input-name, --preprocess, --json, -q/--quiet."""
    p.add_argument(
        "--runner",
        default="auto",
        choices=["auto", "onnxruntime", "tensorrt"],
        help="runner of the statistics pass",
    )
    p.add_argument(
        "--evaluate",
        default="auto",
        choices=["auto", "onnxruntime", "tensorrt"],
        help="where the Q/DQ models run (auto: TensorRT when its module is present, else ONNX "
        "Runtime; "
        "the FP32 reference always runs in ONNX Runtime)",
    )
    p.add_argument("--input-name", help="model input the images feed (models with several inputs)")
    p.add_argument(
        "--preprocess", help="image preprocessing as JSON or a JSON file (see trtcal calibrate)"
    )
    p.add_argument(
        "--json", action="store_true", help="print the result as JSON instead of the table"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no messages")


def add_task_arguments(p: argparse.ArgumentParser) -> None:
    """--task, --output-slices, --score-threshold: what the outputs hold, which sets the metric."""

    p.add_argument(
        "--task",
        default="auto",
        choices=list(TASKS),
        help="what the model is for, which sets the metric methods are judged by: detect "
        "(detections "
        "kept), classify (top-1 agreement), segment (mask IoU), generic (worst output SQNR); auto "
        "(default) detects [N,C] classifiers, [N,4+C,A] and [N,A,5+C] detectors and [N,1,H,W] "
        "probability maps",
    )
    p.add_argument(
        "--output-slices",
        default=None,
        metavar="SPEC",
        help="declare the heads: OUTPUT:AXIS:START-STOP=KIND,... (STOP may be empty) or "
        "OUTPUT=KIND[@THR], "
        "several outputs separated by ';'; kinds boxes, scores, objectness, logits, probs, mask, "
        "values; e.g. 'output0:1:0-4=boxes,4-=scores' or 'maps=mask@0.3'",
    )
    p.add_argument(
        "--score-threshold",
        type=float,
        default=None,
        help="detectors: the score a detection must reach to count (default 0.25)",
    )


def add_quant_arguments(p: argparse.ArgumentParser) -> None:
    """--quant-dtype: the type of the Q/DQ models (CalibrationConfig.quant_dtype)."""
    p.add_argument(
        "--quant-dtype",
        default="int8",
        choices=["int8", "fp8"],
        help="fp8: E4M3 ranges and FP8 Q/DQ models (opset 19) for Hopper/Blackwell; "
        "layers TensorRT cannot run in FP8 (depthwise convolutions, ...) stay INT8",
    )


def say_for(args: argparse.Namespace) -> Callable[[str], None]:
    """Where a command's messages go: stderr, or nowhere with -q/--quiet."""
    if getattr(args, "quiet", False):
        return lambda s: None
    return lambda s: print(s, file=sys.stderr)


# the CLI flags (argparse dests) that are CalibrationConfig fields of the same name and meaning
_SHARED = (
    "data",
    "eval_data",
    "max_samples",
    "eval_samples",
    "batch_size",
    "input_name",
    "skip_bad",
    "bins",
    "runner",
    "evaluate",
    "method",
    "flavor",
    "quant_dtype",
    "high_precision",
    "tensorrt_version",
    "task",
    "output_slices",
    "score_threshold",
    "checkpoint_every",
    "resume",
    "distributed",
    "shard",
)


def config_from_args(args: argparse.Namespace, **fields: Any) -> CalibrationConfig:
    """The CalibrationConfig of a command's flags: every shared flag the command has, then
    ``fields`` (what the command derives itself: preprocessing, log, checkpoint, ...). A count
    below 1 is an error naming its flag."""
    check_counts(*(getattr(args, k, None) for k in ("batch_size", "max_samples", "eval_samples")))
    given = {k: getattr(args, k) for k in _SHARED if getattr(args, k, None) is not None}
    if getattr(args, "tensors", None):
        given["tensors"] = args.tensors
    if getattr(args, "op_types", None):
        given["op_types"] = (
            args.op_types.split(",") if isinstance(args.op_types, str) else args.op_types
        )
    if getattr(args, "max_memory", None) is not None:
        given["max_memory"] = args.max_memory * 1e9
    if getattr(args, "checkpoint_seconds", None) is not None:
        given["checkpoint_seconds"] = (
            args.checkpoint_seconds if args.checkpoint_seconds > 0 else None
        )
    if "quiet" in args:
        given["progress"] = not args.quiet
    given.update(fields)
    return CalibrationConfig(**given)
