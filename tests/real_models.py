"""Real trained models and real images for accuracy evidence, from PyPI packages.

The models ship inside packages that are installed with ``pip install --no-deps``, so nothing
is downloaded at run time and none of their code is imported (only their files are read):

* ``yolov8n-nudenet``: ``nudenet`` 3.4 ships ``320n.onnx``, a trained YOLOv8n detector
  (Conv + SiLU as Sigmoid*Mul, C2f Concats, SPPF MaxPools, Resize, a DFL head). Output
  ``[N, 4+18, 2100]``: 4 box coordinates (cx, cy, w, h in pixels) then 18 class scores
  (already sigmoid-ed), anchors last.
* ``ppocr-det``: ``rapidocr-onnxruntime`` 1.4 ships PP-OCRv4's DBNet text detector
  (HardSwish-like MobileNetV3, GlobalAveragePool SE blocks, Resize, ConvTranspose). Output
  ``[N, 1, H, W]``: a text-probability map (a segmentation mask at threshold 0.3).
* ``ppocr-cls``: the same package's text-direction classifier (0 or 180 degrees),
  output ``[N, 2]`` softmax.
* ``ppocr-rec``: PP-OCRv4's SVTR text recogniser (convolutions and transformer blocks:
  MatMul attention, Softmax, LayerNorm as ReduceMean/Pow/Sqrt), output ``[N, T, 6625]``
  per-step softmax over characters.

Images are the photographs and scanned pages that ``scikit-image`` ships in ``skimage/data``
(read with Pillow; skimage itself is not imported), cut into random crops, scales and flips so
that calibration and held-out sets are disjoint crops. Everything is deterministic in ``seed``.

``python tests/real_models.py`` prints which models and images are present.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Dict, List, Optional, Tuple

import numpy as np

# name -> (package, file inside the package, task, input name)
MODELS: Dict[str, Tuple[str, str, str]] = {
    "yolov8n-nudenet": ("nudenet", "320n.onnx", "detect"),
    "ppocr-det": ("rapidocr_onnxruntime", "models/ch_PP-OCRv4_det_infer.onnx", "segment"),
    "ppocr-cls": ("rapidocr_onnxruntime", "models/ch_ppocr_mobile_v2.0_cls_infer.onnx", "classify"),
    "ppocr-rec": ("rapidocr_onnxruntime", "models/ch_PP-OCRv4_rec_infer.onnx", "classify"),
}

PIP_PACKAGES = "nudenet rapidocr-onnxruntime scikit-image"  # pip install --no-deps ...

# photographs (scenes, people, objects) and pages of text
PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "rocket.jpg",
    "hubble_deep_field.jpg",
    "color.png",
    "camera.png",
    "brick.png",
    "grass.png",
    "gravel.png",
    "coins.png",
    "retina.jpg",
    "ihc.png",
    "logo.png",
    "moon.png",
    "clock_motion.png",
)
TEXT = ("page.png", "text.png")


def _package_dir(package: str) -> Optional[str]:
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def model_path(name: str) -> Optional[str]:
    """Path of a real model's ONNX file, or None when its package is not installed."""
    package, rel, _ = MODELS[name]
    root = _package_dir(package)
    if root is None:
        return None
    path = os.path.join(root, rel)
    return path if os.path.isfile(path) else None


def task(name: str) -> str:
    return MODELS[name][2]


def available() -> List[str]:
    """The real models present on this machine."""
    return [n for n in MODELS if model_path(n) is not None]


def missing_reason(name: str) -> str:
    return (
        f"real model {name!r} needs the PyPI packages of tests/real_models.py "
        f"(pip install --no-deps {PIP_PACKAGES})"
    )


def _image_dir() -> Optional[str]:
    root = _package_dir("skimage")
    if root is None:
        return None
    d = os.path.join(root, "data")
    return d if os.path.isdir(d) else None


def images_available() -> bool:
    return _image_dir() is not None


def _load(fname: str) -> np.ndarray:
    from PIL import Image

    d = _image_dir()
    if d is None:
        raise FileNotFoundError(
            "skimage's bundled images are missing (pip install --no-deps scikit-image)"
        )
    with Image.open(os.path.join(d, fname)) as im:
        return np.asarray(im.convert("RGB"))


def _crops(
    files: Tuple[str, ...],
    n: int,
    out_hw: Tuple[int, int],
    seed: int,
    min_frac: float = 0.35,
    rotate180: float = 0.0,
) -> Tuple[np.ndarray, np.ndarray]:
    """n RGB crops resized to out_hw, uint8 [n, H, W, 3]; also the per-crop 180-degree flag."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    pics = [_load(f) for f in files]
    oh, ow = out_hw
    out = np.empty((n, oh, ow, 3), np.uint8)
    flipped = np.zeros(n, bool)
    for i in range(n):
        img = pics[int(rng.integers(len(pics)))]
        h, w = img.shape[:2]
        aspect = ow / oh
        frac = rng.uniform(min_frac, 1.0)
        ch = max(8, int(h * frac))
        cw = max(8, min(w, int(ch * aspect * rng.uniform(0.8, 1.25))))
        ch = min(h, ch)
        y = int(rng.integers(0, h - ch + 1))
        x = int(rng.integers(0, w - cw + 1))
        crop = Image.fromarray(img[y : y + ch, x : x + cw]).resize((ow, oh), Image.BILINEAR)
        a = np.asarray(crop)
        if rng.random() < 0.5 and rotate180 == 0.0:
            a = a[:, ::-1]
        if rng.random() < rotate180:
            a = a[::-1, ::-1]
            flipped[i] = True
        out[i] = a
    return out, flipped


def inputs(name: str, n: int, seed: int = 0) -> Dict[str, np.ndarray]:
    """``n`` preprocessed samples for a real model: {input name: float32 NCHW array}.

    Seeds give disjoint crops: use e.g. seed 0 for calibration and seed 1 for held-out data.
    """
    if name == "yolov8n-nudenet":
        # the model's own preprocessing: 320x320 RGB, /255, NCHW
        rgb, _ = _crops(PHOTOS, n, (320, 320), seed)
        x = rgb.astype(np.float32) / 255.0
        return {"images": np.ascontiguousarray(x.transpose(0, 3, 1, 2))}
    if name == "ppocr-det":
        # PaddleOCR det: /255, ImageNet mean/std, sides multiple of 32
        rgb, _ = _crops(TEXT + PHOTOS[:6], n, (320, 320), seed)
        mean = np.array([0.485, 0.456, 0.406], np.float32)
        std = np.array([0.229, 0.224, 0.225], np.float32)
        x = (rgb.astype(np.float32) / 255.0 - mean) / std
        return {"x": np.ascontiguousarray(x.transpose(0, 3, 1, 2))}
    if name in ("ppocr-cls", "ppocr-rec"):
        # text lines: (x/255 - 0.5) / 0.5; cls 48x192 (half of them upside down), rec 48x320
        hw = (48, 192) if name == "ppocr-cls" else (48, 320)
        rgb, _ = _crops(
            TEXT, n, hw, seed, min_frac=0.04, rotate180=0.5 if name == "ppocr-cls" else 0.0
        )
        x = (rgb.astype(np.float32) / 255.0 - 0.5) / 0.5
        return {"x": np.ascontiguousarray(x.transpose(0, 3, 1, 2))}
    raise KeyError(f"unknown real model {name!r}; known: {', '.join(MODELS)}")


def save_npy(name: str, n: int, seed: int, folder: str) -> str:
    """Writes the samples as ``folder/<input>.npy`` (the layout ``trtcal calibrate --data``
    reads) and returns the file's path."""
    os.makedirs(folder, exist_ok=True)
    data = inputs(name, n, seed)
    ((inp, arr),) = data.items()
    path = os.path.join(folder, f"{inp}.npy")
    np.save(path, arr)
    return path


if __name__ == "__main__":
    for m in MODELS:
        print(f"{m:18s} {task(m):9s} {model_path(m) or 'missing: ' + missing_reason(m)}")
    print("images:", _image_dir() or "missing (pip install --no-deps scikit-image)")
