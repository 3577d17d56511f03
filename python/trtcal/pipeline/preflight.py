"""Checks made before a calibration pass, so that nothing fails after it: no output is an input
or another output, every output folder is writable and has room, and no output lands inside
the data folder where the next run would read it as data.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from ..core import _files
from .runners import external_data_files

# files the data readers take as samples: an output of these kinds inside the data folder
# would be read as data by the next run
_DATA_EXTENSIONS = (
    ".npy",
    ".npz",
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
)


def _key(path: str) -> str:
    return os.path.normcase(os.path.realpath(os.path.abspath(path)))


def _same(a: str, b: str) -> bool:
    """Same file: one real path, or (both existing) one inode (hard links)."""
    if _key(a) == _key(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _inside(path: str, folder: str) -> bool:
    f = _key(folder)
    return _key(path).startswith(f.rstrip(os.sep) + os.sep)


def model_files(model: Any) -> List[str]:
    """The model file and the external-data files it names (inputs no output may overwrite)."""
    if not isinstance(model, (str, os.PathLike)):
        return []
    path = os.fspath(model)
    out = [path]
    try:
        out += external_data_files(path)
    except (ImportError, OSError, ValueError):
        pass
    return out


def check_paths(
    inputs: Sequence[Tuple[str, Optional[str]]],
    outputs: Sequence[Tuple[str, Optional[str]]],
    data_folder: Optional[str] = None,
) -> None:
    """Refuses, before anything runs: an output that is an input (same real path or same inode),
    two outputs on one path, and a data-like output (.npy, .npz, images, a Markdown report's
    PNGs) inside the data folder.

    ``inputs`` and ``outputs``: (what, path) pairs, e.g. ('--out-table', 'a.json'); None paths
    are ignored.
    """
    ins = [(w, p) for w, p in inputs if p]
    outs = [(w, p) for w, p in outputs if p]
    for wo, po in outs:
        for wi, pi in ins:
            if _same(po, pi):
                raise ValueError(
                    f"trtcal: {wo} {po} is the {wi} {pi}: an input is never overwritten; "
                    "choose another output path"
                )
    for i, (wa, pa) in enumerate(outs):
        for wb, pb in outs[i + 1 :]:
            if _same(pa, pb):
                raise ValueError(
                    f"trtcal: {wa} and {wb} are the same file ({pa}); "
                    "each output needs its own path"
                )
    if data_folder and os.path.isdir(data_folder):
        for wo, po in outs:
            lower = po.lower()
            if _inside(po, data_folder) and (
                lower.endswith(_DATA_EXTENSIONS) or lower.endswith(".md")
            ):
                raise ValueError(
                    f"trtcal: {wo} {po} is inside the data folder {data_folder}, "
                    "where the next run "
                    "would read it as calibration data; write it elsewhere"
                )


def check_writable(
    outputs: Sequence[Tuple[str, Optional[str]]],
    need: Optional[Mapping[str, int]] = None,
    log: Any = None,
) -> None:
    """Each output's folder exists (created now), takes a new file, and has room for the
    outputs that go there (``need``: {path: estimated bytes}); stale temporaries of killed runs
    are removed on the way. Raises :class:`trtcal.core._files.OutputError` naming the path."""
    by_dir: Dict[str, int] = {}
    for what, p in outputs:
        if not p:
            continue
        p = os.path.abspath(p)
        d = os.path.dirname(p)
        try:
            os.makedirs(d, exist_ok=True)
        except OSError as exc:
            raise _files.output_error(p, exc) from None
        if os.path.isdir(p):
            raise ValueError(f"trtcal: {what} {p} is a folder; give a file path")
        try:
            fd, tmp = _files.temp_path(p)
            os.close(fd)
            os.unlink(tmp)
        except OSError as exc:
            raise _files.output_error(p, exc) from None
        if os.path.exists(p) and not os.access(p, os.W_OK) and not os.access(d, os.W_OK):
            raise _files.output_error(p, PermissionError(13, "permission denied"))
        _files.remove_stale_temps(d, log)
        by_dir[d] = by_dir.get(d, 0) + int((need or {}).get(p, 0))
    for d, n in by_dir.items():
        try:
            st = os.statvfs(d)
        except (OSError, AttributeError):
            continue
        free = st.f_bavail * st.f_frsize
        if n and free < n:
            first = next(
                os.path.abspath(p)
                for _, p in outputs
                if p and os.path.dirname(os.path.abspath(p)) == d
            )
            raise _files.OutputError(
                28,
                f"trtcal: cannot write {first}: its device has {free / 1e6:.1f} MB free "
                f"and this run's outputs in {d} need about {n / 1e6:.1f} MB",
            )


def estimate(what: str, path: str, tensors: int, bins: int, model: Any = None) -> int:
    """Rough bytes an output needs (for the free-space check): a checkpoint holds int64 counts
    per tensor and bin; a Q/DQ model about the model's size; the rest are small."""
    if what == "checkpoint":
        return 8 * tensors * bins + 4096 * tensors + 65536
    if what == "qdq" and isinstance(model, (str, os.PathLike)):
        total = 0
        for f in model_files(model):
            try:
                total += os.path.getsize(f)
            except OSError:
                pass
        return int(total * 1.2) + 65536
    return 256 * tensors + 65536


def data_files(data: Any) -> List[Tuple[str, str]]:
    """The calibration data as inputs for :func:`check_paths`: ('data', path) for a path."""
    if isinstance(data, (str, os.PathLike)):
        return [("data", os.fspath(data))]
    return []


def _expanded(path: str, methods: Sequence[str]) -> List[str]:
    if len(methods) <= 1:
        return [path]
    root, ext = os.path.splitext(path)
    return [f"{root}.{m}{ext}" for m in methods]


def check_space(
    outputs: Sequence[Tuple[str, Optional[str]]],
    tensors: int,
    bins: int,
    model: Any = None,
    methods: Sequence[str] = (),
) -> None:
    """Free space for every output (estimated from the tensor count, bins and model size),
    before the pass; an :class:`trtcal.core._files.OutputError` names the first output of a folder
    that lacks room."""
    kinds = {
        "out_cache": "cache",
        "out_qdq": "qdq",
        "out_table": "table",
        "report": "report",
        "checkpoint": "checkpoint",
    }
    need: Dict[str, int] = {}
    expanded: List[Tuple[str, Optional[str]]] = []
    for what, p in outputs:
        if not p:
            continue
        paths = [p] if what == "checkpoint" else _expanded(p, methods)
        for q in paths:
            q = os.path.abspath(q)
            expanded.append((what, q))
            need[q] = estimate(kinds.get(what, what), q, tensors, bins, model)
    check_writable(expanded, need)


@contextlib.contextmanager
def engine_errors(model: Any, stage: str, samples: Sequence[str] = ()) -> Iterator[None]:
    """ONNX Runtime's own exceptions (which derive from Exception only: an op it lacks, a
    truncated model that still parses, a failure mid-run) -> one-line errors naming the model
    (and the samples of the batch, for ``stage='run'``)."""
    try:
        yield
    except (ValueError, TypeError, OSError, KeyboardInterrupt, RuntimeError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - onnxruntime_pybind11_state.* (Fail, InvalidGraph, ...)
        if type(exc).__module__.split(".")[0] != "onnxruntime":
            raise
        name = os.fspath(model) if isinstance(model, (str, os.PathLike)) else "the model"
        first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
        if stage == "load":
            raise ValueError(f"trtcal: ONNX Runtime cannot load {name}: {first[:400]}") from None
        where = (
            f" on sample {samples[0]}"
            if len(samples) == 1
            else f" on the batch of samples {samples[0]} to {samples[-1]}"
            if samples
            else ""
        )
        raise RuntimeError(
            f"trtcal: ONNX Runtime failed running {name}{where}: {first[:400]}"
        ) from None
