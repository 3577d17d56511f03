"""Range-search references (NumPy float64, vectorised over candidates): the CPU path of
:func:`trtcal.compute_amax` and the oracle of csrc/kernels/range_search.cu.

Every function takes one histogram as int64 ``counts`` (and float64 ``edges`` where values
matter) and returns ``(candidates, curve)`` or an index; the choice among candidates is made
by :func:`pick`, identically on the GPU. The per-candidate values are computed in float64;
the GPU sums in a different (fixed) order, so values may differ in the last bits. ``pick``
therefore treats every value within ``tol * (1 + |min|)`` of the minimum as a tie and then
applies the flavor's tie rule (last or first), which makes the chosen bin the same on both.

Definitions (see docs/range-search.md for the peers these reproduce):

* proportional entropy (flavors ``pytorch_quantization`` and ``tensorrt``): for candidate i,
  P = counts[:i] with the sum of counts[i:] added to P[i-1]; fine bin j < i belongs to
  coarse level floor(j * levels / i); each level's count is spread evenly over its NONZERO
  fine bins to give Q; KL(P || Q) with both normalised, natural log, +inf where P > 0 = Q.
* ONNX Runtime entropy: candidate i slices a signed histogram to [z - i, min(z + i + 1, n)),
  z = n // 2; outliers go to the two end bins; ``len // levels`` fine bins per level (the
  remainder joins the last level's sum but its bins get q = 0); q is integer-truncated;
  p and q are smoothed in float32 (zeros -> 1e-4, nonzeros -= 1e-4 * zeros / nonzeros).
* MSE: bin centers c, candidate amax a, step = a / max_bound, q = clip(rint(c / step), +-max_bound)
  computed as rint(c * (max_bound / a)); error (q * step - c)^2 weighted by the counts,
  averaged over the bins.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

TIE_TOLERANCE = 1e-12
_CHUNK_ELEMS = 1 << 22  # candidates x bins per vectorised chunk (bounds memory)


def pick(curve: np.ndarray, tie: str, tol: float = TIE_TOLERANCE) -> int:
    """Index of the minimum of ``curve`` with ties (within ``tol * (1 + |min|)``) broken by
    ``tie`` ('first' or 'last'). A curve of all +inf picks by the same rule."""
    curve = np.asarray(curve, dtype=np.float64)
    if curve.size == 0:
        raise ValueError("trtcal: no candidates to pick from")
    m = float(curve.min())
    if np.isinf(m):
        ties = np.isinf(curve)
    else:
        ties = curve <= m + tol * (1.0 + abs(m))
    idx = np.flatnonzero(ties)
    return int(idx[-1] if tie == "last" else idx[0])


def _chunks(ncand: int, width: int):
    step = max(1, _CHUNK_ELEMS // max(width, 1))
    for c0 in range(0, ncand, step):
        yield c0, min(ncand, c0 + step)


def entropy_proportional(
    counts: np.ndarray,
    candidates: np.ndarray,
    *,
    levels: int = 128,
    zero_bin_rule: bool = True,
) -> np.ndarray:
    """KL divergence for each candidate bin count i (pytorch-quantization's construction).

    ``zero_bin_rule`` replaces counts[0] by counts[1] first (on a copy). Returns float64
    values (+inf where Q is zero where P is not, or where counts[:i] is empty).
    """
    b = np.array(counts, dtype=np.int64, copy=True)
    n = b.size
    if zero_bin_rule and n > 1:
        b[0] = b[1]
    total = int(b.sum())
    cands = np.asarray(candidates, dtype=np.int64)
    out = np.full(cands.size, np.inf)
    if total == 0 or cands.size == 0:
        return out
    B = np.concatenate(([0], np.cumsum(b)))
    N = np.concatenate(([0], np.cumsum(b > 0)))
    bf = b.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        bl = np.where(b > 0, bf * np.log(bf), 0.0)
    # long double prefix: differences of it are the per-level sums of b*log(b), accurate
    # beyond float64 (the GPU sums each level directly)
    F = np.concatenate(([0], np.cumsum(bl.astype(np.longdouble))))
    L = int(levels)
    k = np.arange(L + 1, dtype=np.int64)[None, :]
    for c0, c1 in _chunks(cands.size, L):
        i = cands[c0:c1, None]
        J = (k * i + L - 1) // L  # first fine bin of level k; J[:, L] = i
        S = B[J[:, 1:]] - B[J[:, :-1]]
        nk = N[J[:, 1:]] - N[J[:, :-1]]
        G = (F[J[:, 1:]] - F[J[:, :-1]]).astype(np.float64)
        Sf = S.astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            term = np.where(nk > 0, G - Sf * np.log(Sf / nk), 0.0)
        X = term.sum(axis=1)
        ii = i[:, 0]
        outl = total - B[ii]
        blast = b[ii - 1]
        klast = ((ii - 1) * L) // ii
        rows = np.arange(ii.size)
        Q = Sf[rows, klast] / np.maximum(nk[rows, klast], 1)
        bo = (blast + outl).astype(np.float64)
        blf = blast.astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            corr = np.where(blast > 0, bo * np.log(bo / Q) - blf * np.log(blf / Q), np.inf)
        X = np.where(outl > 0, X + corr, X)
        sq = B[ii]
        with np.errstate(divide="ignore", invalid="ignore"):
            kl = X / total + np.log(sq / total)
        out[c0:c1] = np.where(sq > 0, kl, np.inf)
    return out


def entropy_onnxruntime(
    counts: np.ndarray,
    candidates: np.ndarray,
    *,
    levels: int = 128,
    eps: float = 1e-4,
) -> np.ndarray:
    """KL divergence of ONNX Runtime's ``get_entropy_threshold`` for each half-width i of a
    signed histogram (see the module docstring). +inf where ORT's smoothing gives up (all
    zeros) or would fail its own assertion (eps1 >= 1).

    Candidates are processed in blocks that share ``m = len // levels`` (64 consecutive
    half-widths each), so a block's groups are one reshape and its rows differ in length by
    less than ``levels``; Q is constant over a group, so its smoothing and logarithm are taken
    once per group, not per bin. The per-bin float32 smoothing of P is replayed exactly."""
    h = np.asarray(counts, dtype=np.int64)
    n = h.size
    z = n // 2
    cands = np.asarray(candidates, dtype=np.int64)
    out = np.full(cands.size, np.inf)
    if cands.size == 0 or n == 0:
        return out
    H = np.concatenate(([0], np.cumsum(h)))
    s = z - cands
    e = np.minimum(z + cands + 1, n)
    m = (e - s) // int(levels)
    for mv in np.unique(m[m > 0]):
        rows = np.flatnonzero(m == mv)
        width = int((e - s)[rows].max())
        for c0, c1 in _chunks(rows.size, width):
            r = rows[c0:c1]
            out[r] = _ort_block(h, H, s[r], e[r], int(mv), int(levels), eps)
    return out


def _ort_block(
    h: np.ndarray, H: np.ndarray, s: np.ndarray, e: np.ndarray, m: int, levels: int, eps: float
) -> np.ndarray:
    """ORT's KL for rows (slices [s, e)) that share m = len // levels."""
    n = h.size
    R = s.size
    L = e - s
    W = levels * m  # the grouped columns; [W, L) is the remainder (q = 0 there)
    rows = np.arange(R)
    j = np.arange(int(L.max()), dtype=np.int64)[None, :]
    valid = j < L[:, None]
    p = np.where(valid, h[np.minimum(s[:, None] + j, n - 1)], 0)
    p[:, 0] += H[s]
    p[rows, L - 1] += H[n] - H[e]
    nzp = p != 0
    # group sums of the slice (without the outliers), remainder into the last group
    g = np.arange(levels + 1, dtype=np.int64)[None, :] * m
    Sg = np.diff(H[s[:, None] + g], axis=1)
    Sg[:, -1] += H[e] - H[s + W]
    norm = nzp[:, :W].reshape(R, levels, m).sum(axis=2)
    qg = np.where(norm > 0, Sg // np.maximum(norm, 1), 0)
    f_eps = np.float32(eps)
    # smoothing of p, bin by bin in float32
    nnz_p = nzp.sum(axis=1)
    e1p = (eps * (L - nnz_p).astype(np.float64)) / np.maximum(nnz_p, 1).astype(np.float64)
    okp = (nnz_p > 0) & (e1p < 1.0)
    pt = np.where(nzp, p.astype(np.float32) + (-e1p).astype(np.float32)[:, None], f_eps)
    pt = np.where(valid, pt.astype(np.float64), 0.0)
    # smoothing of q: one value per group; the remainder's bins are zeros
    nz_q = m * (qg == 0).sum(axis=1) + (L - W)
    nnz_q = L - nz_q
    e1q = (eps * nz_q.astype(np.float64)) / np.maximum(nnz_q, 1).astype(np.float64)
    okq = (nnz_q > 0) & (e1q < 1.0)
    qt = np.where(
        qg != 0, qg.astype(np.float32) + (-e1q).astype(np.float32)[:, None], f_eps
    ).astype(np.float64)
    logq = np.concatenate(
        (
            np.repeat(np.log(qt), m, axis=1),
            np.full((R, pt.shape[1] - W), np.log(np.float64(f_eps))),
        ),
        axis=1,
    )
    Sp = pt.sum(axis=1)
    Sq = m * qt.sum(axis=1) + (L - W) * np.float64(f_eps)
    with np.errstate(divide="ignore", invalid="ignore"):
        X = (pt * (np.log(np.where(valid, pt, 1.0)) - logq)).sum(axis=1)
        kl = X / Sp + np.log(Sq / Sp)
    return np.where(okp & okq, kl, np.inf)


def percentile_index(counts: np.ndarray, fraction: float) -> int:
    """First index k with cumsum(counts / total)[k] >= fraction (pytorch-quantization's and
    ONNX Runtime's ``searchsorted``); counts.size when the CDF never reaches it."""
    c = np.asarray(counts, dtype=np.int64)
    total = c.sum()
    cdf = np.cumsum(c / total)
    return int(np.searchsorted(cdf, fraction))


def bin_centers(edges: np.ndarray) -> np.ndarray:
    e = np.asarray(edges, dtype=np.float64)
    return (e[:-1] + e[1:]) * 0.5


def mse_candidates(edges: np.ndarray, start_bin: int, stride: int, per_bin: int) -> np.ndarray:
    """Candidate amax values: bin centers from ``start_bin`` (every ``stride``), or with
    ``per_bin`` > 1 the grid c[start] + t * (stride * width / per_bin) up to the last center."""
    c = bin_centers(edges)
    n = c.size
    if per_bin == 1:
        return c[np.arange(start_bin, n, stride)]
    a0, h, count = mse_grid(edges, start_bin, stride, per_bin)
    return np.arange(count, dtype=np.float64) * h + a0


def mse_grid(
    edges: np.ndarray, start_bin: int, stride: int, per_bin: int
) -> Tuple[float, float, int]:
    """(a0, h, count) of the fine MSE grid."""
    e = np.asarray(edges, dtype=np.float64)
    n = e.size - 1
    c = bin_centers(e)
    width = (float(e[-1]) - float(e[0])) / n
    h = stride * width / per_bin
    a0 = float(c[start_bin])
    span = float(c[-1]) - a0
    count = int(np.floor(span / h + 1e-9)) + 1 if h > 0 else 1
    return a0, h, count


def mse_curve(
    counts: np.ndarray, edges: np.ndarray, amaxes: np.ndarray, *, max_bound: int = 127
) -> np.ndarray:
    """Mean over bins of counts * (fake_quant(center) - center)^2 for each candidate amax."""
    cnt = np.asarray(counts, dtype=np.int64).astype(np.float64)
    c = bin_centers(edges)
    a = np.asarray(amaxes, dtype=np.float64)
    out = np.empty(a.size)
    mb = float(max_bound)
    n = c.size
    for c0, c1 in _chunks(a.size, n):
        aa = a[c0:c1, None]
        scale = mb / aa
        step = aa / mb
        q = np.clip(np.rint(c[None, :] * scale), -mb, mb)
        err = q * step - c[None, :]
        out[c0:c1] = (err * err * cnt[None, :]).sum(axis=1) / n
    return out


def fold_signed(
    counts: np.ndarray, edges: np.ndarray, name: str = "tensor"
) -> Tuple[np.ndarray, np.ndarray]:
    """A signed histogram on a grid symmetric about 0 -> the |x| histogram on [0, R]."""
    c = np.asarray(counts, dtype=np.int64)
    e = np.asarray(edges, dtype=np.float64)
    n = c.size
    if n % 2 or not np.allclose(e[::-1], -e, rtol=0, atol=1e-12 * max(abs(e[0]), abs(e[-1]))):
        raise ValueError(
            f"trtcal: histogram of '{name}' is signed but its edges are not symmetric about 0 "
            f"with an even bin count ({n} bins over [{e[0]}, {e[-1]}]); pass an |x| histogram"
        )
    z = n // 2
    folded = c[z:] + c[:z][::-1]
    return folded, np.abs(e[z:])


def minmax_amax(counts: np.ndarray, edges: np.ndarray) -> Optional[float]:
    """Largest |edge| bounding a nonzero bin (None when all counts are zero)."""
    nz = np.flatnonzero(np.asarray(counts) != 0)
    if nz.size == 0:
        return None
    e = np.asarray(edges, dtype=np.float64)
    return float(max(abs(e[nz[0]]), abs(e[nz[-1] + 1])))
