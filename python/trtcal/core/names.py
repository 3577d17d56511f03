"""Tensor and layer name patterns, one meaning everywhere (``--tensors``, ``TensorSelection``,
``CalibrationTable.select`` / ``override`` / ``exclude``, ``trtcal.torch`` hooks, the Q/DQ
writer's ``exclude_nodes``).

A pattern is an exact name, a glob (``"*/conv*"``, case-sensitive), ``"re:<regex>"`` (searched
anywhere in the name), a compiled regex, or a list of those. An exact name wins over its glob
reading: names such as ``(Unnamed Layer* 46) [Constant]_output`` hold glob characters.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Iterable, List, Optional, Pattern, Sequence, Union

OnePattern = Union[str, Pattern[str]]
NamePattern = Union[OnePattern, Iterable[OnePattern]]


def _as_list(pattern: NamePattern) -> List[OnePattern]:
    if isinstance(pattern, (str, re.Pattern)):
        return [pattern]
    return list(pattern)


def _regex(text: str) -> Pattern[str]:
    try:
        return re.compile(text)
    except re.error as exc:
        raise ValueError(
            f"trtcal: name pattern 're:{text}' is not a valid regular expression: {exc}"
        ) from None


def _hit(name: str, pattern: OnePattern) -> bool:
    if isinstance(pattern, re.Pattern):
        return pattern.search(name) is not None
    if pattern.startswith("re:"):
        return _regex(pattern[3:]).search(name) is not None
    return name == pattern or fnmatch.fnmatchcase(name, pattern)


def is_pattern(text: str) -> bool:
    """True when ``text`` is a glob or ``re:`` pattern rather than a plain name."""
    return text.startswith("re:") or any(c in text for c in "*?[")


def matches(name: str, patterns: Optional[NamePattern]) -> bool:
    """True when ``name`` matches one of ``patterns`` (or when there are none)."""
    if patterns is None:
        return True
    pats = _as_list(patterns)
    return not pats or any(_hit(name, p) for p in pats)


def match_names(names: Iterable[str], pattern: NamePattern) -> List[str]:
    """The ``names`` (in their order, each once) that ``pattern`` matches; an exact name matches
    only itself."""
    names = list(names)
    present = set(names)
    picked: List[str] = []
    seen = set()
    for p in _as_list(pattern):
        hits: Sequence[str] = (
            [p] if isinstance(p, str) and p in present else [n for n in names if _hit(n, p)]
        )
        for n in hits:
            if n not in seen:
                seen.add(n)
                picked.append(n)
    return picked
