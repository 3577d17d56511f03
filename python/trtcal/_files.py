"""Files that must never be half-written (checkpoints, collector states)."""

from __future__ import annotations

import os
import tempfile

import numpy as np


def atomic_savez(path: str, prefix: str, **arrays: np.ndarray) -> str:
    """``numpy.savez`` to a temporary file beside ``path``, fsync, then rename over ``path``:
    an interruption leaves the previous file intact, never a truncated one."""
    d = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".npz", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def json_default(o):
    """``json.dumps(default=...)`` for NumPy scalars and arrays in trtcal's files."""
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"trtcal: cannot store {type(o).__name__} in a file")


def match_name(name: str, patterns) -> bool:
    """True when ``name`` matches one of the glob patterns or ``re:<regex>`` patterns (or when
    there are none)."""
    import fnmatch
    import re

    if not patterns:
        return True
    for p in patterns:
        if p.startswith("re:"):
            try:
                if re.search(p[3:], name):
                    return True
            except re.error as exc:
                raise ValueError(f"trtcal: name pattern {p!r} is not a valid regular expression: {exc}") from None
        elif fnmatch.fnmatchcase(name, p):
            return True
    return False
