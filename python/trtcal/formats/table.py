"""``CalibrationTable``: tensor name -> amax, with provenance, saved as JSON or as a
TensorRT calibration cache.

The table is what every hand-over to TensorRT starts from: the calibration cache and the
calibrators of TensorRT <= 10 (:mod:`trtcal.formats.cache`, :mod:`trtcal.tensorrt`), per-tensor
dynamic ranges, and explicit Q/DQ for TensorRT 10 and 11 (:mod:`trtcal.onnx`).
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from collections.abc import MutableMapping
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple, Union

from ..core._files import atomic_write
from ..core.names import NamePattern, is_pattern, match_names
from ..core.version import __version__
from . import cache as _cache

PathLike = Union[str, "os.PathLike[str]"]

JSON_FORMAT = "trtcal.calibration-table"
JSON_FORMAT_VERSION = 1
_CONFLICT_POLICIES = ("error", "theirs", "ours", "max", "min")


def _trtcal_version() -> str:

    return __version__


@dataclass
class Provenance:
    """How a table was made. Every field is optional; ``extra`` holds anything else."""

    method: Optional[str] = None  # 'entropy', 'percentile', 'mse', 'max', 'tensorrt-cache', ...
    flavor: Optional[str] = (
        None  # which implementation's variant ('tensorrt', 'modelopt', 'ort', ...)
    )
    bins: Optional[int] = None
    percentile: Optional[float] = None
    num_samples: Optional[int] = None
    num_batches: Optional[int] = None
    nonfinite: Optional[Dict[str, int]] = None  # totals {'nan': .., 'posinf': .., 'neginf': ..}
    trtcal_version: Optional[str] = None
    source: Optional[str] = None  # e.g. 'cache:TRT-8601-EntropyCalibration2'
    extra: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        extra = d.pop("extra")
        out = {k: v for k, v in d.items() if v is not None}
        if extra:
            out["extra"] = extra
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Provenance":
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        kwargs = {k: v for k, v in d.items() if k in known}
        extra = dict(d.get("extra", {}))
        extra.update({k: v for k, v in d.items() if k not in known and k != "extra"})
        return cls(**kwargs, extra=extra)


class CalibrationTable(MutableMapping):
    """Tensor name -> amax (float), scale = amax / 127, with provenance and per-tensor extras.

    Parameters
    ----------
    mapping : mapping or iterable of (name, amax), optional
        The ranges. amax must be a non-negative number (``inf`` is kept, as TensorRT caches
        can hold it; NaN and negatives are refused).
    provenance : Provenance or dict, optional
        How the table was made; keyword arguments (``method=``, ``bins=``, ...) fill it too.
    extras : dict name -> dict, optional
        Per-tensor extras (``{'method': 'percentile', 'percentile': 99.99}`` for a tensor
        calibrated differently, non-finite counts, ...).

    Access: ``table[name]`` -> amax, ``table.scale(name)``, ``len``, iteration in insertion
    order, ``table[name] = amax``, ``del table[name]``.
    """

    def __init__(
        self,
        mapping: Union[Mapping[str, float], Iterable, None] = None,
        *,
        provenance: Union[Provenance, Mapping[str, Any], None] = None,
        extras: Optional[Mapping[str, Mapping[str, Any]]] = None,
        **provenance_fields: Any,
    ) -> None:
        self._amax: Dict[str, float] = {}
        self._extras: Dict[str, Dict[str, Any]] = {}
        self._cache: Optional[_cache.CalibrationCache] = None  # the cache this table was read from
        if provenance is None:
            provenance = Provenance()
        elif not isinstance(provenance, Provenance):
            provenance = Provenance.from_dict(provenance)
        for k, v in provenance_fields.items():
            if k not in Provenance.__dataclass_fields__:
                raise TypeError(f"trtcal: CalibrationTable got an unknown keyword '{k}'")
            setattr(provenance, k, v)
        if provenance.trtcal_version is None:
            provenance.trtcal_version = _trtcal_version()
        self.provenance: Provenance = provenance
        if mapping is not None:
            items: Iterable[Any] = mapping.items() if isinstance(mapping, Mapping) else mapping
            for name, amax in items:
                self[name] = amax
        for name, extra in (extras or {}).items():
            if name not in self._amax:
                raise KeyError(
                    f"trtcal: extras given for tensor '{name}', which has no amax in the table"
                )
            self._extras[name] = dict(extra)

    # ------------------------------------------------------------------ mapping
    def __getitem__(self, name: str) -> float:
        try:
            return self._amax[name]
        except KeyError:
            raise KeyError(self._missing_message(name)) from None

    def __setitem__(self, name: str, amax: float) -> None:
        self._amax[_check_name(name)] = _check_amax(name, amax)

    def __delitem__(self, name: str) -> None:
        if name not in self._amax:
            raise KeyError(self._missing_message(name))
        del self._amax[name]
        self._extras.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._amax)

    def __len__(self) -> int:
        return len(self._amax)

    def __contains__(self, name: object) -> bool:
        return name in self._amax

    def __repr__(self) -> str:
        method = self.provenance.method or "unknown method"
        return f"CalibrationTable({len(self)} tensors, {method})"

    def _missing_message(self, name: str) -> str:
        close = [n for n in self._amax if name.lower() in n.lower() or n.lower() in name.lower()][
            :5
        ]
        hint = f"; similar names: {close}" if close else ""
        return (
            f"trtcal: tensor '{name}' is not in the calibration table ({len(self)} tensors){hint}"
        )

    # ------------------------------------------------------------------ values
    def invalid(self) -> List[Tuple[str, str]]:
        """``(tensor, problem)`` for every amax TensorRT cannot use: negative (``-inf`` too) or
        NaN. A table holds them only when read from a cache that holds them."""
        out = []
        for n, a in self._amax.items():
            if math.isnan(a):
                out.append((n, "amax NaN"))
            elif a < 0:
                out.append((n, f"a negative amax ({a})"))
        return out

    def scale(self, name: str) -> float:
        """amax / 127: the INT8 scale TensorRT uses for ``name``."""
        return self[name] / 127.0

    def scales(self) -> Dict[str, float]:
        return {n: a / 127.0 for n, a in self._amax.items()}

    def extras(self, name: str) -> Dict[str, Any]:
        """Per-tensor extras (a live dict: edit it to annotate the tensor)."""
        if name not in self._amax:
            raise KeyError(self._missing_message(name))
        return self._extras.setdefault(name, {})

    def method_of(self, name: str) -> Optional[str]:
        """The method that produced ``name``'s range: its own override, else the table's."""
        return self._extras.get(name, {}).get("method", self.provenance.method)

    def copy(self) -> "CalibrationTable":
        new = CalibrationTable(provenance=Provenance.from_dict(self.provenance.to_dict()))
        new._amax = dict(self._amax)
        new._extras = {k: dict(v) for k, v in self._extras.items()}
        new._cache = self._cache
        return new

    # ------------------------------------------------------------------ selection
    def select(self, pattern: NamePattern) -> List[str]:
        """Names matching ``pattern``: an exact name, a glob (``'*/conv*'``), a compiled regex,
        or a list of those. An exact name wins over its glob reading (names such as
        ``(Unnamed Layer* 46) [Constant]_output`` contain glob characters)."""
        return match_names(self._amax, pattern)

    def override(
        self,
        pattern: NamePattern,
        value: Union[float, Mapping[str, float]],
        *,
        method: Optional[str] = None,
        **extras: Any,
    ) -> List[str]:
        """Replaces the range of the tensors matching ``pattern`` ("mixed quantization").

        ``value`` is an amax for every match, or another table / mapping (for example one
        calibrated with a different method) whose entries are taken for the names matching
        ``pattern`` in it. ``method`` and ``extras`` are recorded per tensor. Returns the
        names changed; raises KeyError when nothing matches.
        """
        if isinstance(value, Mapping):
            names = match_names(value, pattern)
            if not names:
                raise KeyError(
                    f"trtcal: override pattern {_show(pattern)} matches no tensor of the source "
                    "table"
                )
            src_method = value.method_of if isinstance(value, CalibrationTable) else None
            for n in names:
                self[n] = value[n]
                extra = (
                    dict(value._extras.get(n, {})) if isinstance(value, CalibrationTable) else {}
                )
                m = method or (src_method(n) if src_method else None)
                if m is not None:
                    extra["method"] = m
                if isinstance(value, CalibrationTable):
                    for key in ("flavor", "percentile", "bins"):
                        v = getattr(value.provenance, key)
                        if v is not None and key not in extra:
                            extra[key] = v
                extra.update(extras)
                self._set_extras(n, extra)
            return names
        names = self.select(pattern)
        if not names:
            if isinstance(pattern, str) and not is_pattern(pattern):
                names = [pattern]  # a new tensor named exactly
            else:
                raise KeyError(
                    f"trtcal: override pattern {_show(pattern)} matches no tensor of the table"
                )
        for n in names:
            self[n] = value
            extra = dict(extras)
            extra.setdefault("method", method or "override")
            self._set_extras(n, extra)
        return names

    def _set_extras(self, name: str, extra: Dict[str, Any]) -> None:
        if extra:
            self._extras.setdefault(name, {}).update(extra)

    def merge(self, other: Mapping[str, float], on_conflict: str = "error") -> "CalibrationTable":
        """A new table with the entries of both. ``on_conflict`` decides names present in
        both with different amax: 'error' (default), 'theirs', 'ours', 'max' or 'min'."""
        if on_conflict not in _CONFLICT_POLICIES:
            raise ValueError(
                f"trtcal: on_conflict must be one of {_CONFLICT_POLICIES}, got {on_conflict!r}"
            )
        out = self.copy()
        out._cache = None
        conflicts = [n for n in other if n in self._amax and self._amax[n] != other[n]]
        if conflicts and on_conflict == "error":
            raise ValueError(
                f"trtcal: cannot merge: {len(conflicts)} tensor(s) have different amax in the two "
                "tables "
                f"(first: '{conflicts[0]}': {self._amax[conflicts[0]]} vs {other[conflicts[0]]}); "
                "pass "
                "on_conflict='theirs', 'ours', 'max' or 'min'"
            )
        for n in other:
            theirs = other[n]
            if n in self._amax and n in conflicts:
                ours = self._amax[n]
                pick = {
                    "theirs": theirs,
                    "ours": ours,
                    "max": max(ours, theirs),
                    "min": min(ours, theirs),
                }[on_conflict]
            else:
                pick = theirs
            out[n] = pick
            if (
                isinstance(other, CalibrationTable)
                and n in other._extras
                and (n not in self or pick == theirs)
            ):
                out._extras.setdefault(n, {}).update(other._extras[n])
        return out

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> Dict[str, Any]:
        tensors = {}
        for n, a in self._amax.items():
            entry: Dict[str, Any] = {"amax": _json_float(a), "scale": _json_float(a / 127.0)}
            if self._extras.get(n):
                entry.update(self._extras[n])
            tensors[n] = entry
        return {
            "format": JSON_FORMAT,
            "version": JSON_FORMAT_VERSION,
            "provenance": self.provenance.to_dict(),
            "tensors": tensors,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "<dict>") -> "CalibrationTable":
        if not isinstance(d, Mapping) or d.get("format") != JSON_FORMAT:
            raise ValueError(
                f"trtcal: {source} is not a trtcal calibration table (expected a JSON object "
                f'with "format": "{JSON_FORMAT}")'
            )
        version = d.get("version", 0)
        if not isinstance(version, int) or isinstance(version, bool):
            raise ValueError(f'trtcal: {source}: "version" must be an integer, got {version!r}')
        if version > JSON_FORMAT_VERSION:
            raise ValueError(
                f"trtcal: {source} uses table format version {d['version']}; this trtcal "
                f"reads up to {JSON_FORMAT_VERSION}: upgrade trtcal"
            )
        prov = d.get("provenance", {})
        try:
            table = cls(provenance=Provenance.from_dict(prov))
        except (TypeError, ValueError, AttributeError) as exc:
            raise ValueError(
                f'trtcal: {source}: "provenance" is malformed ({type(exc).__name__}: {exc})'
            ) from None
        tensors = d.get("tensors", {})
        if not isinstance(tensors, Mapping):
            raise ValueError(
                f'trtcal: {source}: "tensors" must be an object of {{name: {{"amax": ...}}}}, '
                f"got {type(tensors).__name__}"
            )
        for name, entry in tensors.items():
            if not isinstance(entry, Mapping) or "amax" not in entry:
                raise ValueError(f"trtcal: {source}: tensor '{name}' has no 'amax'")
            value = _from_json_float(entry["amax"], name, source)
            try:
                table._amax[_check_name(name)] = _check_amax(name, value)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"trtcal: {source}: {str(exc)[len('trtcal: ') :]}") from None
            extra = {k: v for k, v in entry.items() if k not in ("amax", "scale")}
            if extra:
                table._extras[name] = extra
        return table

    def to_json(self, path: Optional[PathLike] = None, *, indent: int = 2) -> str:
        """The table as JSON text (strict JSON: inf/NaN are written as strings). Written to
        ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=indent, allow_nan=False) + "\n"
        if path is not None:
            atomic_write(path, text)
        return text

    @classmethod
    def from_json(cls, path_or_text: Union[PathLike, str]) -> "CalibrationTable":
        """Loads a table from a JSON file path or from JSON text."""
        source = "<json text>"
        text = str(path_or_text)
        if not (isinstance(path_or_text, str) and path_or_text.lstrip().startswith("{")):
            source = os.fspath(path_or_text)
            with open(path_or_text, "r", encoding="utf-8") as f:
                text = f.read()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"trtcal: {source} is not valid JSON ({exc})") from None
        return cls.from_dict(data, source)

    # ------------------------------------------------------------------ TensorRT cache
    @classmethod
    def from_cache(cls, path: PathLike) -> "CalibrationTable":
        """Reads a TensorRT calibration cache (amax = scale * 127). The cache's header, line
        order and exact text are remembered, so :meth:`to_cache` with no version/algorithm
        gives back the same bytes while no value changed."""
        return cls.from_calibration_cache(_cache.read_cache(path), source=os.fspath(path))

    @classmethod
    def from_calibration_cache(
        cls, c: _cache.CalibrationCache, source: str = "<cache>"
    ) -> "CalibrationTable":
        prov = Provenance(
            method="tensorrt-cache",
            source=f"{source} ({c.header.strip()})",
            extra={"tensorrt_version": c.tensorrt_version, "algorithm": c.algorithm},
        )
        table = cls(provenance=prov)
        for e in c.entries:
            table._amax[e.name] = e.amax  # raw: caches may hold inf (and, rarely, odd values)
        table._cache = c
        return table

    def to_calibration_cache(
        self, tensorrt_version: Optional[str] = None, algorithm: Optional[str] = None
    ) -> _cache.CalibrationCache:
        """The table as a :class:`~trtcal.formats.cache.CalibrationCache` (see :meth:`to_cache`)."""
        src = self._cache
        if src is not None and tensorrt_version is None and algorithm is None:
            header = src.header
        else:
            # defaults: the cache this table was read from (directly or through JSON)
            extra = self.provenance.extra
            from_version = (
                src.tensorrt_version if src is not None else extra.get("tensorrt_version")
            )
            from_algo = src.algorithm if src is not None else extra.get("algorithm")
            tensorrt_version = tensorrt_version or from_version
            algorithm = algorithm or (from_algo if from_algo in _cache.ALGORITHMS else None)
            header = _cache.format_header(
                tensorrt_version or _cache.DEFAULT_TENSORRT_VERSION,
                algorithm or _cache.DEFAULT_ALGORITHM,
            )
        bad = self.invalid()
        if bad:
            raise ValueError(
                f"trtcal: cannot write a TensorRT cache: tensor '{bad[0][0]}' has {bad[0][1]}"
                + (f" (and {len(bad) - 1} more tensor(s))" if len(bad) > 1 else "")
                + "; TensorRT cannot use it as a range"
            )
        old = {e.name: e for e in src.entries} if src is not None else {}
        entries = []
        for n, a in self._amax.items():
            scale = _cache.to_float32(a / 127.0)
            e = old.get(n)
            if e is not None and _cache.float32_bits(e.scale) == _cache.float32_bits(scale):
                entries.append(e)
            else:
                tiny = _cache.tiny_scale_warning(
                    n, a
                )  # a new value (a cache's own are kept as they are)
                if tiny:
                    warnings.warn(tiny, stacklevel=3)
                _cache._check_name(n)
                entries.append(_cache.CacheEntry(n, scale))
        if src is not None:
            return _cache.CalibrationCache(header, entries, src.newline, src.final_newline, src.bom)
        return _cache.CalibrationCache(header, entries)

    def to_cache_bytes(
        self, tensorrt_version: Optional[str] = None, algorithm: Optional[str] = None
    ) -> bytes:
        return self.to_calibration_cache(tensorrt_version, algorithm).to_bytes()

    def to_cache(
        self,
        path: PathLike,
        tensorrt_version: Optional[str] = None,
        algorithm: Optional[str] = None,
    ) -> None:
        """Writes a TensorRT calibration cache (for TensorRT 5.x-10.x).

        ``tensorrt_version`` (default ``"10.3.0"``) and ``algorithm`` (default
        ``"EntropyCalibration2"``; also EntropyCalibration, MinMaxCalibration,
        LegacyCalibration) make the ``TRT-<N>-<Algorithm>`` header; TensorRT ignores a cache
        whose header does not match its version and calibrator. A table read from a cache
        (also through its JSON) keeps that cache's version and algorithm when not given.
        """
        self.to_calibration_cache(tensorrt_version, algorithm).write(path)


# ---------------------------------------------------------------------- helpers


def _show(pattern: NamePattern) -> str:
    return repr(pattern.pattern) if isinstance(pattern, re.Pattern) else repr(pattern)


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise TypeError(f"trtcal: a tensor name must be a non-empty string, got {name!r}")
    return name


def _check_amax(name: str, amax: Any) -> float:
    if isinstance(amax, bool):
        raise TypeError(f"trtcal: amax of tensor '{name}' must be a number, got {amax!r}")
    try:
        value = float(amax)
    except (TypeError, ValueError):
        raise TypeError(f"trtcal: amax of tensor '{name}' must be a number, got {amax!r}") from None
    if math.isnan(value):
        raise ValueError(f"trtcal: amax of tensor '{name}' is NaN")
    if value < 0:
        raise ValueError(f"trtcal: amax of tensor '{name}' is negative ({value}); amax is max |x|")
    return value


def _json_float(v: float) -> Union[float, str]:
    if math.isfinite(v):
        return v
    return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")


def _from_json_float(v: Any, name: str, source: str) -> float:
    if isinstance(v, str) and v.strip().lower() in (
        "inf",
        "+inf",
        "-inf",
        "nan",
        "infinity",
        "-infinity",
    ):
        return float(v)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    raise ValueError(f"trtcal: {source}: amax of tensor '{name}' is not a number ({v!r})")
