"""Arguments that `trtcal compare` and `trtcal analyze` share."""

from __future__ import annotations

import argparse


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    """MODEL, --data, --eval-data, --batch-size, --max-samples, --eval-samples."""
    p.add_argument("model", help="ONNX model")
    p.add_argument("--data", required=True, help="calibration data: image folder, .npy/.npz file or folder")
    p.add_argument("--eval-data", help="held-out evaluation data (default: the calibration data)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--max-samples", type=int, default=None, help="calibration samples to use")
    p.add_argument("--eval-samples", type=int, default=None, help="evaluation samples to use")


def add_evaluation_arguments(p: argparse.ArgumentParser) -> None:
    """--runner, --evaluate, --input-name, --preprocess, --json, -q/--quiet."""
    p.add_argument("--runner", default="auto", choices=["auto", "onnxruntime", "tensorrt"],
                   help="runner of the statistics pass")
    p.add_argument("--evaluate", default="auto", choices=["auto", "onnxruntime", "tensorrt"],
                   help="where the Q/DQ models run (auto: TensorRT when its module is present, else ONNX Runtime; "
                        "the FP32 reference always runs in ONNX Runtime)")
    p.add_argument("--input-name", help="model input the images feed (models with several inputs)")
    p.add_argument("--preprocess", help="image preprocessing as JSON or a JSON file (see trtcal calibrate)")
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of the table")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no messages")
