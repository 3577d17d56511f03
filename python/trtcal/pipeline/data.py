"""Calibration data: image files and folders with explicit preprocessing, .npy/.npz files, folders
with a subfolder per model input, arrays, iterables.

Every source yields *samples* in a fixed order: ``(name, {input_name: array without the batch
axis})``. :func:`batches` stacks them into batches and tracks a cursor (positions consumed,
skipped ones included) so that a resumed run reads exactly the samples an uninterrupted one
would. Iterables of input dicts are taken as ready-made batches.
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct
import zipfile
from dataclasses import dataclass, field
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

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
            raise ValueError(
                "trtcal: resize_mode must be 'shorter', 'exact' or 'letterbox', got "
                f"{self.resize_mode!r}"
            )
        if self.resize_mode in ("exact", "letterbox") and self.resize is None:
            raise ValueError(f"trtcal: resize_mode '{self.resize_mode}' needs a resize size")
        if self.channel_order not in ("RGB", "BGR"):
            raise ValueError(
                f"trtcal: channel_order must be 'RGB' or 'BGR', got {self.channel_order!r}"
            )
        if self.layout not in ("NCHW", "NHWC"):
            raise ValueError(f"trtcal: layout must be 'NCHW' or 'NHWC', got {self.layout!r}")
        if self.interpolation not in _INTERP:
            raise ValueError(
                f"trtcal: interpolation must be one of {', '.join(_INTERP)}, got "
                f"{self.interpolation!r}"
            )
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

        img = _eight_bit_scale(image)
        gray = img.mode == "F"
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
                    canvas = (
                        Image.new("F", (tw, th), float(self.pad_value))
                        if gray
                        else Image.new("RGB", (tw, th), (self.pad_value,) * 3)
                    )
                    canvas.paste(img.resize((nw, nh), method), ((tw - nw) // 2, (th - nh) // 2))
                    img = canvas
        if self.crop is not None:
            ch, cw = _pair(self.crop)
            w, h = img.size
            if ch > h or cw > w:
                raise ValueError(f"image of {w}x{h} is smaller than the center crop {cw}x{ch}")
            left, top = (w - cw) // 2, (h - ch) // 2
            img = img.crop((left, top, left + cw, top + ch))
        a = np.asarray(img, dtype=np.float32)
        if a.ndim == 2:  # a 16-bit grayscale image, kept in float: three equal channels
            a = np.repeat(a[:, :, None], 3, axis=2)
        a = a * np.float32(self.scale)
        if self.channel_order == "BGR":
            a = a[:, :, ::-1]
        if self.mean is not None:
            a = a - np.asarray(self.mean, dtype=np.float32)
        if self.std is not None:
            a = a / np.asarray(self.std, dtype=np.float32)
        if self.layout == "NCHW":
            a = a.transpose(2, 0, 1)
        return np.ascontiguousarray(a, dtype=np.float32)


_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def _eight_bit_scale(image: Any) -> Any:
    """An 8-bit image as RGB; a 16-bit grayscale one (PNG, TIFF: Pillow modes I;16 and I) as a
    float image scaled to the 8-bit range (x * 255/65535, no clipping and no rounding), so that
    ``scale`` (1/255 by default) maps both to [0, 1]; a float image (mode F) as it is."""
    from PIL import Image

    if image.mode in _SIXTEEN_BIT:
        a = np.asarray(image, dtype=np.float32) * np.float32(255.0 / 65535.0)
        return Image.fromarray(a.astype(np.float32))
    if image.mode == "F":
        return image
    return image.convert("RGB")


def _sixteen_bit_colour(img: Any) -> bool:
    """A 16-bit-per-channel colour image, which Pillow decodes to 8 bits (dropping the low byte)."""
    tiles = getattr(img, "tile", None) or []
    raw = [t[3] if len(t) > 3 else None for t in tiles]
    return img.mode in ("RGB", "RGBA") and any(isinstance(r, str) and ";16" in r for r in raw)


def _check_preprocess_fits(pre: "Preprocess", spec: InputSpec, what: str) -> None:
    """Before the first batch: when the preprocessing gives a shape the input cannot take for a
    landscape AND a portrait image, every image would be a bad sample; say so once, naming the
    shapes (a size that depends on the image, e.g. 'shorter' resize with no crop, is left to
    the per-sample check)."""
    from PIL import Image

    want = tuple(spec.shape[1:]) if spec.shape else ()
    if np.dtype(spec.dtype).kind != "f":
        raise ValueError(
            f"trtcal: {what}: input '{spec.name}' takes {np.dtype(spec.dtype).name}, but images "
            "give "
            "float pixels; give .npy/.npz arrays of that dtype for it"
        )
    if not want:
        return
    channels = want[0] if pre.layout == "NCHW" else want[-1]
    if len(want) == 3 and channels is not None and channels != 3:
        raise ValueError(
            f"trtcal: {what}: input '{spec.name}' takes {channels} channel(s) per pixel "
            f"({_shape_str(want)}, {pre.layout}), but images are read as RGB (3); give arrays "
            "(.npy/.npz) for this input, or check the layout (--nhwc)"
        )
    got = []
    for size in ((640, 480), (480, 640)):
        try:
            shape = pre.apply(Image.new("RGB", size)).shape
        except ValueError:
            return  # e.g. a crop larger than this test image: real images decide
        if len(shape) == len(want) and all(w is None or w == g for w, g in zip(want, shape)):
            return
        got.append(shape)
    raise ValueError(
        f"trtcal: {what}: the preprocessing ({pre.describe()}) gives images of shape "
        f"{_shape_str(got[0])}, but input '{spec.name}' takes {_shape_str(want)} per sample; "
        "fix --resize/--crop/--nhwc (or the preprocess JSON)"
    )


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
    """``--preprocess`` as JSON (``'{"resize": 256, "crop": 224, ...}'``) or a path to a JSON
    file."""
    if not text:
        return None
    where = "--preprocess"
    if os.path.isfile(text):
        where = f"--preprocess file {text}"
        try:
            with open(text, encoding="utf-8") as f:
                text = f.read(1 << 20)
        except UnicodeDecodeError:
            raise ValueError(f"trtcal: {where} is not UTF-8 JSON text") from None
    try:
        d = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"trtcal: {where} is neither a JSON object nor a JSON file: {exc}"
        ) from None
    if not isinstance(d, dict):
        raise ValueError(f"trtcal: {where} must be a JSON object")
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


def _read_npy_header(f: Any) -> Tuple[Tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) from a .npy header; ``f`` is left at the first data byte."""
    fmt = np.lib.format
    version = fmt.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = fmt.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran, dtype = fmt.read_array_header_2_0(f)
    else:
        raise ValueError(f"unsupported .npy format version {version}")
    return tuple(shape), bool(fortran), dtype


def _member_data_offset(path: str, info: zipfile.ZipInfo) -> int:
    """Where the bytes of a zip member start in the zip file (after its local header)."""
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        head = f.read(30)
    if len(head) != 30 or head[:4] != b"PK\x03\x04":
        raise ValueError(f"bad zip entry for '{info.filename}'")
    name_len, extra_len = struct.unpack(
        "<2H", head[26:30]
    )  # the local extra field may differ from the central one
    return info.header_offset + 30 + name_len + extra_len


class NpyRows:
    """The rows of a ``.npy`` file, or of one array of an ``.npz``, each read on demand.

    Not a memory map: the pages of a map stay in the process's resident memory once touched,
    so a pass over a large calibration file would grow the RSS by the file's size; reads keep
    it constant (the OS page cache still serves repeated passes). ``shape``, ``ndim``,
    ``dtype``, ``len()`` and ``rows[j]`` as for an array; ``load()`` reads the whole array.

    ``member`` names an array inside the .npz at ``path``. One stored uncompressed
    (``np.savez``) is read in place with positional reads, like a .npy. One compressed
    (``np.savez_compressed``) cannot be read at an offset: it is decompressed as a stream kept
    open (constant memory); reading rows in order costs one pass, a row before the last one
    read restarts decompression from the array's start. Fortran-ordered arrays have no
    contiguous rows: each row loads the whole array.
    """

    def __init__(self, path: str, member: Optional[str] = None) -> None:
        self.path, self.member = path, member
        self._zip: Optional[zipfile.ZipFile] = None
        self._stream: Optional[Any] = None
        if member is None:
            with open(path, "rb") as f:
                shape, fortran, dtype = _read_npy_header(f)
                self.offset = f.tell()
            self.compressed, end = False, os.path.getsize(path)
        else:
            with zipfile.ZipFile(path) as z:
                info = z.getinfo(member)
                if info.flag_bits & 0x1:
                    raise ValueError(f"array '{member}' is encrypted")
                with z.open(info) as m:
                    shape, fortran, dtype = _read_npy_header(m)
                    header = m.tell()
            self.compressed = info.compress_type != zipfile.ZIP_STORED
            start = (
                0 if self.compressed else _member_data_offset(path, info)
            )  # offsets in the stream / the file
            self.offset, end = start + header, start + info.file_size
        if dtype.hasobject:
            raise ValueError("object arrays cannot be read without pickle")
        self.shape, self.dtype, self.fortran = shape, dtype, fortran
        self.ndim = len(self.shape)
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * dtype.itemsize
        need = self.offset + int(np.prod(self.shape, dtype=np.int64)) * dtype.itemsize
        if end < need:
            what = "the file" if member is None else f"array '{member}'"
            raise ValueError(f"{what} is truncated: {end} bytes, its header describes {need}")

    def __len__(self) -> int:
        return self.shape[0] if self.shape else 0

    def load(self) -> np.ndarray:
        if self.member is None:
            return np.load(self.path, allow_pickle=False)
        with zipfile.ZipFile(self.path) as z, z.open(self.member) as m:
            return np.lib.format.read_array(m, allow_pickle=False)

    def __getitem__(self, j: int) -> np.ndarray:
        if self.fortran or not self.shape:
            return self.load()[j]
        j = int(j)
        if not -len(self) <= j < len(self):
            raise IndexError(f"row {j} of a file of {len(self)}")
        j %= len(self)
        at = self.offset + j * self.row_bytes
        buf = self._read_stream(at) if self.compressed else self._read_file(at)
        if len(buf) != self.row_bytes:
            raise EOFError(f"{self.path}: file ends inside row {j}")
        return np.frombuffer(buf, dtype=self.dtype).reshape(self.shape[1:])

    def _read_file(self, at: int) -> bytes:
        with open(self.path, "rb") as f:
            f.seek(at)
            return f.read(self.row_bytes)

    def _read_stream(self, at: int) -> bytes:
        if self._stream is None:
            self._zip = zipfile.ZipFile(self.path)
            self._stream = self._zip.open(self.member or "")
        self._stream.seek(at)  # forward: decompresses and drops; backward: restarts
        return self._stream.read(self.row_bytes)

    def close(self) -> None:
        """Closes the decompression stream, if one is open."""
        for handle in (self._stream, self._zip):
            if handle is not None:
                handle.close()
        self._stream = self._zip = None


class _OneSample:
    """A file holding a single sample (the input's rank minus one) seen as one row, read when asked
    for."""

    def __init__(self, rows: NpyRows) -> None:
        self.rows = rows
        self.shape = (1,) + rows.shape
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return 1

    def __getitem__(self, j: int) -> np.ndarray:
        if int(j) not in (0, -1):
            raise IndexError(f"row {j} of a file of 1")
        return self.rows.load()

    def close(self) -> None:
        self.rows.close()


def _npz_arrays(path: str) -> Dict[str, NpyRows]:
    """The arrays of an .npz by key (member name less '.npy'); headers read, data not."""
    with zipfile.ZipFile(path) as z:
        members = z.namelist()
    return {m.removesuffix(".npy"): NpyRows(path, m) for m in members}


def _single_name(specs: Sequence[InputSpec], what: str) -> str:
    if len(specs) != 1:
        names = ", ".join(s.name for s in specs)
        raise ValueError(
            f"trtcal: {what} gives one array per sample but the model has {len(specs)} inputs "
            f"({names}); "
            "give data by input name (an .npz with one key per input, a folder with one subfolder "
            "named after "
            "each input, or a dict)"
        )
    return specs[0].name


def _common_dir(files: Sequence[str]) -> str:
    return os.path.commonpath([os.path.dirname(f) for f in files])


class ImageFolder(Source):
    """Image files (JPEG/PNG/...): every one under a folder, recursively, in sorted path order;
    one image file (a single sample); or a list of image files, in the order given.

    Sample names are paths relative to ``root``: the folder, the file's folder, or for a list
    ``base`` (by default the files' common folder).
    """

    kind = "images"

    def __init__(
        self,
        root: Union[str, os.PathLike[str], Sequence[str]],
        preprocess: Optional[Preprocess] = None,
        input_name: Optional[str] = None,
        base: Optional[str] = None,
    ) -> None:
        one = isinstance(root, (str, os.PathLike))
        if one and os.path.isdir(root):  # type: ignore[arg-type]
            self.root = os.path.abspath(root)  # type: ignore[arg-type]
            other: List[str] = []
            self.files = sorted(_walk(self.root, IMAGE_EXTENSIONS, other))
            self.notes = _left_out_note(self.root, other, "images")
            if not self.files:
                raise FileNotFoundError(
                    f"trtcal: no image files ({', '.join(IMAGE_EXTENSIONS)}) under {root}"
                )
            self.single = False
        else:
            paths: Sequence[Any] = [root] if one else root  # type: ignore[assignment]
            self.files = [os.path.abspath(p) for p in paths]
            if not self.files:
                raise ValueError("trtcal: ImageFolder was given an empty list of image files")
            for f in self.files:
                if not os.path.isfile(f):
                    raise FileNotFoundError(f"trtcal: image file not found: {f}")
                if not f.lower().endswith(IMAGE_EXTENSIONS):
                    raise ValueError(
                        f"trtcal: {f} is not an image file ({', '.join(IMAGE_EXTENSIONS)})"
                    )
            self.root = os.path.abspath(base) if base else _common_dir(self.files)
            self.single = one
        self.preprocess = preprocess or Preprocess()
        self.input_name = input_name

    def _what(self) -> str:
        return f"image file {self.files[0]}" if self.single else f"image folder {self.root}"

    def bind(self, specs: Sequence[InputSpec]) -> None:
        super().bind(specs)
        name = self.input_name or _single_name(specs, self._what())
        spec = next((s for s in specs if s.name == name), None)
        if spec is None:
            raise ValueError(
                f"trtcal: the model has no input '{name}' (inputs: "
                f"{', '.join(s.name for s in specs)})"
            )
        others = [s.name for s in specs if s.name != name]
        if others:
            raise ValueError(
                f"trtcal: {self._what()} gives input '{name}' only, but the model also needs "
                "input(s) "
                f"{others}; give a folder with one subfolder per input ({name}/, {others[0]}/, "
                "...) "
                "holding files of the same names"
            )
        self.input_name = name
        self.preprocess = self.preprocess.fit(spec)
        _check_preprocess_fits(self.preprocess, spec, self._what())

    def __len__(self) -> int:
        return len(self.files)

    def items(self, start: int) -> Iterator[Tuple[str, Any]]:
        for fi in range(start, len(self.files)):
            yield os.path.relpath(self.files[fi], self.root), (lambda fi=fi: self.row(fi, 0))

    def row(self, fi: int, j: int = 0) -> Dict[str, np.ndarray]:
        """The sample of file ``fi`` (an image is one row: ``j`` is 0)."""
        return self._load(self.files[fi])

    def _load(self, path: str) -> Dict[str, np.ndarray]:
        import warnings

        from PIL import Image, UnidentifiedImageError

        name = os.path.relpath(path, self.root)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as img:
                    if _sixteen_bit_colour(img):
                        raise BadSampleError(
                            name,
                            "a 16-bit colour image: Pillow reads only 8 bits per channel, "
                            "which would change the data; convert it to 8 bits, or give "
                            "the samples as .npy arrays",
                        )
                    img.load()
                    arr = self.preprocess.apply(img)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise BadSampleError(name, f"image too large (a decompression bomb?): {exc}") from None
        except MemoryError:
            raise BadSampleError(name, "image too large to decode in memory") from None
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError, EOFError) as exc:
            raise BadSampleError(name, f"cannot read image: {exc}") from None
        return {self.input_name: arr}  # type: ignore[dict-item]

    def describe(self) -> Dict[str, Any]:
        where = {"file": self.files[0]} if self.single else {"root": self.root}
        return {
            "kind": self.kind,
            **where,
            "files": len(self.files),
            "input": self.input_name,
            "preprocess": self.preprocess.to_dict(),
        }

    def fingerprint(self) -> Dict[str, Any]:
        return dict(
            self.describe(), names=_digest([os.path.relpath(f, self.root) for f in self.files])
        )


class ArraySource(Source):
    """In-memory arrays: {input_name: array with the samples along axis 0} or one array."""

    kind = "arrays"

    def __init__(
        self, arrays: Union[np.ndarray, Mapping[str, np.ndarray]], label: str = "arrays"
    ) -> None:
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
                raise ValueError(
                    f"trtcal: {self.label}: input '{s.name}' has {a.shape[0]} samples, others have "
                    f"{n}"
                )
            n = a.shape[0]
        self.arrays = {s.name: arrays[s.name] for s in specs}
        self.n = int(n or 0)

    def __len__(self) -> int:
        return self.n

    def items(self, start: int) -> Iterator[Tuple[str, Any]]:
        for i in range(start, self.n):
            yield f"{self.label}[{i}]", (lambda i=i: {k: v[i] for k, v in self.arrays.items()})

    def describe(self) -> Dict[str, Any]:
        return {
            "kind": self.kind,
            "label": self.label,
            "shapes": {k: list(v.shape) for k, v in self.arrays.items()},
        }


class _Positions:
    """The (file, row) of every sample position, by arithmetic over the files' cumulative row
    counts: memory grows with the number of files, never with the number of rows."""

    def __init__(self, counts: Sequence[int]) -> None:
        self.ends = (
            np.cumsum(np.asarray(list(counts), dtype=np.int64))
            if len(counts)
            else np.zeros(0, np.int64)
        )

    def __len__(self) -> int:
        return int(self.ends[-1]) if self.ends.size else 0

    def locate(self, pos: int) -> Tuple[int, int]:
        """(file, row) of position ``pos``."""
        if not 0 <= pos < len(self):
            raise IndexError(pos)
        fi = int(np.searchsorted(self.ends, pos, side="right"))
        return fi, pos - (int(self.ends[fi - 1]) if fi else 0)

    def iter_from(self, start: int) -> Iterator[Tuple[int, int]]:
        """(file, row) of every position from ``start`` on, in order."""
        if start >= len(self):
            return
        fi, j = self.locate(max(0, int(start)))
        for f in range(fi, self.ends.size):
            n = int(self.ends[f]) - (int(self.ends[f - 1]) if f else 0)
            for r in range(j if f == fi else 0, n):
                yield f, r


class ArrayFiles(Source):
    """.npy/.npz files (one path, every such file under a folder, sorted, or a list of paths).

    A .npy holds one input's samples along axis 0 (or one sample, when its rank is the input's
    rank minus one). A .npz holds one array per input name (a single-input model accepts any
    one key). Rows are read on demand (:class:`NpyRows`): ``bind()`` reads only the headers,
    and memory stays constant in the number of samples. Arrays of ``np.savez`` are read in
    place; arrays of ``np.savez_compressed`` are decompressed as a stream, in order.
    Sample names are paths relative to the folder (for a list, ``base`` or the files' common
    folder).
    """

    kind = "arrays-files"

    def __init__(
        self, path: Union[str, os.PathLike[str], Sequence[str]], base: Optional[str] = None
    ) -> None:
        if isinstance(path, (str, os.PathLike)):
            self.path = os.path.abspath(path)
            if os.path.isdir(self.path):
                other: List[str] = []
                self.files = sorted(_walk(self.path, ARRAY_EXTENSIONS, other))
                self.notes = _left_out_note(self.path, other, ".npy/.npz arrays")
                self.base = self.path
            else:
                self.files = [self.path]
                self.base = os.path.dirname(self.path)
            if not self.files:
                raise FileNotFoundError(f"trtcal: no .npy/.npz files under {path}")
        else:
            self.files = [os.path.abspath(p) for p in path]
            if not self.files:
                raise ValueError("trtcal: ArrayFiles was given an empty list of .npy/.npz files")
            self.base = os.path.abspath(base) if base else _common_dir(self.files)
            self.path = self.base
        self.index = _Positions([])
        self.counts: List[int] = []
        self.bad: set = set()  # files that cannot be read: one position each, reported when reached
        self._cache: Tuple[int, Optional[Dict[str, Any]]] = (-1, None)

    def _rel(self, fi: int) -> str:
        return os.path.relpath(self.files[fi], self.base)

    def bind(self, specs: Sequence[InputSpec]) -> None:
        super().bind(specs)
        self._drop_cache()
        npy = next((fi for fi, f in enumerate(self.files) if f.lower().endswith(".npy")), None)
        if npy is not None:
            _single_name(
                specs, f".npy file {self._rel(npy)}"
            )  # the model's inputs, not the file, are wrong
        self.counts, self.bad = [], set()
        for fi in range(len(self.files)):
            try:
                arrays = self._open(fi)  # headers only
            except BadSampleError:
                self.counts.append(1)
                self.bad.add(fi)
                continue
            self.counts.append(len(next(iter(arrays.values()))))
        self._drop_cache()
        self.index = _Positions(self.counts)

    def _drop_cache(self) -> None:
        for a in (self._cache[1] or {}).values():
            a.close()
        self._cache = (-1, None)

    def _open(self, fi: int) -> Dict[str, Any]:
        """File ``fi``'s arrays by input name, as row readers (:class:`NpyRows`,
        :class:`_OneSample`)."""
        if self._cache[0] == fi and self._cache[1] is not None:
            return self._cache[1]
        self._drop_cache()
        f, rel = self.files[fi], self._rel(fi)
        try:
            if f.lower().endswith(".npz"):
                arrays = _npz_arrays(f)
                if len(self.specs) == 1 and len(arrays) == 1 and self.specs[0].name not in arrays:
                    arrays = {self.specs[0].name: next(iter(arrays.values()))}
            else:
                arrays = {self.specs[0].name: NpyRows(f)}  # bind() checked there is one input
        except (OSError, ValueError, EOFError, NotImplementedError, zipfile.BadZipFile) as exc:
            raise BadSampleError(rel, f"cannot read array file: {exc}") from None
        try:
            check_names(arrays, self.specs, f"file {rel}")
        except ValueError as exc:
            raise BadSampleError(rel, str(exc)) from None
        out: Dict[str, Any] = {}
        n = None
        for s in self.specs:
            a: Any = arrays[s.name]
            if a.ndim == len(s.shape) - 1:
                a = _OneSample(a)
            if n is not None and a.shape[0] != n:
                raise BadSampleError(
                    rel, f"input '{s.name}' has {a.shape[0]} samples, others have {n}"
                )
            n = a.shape[0]
            out[s.name] = a
        self._cache = (fi, out)
        return out

    def __len__(self) -> int:
        return len(self.index)

    def items(self, start: int) -> Iterator[Tuple[str, Any]]:
        for fi, j in self.index.iter_from(start):
            rel = self._rel(fi)
            name = rel if self.counts[fi] == 1 else f"{rel}[{j}]"
            yield name, (lambda fi=fi, j=j: self.row(fi, j))

    def row(self, fi: int, j: int) -> Dict[str, np.ndarray]:
        """Row ``j`` of file ``fi``, one array per input."""
        return {k: np.asarray(v[j]) for k, v in self._open(fi).items()}

    def describe(self) -> Dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "files": len(self.files)}

    def fingerprint(self) -> Dict[str, Any]:
        names = [self._rel(fi) for fi in range(len(self.files))]
        sizes = [os.path.getsize(f) for f in self.files]
        return dict(self.describe(), names=_digest(names), sizes=_digest(sizes))


def _input_files(folder: str, name: str) -> Tuple[str, Dict[str, str]]:
    """('images' or 'arrays', {path inside ``folder`` without extension: file}) for input
    ``name``'s folder."""
    images = sorted(_walk(folder, IMAGE_EXTENSIONS))
    arrays = sorted(_walk(folder, ARRAY_EXTENSIONS))
    if images and arrays:
        raise ValueError(
            f"trtcal: {folder} (input '{name}') holds both images and .npy/.npz files; "
            "an input's folder holds one kind"
        )
    if not images and not arrays:
        raise FileNotFoundError(
            f"trtcal: {folder} (input '{name}') holds no image or .npy/.npz files"
        )
    by_stem: Dict[str, str] = {}
    for f in images or arrays:
        stem = os.path.splitext(os.path.relpath(f, folder))[0]
        if stem in by_stem:
            raise ValueError(
                f"trtcal: {by_stem[stem]} and {f} (input '{name}') have the same name; "
                "files are paired across the input folders by name, without the extension"
            )
        by_stem[stem] = f
    return ("images" if images else "arrays"), by_stem


class InputFolders(Source):
    """A folder with one subfolder per model input: ``root/x/...`` feeds input ``x``, ``root/y/...``
    input ``y``.

    Files are paired across the subfolders by their path inside the subfolder without the
    extension (``x/a/0001.png`` with ``y/a/0001.npy``), in sorted order; every subfolder must
    hold the same names. A subfolder holds images (preprocessed, fitted to its input's shape)
    or .npy/.npz files (one sample each, or several along axis 0: as many as the paired files).
    Other subfolders of ``root`` are not read (``notes`` and ``describe()`` name them). Samples are
    named by the paired path (``a/0001``,
    ``a/0001[j]`` for row ``j`` of files of several samples).
    """

    kind = "per-input"

    def __init__(self, root: str, preprocess: Optional[Preprocess] = None) -> None:
        self.root = os.path.abspath(root)
        self.base_preprocess = preprocess
        self.parts: Dict[str, Union[ImageFolder, ArrayFiles]] = {}
        self.stems: List[str] = []
        self.ignored: List[str] = []
        self.notes: List[str] = []
        self.counts: List[int] = []
        self.index = _Positions([])

    def bind(self, specs: Sequence[InputSpec]) -> None:
        super().bind(specs)
        found = {s.name: _input_files(os.path.join(self.root, s.name), s.name) for s in specs}
        self.stems = sorted(set().union(*(stems for _, stems in found.values())))
        for stem in self.stems:
            for s in specs:
                if stem not in found[s.name][1]:
                    have = next(found[t.name][1][stem] for t in specs if stem in found[t.name][1])
                    raise ValueError(
                        f"trtcal: {self.root}: input '{s.name}' has no file '{s.name}/{stem}.*' to "
                        "pair "
                        f"with {os.path.relpath(have, self.root)}; every input's folder must hold "
                        "files of the same names"
                    )
        self.parts = {}
        for s in specs:
            kind, by_stem = found[s.name]
            paths = [by_stem[stem] for stem in self.stems]
            part: Union[ImageFolder, ArrayFiles]
            if kind == "images":
                part = ImageFolder(paths, self.base_preprocess, s.name, base=self.root)
            else:
                part = ArrayFiles(paths, base=self.root)
            part.bind([s])
            self.parts[s.name] = part
        self.counts = [self._count(i) for i in range(len(self.stems))]
        self.index = _Positions(self.counts)
        inputs = {s.name for s in specs}
        self.ignored = sorted(
            d
            for d in os.listdir(self.root)
            if os.path.isdir(os.path.join(self.root, d)) and d not in inputs
        )
        self.notes = (
            [f"{self.root}: subfolder(s) {self.ignored} match no model input and are not read"]
            if self.ignored
            else []
        )

    def _count(self, i: int) -> int:
        """Samples in the ``i``-th files; 1 where one of them is unreadable (it is reported when
        reached)."""
        counts: Dict[str, int] = {}
        for name, part in self.parts.items():
            if isinstance(part, ArrayFiles):
                if i in part.bad:
                    return 1
                counts[name] = part.counts[i]
            else:
                counts[name] = 1
        if len(set(counts.values())) > 1:
            found = ", ".join(
                f"{os.path.relpath(self.parts[k].files[i], self.root)}: {c}"
                for k, c in counts.items()
            )
            raise ValueError(
                f"trtcal: {self.root}: the files paired as '{self.stems[i]}' hold different "
                "numbers "
                f"of samples ({found})"
            )
        return next(iter(counts.values()))

    @property
    def preprocess(self) -> Optional[Preprocess]:
        """The first image input's preprocessing (``describe()`` has each input's); None without
        images."""
        return next((p.preprocess for p in self.parts.values() if isinstance(p, ImageFolder)), None)

    def __len__(self) -> int:
        return len(self.index)

    def items(self, start: int) -> Iterator[Tuple[str, Any]]:
        for i, j in self.index.iter_from(start):
            name = self.stems[i] if self.counts[i] == 1 else f"{self.stems[i]}[{j}]"
            yield (
                name,
                (
                    lambda i=i, j=j: {
                        k: v for p in self.parts.values() for k, v in p.row(i, j).items()
                    }
                ),
            )

    def describe(self) -> Dict[str, Any]:
        out = {
            "kind": self.kind,
            "root": self.root,
            "inputs": {
                k: dict(p.describe(), folder=os.path.join(self.root, k))
                for k, p in self.parts.items()
            },
        }
        if self.ignored:
            out["ignored_subfolders"] = list(self.ignored)
        return out

    def fingerprint(self) -> Dict[str, Any]:
        return {
            "kind": self.kind,
            "root": self.root,
            "inputs": {k: p.fingerprint() for k, p in self.parts.items()},
        }


class DataFolder(Source):
    """A folder given as calibration data. What it holds is settled by ``bind()``, once the model's
    inputs are known: for a model with several inputs, a subfolder named after each input ->
    :class:`InputFolders`; otherwise .npy/.npz files and no images -> :class:`ArrayFiles`;
    otherwise :class:`ImageFolder`. After ``bind()`` everything is the chosen source's (``inner``).
    """

    kind = "folder"

    def __init__(
        self, root: str, preprocess: Optional[Preprocess] = None, input_name: Optional[str] = None
    ) -> None:
        self.root = os.path.abspath(root)
        self._preprocess, self._input_name = preprocess, input_name
        self.inner: Optional[Source] = None
        if next(_walk(self.root, IMAGE_EXTENSIONS + ARRAY_EXTENSIONS), None) is None:
            raise FileNotFoundError(
                f"trtcal: no image files ({', '.join(IMAGE_EXTENSIONS)}) or .npy/.npz files "
                f"under {root}"
            )

    def __getattr__(
        self, name: str
    ) -> Any:  # preprocess, input_name, files, ... of the chosen source
        inner = self.__dict__.get("inner")
        if inner is None:
            raise AttributeError(name)
        return getattr(inner, name)

    def bind(self, specs: Sequence[InputSpec]) -> None:
        super().bind(specs)
        self.inner = self._choose(specs)
        self.inner.bind(specs)
        self.kind = self.inner.kind

    def _choose(self, specs: Sequence[InputSpec]) -> Source:
        has_arrays = next(_walk(self.root, ARRAY_EXTENSIONS), None) is not None
        if len(specs) > 1:
            have = [s.name for s in specs if os.path.isdir(os.path.join(self.root, s.name))]
            if len(have) == len(specs):
                if self._input_name is not None:
                    raise ValueError(
                        f"trtcal: {self.root} has a subfolder per model input, each feeding its "
                        "own "
                        f"input; input_name / --input-name ({self._input_name!r}) is for a folder "
                        "that "
                        "feeds one input: drop it"
                    )
                return InputFolders(self.root, self._preprocess)
            if have and next(_walk(self.root, (".npz",)), None) is None:
                missing = [s.name for s in specs if s.name not in have]
                raise ValueError(
                    f"trtcal: {self.root} has a subfolder for input(s) {have} but none for "
                    f"{missing}; "
                    "a folder per input needs a subfolder named after each model input"
                )
        if has_arrays and next(_walk(self.root, IMAGE_EXTENSIONS), None) is None:
            return ArrayFiles(self.root)
        return ImageFolder(self.root, self._preprocess, self._input_name)

    def _bound(self) -> Source:
        if self.inner is None:
            raise TypeError(
                f"trtcal: data folder {self.root} is not bound to the model's inputs yet"
            )
        return self.inner

    def __len__(self) -> int:
        return len(self._bound())

    def items(self, start: int) -> Iterator[Tuple[str, Any]]:
        return self._bound().items(start)

    def describe(self) -> Dict[str, Any]:
        return (
            self.inner.describe()
            if self.inner is not None
            else {"kind": self.kind, "root": self.root}
        )

    def fingerprint(self) -> Dict[str, Any]:
        return self._bound().fingerprint()


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
                    raise TypeError(
                        f"trtcal: {self.label} {i} is a {type(item).__name__}; expected a dict "
                        "{input_name: array} for a model with several inputs"
                    )
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


def open_source(
    data: Any, preprocess: Optional[Preprocess] = None, input_name: Optional[str] = None
) -> Source:
    """A :class:`Source` for a path (an image file or folder, a .npy/.npz file or folder, a folder
    with a
    subfolder per model input), arrays, or an iterable."""
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
                return ImageFolder(path, preprocess, input_name)  # one sample
            raise ValueError(
                f"trtcal: cannot read calibration data from {path}: expected an image folder, "
                ".npy/.npz files, or a folder of them"
            )
        return DataFolder(path, preprocess, input_name)
    if isinstance(data, np.ndarray):
        return ArraySource(data)
    if isinstance(data, Mapping):
        return ArraySource(data)
    if isinstance(data, Iterable):
        return BatchIterable(data)
    raise TypeError(
        f"trtcal: calibration data must be a path, arrays, or an iterable of input dicts, "
        f"not {type(data).__name__}"
    )


def _walk(root: str, exts: Tuple[str, ...], other: Optional[List[str]] = None) -> Iterator[str]:
    """Files under ``root`` with one of ``exts``, following symlinked subfolders (each real folder
    once, so a link cycle ends). ``other`` collects the files left out (other extensions; hidden
    files and trtcal's own lock and temporary files are not counted)."""
    seen = set()
    for d, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(d)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        for f in files:
            if f.lower().endswith(exts):
                yield os.path.join(d, f)
            elif other is not None and not f.startswith("."):
                other.append(os.path.join(d, f))


def _left_out_note(root: str, other: Sequence[str], what: str) -> List[str]:
    if not other:
        return []
    exts = sorted({os.path.splitext(f)[1].lower() or "(no extension)" for f in other})
    return [
        f"{root}: {len(other)} file(s) that are not {what} are not read (extensions: "
        f"{', '.join(exts[:8])}; "
        f"first: {os.path.relpath(sorted(other)[0], root)})"
    ]


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


def check_sample(
    arrays: Dict[str, np.ndarray], specs: Sequence[InputSpec], sample: str, batched: bool
) -> Dict[str, np.ndarray]:
    """Checks names, ranks, fixed dimensions and dtype kinds; casts floats to the model's float
    type."""
    check_names(arrays, specs, f"sample '{sample}'")
    out = {}
    for s in specs:
        a = np.asarray(arrays[s.name])
        expect = s.shape if batched else s.shape[1:]
        found = a.shape
        ok = len(found) == len(expect) and all(e is None or e == f for e, f in zip(expect, found))
        if not ok:
            what = "batch" if batched else "sample (without the batch axis)"
            hint = ""
            unbatched = s.shape[1:]
            if (
                batched
                and len(found) == len(unbatched)
                and all(e is None or e == f for e, f in zip(unbatched, found))
            ):
                hint = (
                    "; it looks like one sample: each item of an iterable is a batch (stack "
                    "samples along "
                    "axis 0, or give x[None])"
                )
            raise BadSampleError(
                sample,
                f"input '{s.name}' expects a {what} of shape "
                f"{_shape_str(expect)}, found {_shape_str(found)}{hint}",
            )
        out[s.name] = _convert(a, np.dtype(s.dtype), s.name, sample)
    return out


def _convert(a: np.ndarray, want: np.dtype, name: str, sample: str) -> np.ndarray:
    """``a`` as the input's dtype, only when every value survives the conversion: integers must
    fit the input's range (uint8 200 is no int8), finite floats must stay finite (no float16
    overflow); otherwise a BadSampleError naming the sample and the first value that does not
    fit."""
    if a.dtype == want:
        return a
    same_kind = (a.dtype.kind == "f" and want.kind == "f") or (
        a.dtype.kind in "iub" and want.kind in "iub"
    )
    if not same_kind:
        raise BadSampleError(
            sample, f"input '{name}' expects dtype {want.name}, found {a.dtype.name}"
        )
    if np.can_cast(a.dtype, want, "safe") or a.size == 0:
        return a.astype(want)
    if want.kind == "f":
        with np.errstate(over="ignore", invalid="ignore"):
            out = a.astype(want)
        lost = np.isfinite(a) & ~np.isfinite(out)
        if lost.any():
            v = a[lost].flat[0]
            raise BadSampleError(
                sample,
                f"value {v:.8g} of input '{name}' overflows {want.name} (largest "
                f"{float(np.finfo(want).max):.8g}): the cast would make it infinite",
            )
        return out
    lo, hi = (0, 1) if want.kind == "b" else (int(np.iinfo(want).min), int(np.iinfo(want).max))
    amin, amax = int(a.min()), int(a.max())
    if amin < lo or amax > hi:
        v = amin if amin < lo else amax
        raise BadSampleError(
            sample,
            f"value {v} of input '{name}' ({a.dtype.name} data) does not fit the "
            f"input's {want.name} ({lo} to {hi}); convert the data to {want.name} yourself",
        )
    return a.astype(want)


def _shape_str(shape: Sequence[Optional[int]]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


@dataclass
class Batch:
    inputs: Dict[str, np.ndarray]
    names: List[str]
    end: int  # cursor after this batch (positions consumed, skipped ones included)
    skipped: List[Tuple[str, str]] = field(default_factory=list)


def batches(
    source: Source,
    batch_size: int,
    *,
    start: int = 0,
    max_samples: Optional[int] = None,
    used: int = 0,
    skip_bad: bool = False,
    on_bad: Optional[Callable[[BadSampleError], None]] = None,
    dropped: Optional[Callable[[], int]] = None,
) -> Iterator[Batch]:
    """Stacks samples into batches of ``batch_size`` from position ``start``.

    ``used`` samples were already consumed (resume); at most ``max_samples`` are used in all.
    A bad sample raises :class:`BadSampleError`, or with ``skip_bad`` is passed to ``on_bad``
    and skipped. ``dropped()``: how many of the samples yielded so far the caller has dropped
    since (NaN/Inf activations); they do not count toward ``max_samples``, so a bad sample is
    replaced by the next one whichever check finds it.
    """

    def net() -> int:
        return used - (dropped() if dropped is not None else 0)

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
        if max_samples is not None and net() >= max_samples:
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
            if max_samples is not None and net() + n > max_samples:
                n = max_samples - net()
                arrays = {k: v[:n] for k, v in arrays.items()}
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
