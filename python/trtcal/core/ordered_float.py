"""The ordered-uint32 form of float32 (the kernels' atomic min/max and radix-select keys): an
unsigned comparison of the codes orders the floats. It mirrors ``ordered_from_bits`` /
``bits_from_ordered`` in csrc/kernels/device_common.cuh; this is its one host copy."""

from __future__ import annotations

import numpy as np

SIGN = np.uint32(0x80000000)
MAGNITUDE = np.uint32(0x7FFFFFFF)


def to_ordered(bits: np.ndarray) -> np.ndarray:
    """float32 bit patterns -> ordered codes (negative: all bits flipped; else the sign bit set)."""
    bits = np.asarray(bits, dtype=np.uint32)
    return np.where(bits & SIGN, ~bits, bits | SIGN).astype(np.uint32)


def from_ordered(codes: np.ndarray) -> np.ndarray:
    """Ordered codes -> float32 bit patterns (the inverse of :func:`to_ordered`)."""
    codes = np.asarray(codes, dtype=np.uint32)
    return np.where(codes & SIGN, codes & MAGNITUDE, ~codes).astype(np.uint32)


def encode(v: np.ndarray, identity: int) -> np.ndarray:
    """float values -> ordered codes; NaN -> ``identity`` (the reduction's empty value)."""
    v = np.asarray(v, dtype=np.float64)
    o = to_ordered(v.astype(np.float32).view(np.uint32))
    o[np.isnan(v)] = identity
    return o


def decode(codes: np.ndarray) -> np.ndarray:
    """Ordered codes -> float64; the identities (0 and 0xFFFFFFFF: nothing reduced) -> NaN."""
    codes = np.asarray(codes, dtype=np.uint32)
    out = from_ordered(codes).view(np.float32).astype(np.float64)
    out[(codes == 0xFFFFFFFF) | (codes == 0)] = np.nan
    return out
