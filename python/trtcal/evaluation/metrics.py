"""How far a quantized model's tensors are from the FP32 model's: cosine similarity, SQNR,
max abs error, top-1 and top-k agreement, in NumPy (float64 sums).

The functions take two arrays of the same shape (reference first). :class:`ErrorStats`
accumulates the same quantities over a stream of batches in constant memory, so a whole
evaluation set is summarised exactly without keeping its tensors.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional

import numpy as np

__all__ = [
    "cosine_similarity",
    "sqnr_db",
    "max_abs_error",
    "top1_agreement",
    "topk_agreement",
    "ErrorStats",
]


def _pair(ref: Any, test: Any, name: str) -> "tuple[np.ndarray, np.ndarray]":
    r = np.asarray(ref)
    t = np.asarray(test)
    if r.shape != t.shape:
        raise ValueError(
            f"trtcal: tensor '{name}': reference shape {r.shape} and quantized shape {t.shape} "
            "differ"
        )
    if r.size == 0:
        raise ValueError(f"trtcal: tensor '{name}' is empty")
    for what, a in (("reference", r), ("quantized", t)):
        if a.dtype.kind not in "fiub":
            raise TypeError(
                f"trtcal: tensor '{name}': {what} has dtype {a.dtype}; expected a numeric array"
            )
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise ValueError(f"trtcal: tensor '{name}': {what} holds NaN or Inf")
    return r.astype(np.float64, copy=False).reshape(-1), t.astype(np.float64, copy=False).reshape(
        -1
    )


def cosine_similarity(ref: Any, test: Any, name: str = "tensor") -> float:
    """Cosine of the angle between the flattened tensors, in [-1, 1].

    Two all-zero tensors are identical (1.0); one all-zero tensor against a non-zero one is 0.0.
    """
    r, t = _pair(ref, test, name)
    return _cosine(float(r @ r), float(t @ t), float(r @ t))


def sqnr_db(ref: Any, test: Any, name: str = "tensor") -> float:
    """Signal-to-quantization-noise ratio ``10 log10(sum ref^2 / sum (ref - test)^2)`` in dB.

    +inf when the tensors are equal; -inf when the reference is all zero and the test is not.
    """
    r, t = _pair(ref, test, name)
    e = r - t
    return _sqnr(float(r @ r), float(e @ e))


def max_abs_error(ref: Any, test: Any, name: str = "tensor") -> float:
    """max |ref - test|."""
    r, t = _pair(ref, test, name)
    return float(np.max(np.abs(r - t)))


def top1_agreement(ref: Any, test: Any, axis: int = -1, name: str = "tensor") -> float:
    """Fraction of rows whose arg-max along ``axis`` (the class axis) is the same in both."""
    r = np.asarray(ref)
    t = np.asarray(test)
    _pair(r, t, name)
    a = np.argmax(r, axis=axis)
    b = np.argmax(t, axis=axis)
    return float(np.mean(a == b))


def topk_agreement(ref: Any, test: Any, k: int = 5, axis: int = -1, name: str = "tensor") -> float:
    """Fraction of rows whose reference arg-max along ``axis`` is among the quantized model's
    ``k`` largest values along that axis (top-5 agreement for ``k=5``; ``k=1`` is top-1, ties
    aside). With ``k`` at least the number of classes every row agrees."""
    r = np.asarray(ref)
    t = np.asarray(test)
    _pair(r, t, name)
    return _topk_hits(r, t, k, axis) / max(1, np.argmax(r, axis=axis).size)


def _topk_hits(r: np.ndarray, t: np.ndarray, k: int, axis: int) -> int:
    """Rows whose reference arg-max is among the test's k largest (ties counted as inside: a
    class is in the top k when fewer than k classes are strictly larger)."""
    if k < 1:
        raise ValueError(f"trtcal: k must be >= 1, got {k}")
    a = np.expand_dims(np.argmax(r, axis=axis), axis)
    mine = np.take_along_axis(t, a, axis=axis)
    larger = np.sum(t > mine, axis=axis)
    return int(np.sum(larger < k))


def _cosine(rr: float, tt: float, rt: float) -> float:
    if rr == 0.0 and tt == 0.0:
        return 1.0
    if rr == 0.0 or tt == 0.0:
        return 0.0
    return float(max(-1.0, min(1.0, rt / math.sqrt(rr * tt))))


def _sqnr(rr: float, ee: float) -> float:
    if ee == 0.0:
        return math.inf
    if rr == 0.0:
        return -math.inf
    return 10.0 * math.log10(rr / ee)


class ErrorStats:
    """Streaming error statistics of one tensor over many batches (exact, constant memory).

    ``update(ref, test)`` adds a batch whose axis 0 is the sample axis. Cosine and SQNR are
    those of the whole stream (ratios of float64 sums, the same as the functions above applied
    to everything concatenated); ``worst_cosine`` is the lowest per-sample cosine. With
    ``classes_axis`` set (a classifier's logits), top-1 and top-5 agreement are counted too
    (top-5: the reference's class is among the quantized model's five largest; None with five
    classes or fewer). :meth:`merge` adds another stream's sums (exact: sums, maxima, minima).
    """

    def __init__(self, name: str = "tensor", classes_axis: Optional[int] = None) -> None:
        self.name = name
        self.classes_axis = classes_axis
        self.rr = 0.0  # sum ref^2
        self.tt = 0.0  # sum test^2
        self.rt = 0.0  # sum ref * test
        self.ee = 0.0  # sum (ref - test)^2
        self.max_abs = 0.0
        self.values = 0
        self.samples = 0
        self.worst_cosine = math.inf
        self.top1_hits = 0
        self.top1_rows = 0
        self.top5_hits = 0
        self.top5_rows = 0

    def update(self, ref: Any, test: Any) -> "ErrorStats":
        r0 = np.asarray(ref)
        t0 = np.asarray(test)
        r, t = _pair(r0, t0, self.name)
        e = r - t
        self.rr += float(r @ r)
        self.tt += float(t @ t)
        self.rt += float(r @ t)
        self.ee += float(e @ e)
        self.max_abs = max(self.max_abs, float(np.max(np.abs(e))))
        self.values += r.size
        n = r0.shape[0] if r0.ndim >= 1 else 1
        if n > 0:
            rs = r.reshape(n, -1)
            ts = t.reshape(n, -1)
            rr = np.einsum("ij,ij->i", rs, rs)
            tt = np.einsum("ij,ij->i", ts, ts)
            rt = np.einsum("ij,ij->i", rs, ts)
            self.worst_cosine = min(
                self.worst_cosine, min(_cosine(a, b, c) for a, b, c in zip(rr, tt, rt))
            )
            self.samples += n
        if self.classes_axis is not None and r0.ndim >= 1:
            a = np.argmax(r0, axis=self.classes_axis)
            b = np.argmax(t0, axis=self.classes_axis)
            self.top1_hits += int(np.sum(a == b))
            self.top1_rows += int(a.size)
            if r0.shape[self.classes_axis] > 5:
                self.top5_hits += _topk_hits(r0, t0, 5, self.classes_axis)
                self.top5_rows += int(a.size)
        return self

    def merge(self, other: "ErrorStats") -> "ErrorStats":
        """Adds ``other``'s stream (another shard of the same tensor) to this one, in place."""
        for k in (
            "rr",
            "tt",
            "rt",
            "ee",
            "values",
            "samples",
            "top1_hits",
            "top1_rows",
            "top5_hits",
            "top5_rows",
        ):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        self.max_abs = max(self.max_abs, other.max_abs)
        self.worst_cosine = min(self.worst_cosine, other.worst_cosine)
        return self

    @property
    def cosine(self) -> float:
        return _cosine(self.rr, self.tt, self.rt)

    @property
    def sqnr_db(self) -> float:
        return _sqnr(self.rr, self.ee)

    @property
    def top1(self) -> Optional[float]:
        return self.top1_hits / self.top1_rows if self.top1_rows else None

    @property
    def top5(self) -> Optional[float]:
        return self.top5_hits / self.top5_rows if self.top5_rows else None

    def to_dict(self) -> Dict[str, Any]:
        return {
            "cosine": self.cosine,
            "sqnr_db": self.sqnr_db,
            "max_abs_error": self.max_abs,
            "worst_sample_cosine": self.worst_cosine if self.samples else None,
            "top1_agreement": self.top1,
            "top5_agreement": self.top5,
            "samples": self.samples,
        }

    def state(self) -> Dict[str, Any]:
        """The raw sums (JSON-serialisable), for caches."""
        return {
            k: getattr(self, k)
            for k in (
                "rr",
                "tt",
                "rt",
                "ee",
                "max_abs",
                "values",
                "samples",
                "worst_cosine",
                "top1_hits",
                "top1_rows",
                "top5_hits",
                "top5_rows",
            )
        }

    @classmethod
    def from_state(cls, state: Dict[str, Any], name: str = "tensor") -> "ErrorStats":
        s = cls(name)
        for k, v in state.items():
            setattr(s, k, v)
        return s
