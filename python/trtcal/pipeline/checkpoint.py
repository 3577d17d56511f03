"""Checkpoints of a calibration run: every collector's exact state, the data cursor and a hash
of the configuration, written atomically (temporary file + ``os.replace``), so a crash while
writing leaves the previous checkpoint intact and ``--resume`` refuses a changed configuration.

File format: a NumPy ``.npz`` (no pickles) with ``meta`` (UTF-8 JSON) and ``counts`` (int64,
one row per tensor). Floats go through JSON's shortest round-trip form, so the restored state
is bit-identical.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from typing import Any, Dict, Mapping, Optional

import numpy as np

from ..core._files import atomic_savez, json_default

FORMAT = "trtcal.calibration.checkpoint"  # a file format name (kept when the module moved)
VERSION = 1


def config_hash(config: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of the settings that decide the collected statistics."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def save(
    path: str,
    *,
    config: Mapping[str, Any],
    stats_state: Mapping[str, Any],
    progress: Mapping[str, Any],
) -> None:
    """Writes the checkpoint atomically. ``progress``: cursor, samples, batches, skipped."""
    collectors = stats_state["collectors"]
    names = list(collectors)
    bins = int(stats_state["bins"])
    counts = np.zeros((len(names), bins), dtype=np.int64)
    states = {}
    for i, n in enumerate(names):
        s = dict(collectors[n])
        counts[i] = np.asarray(s.pop("counts"), dtype=np.int64)
        states[n] = s
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "config_hash": config_hash(config),
        "config": config,
        "progress": dict(progress),
        "stats": {
            "format": stats_state["format"],
            "bins": bins,
            "signed": bool(stats_state.get("signed", False)),
        },
        "names": names,
        "states": states,
    }
    blob = np.frombuffer(json.dumps(meta, default=json_default).encode("utf-8"), dtype=np.uint8)
    atomic_savez(path, ".trtcal-ckpt-", immediate=True, meta=blob, counts=counts)


class StaleCheckpointError(ValueError):
    """A checkpoint that cannot be resumed: unreadable, not a checkpoint, or written with other
    settings. ``reason`` says which in a few words (callers that treat the checkpoint as a cache,
    like ``trtcal analyze``, discard it and collect again)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def load(path: str, config: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """Reads a checkpoint; with ``config``, refuses one written for different settings.

    Returns {'config', 'progress', 'stats_state'}.
    """

    def refuse(why: Any) -> StaleCheckpointError:
        return StaleCheckpointError(
            f"trtcal: {path} is not a readable trtcal checkpoint ({why}); delete it, or "
            "rerun without --resume",
            "no statistics this trtcal reads",
        )

    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except IsADirectoryError:
        raise refuse("it is a folder") from None
    except OSError as exc:
        raise refuse(f"cannot read it: {exc.strerror or exc}") from None
    if not head.startswith(b"PK"):
        raise refuse(what_file(path, head))
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode("utf-8"))
            counts = np.array(z["counts"], dtype=np.int64)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        if "pickle" in str(exc):
            why = "it holds Python objects (pickles), which trtcal never writes"
        elif isinstance(exc, KeyError):
            why = f"a .npz archive without trtcal's {exc} array"
        else:
            why = f"damaged: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        raise refuse(why) from None
    if not isinstance(meta, dict):
        raise refuse("its 'meta' is not a JSON object")
    try:
        return parse(path, meta, counts, config)
    except StaleCheckpointError:
        raise
    except (KeyError, TypeError, IndexError, AttributeError, ValueError) as exc:
        raise refuse(f"damaged: {type(exc).__name__} {exc}") from None


def what_file(path: str, head: bytes) -> str:
    """What a file that is no .npz archive is (for error messages): never 'a pickle' unless it is
    one."""
    if head.startswith(b"\x80") and len(head) > 1 and head[1] <= 5:
        return "it is a Python pickle, which trtcal never writes or loads"
    if head.startswith(b"\x89PNG") or head.startswith(b"\xff\xd8"):
        return "it is an image"
    return known_kind(path, head)


def parse(
    path: str,
    meta: Mapping[str, Any],
    counts: np.ndarray,
    config: Optional[Mapping[str, Any]] = None,
) -> Dict[str, Any]:
    """:func:`load` on a checkpoint's ``meta`` (parsed JSON) and ``counts`` already read from
    ``path``."""
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise StaleCheckpointError(
            f"trtcal: {path} is not a trtcal calibration checkpoint of version {VERSION}",
            "no statistics this trtcal reads",
        )
    if config is not None and meta["config_hash"] != config_hash(config):
        changed = sorted(
            k
            for k in set(config) | set(meta["config"])
            if json.dumps(config.get(k), sort_keys=True, default=str)
            != json.dumps(meta["config"].get(k), sort_keys=True, default=str)
        )
        raise StaleCheckpointError(
            f"trtcal: cannot resume from {path}: it was written with different settings "
            f"(changed: {', '.join(changed) or 'unknown'}). Delete it or rerun without --resume.",
            f"statistics of other settings (changed: {', '.join(changed) or 'unknown'})",
        )
    collectors = {}
    for i, n in enumerate(meta["names"]):
        s = dict(meta["states"][n])
        s["counts"] = counts[i].copy()
        collectors[n] = s
    stats_state = {
        "format": meta["stats"]["format"],
        "bins": meta["stats"]["bins"],
        "signed": bool(meta["stats"].get("signed", False)),
        "collectors": collectors,
    }
    return {"config": meta["config"], "progress": meta["progress"], "stats_state": stats_state}


def known_kind(path: str, head: bytes) -> str:
    """Why a file that is no .npz archive is not one of trtcal's (for the error message)."""
    if head.startswith(b"\x93NUMPY"):
        try:
            with open(path, "rb") as f:
                version = np.lib.format.read_magic(f)
                read = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, _, dtype = read(f)
            what = f"a NumPy .npy array of shape {tuple(shape)}, {np.dtype(dtype).name}"
        except Exception:  # noqa: BLE001 - only the message depends on it
            what = "a NumPy .npy array"
        return f"it is {what}, not an .npz archive with trtcal's 'meta' and 'counts'"
    if not head:
        return "it is empty"
    text = head.lstrip()
    if text[:1] in (b"{", b"["):
        return (
            "it is a JSON file, such as a threshold table; merge the checkpoints or state files it "
            "was made from"
        )
    if text.startswith(b"TRT-"):
        return (
            "it is a TensorRT calibration cache; merge the checkpoints or state files it was made "
            "from"
        )
    return "it is not a NumPy .npz archive"
