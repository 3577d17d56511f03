"""Calibration data: image folders with explicit preprocessing, .npy/.npz files, arrays, iterables.

Every source yields *samples* in a fixed order: ``(name, {input_name: array without the batch
axis})``. :func:`batches` stacks them into batches and tracks a cursor (positions consumed,
skipped ones included) so that a resumed run reads exactly the samples an uninterrupted one
would. Iterables of input dicts are taken as ready-made batches.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
ARRAY_EXTENSIONS = (".npy", ".npz")

Sample = Tuple[str, Dict[str, np.ndarray]]


class BadSampleError(ValueError):
    """A sample that cannot be used: unreadable file, wrong shape or dtype, NaN/Inf activations."""

    def __init__(self, sample: str, reason: str) -> None:
        super().__init__(f"trtcal: bad sample '{sample}': {reason}")
        self.sample = sample
        self.reason = reason


@dataclass(frozen=True)
class InputSpec:
    """One model input: name, shape (None for a dynamic dimension) and NumPy dtype."""

    name: str
    shape: Tuple[Optional[int], ...]
    dtype: np.dtype

    def describe(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name}: {np.dtype(self.dtype).name}[{dims}]"


# --------------------------------------------------------------------------------------------
# preprocessing
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Preprocess:
    """How an image file becomes a model input. Printed at the start and saved in the table's
    provenance, because calibration preprocessing that differs from inference preprocessing is
    the most common cause of bad INT8 accuracy.

    Parameters
    ----------
    resize : int or (height, width), optional
        An int resizes the shorter side to that length (aspect kept); a pair resizes to exactly
        that size (``resize_mode='exact'``) or fits into it with padding (``'letterbox'``).
    resize_mode : 'shorter', 'exact' or 'letterbox'
    crop : int or (height, width), optional
        Center crop after resizing.
    scale : float
        Pixel values (0..255) are multiplied by this (default 1/255).
    mean, std : three floats, optional
        Per-channel normalisation after scaling, in the output channel order.
    channel_order : 'RGB' or 'BGR'
    layout : 'NCHW' or 'NHWC'
    interpolation : 'bilinear', 'bicubic', 'nearest' or 'lanczos'
    pad_value : int
        Letterbox padding (0..255, before scaling).
    """

    resize: Optional[Union[int, Tuple[int, int]]] = None
    resize_mode: str = "shorter"
    crop: Optional[Union[int, Tuple[int, int]]] = None
    scale: float = 1.0 / 255.0
    mean: Optional[Tuple[float, float, float]] = None
    std: Optional[Tuple[float, float, float]] = None
    channel_order: str = "RGB"
    layout: str = "NCHW"
    interpolation: str = "bilinear"
    pad_value: int = 114

    def __post_init__(self) -> None:
        if self.resize_mode not in ("shorter", "exact", "letterbox"):
            raise ValueError(f"trtcal: resize_mode must be 'shorter', 'exact' or 'letterbox', got {self.resize_mode!r}")
        if self.resize_mode in ("exact", "letterbox") and self.resize is None:
            raise ValueError(f"trtcal: resize_mode '{self.resize_mode}' needs a resize size")
        if self.channel_order not in ("RGB", "BGR"):
            raise ValueError(f"trtcal: channel_order must be 'RGB' or 'BGR', got {self.channel_order!r}")
        if self.layout not in ("NCHW", "NHWC"):
            raise ValueError(f"trtcal: layout must be 'NCHW' or 'NHWC', got {self.layout!r}")
        if self.interpolation not in _INTERP:
            raise ValueError(f"trtcal: interpolation must be one of {', '.join(_INTERP)}, got {self.interpolation!r}")
        for key in ("mean", "std"):
            v = getattr(self, key)
            if v is not None and len(v) != 3:
                raise ValueError(f"trtcal: {key} needs three values (one per channel), got {v!r}")
        if self.std is not None and any(s == 0 for s in self.std):
            raise ValueError("trtcal: std values must be non-zero")

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}

    def describe(self) -> str:
        parts = []
        if self.resize is not None:
            parts.append(f"resize {self.resize} ({self.resize_mode}, {self.interpolation})")
        if self.crop is not None:
            parts.append(f"center-crop {self.crop}")
        parts.append(f"x{self.scale:g}")
        if self.mean is not None:
            parts.append(f"mean {list(self.mean)}")
        if self.std is not None:
            parts.append(f"std {list(self.std)}")
        parts.append(self.channel_order)
        parts.append(self.layout)
        return ", ".join(parts)

    def fit(self, spec: InputSpec) -> "Preprocess":
        """Fills a missing size from the model input shape (fixed H and W) and checks the rest."""
        hw = _spatial(spec, self.layout)
        if hw is None or self.resize is not None or self.crop is not None:
            return self
        return dataclasses.replace(self, resize=hw, resize_mode="exact")

    def apply(self, image: Any) -> np.ndarray:
        """A PIL image -> float32 array (C, H, W) or (H, W, C)."""
        from PIL import Image

        img = image.convert("RGB")
        resample = getattr(Image, "Resampling", Image)
        method = getattr(resample, _INTERP[self.interpolation])
        if self.resize is not None:
            if self.resize_mode == "shorter":
                if not isinstance(self.resize, int):
                    raise ValueError("trtcal: resize_mode 'shorter' takes one int")
                w, h = img.size
                s = self.resize / min(w, h)
                img = img.resize((max(1, round(w * s)), max(1, round(h * s))), method)
            else:
                th, tw = _pair(self.resize)
                if self.resize_mode == "exact":
                    img = img.resize((tw, th), method)
                else:
                    w, h = img.size
                    s = min(tw / w, th / h)
                    nw, nh = max(1, round(w * s)), max(1, round(h * s))
                    canvas = Image.new("RGB", (tw, th), (self.pad_value,) * 3)
                    canvas.paste(img.resize((nw, nh), method), ((tw - nw) // 2, (th - nh) // 2))
                    img = canvas
        if self.crop is not None:
            ch, cw = _pair(self.crop)
            w, h = img.size
            if ch > h or cw > w:
                raise ValueError(f"image of {w}x{h} is smaller than the center crop {cw}x{ch}")
            left, top = (w - cw) // 2, (h - ch) // 2
            img = img.crop((left, top, left + cw, top + ch))
        a = np.asarray(img, dtype=np.float32) * np.float32(self.scale)
        if self.channel_order == "BGR":
            a = a[:, :, ::-1]
        if self.mean is not None:
            a = a - np.asarray(self.mean, dtype=np.float32)
        if self.std is not None:
            a = a / np.asarray(self.std, dtype=np.float32)
        if self.layout == "NCHW":
            a = a.transpose(2, 0, 1)
        return np.ascontiguousarray(a, dtype=np.float32)


_INTERP = {"bilinear": "BILINEAR", "bicubic": "BICUBIC", "nearest": "NEAREST", "lanczos": "LANCZOS"}


def _pair(v: Union[int, Sequence[int]]) -> Tuple[int, int]:
    if isinstance(v, int):
        return v, v
    h, w = v
    return int(h), int(w)


def _spatial(spec: InputSpec, layout: str) -> Optional[Tuple[int, int]]:
    if len(spec.shape) != 4:
        return None
    h, w = (spec.shape[2], spec.shape[3]) if layout == "NCHW" else (spec.shape[1], spec.shape[2])
    return (h, w) if h is not None and w is not None else None


def parse_preprocess(text: Optional[str]) -> Optional[Preprocess]:
    """``--preprocess`` as JSON (``'{"resize": 256, "crop": 224, ...}'``) or a path to a JSON file."""
    if not text:
        return None
    if os.path.isfile(text):
        with open(text, encoding="utf-8") as f:
            text = f.read()
    try:
        d = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"trtcal: --preprocess is neither a JSON object nor a JSON file: {exc}") from None
    if not isinstance(d, dict):
        raise ValueError("trtcal: --preprocess must be a JSON object")
    known = {f.name for f in dataclasses.fields(Preprocess)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"trtcal: unknown preprocessing keys {unknown}; known: {sorted(known)}")
    for k in ("resize", "crop", "mean", "std"):
        if isinstance(d.get(k), list):
            d[k] = tuple(d[k])
    return Preprocess(**d)


# --------------------------------------------------------------------------------------------
# sources
# --------------------------------------------------------------------------------------------
class Source:
    """An ordered collection of samples. ``kind`` and ``fingerprint`` identify it for resuming."""

    kind = "source"
    batched = False  # True: items are whole batches (iterables of input dicts)

    def bind(self, specs: Sequence[InputSpec]) -> None:
        """Called once with the model inputs before iteration."""
        self.specs = list(specs)

    def __len__(self) -> int:  # number of positions, when known
        raise TypeError("length unknown")

    def items(self, start: int) -> Iterator[Tuple[str, Any]]:
        """(name, loader) from position ``start``; ``loader()`` returns the sample's arrays."""
        raise NotImplementedError

    def describe(self) -> Dict[str, Any]:
        return {"kind": self.kind}

    def fingerprint(self) -> Dict[str, Any]:
        return self.describe()


class NpyRows:
    """The rows of a ``.npy`` file, each read on demand with a positional read.

    Not a memory map: the pages of a map stay in the process's resident memory once touched,
    so a pass over a large calibration file would grow the RSS by the file's size; reads keep
    it constant (the OS page cache still serves repeated passes). ``shape``, ``ndim``,
    ``dtype``, ``len()`` and ``rows[j]`` as for an array; ``load()`` reads the whole file.
    """

    def __init__(self, path: str) -> None:
        fmt = np.lib.format
        with open(path, "rb") as f:
            version = fmt.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = fmt.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = fmt.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
            self.offset = f.tell()
        if dtype.hasobject:
            raise ValueError("object arrays cannot be read without pickle")
        self.path, self.shape, self.dtype, self.fortran = path, tuple(shape), dtype, bool(fortran)
        self.ndim = len(self.shape)
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * dtype.itemsize
        need = self.offset + int(np.prod(self.shape, dtype=np.int64)) * dtype.itemsize
        size = os.path.getsize(path)
        if size < need:
            raise ValueError(f"the file is truncated: {size} bytes, its header describes {need}")

    def __len__(self) -> int:
        return self.shape[0] if self.shape else 0

    def load(self) -> np.ndarray:
        return np.load(self.path, allow_pickle=False)

    def __getitem__(self, j: int) -> np.ndarray:
        if self.fortran or not self.shape:
            return self.load()[j]
        j = int(j)
        if not -len(self) <= j < len(self):
            raise IndexError(f"row {j} of a file of {len(self)}")
        j %= len(self)
        with open(self.path, "rb") as f:
            f.seek(self.offset + j * self.row_bytes)
            buf = f.read(self.row_bytes)
        if len(buf) != self.row_bytes:
            raise EOFError(f"{self.path}: file ends inside row {j}")
        return np.frombuffer(buf, dtype=self.dtype).reshape(self.shape[1:])


def _single_name(specs: Sequence[InputSpec], what: str) -> str:
    if len(specs) != 1:
        names = ", ".join(s.name for s in specs)
        raise ValueError(
            f"trtcal: {what} gives one array per sample but the model has {len(specs)} inputs ({names}); "
            "give data by input name (an .npz with one key per input, a folder per input, or a dict)"
        )
    return specs[0].name


class ImageFolder(Source):
    """Image files (JPEG/PNG/...) under ``root``, recursively, in sorted path order."""

    kind = "images"

    def __init__(self, root: str, preprocess: Optional[Preprocess] = None, input_name: Optional[str] = None) -> None:
        self.root = os.path.abspath(root)
        self.files = sorted(_walk(self.root, IMAGE_EXTENSIONS))
        if not self.files:
            raise FileNotFoundError(f"trtcal: no image files ({', '.join(IMAGE_EXTENSIONS)}) under {root}")
        self.preprocess = preprocess or Preprocess()
        self.input_name = input_name

    def bind(self, specs: Sequence[InputSpec]) -> None:
        super().bind(specs)
        name = self.input_name or _single_name(specs, f"image folder {self.root}")
        spec = next((s for s in specs if s.name == name), None)
        if spec is None:
            raise ValueError(f"trtcal: the model has no input '{name}' (inputs: {', '.join(s.name for s in specs)})")
        self.input_name = name
        self.preprocess = self.preprocess.fit(spec)

    def __len__(self) -> int:
        return len(self.files)

    def items(self, start: int) -> Iterator[Tuple[str, Any]]:
        for path in self.files[start:]:
            yield os.path.relpath(path, self.root), (lambda p=path: self._load(p))

    def _load(self, path: str) -> Dict[str, np.ndarray]:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as img:
                img.load()
                arr = self.preprocess.apply(img)
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
            raise BadSampleError(os.path.relpath(path, self.root), f"cannot read image: {exc}") from None
        return {self.input_name: arr}

    def describe(self) -> Dict[str, Any]:
        return {"kind": self.kind, "root": self.root, "files": len(self.files), "input": self.input_name,
                "preprocess": self.preprocess.to_dict()}

    def fingerprint(self) -> Dict[str, Any]:
        return dict(self.describe(), names=_digest([os.path.relpath(f, self.root) for f in self.files]))


class ArraySource(Source):
    """In-memory arrays: {input_name: array with the samples along axis 0} or one array."""

    kind = "arrays"

    def __init__(self, arrays: Union[np.ndarray, Mapping[str, np.ndarray]], label: str = "arrays") -> None:
        self.raw = arrays
        self.label = label
        self.arrays: Dict[str, np.ndarray] = {}

    def bind(self, specs: Sequence[InputSpec]) -> None:
        super().bind(specs)
        if isinstance(self.raw, Mapping):
            arrays = {k: np.asarray(v) for k, v in self.raw.items()}
            if len(specs) == 1 and len(arrays) == 1 and specs[0].name not in arrays:
                arrays = {specs[0].name: next(iter(arrays.values()))}
        else:
            arrays = {_single_name(specs, self.label): np.asarray(self.raw)}
        check_names(arrays, specs, self.label)
        n = None
        for s in specs:
            a = arrays[s.name]
            if a.ndim == len(s.shape) - 1:  # a single sample
                a = a[None]
            arrays[s.name] = a
            if n is not None and a.shape[0] != n:
                raise ValueError(f"trtcal: {self.label}: input '{s.name}' has {a.shape[0]} samples, others have {n}")
            n = a.shape[0]
        self.arrays = {s.name: arrays[s.name] for s in specs}
        self.n = int(n or 0)

    def __len__(self) -> int:
        return self.n

    def items(self, start: int) -> Iterator[Tuple[str, Any]]:
        for i in range(start, self.n):
            yield f"{self.label}[{i}]", (lambda i=i: {k: v[i] for k, v in self.arrays.items()})

    def describe(self) -> Dict[str, Any]:
        return {"kind": self.kind, "label": self.label,
                "shapes": {k: list(v.shape) for k, v in self.arrays.items()}}


class ArrayFiles(Source):
    """.npy/.npz files (one path, or every such file under a folder, sorted).

    A .npy holds one input's samples along axis 0 (or one sample, when its rank is the input's
    rank minus one). A .npz holds one array per input name (a single-input model accepts any
    one key). Files are opened with memory mapping, so a large file is never loaded whole.
    """

    kind = "arrays-files"

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        if os.path.isdir(self.path):
            self.files = sorted(_walk(self.path, ARRAY_EXTENSIONS))
            self.base = self.path
        else:
            self.files = [self.path]
            self.base = os.path.dirname(self.path)
        if not self.files:
            raise FileNotFoundError(f"trtcal: no .npy/.npz files under {path}")
        self.index: List[Tuple[int, int]] = []

    def bind(self, specs: Sequence[InputSpec]) -> None:
        super().bind(specs)
        self._cache: Tuple[int, Optional[Dict[str, np.ndarray]]] = (-1, None)
        self.counts = []
        for fi, f in enumerate(self.files):
            try:
                arrays = self._open(fi)
            except BadSampleError:
                self.counts.append(1)  # reported when reached
                continue
            self.counts.append(next(iter(arrays.values())).shape[0])
        self.index = [(fi, j) for fi, c in enumerate(self.counts) for j in range(c)]

    def _open(self, fi: int) -> Dict[str, np.ndarray]:
        if self._cache[0] == fi and self._cache[1] is not None:
            return self._cache[1]
        f = self.files[fi]
        rel = os.path.relpath(f, self.base)
        try:
            if f.endswith(".npz"):
                with np.load(f, allow_pickle=False) as z:
                    arrays = {k: z[k] for k in z.files}
                if len(self.specs) == 1 and len(arrays) == 1 and self.specs[0].name not in arrays:
                    arrays = {self.specs[0].name: next(iter(arrays.values()))}
            else:
                arrays = {_single_name(self.specs, f".npy file {rel}"): NpyRows(f)}
        except (OSError, ValueError, EOFError) as exc:
            raise BadSampleError(rel, f"cannot read array file: {exc}") from None
        try:
            check_names(arrays, self.specs, f"file {rel}")
        except ValueError as exc:
            raise BadSampleError(rel, str(exc)) from None
        out, n = {}, None
        for s in self.specs:
            a = arrays[s.name]
            if a.ndim == len(s.shape) - 1:
                a = (a.load() if isinstance(a, NpyRows) else a)[None]
            if n is not None and a.shape[0] != n:
                raise BadSampleError(rel, f"input '{s.name}' has {a.shape[0]} samples, others have {n}")
            n = a.shape[0]
            out[s.name] = a
        self._cache = (fi, out)
        return out

    def __len__(self) -> int:
        return len(self.index)

    def items(self, start: int) -> Iterator[Tuple[str, Any]]:
        for fi, j in self.index[start:]:
            rel = os.path.relpath(self.files[fi], self.base)
            name = rel if self.counts[fi] == 1 else f"{rel}[{j}]"
            yield name, (lambda fi=fi, j=j: {k: np.asarray(v[j]) for k, v in self._open(fi).items()})

    def describe(self) -> Dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "files": len(self.files)}

    def fingerprint(self) -> Dict[str, Any]:
        names = [os.path.relpath(f, self.base) for f in self.files]
        sizes = [os.path.getsize(f) for f in self.files]
        return dict(self.describe(), names=_digest(names), sizes=_digest(sizes))


class BatchIterable(Source):
    """Any iterable of {input_name: batch array} dicts (ONNX Runtime's data-reader style).

    Resuming skips the batches already seen, so the iterable must yield the same sequence again.
    """

    kind = "iterable"
    batched = True

    def __init__(self, iterable: Iterable[Mapping[str, Any]], label: str = "batch") -> None:
        self.iterable = iterable
        self.label = label

    def __len__(self) -> int:
        return len(self.iterable)  # type: ignore[arg-type]

    def items(self, start: int) -> Iterator[Tuple[str, Any]]:
        it = iter(self.iterable)
        for i, item in enumerate(it):
            if i < start:
                continue
            if not isinstance(item, Mapping):
                if len(self.specs) == 1:
                    item = {self.specs[0].name: item}
                else:
                    raise TypeError(f"trtcal: {self.label} {i} is a {type(item).__name__}; expected a dict "
                                    "{input_name: array} for a model with several inputs")
            yield f"{self.label}{i}", (lambda item=item: {k: _to_numpy(v) for k, v in item.items()})

    def describe(self) -> Dict[str, Any]:
        return {"kind": self.kind, "type": type(self.iterable).__name__}

    def fingerprint(self) -> Dict[str, Any]:
        return {"kind": self.kind}  # a fresh iterable of another type may replay the same batches


def _to_numpy(v: Any) -> np.ndarray:
    if isinstance(v, np.ndarray):
        return v
    if hasattr(v, "detach"):  # torch
        return v.detach().cpu().numpy()
    if hasattr(v, "get") and hasattr(v, "__cuda_array_interface__"):  # cupy
        return v.get()
    return np.asarray(v)


def open_source(data: Any, preprocess: Optional[Preprocess] = None, input_name: Optional[str] = None) -> Source:
    """A :class:`Source` for a path (image folder, .npy/.npz file or folder), arrays, or an iterable."""
    if isinstance(data, Source):
        return data
    if isinstance(data, (str, os.PathLike)):
        path = os.fspath(data)
        if not os.path.exists(path):
            raise FileNotFoundError(f"trtcal: calibration data not found: {path}")
        if os.path.isfile(path):
            if path.lower().endswith(ARRAY_EXTENSIONS):
                return ArrayFiles(path)
            if path.lower().endswith(IMAGE_EXTENSIONS):
                return ImageFolder(os.path.dirname(path) or ".", preprocess, input_name)
            raise ValueError(f"trtcal: cannot read calibration data from {path}: expected an image folder, "
                             ".npy/.npz files, or a folder of them")
        if any(True for _ in _walk(path, ARRAY_EXTENSIONS)) and not any(True for _ in _walk(path, IMAGE_EXTENSIONS)):
            return ArrayFiles(path)
        return ImageFolder(path, preprocess, input_name)
    if isinstance(data, np.ndarray):
        return ArraySource(data)
    if isinstance(data, Mapping):
        return ArraySource(data)
    if isinstance(data, Iterable):
        return BatchIterable(data)
    raise TypeError(f"trtcal: calibration data must be a path, arrays, or an iterable of input dicts, "
                    f"not {type(data).__name__}")


def _walk(root: str, exts: Tuple[str, ...]) -> Iterator[str]:
    for d, dirs, files in os.walk(root):
        dirs.sort()
        for f in files:
            if f.lower().endswith(exts):
                yield os.path.join(d, f)


def _digest(values: Sequence[Any]) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(list(values)).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# checking and batching
# --------------------------------------------------------------------------------------------
def check_names(arrays: Mapping[str, Any], specs: Sequence[InputSpec], where: str) -> None:
    names = [s.name for s in specs]
    missing = [n for n in names if n not in arrays]
    extra = [k for k in arrays if k not in names]
    if missing or extra:
        msg = f"trtcal: {where}: "
        if missing:
            msg += f"no data for model input(s) {missing}"
        if extra:
            msg += ("; " if missing else "") + f"unknown input name(s) {extra}"
        raise ValueError(msg + f" (model inputs: {', '.join(s.describe() for s in specs)})")


def check_sample(arrays: Dict[str, np.ndarray], specs: Sequence[InputSpec], sample: str, batched: bool) -> Dict[str, np.ndarray]:
    """Checks names, ranks, fixed dimensions and dtype kinds; casts floats to the model's float type."""
    check_names(arrays, specs, f"sample '{sample}'")
    out = {}
    for s in specs:
        a = np.asarray(arrays[s.name])
        expect = s.shape if batched else s.shape[1:]
        found = a.shape
        ok = len(found) == len(expect) and all(e is None or e == f for e, f in zip(expect, found))
        if not ok:
            what = "batch" if batched else "sample (without the batch axis)"
            raise BadSampleError(sample, f"input '{s.name}' expects a {what} of shape "
                                 f"{_shape_str(expect)}, found {_shape_str(found)}")
        want = np.dtype(s.dtype)
        if a.dtype != want:
            same_kind = (a.dtype.kind == "f" and want.kind == "f") or (a.dtype.kind in "iub" and want.kind in "iub")
            if not same_kind:
                raise BadSampleError(sample, f"input '{s.name}' expects dtype {want.name}, found {a.dtype.name}")
            a = a.astype(want)
        out[s.name] = a
    return out


def _shape_str(shape: Sequence[Optional[int]]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


@dataclass
class Batch:
    inputs: Dict[str, np.ndarray]
    names: List[str]
    end: int  # cursor after this batch (positions consumed, skipped ones included)
    skipped: List[Tuple[str, str]] = field(default_factory=list)


def batches(source: Source, batch_size: int, *, start: int = 0, max_samples: Optional[int] = None,
            used: int = 0, skip_bad: bool = False,
            on_bad: Optional[Callable[[BadSampleError], None]] = None) -> Iterator[Batch]:
    """Stacks samples into batches of ``batch_size`` from position ``start``.

    ``used`` samples were already consumed (resume); at most ``max_samples`` are used in all.
    A bad sample raises :class:`BadSampleError`, or with ``skip_bad`` is passed to ``on_bad``
    and skipped.
    """
    specs = source.specs
    pos = start
    names: List[str] = []
    rows: List[Dict[str, np.ndarray]] = []
    skipped: List[Tuple[str, str]] = []

    def flush() -> Batch:
        inputs = {s.name: np.stack([r[s.name] for r in rows]) for s in specs}
        b = Batch(inputs, list(names), pos, list(skipped))
        names.clear()
        rows.clear()
        skipped.clear()
        return b

    for name, load in source.items(start):
        if max_samples is not None and used >= max_samples:
            break
        pos += 1
        try:
            arrays = check_sample(load(), specs, name, source.batched)
        except BadSampleError as exc:
            if not skip_bad:
                raise
            skipped.append((exc.sample, exc.reason))
            if on_bad is not None:
                on_bad(exc)
            continue
        if source.batched:
            n = next(iter(arrays.values())).shape[0] if arrays else 0
            if max_samples is not None and used + n > max_samples:
                arrays = {k: v[: max_samples - used] for k, v in arrays.items()}
                n = max_samples - used
            used += n
            yield Batch(arrays, [f"{name}[{j}]" for j in range(n)], pos, list(skipped))
            skipped.clear()
            continue
        rows.append(arrays)
        names.append(name)
        used += 1
        if len(rows) == batch_size:
            yield flush()
    if rows:
        yield flush()
    elif skipped:
        yield Batch({}, [], pos, list(skipped))
