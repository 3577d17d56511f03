"""The TensorRT INT8 calibration cache: the text file TensorRT <= 10 reads and writes.

Format (what TensorRT's calibrators and ``trtexec --calib`` produce)::

    TRT-<N>-<Algorithm>
    <tensor name>: <hex>
    ...

``N`` encodes the TensorRT version: ``major*1000 + minor*100 + patch`` up to 9.x (8.6.1 ->
8601) and ``major*10000 + minor*100 + patch`` from 10.0 on (10.3.0 -> 100300). ``hex`` is the
big-endian IEEE-754 bit pattern of the float32 scale = amax / 127, printed lowercase without
leading zeros (``0`` for a zero scale). A name may itself contain colons and spaces, so a
line is split at its LAST colon.

Reading keeps every entry's original text, the header line, the line order and the line
endings, so that reading then writing gives back the same bytes; only entries whose value
changed are re-encoded. Any float32 bit pattern is read, negative, NaN and zero scales too (real
files hold them); :func:`scale_problem` says which of them TensorRT cannot use.
"""

from __future__ import annotations

import math
import os
import re
import struct
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple, Union

import numpy as np

from ..core._files import atomic_write
from . import trt_version

PathLike = Union[str, "os.PathLike[str]"]

#: Calibration algorithms of TensorRT's calibrator classes, as named in cache headers.
ALGORITHMS = ("EntropyCalibration2", "EntropyCalibration", "MinMaxCalibration", "LegacyCalibration")
DEFAULT_TENSORRT_VERSION = "10.3.0"
DEFAULT_ALGORITHM = "EntropyCalibration2"

_HEADER_RE = re.compile(r"^TRT-(\d+)-([A-Za-z0-9_]+)$")
_HEX_RE = re.compile(r"^[0-9a-fA-F]{1,8}$")


# --------------------------------------------------------------------------- values


def scale_to_hex(scale: float) -> str:
    """TensorRT's text for a scale: float32 bits, big-endian, lowercase, no leading zeros."""
    return format(float32_bits(scale), "x")


def hex_to_scale(text: str) -> float:
    """The float32 scale of a cache value (``3c010a14``, ``0``, ``7f800000``)."""
    if not _HEX_RE.match(text):
        raise ValueError(f"'{text}' is not a float32 bit pattern (1 to 8 hex digits)")
    return struct.unpack(">f", struct.pack(">I", int(text, 16)))[0]


def scale_problem(scale: float) -> Optional[str]:
    """Why TensorRT cannot use ``scale`` as a range, or None.

    A negative (``-inf`` included) or NaN scale is invalid for TensorRT; a zero scale means no
    range. ``+inf`` and FLT_MAX/127 (``7f800000``, ``7c010204``) are what TensorRT itself writes
    for some tensors and pass. Reading never refuses such values (real caches hold them): this
    is for warnings.
    """
    if math.isnan(scale):
        return "NaN scale: invalid for TensorRT"
    if scale < 0:
        return f"negative scale {scale:.8g}: invalid for TensorRT (a scale is amax/127 >= 0)"
    if scale == 0:
        return "zero scale: the tensor has no range (every value quantizes to 0)"
    return None


FLT_MIN = float(np.finfo(np.float32).tiny)


def tiny_scale_warning(name: str, amax: float) -> Optional[str]:
    """The warning for a positive ``amax`` whose float32 scale (amax/127) is zero or denormal, or
    None."""
    if not amax > 0 or not math.isfinite(amax):
        return None
    scale = to_float32(amax / 127.0)
    if scale >= FLT_MIN:
        return None
    what = "zero" if scale == 0 else f"the denormal {scale:.8g}"
    return (
        f"trtcal: tensor '{name}': amax {amax:.8g} gives a float32 scale of {what}, which TensorRT "
        "cannot use "
        "(flushed to zero: no range); check the activation, or leave the tensor out"
    )


def float32_bits(value: float) -> int:
    """The float32 bit pattern of ``value`` (after rounding to float32)."""
    (bits,) = struct.unpack(">I", struct.pack(">f", to_float32(value)))
    return bits


def to_float32(value: float) -> float:
    """``value`` rounded to float32 as a C cast does (beyond FLT_MAX -> inf; NaN kept)."""
    with np.errstate(over="ignore"):
        return float(np.float32(value))


# --------------------------------------------------------------------------- header


def parse_version(version: Union[str, Tuple[int, ...]]) -> Tuple[int, int, int]:
    """(major, minor, patch) of a version a cache header can encode (see :func:`encode_version`)."""
    major, minor, patch = trt_version.parse_version(version)
    if minor > 99 or patch > 99 or (major < 10 and minor > 9):
        raise ValueError(
            f"trtcal: TensorRT version {version!r} cannot be encoded in a cache header"
        )
    return major, minor, patch


def encode_version(version: Union[str, Tuple[int, ...]]) -> int:
    """The header number: major*1000+minor*100+patch before 10.0, major*10000+minor*100+patch
    after."""
    major, minor, patch = parse_version(version)
    if major >= 10:
        return major * 10000 + minor * 100 + patch
    return major * 1000 + minor * 100 + patch


def decode_version(number: int) -> Tuple[int, int, int]:
    """Inverse of :func:`encode_version` (100300 -> (10, 3, 0); 8601 -> (8, 6, 1))."""
    if number >= 100000:
        return number // 10000, (number // 100) % 100, number % 100
    return number // 1000, (number // 100) % 10, number % 100


def format_header(
    tensorrt_version: Union[str, Tuple[int, ...]] = DEFAULT_TENSORRT_VERSION,
    algorithm: str = DEFAULT_ALGORITHM,
) -> str:
    """``TRT-<N>-<Algorithm>`` for a TensorRT 7.x-10.x version and one of :data:`ALGORITHMS`."""
    if algorithm not in ALGORITHMS:
        raise ValueError(
            f"trtcal: unknown calibration algorithm '{algorithm}'; accepted: "
            f"{', '.join(ALGORITHMS)}"
        )
    major = parse_version(tensorrt_version)[0]
    if major >= 11:
        raise ValueError(
            f"trtcal: TensorRT {major} has no calibration cache (11.0 removed implicit INT8: "
            "calibrators, "
            "caches and dynamic ranges). Quantize explicitly instead: trtcal.onnx.quantize(model, "
            "table) "
            "or trtcal.tensorrt.quantize_network(network, table)."
        )
    if major < 5:
        raise ValueError(f"trtcal: TensorRT {major}.x caches are not supported (5.x to 10.x are)")
    return f"TRT-{encode_version(tensorrt_version)}-{algorithm}"


# --------------------------------------------------------------------------- file model


@dataclass
class CacheEntry:
    """One ``name: hex`` line. ``raw`` is the line as read (kept for exact round trips: it is
    written back unchanged while the entry's scale keeps its original float32 bits)."""

    name: str
    scale: float
    raw: Optional[str] = None
    raw_bits: Optional[int] = None

    @property
    def amax(self) -> float:
        """scale * 127 (exact in float64)."""
        return self.scale * 127.0

    @property
    def hex(self) -> str:
        return scale_to_hex(self.scale)

    def line(self) -> str:
        if self.raw is not None and self.raw_bits == float32_bits(self.scale):
            return self.raw
        return f"{self.name}: {scale_to_hex(self.scale)}"


@dataclass
class CalibrationCache:
    """A parsed TensorRT calibration cache, in file order.

    ``header`` is the first line as written (``TRT-8601-EntropyCalibration2``); ``newline`` and
    ``final_newline`` record the line endings so :meth:`to_bytes` reproduces the input.
    """

    header: str
    entries: List[CacheEntry] = field(default_factory=list)
    newline: str = "\n"
    final_newline: bool = True
    bom: bool = False

    # -- header fields
    @property
    def version_number(self) -> int:
        return int(_split_header(self.header)[0])

    @property
    def tensorrt_version(self) -> str:
        """``"8.6.1"`` / ``"10.3.0"``, decoded from the header."""
        return ".".join(str(v) for v in decode_version(self.version_number))

    @property
    def algorithm(self) -> str:
        return _split_header(self.header)[1]

    # -- mapping helpers
    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[CacheEntry]:
        return iter(self.entries)

    def scales(self) -> Dict[str, float]:
        return {e.name: e.scale for e in self.entries}

    def amaxes(self) -> Dict[str, float]:
        return {e.name: e.amax for e in self.entries}

    def problems(self) -> List[Tuple[str, str]]:
        """``(tensor, problem)`` for every negative, NaN or zero scale (see
        :func:`scale_problem`)."""
        return [(e.name, p) for e in self.entries if (p := scale_problem(e.scale)) is not None]

    # -- writing
    def to_text(self) -> str:
        lines = [self.header] + [e.line() for e in self.entries]
        text = ("\ufeff" if self.bom else "") + self.newline.join(lines)
        return text + self.newline if self.final_newline else text

    def to_bytes(self) -> bytes:
        return self.to_text().encode("utf-8")

    def write(self, path: PathLike) -> None:
        """Writes the cache atomically (a temporary file renamed over ``path``)."""

        atomic_write(path, self.to_bytes())

    @classmethod
    def from_scales(
        cls,
        scales: Iterable[Tuple[str, float]],
        tensorrt_version=DEFAULT_TENSORRT_VERSION,
        algorithm: str = DEFAULT_ALGORITHM,
    ) -> "CalibrationCache":
        """A new cache (TensorRT's own layout: ``\\n`` endings, final newline)."""
        header = format_header(tensorrt_version, algorithm)
        entries = []
        for name, scale in scales:
            _check_name(name)
            entries.append(CacheEntry(name, to_float32(scale)))
        return cls(header, entries)


def _split_header(header: str) -> Tuple[str, str]:
    m = _HEADER_RE.match(header.strip())
    if not m:
        raise ValueError(f"trtcal: '{header}' is not a TensorRT cache header (TRT-<N>-<Algorithm>)")
    return m.group(1), m.group(2)


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"trtcal: a cache entry needs a non-empty tensor name, got {name!r}")
    if "\n" in name or "\r" in name:
        raise ValueError(
            f"trtcal: tensor name {name!r} contains a line break and cannot be written to a cache"
        )


# --------------------------------------------------------------------------- reading


_MAX_LINE = 1 << 16  # bytes: no tensor name is this long; a longer line is not a cache


def read_cache(path: PathLike) -> CalibrationCache:
    """Reads a TensorRT calibration cache file (see :func:`parse_cache`), line by line: a file
    that is not a cache is refused at its first wrong line, in constant memory, however large."""
    source = os.fspath(path)
    with open(path, "rb") as f:
        return _parse_lines(_file_lines(f, source), source)


def _file_lines(f: Any, source: str) -> Iterator[bytes]:
    lineno = 0
    while True:
        line = f.readline(_MAX_LINE + 1)
        if not line:
            return
        lineno += 1
        if len(line) > _MAX_LINE:
            if b"\x00" in line:
                raise ValueError(_binary(source))
            raise ValueError(
                f"trtcal: {source} line {lineno} is longer than {_MAX_LINE} bytes: not a TensorRT "
                "calibration cache"
            )
        yield line


def _binary(source: str) -> str:
    return (
        f"trtcal: {source} is a binary file, not a TensorRT calibration cache "
        "(a cache is text starting with 'TRT-<N>-<Algorithm>'; an engine or timing "
        "cache is binary)"
    )


def parse_cache(
    data: Union[bytes, bytearray, memoryview, str], source: str = "<cache>"
) -> CalibrationCache:
    """Parses cache bytes. Raises ValueError saying what the input looks like when it is
    not a TensorRT calibration cache.

    Lines may end in ``\n`` or ``\r\n``, mixed in one file (each line is split on its own
    ending); the first line's ending is the one written back."""
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    return _parse_lines(iter(raw.splitlines(keepends=True)), source)


def _split_ending(line: bytes) -> Tuple[bytes, str]:
    if line.endswith(b"\r\n"):
        return line[:-2], "\r\n"
    if line.endswith(b"\n"):
        return line[:-1], "\n"
    if line.endswith(b"\r"):  # bytes.splitlines splits a lone CR too
        return line[:-1], "\r"
    return line, ""


def _decode(line: bytes, source: str) -> str:
    if b"\x00" in line:
        raise ValueError(_binary(source))
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(
            f"trtcal: {source} is not UTF-8 text, so not a TensorRT calibration cache"
        ) from None


def _parse_lines(lines: Iterator[bytes], source: str) -> CalibrationCache:
    header: Optional[str] = None
    bom = False
    newline = ending = ""
    lineno = 0
    for raw in (
        lines
    ):  # the header is the first line; blank lines before it mean an empty file or no cache
        lineno += 1
        body, ending = _split_ending(raw)
        text = _decode(body, source)
        if lineno == 1 and text.startswith("\ufeff"):
            bom, text = True, text[1:]
        if not text.strip():
            continue
        if lineno > 1 or not _HEADER_RE.match(text.strip()):
            more = [text] + [_decode(_split_ending(r)[0], source) for _, r in zip(range(19), lines)]
            raise ValueError(
                f"trtcal: {source} is not a TensorRT calibration cache: {_describe(more)}"
            )
        header, newline = text, ending
        break
    if header is None:
        raise ValueError(f"trtcal: {source} is empty, not a TensorRT calibration cache")
    _check_header_version(header.strip(), source)
    entries: List[CacheEntry] = []
    seen: Dict[str, int] = {}
    final_newline = bool(ending)
    for raw in lines:
        lineno += 1
        body, ending = _split_ending(raw)
        final_newline = bool(ending)
        newline = newline or ending
        line = _decode(body, source)
        if not line.strip():
            continue  # tolerated (TensorRT never writes blank lines); not reproduced
        colon = line.rfind(":")
        if colon <= 0:
            raise ValueError(
                f"trtcal: {source} line {lineno}: expected '<tensor>: <hex>', got {line[:200]!r}"
            )
        name, value = line[:colon], line[colon + 1 :].strip()
        try:
            scale = hex_to_scale(value)
        except ValueError as exc:
            raise ValueError(
                f"trtcal: {source} line {lineno} (tensor '{name[:200]}'): {exc}"
            ) from None
        if name in seen:
            raise ValueError(
                f"trtcal: {source} lists tensor '{name}' twice (lines {seen[name]} and {lineno})"
            )
        seen[name] = lineno
        entries.append(CacheEntry(name, scale, raw=line, raw_bits=int(value, 16)))
    return CalibrationCache(header, entries, newline or "\n", final_newline, bom)


def _check_header_version(header: str, source: str) -> None:
    """Refuses a header whose number no TensorRT wrote: majors 3 to 9 as major*1000+minor*100+patch
    (4 digits), TensorRT 10 as major*10000+minor*100+patch (6 digits); 11 removed caches."""
    number = int(_split_header(header)[0])
    major, minor, patch = decode_version(number)
    if number < 100000:
        ok = 3 <= major <= 9
    else:
        ok = major == 10
    if not ok:
        raise ValueError(
            f"trtcal: {source}: header {header!r} names TensorRT {major}.{minor}.{patch}, a "
            "version "
            "that never wrote calibration caches (TensorRT 3.x-9.x: TRT-<4 digits>, 10.x: "
            "TRT-10<4 digits>)"
        )


def _describe(lines: List[str]) -> str:
    """What a non-cache text file looks like, for the error message."""
    content = [ln.strip() for ln in lines if ln.strip()]
    first = content[0]
    if first.startswith("{") or first.startswith("["):
        return (
            "it looks like JSON (a trtcal table? load it with trtcal.CalibrationTable.from_json); "
            "a cache starts with a 'TRT-<N>-<Algorithm>' line"
        )
    pairs = [ln.split() for ln in content[:20]]
    if all(len(p) == 2 and _is_float(p[1]) for p in pairs):
        return (
            "it holds 'name amax' pairs of decimal floats with no 'TRT-<N>-<Algorithm>' header, as "
            "ONNX Runtime's TensorRT execution provider writes its calibration table; TensorRT "
            "cannot read it. Build a table from the values instead: "
            "trtcal.CalibrationTable({name: amax, ...})"
        )
    if all(":" in ln for ln in content[:20]):
        return (
            "it has '<tensor>: <value>' lines but its first line "
            f"{first[:60]!r} is not a 'TRT-<N>-<Algorithm>' header"
        )
    return f"its first line {first[:60]!r} is not a 'TRT-<N>-<Algorithm>' header"


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
