"""FP8 (E4M3FN) references (NumPy float64): exact rounding, and the MSE / KL range searches on the
E4M3 grid. The CPU path of :func:`trtcal.fp8.fp8_amax` and the oracle of csrc/kernels/fp8_search.cu.

E4M3FN (ONNX ``FLOAT8E4M3FN``, TensorRT ``DataType::kFP8``): 1 sign, 4 exponent bits (bias 7),
3 mantissa bits, no infinities, the one NaN code per sign 0x7F/0xFF. Largest finite 448 (0x7E),
smallest normal 2^-6, subnormals k * 2^-9 (k = 1..7). :func:`round_e4m3` rounds to nearest,
ties to even, and saturates: |x| above 448 gives +-448 (what TensorRT's and ONNX Runtime's
saturating ``QuantizeLinear`` do). It is exact in float64: the spacing at x is
2^max(floor(log2 |x|) - 3, -9), a power of two, so ``rint(x / spacing) * spacing`` rounds once.

How a histogram is quantized (both searches; docs/fp8.md):

* The float histogram counts |x| in bins; every value of bin j is represented by its centre
  c_j = (e_j + e_{j+1}) / 2 (as pytorch-quantization's and trtcal's INT8 MSE do).
* A candidate amax a maps to E4M3's 448: scale s = a / 448, and the dequantized value of c is
  ``round_e4m3(c * (448 / a)) * (a / 448)`` (those two float64 factors, in that order).
* MSE(a) = sum_j counts_j * (dq(c_j) - c_j)^2 / n (n bins; the INT8 MSE's normalisation).
  Candidates: the bin centres c_k, k = start_bin, start_bin + stride, ... < n.
* KL(i) (candidate i = number of kept bins, amax = e_i, the bin's upper edge): P = counts[:i] with
  the counts beyond (outliers) added to P[i-1]; the kept bins whose centres round to the same
  E4M3 value form one level (levels are runs of adjacent bins, rounding being monotone); Q
  spreads each level's count (counts[:i], outliers excluded) evenly over the level's bins where
  P > 0; KL(P || Q) of the normalised histograms, natural log, +inf where P > 0 = Q. This is
  the proportional (TensorRT / pytorch-quantization) construction with E4M3's levels in place
  of INT8's 128 equal ones. Candidates i = start_bin, start_bin + stride, ... <= n.

Sums run bin by bin in ascending order (``np.bincount``), the order of the GPU kernel, so the
MSE curve is bit-identical on both; KL uses ``log`` (glibc vs CUDA may differ in the last bit).
:func:`trtcal.reference.range_search.pick` chooses with the same tie rule on both paths: the
first candidate within ``tol * (1 + |min|)`` of the minimum.
"""

from __future__ import annotations

import numpy as np

E4M3_MAX = 448.0
E4M3_MIN_NORMAL = 2.0**-6
E4M3_MIN_SUBNORMAL = 2.0**-9
_CHUNK_ELEMS = 1 << 22


_POW2 = np.ldexp(1.0, np.arange(-9, 10))  # 2^-9 .. 2^9, 2^j at index j + 9


def _round_e4m3_abs(a: np.ndarray) -> np.ndarray:
    """|x| (float64, >= 0, no NaN) rounded to E4M3FN, saturating: the spacing at a is
    2^max(floor(log2 a) - 3, -9), read from a's exponent bits; a * (1 / spacing) and the product
    back are exact (powers of two), so rint rounds once, to nearest even. Values past 448 (up
    to +inf) give 448. The kernel computes the same with frexp/ldexp."""
    e = (a.view(np.int64) >> 52) - 1023  # floor(log2 a) for normal doubles (a = 0: -1023)
    k = np.clip(e - 3, -9, 6)  # log2 of the spacing (6 or more: a >= 512, saturates anyway)
    return np.minimum(np.rint(a * _POW2[9 - k]) * _POW2[k + 9], E4M3_MAX)


def round_e4m3(x: np.ndarray) -> np.ndarray:
    """x rounded to E4M3FN, to nearest even, saturating at +-448 (float64 in, float64 out).

    NaN stays NaN; +-inf saturates to +-448 (saturating conversion)."""
    x = np.asarray(x, dtype=np.float64)
    a = np.abs(x)
    nan = np.isnan(a)
    q = _round_e4m3_abs(np.where(nan, 0.0, a))
    q = np.where(nan, np.nan, q)
    return np.copysign(q, x)


def e4m3_values() -> np.ndarray:
    """The 256 codes' values, by code (0x7F and 0xFF are NaN)."""
    codes = np.arange(256)
    sign = np.where(codes & 0x80, -1.0, 1.0)
    exp = (codes >> 3) & 0xF
    man = (codes & 0x7).astype(np.float64)
    val = np.where(
        exp == 0, man * 2.0**-9, (1.0 + man / 8.0) * np.exp2(exp.astype(np.float64) - 7.0)
    )
    val = sign * val
    val[(codes & 0x7F) == 0x7F] = np.nan
    return val


def encode_e4m3(x: np.ndarray) -> np.ndarray:
    """x (float) -> E4M3FN codes (uint8), rounding as :func:`round_e4m3`; NaN -> 0x7F."""
    q = round_e4m3(x)
    a = np.abs(q)
    _, e = np.frexp(a)
    e = e.astype(np.int64) - 1  # floor(log2 a)
    normal = a >= E4M3_MIN_NORMAL
    exp_field = np.where(normal, e + 7, 0)
    man = np.where(normal, np.ldexp(a, -e) * 8.0 - 8.0, a * 512.0)
    code = (exp_field << 3) | np.rint(np.nan_to_num(man)).astype(np.int64)
    code = np.where(np.signbit(q), code | 0x80, code)
    code = np.where(np.isnan(q), 0x7F, code)
    return code.astype(np.uint8)


def bin_centers(edges: np.ndarray) -> np.ndarray:
    e = np.asarray(edges, dtype=np.float64)
    return (e[:-1] + e[1:]) * 0.5


def mse_candidates(edges: np.ndarray, start_bin: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """(candidate bins k, candidate amax = centre of bin k) of the FP8 MSE search."""
    c = bin_centers(edges)
    k = np.arange(start_bin, c.size, stride, dtype=np.int64)
    return k, c[k]


def kl_candidates(edges: np.ndarray, start_bin: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """(candidate kept-bin counts i, candidate amax = edge i) of the FP8 KL search."""
    e = np.asarray(edges, dtype=np.float64)
    i = np.arange(start_bin, e.size, stride, dtype=np.int64)
    return i, e[i]


def _chunks(ncand: int, width: int):
    step = max(1, _CHUNK_ELEMS // max(width, 1))
    for c0 in range(0, ncand, step):
        yield c0, min(ncand, c0 + step)


def _rowsum(values: np.ndarray) -> np.ndarray:
    """Row sums added left to right (the GPU's order): bincount adds in element order."""
    r, n = values.shape
    rows = np.repeat(np.arange(r), n)
    return np.bincount(rows, weights=values.ravel(), minlength=r)


def mse_curve(counts: np.ndarray, edges: np.ndarray, amaxes: np.ndarray) -> np.ndarray:
    """sum_j counts_j * (dq(c_j) - c_j)^2 / n for each candidate amax (module docstring)."""
    cnt = np.asarray(counts, dtype=np.int64)
    c = bin_centers(edges)
    n = c.size
    nz = np.flatnonzero(cnt)  # empty bins add exactly 0; the GPU skips them too
    cn, wn = c[nz], cnt[nz].astype(np.float64)
    a = np.asarray(amaxes, dtype=np.float64)
    out = np.empty(a.size)
    for c0, c1 in _chunks(a.size, max(nz.size, 1)):
        aa = a[c0:c1, None]
        inv = E4M3_MAX / aa
        s = aa / E4M3_MAX
        err = _round_e4m3_abs(cn[None, :] * inv) * s - cn[None, :]
        out[c0:c1] = _rowsum(err * err * wn[None, :]) / n
    return out


def kl_curve(counts: np.ndarray, edges: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """KL(P || Q) for each candidate number of kept bins i (module docstring); +inf where Q is 0
    where P is not, or nothing is kept."""
    b = np.asarray(counts, dtype=np.int64)
    e = np.asarray(edges, dtype=np.float64)
    n = b.size
    c = bin_centers(e)
    total = int(b.sum())
    B = np.concatenate(([0], np.cumsum(b)))
    keep = np.asarray(keep, dtype=np.int64)
    out = np.full(keep.size, np.inf)
    if total == 0:
        return out
    j = np.arange(n, dtype=np.int64)[None, :]
    for c0, c1 in _chunks(keep.size, n):
        i = keep[c0:c1, None]
        R = i.shape[0]
        inv = E4M3_MAX / e[i]
        code = _round_e4m3_abs(c[None, :] * inv)
        valid = j < i
        P = np.where(valid, b[None, :], 0)
        rows = np.arange(R)
        outl = total - B[i[:, 0]]
        P[rows, i[:, 0] - 1] += outl
        Pf = P.astype(np.float64)
        newg = np.ones((R, n), dtype=bool)
        newg[:, 1:] = code[:, 1:] != code[:, :-1]
        gid = np.cumsum(newg, axis=1) - 1  # level of each bin within its row
        ng = n  # at most n levels per row
        flat = (rows[:, None] * ng + gid)[valid]
        nlev = R * ng
        S = np.bincount(
            flat, weights=np.where(valid, b[None, :], 0)[valid].astype(np.float64), minlength=nlev
        )
        Pg = np.bincount(flat, weights=Pf[valid], minlength=nlev)
        with np.errstate(divide="ignore", invalid="ignore"):
            plogp = np.where(Pf > 0, Pf * np.log(Pf), 0.0)
        G = np.bincount(flat, weights=plogp[valid], minlength=nlev)
        N = np.bincount(flat, weights=(P > 0)[valid].astype(np.float64), minlength=nlev)
        with np.errstate(divide="ignore", invalid="ignore"):
            term = np.where(N > 0, np.where(S > 0, G - Pg * np.log(S / N), np.inf), 0.0)
        X = np.bincount(np.repeat(rows, ng), weights=term, minlength=R)
        kept = B[i[:, 0]].astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            kl = X / total + np.log(kept / total)
        out[c0:c1] = np.where(kept > 0, kl, np.inf)
    return out
