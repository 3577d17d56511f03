"""Result types of the statistics API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np


@dataclass(frozen=True)
class Histogram:
    """A histogram of |x| over [0, R) or of x over [-R, R), with 64-bit counts.

    ``range`` is R, or None when no finite non-zero value was seen (then every finite value
    was zero and sits in the zero bin: bin 0, or bin ``bins // 2`` when signed).
    Non-finite values are never binned; they are counted in ``nan``, ``posinf``, ``neginf``.
    ``outside`` counts finite values beyond a caller-chosen range.
    """

    counts: np.ndarray
    range: Optional[float]
    signed: bool
    name: str = "x"
    amax: float = 0.0
    min: Optional[float] = None
    max: Optional[float] = None
    nan: int = 0
    posinf: int = 0
    neginf: int = 0
    outside: int = 0

    @property
    def bins(self) -> int:
        return int(self.counts.size)

    @property
    def edges(self) -> np.ndarray:
        """Bin edges (bins + 1 values, float64). Raises when the range is undefined."""
        if self.range is None:
            raise ValueError(
                f"trtcal: histogram of '{self.name}' has no range: "
                + (
                    "it saw no finite values"
                    if self.total == 0
                    else "all its finite values are zero"
                )
            )
        lo = -self.range if self.signed else 0.0
        return np.linspace(lo, self.range, self.bins + 1)

    @property
    def total(self) -> int:
        """Number of binned (finite) values."""
        return int(self.counts.sum())

    @property
    def nonfinite(self) -> int:
        return int(self.nan + self.posinf + self.neginf)

    @property
    def status(self) -> str:
        """'ok', 'all-zero' (finite values are all zero), 'no-finite' or 'empty'."""
        if self.total == 0:
            return "no-finite" if self.nonfinite else "empty"
        if self.range is None:
            return "all-zero"
        return "ok"
