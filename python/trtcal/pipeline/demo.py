"""A small ONNX CNN and synthetic calibration data that trtcal builds itself, so that
``trtcal calibrate`` with no model shows the whole flow on the CPU in seconds."""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Optional, Tuple

import numpy as np

from ..core._files import atomic_write, save_onnx
from .data import Preprocess

INPUT = "images"
SIZE = 32
DEMO_PREPROCESS = Preprocess(
    resize=36, crop=SIZE, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)
)


def build_model(path: Optional[str] = None, seed: int = 0, size: int = SIZE, width: int = 16):
    """conv-relu, strided conv-relu, a residual block, global pooling and a classifier.

    Input ``images``: float32 [N, 3, size, size] (N dynamic). Returns the ModelProto (and saves it
    to ``path`` when given).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)

    def w(name, *shape):
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
        return numpy_helper.from_array(
            (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32), name
        )

    def b(name, n):
        return numpy_helper.from_array((rng.standard_normal(n) * 0.05).astype(np.float32), name)

    c1, c2 = width // 2, width
    inits = [
        w("conv1.w", c1, 3, 3, 3),
        b("conv1.b", c1),
        w("conv2.w", c2, c1, 3, 3),
        b("conv2.b", c2),
        w("block.conv_a.w", c2, c2, 3, 3),
        b("block.conv_a.b", c2),
        w("block.conv_b.w", c2, c2, 3, 3),
        b("block.conv_b.b", c2),
        w("fc.w", 10, c2),
        b("fc.b", 10),
    ]
    nodes = [
        helper.make_node(
            "Conv", [INPUT, "conv1.w", "conv1.b"], ["conv1"], name="conv1", pads=[1, 1, 1, 1]
        ),
        helper.make_node("Relu", ["conv1"], ["relu1"], name="relu1"),
        helper.make_node(
            "Conv",
            ["relu1", "conv2.w", "conv2.b"],
            ["conv2"],
            name="conv2",
            pads=[1, 1, 1, 1],
            strides=[2, 2],
        ),
        helper.make_node("Relu", ["conv2"], ["relu2"], name="relu2"),
        helper.make_node(
            "Conv",
            ["relu2", "block.conv_a.w", "block.conv_a.b"],
            ["block/conv_a"],
            name="block/conv_a",
            pads=[1, 1, 1, 1],
        ),
        helper.make_node("Relu", ["block/conv_a"], ["block/relu_a"], name="block/relu_a"),
        helper.make_node(
            "Conv",
            ["block/relu_a", "block.conv_b.w", "block.conv_b.b"],
            ["block/conv_b"],
            name="block/conv_b",
            pads=[1, 1, 1, 1],
        ),
        helper.make_node("Add", ["block/conv_b", "relu2"], ["block/add"], name="block/add"),
        helper.make_node("Relu", ["block/add"], ["block/relu"], name="block/relu"),
        helper.make_node("GlobalAveragePool", ["block/relu"], ["pool"], name="pool"),
        helper.make_node("Flatten", ["pool"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "trtcal_demo_cnn",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        initializer=inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="trtcal-demo"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    if path:
        save_onnx(model, path)
    return model


def synthetic_image(rng: np.random.Generator, size: int = 48) -> np.ndarray:
    """An RGB uint8 picture: a colour gradient, a few bright rectangles and noise."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = np.stack([xx, yy, 1 - xx * yy], axis=-1) * rng.uniform(60, 200, size=3)
    for _ in range(rng.integers(1, 4)):
        y0, x0 = rng.integers(0, size - 8, size=2)
        h, w = rng.integers(4, size // 2, size=2)
        base[y0 : y0 + h, x0 : x0 + w] = rng.uniform(0, 255, size=3)
    base += rng.standard_t(3, size=base.shape) * 8  # heavy-tailed noise
    return np.clip(base, 0, 255).astype(np.uint8)


def write_images(folder: str, n: int = 96, seed: int = 1, size: int = 48) -> str:
    """n synthetic PNG images (sizes vary a little, so preprocessing matters) in ``folder``."""
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        s = int(size + rng.integers(-6, 7))
        img = Image.fromarray(synthetic_image(rng, s))
        atomic_write(os.path.join(folder, f"img_{i:04d}.png"), functools.partial(_save_png, img))
    return folder


def write_arrays(path: str, n: int = 96, seed: int = 1, size: int = SIZE) -> str:
    """The same kind of data already preprocessed, as one .npy of shape (n, 3, size, size)."""
    rng = np.random.default_rng(seed)
    x = (
        np.stack([synthetic_image(rng, size).transpose(2, 0, 1) for _ in range(n)]).astype(
            np.float32
        )
        / 255.0
    )

    atomic_write(path, lambda f: np.save(f, x))
    return path


def build(out_dir: str, n_images: int = 96) -> Tuple[str, str, Preprocess]:
    """Model and data under ``out_dir`` (created). Returns (model path, data path,
    preprocessing)."""
    os.makedirs(out_dir, exist_ok=True)
    model_path = os.path.join(out_dir, "demo_cnn.onnx")
    build_model(model_path)
    try:
        import PIL  # noqa: F401

        data = write_images(os.path.join(out_dir, "images"), n_images)
        return model_path, data, DEMO_PREPROCESS
    except ImportError:  # no Pillow: the demo still runs, on arrays
        data = write_arrays(os.path.join(out_dir, "calib.npy"), n_images)
        return model_path, data, DEMO_PREPROCESS


DEMO_OUT = "trtcal-demo-out"


def setup(cfg: Any, paths: Any, out_dir: Optional[str]) -> Tuple[str, Any, Any]:
    """``trtcal calibrate`` with no model: builds the demo in ``out_dir`` (default
    ./trtcal-demo-out) and fills in what the run needs (data, preprocessing, every output path,
    a checkpoint). Returns (model path, config, output paths)."""
    if cfg.data is not None:
        raise ValueError("trtcal: calibration data was given without a model")
    out_dir = out_dir or DEMO_OUT
    model, data, pre = build(out_dir)
    cfg = cfg.replace(
        data=data,
        preprocess=cfg.preprocess or pre,
        batch_size=cfg.batch_size or 16,
        checkpoint=cfg.checkpoint or os.path.join(out_dir, "checkpoint.npz"),
    )
    paths = dataclasses.replace(
        paths,
        table=paths.table or os.path.join(out_dir, "calibration.json"),
        cache=paths.cache or os.path.join(out_dir, "calibration.cache"),
        qdq=paths.qdq or os.path.join(out_dir, "demo_cnn.qdq.onnx"),
        report=paths.report or os.path.join(out_dir, "report.md"),
    )
    cfg.say()(
        f"trtcal: demo: calibrating a small CNN built in {out_dir} on {os.path.basename(data)}"
    )
    return model, cfg, paths


def _save_png(img: Any, f: Any) -> None:
    img.save(f, format="PNG")
