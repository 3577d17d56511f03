// Ragged range-search kernels; see range_search.h and python/trtcal/reference/range_search.py.
//
// Latency design (one tensor must be fast, not only many): every candidate is worked on by
// `group` threads (entropy: the same lane of `group` warps, splitting the levels; MSE:
// `group` adjacent lanes, splitting the nonzero bins; partial sums combined in a fixed
// order), a block takes `chunk` candidates of one tensor, and the binding sizes both so that
// a single tensor still fills the GPU. No thread loops over all bins except percentile's
// CDF, which NumPy defines as a sequential sum (kept bit-exact).
#include <algorithm>
#include <climits>
#include <cmath>

#include "device_common.cuh"
#include "range_search.h"

namespace trtcal {
namespace {

constexpr int32_t kMaxBinsProportional = 8192;
constexpr int32_t kMaxBinsOnnxRuntime = 16384;
constexpr int32_t kMseTile = 2048;         // bins per shared-memory tile of the MSE kernel
constexpr int32_t kPercentileTile = 2048;  // CDF values per tile of the percentile kernel
constexpr unsigned kFull = 0xffffffffu;

__host__ __device__ __forceinline__ size_t align16(size_t v) { return (v + 15) & ~size_t(15); }

// s + e == a + b exactly (Knuth's TwoSum; explicit roundings, never contracted).
__device__ __forceinline__ void two_sum(double a, double b, double& s, double& e) {
  s = __dadd_rn(a, b);
  const double bb = __dsub_rn(s, a);
  e = __dadd_rn(__dsub_rn(a, __dsub_rn(s, bb)), __dsub_rn(b, bb));
}

// (hi, lo) += (bh, bl): double-double sum of nonnegative values (relative error ~2^-104).
__device__ __forceinline__ void dd_add(double& hi, double& lo, double bh, double bl) {
  double s, e;
  two_sum(hi, bh, s, e);
  e = __dadd_rn(e, __dadd_rn(lo, bl));
  hi = __dadd_rn(s, e);
  lo = __dsub_rn(e, __dsub_rn(hi, s));
}

// Shared-memory prefix sums of one histogram, positions 0..n (position 0 is 0):
// B = counts (int64, exact), N = nonzero bins (int32, exact) and, for the proportional
// entropy, F = b*log(b) as a double-double (Fhi + Flo). Differences of F are the per-level
// sums of b*log(b) to ~1e-16 relative, like the reference's long-double prefix.
struct Prefix {
  long long* B;
  double* Fhi;
  int* N;
  float* Flo;  // |Flo| <= ulp(Fhi)/2 and a multiple of 2^-52 (every b*log(b) > 0 is >= 1.38): float keeps it
};

__host__ __device__ __forceinline__ size_t prefix_bytes(int32_t max_bins, bool with_f) {
  const size_t m = (size_t)max_bins + 1;
  return align16(8 * m) + align16(4 * m) + (with_f ? align16(8 * m) + align16(4 * m) : 0);
}

__device__ Prefix carve(unsigned char* base, int32_t max_bins, bool with_f) {
  const size_t m = (size_t)max_bins + 1;
  Prefix s;
  size_t off = 0;
  s.B = reinterpret_cast<long long*>(base + off);
  off += align16(8 * m);
  s.N = reinterpret_cast<int*>(base + off);
  off += align16(4 * m);
  s.Fhi = with_f ? reinterpret_cast<double*>(base + off) : nullptr;
  if (with_f) off += align16(8 * m);
  s.Flo = with_f ? reinterpret_cast<float*>(base + off) : nullptr;
  return s;
}

// Inclusive scan over the warp of the running sums (b, n) and, when `wf`, the double-double
// (h, l). Every lane of the warp must call it.
__device__ __forceinline__ void warp_scan_sums(long long& b, int& n, double& h, double& l, bool wf) {
  const int lane = threadIdx.x & 31;
  for (int o = 1; o < 32; o <<= 1) {
    const long long tb = __shfl_up_sync(kFull, b, o);
    const int tn = __shfl_up_sync(kFull, n, o);
    const double th = __shfl_up_sync(kFull, h, o), tl = __shfl_up_sync(kFull, l, o);
    if (lane >= o) {
      b += tb;
      n += tn;
      if (wf) dd_add(h, l, th, tl);
    }
  }
}

// Loads the counts (counts[0] := counts[1] when zero_rule) and turns B, N (and F) into
// inclusive prefix sums with position 0 = 0. Coalesced loads; each thread then scans an
// odd-length run of positions (a warp's strided shared accesses hit distinct banks), warps
// combine by shuffles and warp 0 scans the warp totals: no serial loop over all bins.
__device__ void load_and_scan(const long long* __restrict__ counts, int n, bool zero_rule, Prefix s) {
  __shared__ long long wB[32];
  __shared__ int wN[32];
  __shared__ double wFh[32], wFl[32];
  const int tid = threadIdx.x, nt = blockDim.x, lane = tid & 31, warp = tid >> 5, nw = nt >> 5;
  const bool wf = s.Fhi != nullptr;
  for (int j = tid; j < n; j += nt) {
    const long long v = counts[(zero_rule && j == 0 && n > 1) ? 1 : j];
    s.B[j + 1] = v;
    s.N[j + 1] = v > 0;
    if (wf) s.Fhi[j + 1] = v > 0 ? (double)v * log((double)v) : 0.0;
  }
  __syncthreads();
  const int seg = ((n + nt - 1) / nt) | 1;
  const int a = min(n + 1, 1 + tid * seg), b = min(n + 1, a + seg);
  long long sb = 0;
  int sn = 0;
  double fh = 0.0, fl = 0.0;
  for (int j = a; j < b; ++j) {
    sb += s.B[j];
    sn += s.N[j];
    if (wf) dd_add(fh, fl, s.Fhi[j], 0.0);
  }
  warp_scan_sums(sb, sn, fh, fl, wf);  // inclusive, over the run totals
  if (lane == 31) {
    wB[warp] = sb;
    wN[warp] = sn;
    wFh[warp] = fh;
    wFl[warp] = fl;
  }
  // exclusive = the inclusive value of the previous lane
  long long eb = __shfl_up_sync(kFull, sb, 1);
  int en = __shfl_up_sync(kFull, sn, 1);
  double eh = __shfl_up_sync(kFull, fh, 1), el = __shfl_up_sync(kFull, fl, 1);
  if (lane == 0) {
    eb = 0;
    en = 0;
    eh = el = 0.0;
  }
  __syncthreads();
  if (warp == 0) {  // warp totals -> exclusive warp offsets
    long long xb = lane < nw ? wB[lane] : 0;
    int xn = lane < nw ? wN[lane] : 0;
    double xh = lane < nw ? wFh[lane] : 0.0, xl = lane < nw ? wFl[lane] : 0.0;
    warp_scan_sums(xb, xn, xh, xl, wf);
    long long yb = __shfl_up_sync(kFull, xb, 1);
    int yn = __shfl_up_sync(kFull, xn, 1);
    double yh = __shfl_up_sync(kFull, xh, 1), yl = __shfl_up_sync(kFull, xl, 1);
    if (lane < nw) {
      wB[lane] = lane ? yb : 0;
      wN[lane] = lane ? yn : 0;
      wFh[lane] = lane ? yh : 0.0;
      wFl[lane] = lane ? yl : 0.0;
    }
  }
  __syncthreads();
  long long rb = wB[warp] + eb;
  int rn = wN[warp] + en;
  double rh = wFh[warp], rl = wFl[warp];
  if (wf) dd_add(rh, rl, eh, el);
  for (int j = a; j < b; ++j) {
    rb += s.B[j];
    s.B[j] = rb;
    rn += s.N[j];
    s.N[j] = rn;
    if (wf) {
      dd_add(rh, rl, s.Fhi[j], 0.0);
      s.Fhi[j] = rh;
      s.Flo[j] = (float)rl;
    }
  }
  if (tid == 0) {
    s.B[0] = 0;
    s.N[0] = 0;
    if (wf) {
      s.Fhi[0] = 0.0;
      s.Flo[0] = 0.0f;
    }
  }
  __syncthreads();
}

// Exclusive count of `flag` over the block (thread order) and the block's total.
// Every thread of the block must call it.
__device__ int block_excl_count(bool flag, int* wcount, int& total) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  const unsigned bal = __ballot_sync(kFull, flag);
  if (lane == 0) wcount[warp] = __popc(bal);
  __syncthreads();
  int off = 0, tot = 0;
  for (int w = 0; w < nw; ++w) {
    const int cw = wcount[w];
    off += w < warp ? cw : 0;
    tot += cw;
  }
  __syncthreads();
  total = tot;
  return off + __popc(bal & ((1u << lane) - 1u));
}

// The last block of tensor t to finish picks the minimum of its curve (the rule of
// reference/range_search.py:pick) and resets the tensor's counter.
__device__ void finish_tensor(int t, const RangeTensor& T, const RangeParams& p, const double* curve,
                              RangeChoice* out, unsigned int* counters) {
  __shared__ int is_last;
  __shared__ double red_v[32];
  __shared__ int red_i[32];
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) is_last = atomicAdd(&counters[t], 1u) == (unsigned)(T.nblocks - 1);
  __syncthreads();
  if (!is_last) return;
  __threadfence();
  const double* v = curve + T.curve;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (blockDim.x + 31) >> 5;
  // 1. minimum (exact, order-free)
  double m = INFINITY;
  for (int c = threadIdx.x; c < T.ncand; c += blockDim.x) m = fmin(m, __ldcg(v + c));
  for (int o = 16; o; o >>= 1) m = fmin(m, __shfl_xor_sync(0xffffffffu, m, o));
  if (lane == 0) red_v[warp] = m;
  __syncthreads();
  m = red_v[0];
  for (int w = 1; w < nwarps; ++w) m = fmin(m, red_v[w]);
  // 2. first or last index within the tie tolerance
  const bool inf_min = isinf(m);
  const double thr = m + p.tol * (1.0 + fabs(m));
  int best = p.tie_last ? -1 : 0x7fffffff;
  for (int c = threadIdx.x; c < T.ncand; c += blockDim.x) {
    const double x = __ldcg(v + c);
    const bool tie = inf_min ? isinf(x) : (x <= thr);
    if (tie) best = p.tie_last ? max(best, c) : min(best, c);
  }
  for (int o = 16; o; o >>= 1) {
    const int other = __shfl_xor_sync(0xffffffffu, best, o);
    best = p.tie_last ? max(best, other) : min(best, other);
  }
  __syncthreads();
  if (lane == 0) red_i[warp] = best;
  __syncthreads();
  if (threadIdx.x == 0) {
    int b = red_i[0];
    for (int w = 1; w < nwarps; ++w) b = p.tie_last ? max(b, red_i[w]) : min(b, red_i[w]);
    out[t].value = m;
    out[t].index = b;
    out[t].index2 = -1;
    counters[t] = 0;
  }
}

// Sum over levels [k0, k1) of candidate i of G_k - S_k*log(S_k/n_k): level k holds fine bins
// [J(k), J(k+1)), J(k) = ceil(k*i/L), carried without a division per level (k*i = q*L + r).
__device__ double proportional_levels(const Prefix& s, int i, int L, int k0, int k1) {
  if (k0 >= k1) return 0.0;
  const int qi = i / L, ri = i % L;
  const long long num = (long long)k0 * i;
  int q = (int)(num / L), r = (int)(num % L);
  int j0 = q + (r > 0);
  double X = 0.0;
  for (int k = k0; k < k1; ++k) {
    q += qi;
    r += ri;
    if (r >= L) {
      ++q;
      r -= L;
    }
    const int j1 = q + (r > 0);
    const int nk = s.N[j1] - s.N[j0];
    if (nk > 0) {
      const double S = (double)(s.B[j1] - s.B[j0]);
      const double G = (s.Fhi[j1] - s.Fhi[j0]) + ((double)s.Flo[j1] - (double)s.Flo[j0]);
      X += G - S * log(S / (double)nk);
    }
    j0 = j1;
  }
  return X;
}

// KL of candidate i from the level sum X: outliers into bin i-1 (Q there is the last level's
// spread count), normalisation by the totals.
__device__ double proportional_kl(const Prefix& s, int i, int L, long long total, double X) {
  const long long outl = total - s.B[i];
  if (outl > 0) {
    const long long blast = s.B[i] - s.B[i - 1];
    if (blast > 0) {  // bin i-1 is nonzero and in level klast, so that level has n_last >= 1
      const long long klast = ((long long)(i - 1) * L) / i;
      const int ja = (int)((klast * i + L - 1) / L), jb = (int)(((klast + 1) * i + L - 1) / L);
      const double Q = (double)(s.B[jb] - s.B[ja]) / (double)max(s.N[jb] - s.N[ja], 1);
      const double bo = (double)(blast + outl), bl = (double)blast;
      X += bo * log(bo / Q) - bl * log(bl / Q);
    } else {
      X = INFINITY;
    }
  }
  return X / (double)total + log((double)s.B[i] / (double)total);
}

// Proportional entropy. A warp's 32 lanes always take 32 adjacent candidates, so their
// prefix reads at the same level k fall on neighbouring positions (no bank conflicts);
// `group` warps split the levels of those candidates ([piece*L/group, (piece+1)*L/group))
// and piece 0 adds the partial sums in piece order (fixed).
__global__ void entropy_proportional_kernel(const RangeTensor* __restrict__ tensors,
                                            const int32_t* __restrict__ block_tensor, RangeParams p,
                                            double* curve, RangeChoice* out, unsigned int* counters) {
  extern __shared__ __align__(16) unsigned char smem[];
  const int t = block_tensor[blockIdx.x];
  const RangeTensor T = tensors[t];
  const int n = T.nbins;
  const Prefix s = carve(smem, p.max_bins, true);
  double* part = reinterpret_cast<double*>(smem + prefix_bytes(p.max_bins, true));  // blockDim.x
  load_and_scan(T.counts, n, p.zero_bin_rule != 0, s);
  const long long total = s.B[n];
  const int L = p.levels, g = p.group;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int slot = (warp / g) * 32 + lane, piece = warp % g, slots = blockDim.x / g;
  const int k0 = (int)(((long long)piece * L) / g), k1 = (int)(((long long)(piece + 1) * L) / g);
  const int c0 = (blockIdx.x - T.block0) * p.chunk, c1 = min(T.ncand, c0 + p.chunk);
  for (int base = c0; base < c1; base += slots) {  // the same trip count in every thread
    const int c = base + slot;
    const int i = T.first + (c < c1 ? c : c0) * T.stride;
    const bool live = c < c1 && total > 0 && s.B[i] > 0;
    double X = live ? proportional_levels(s, i, L, k0, k1) : 0.0;
    if (g > 1) {
      part[threadIdx.x] = X;
      __syncthreads();
      if (piece == 0)
        for (int q = 1; q < g; ++q) X += part[threadIdx.x + 32 * q];
      __syncthreads();
    }
    if (piece == 0 && c < c1) curve[T.curve + c] = live ? proportional_kl(s, i, L, total, X) : INFINITY;
  }
  finish_tensor(t, T, p, curve, out, counters);
}

__global__ void entropy_onnxruntime_kernel(const RangeTensor* __restrict__ tensors,
                                           const int32_t* __restrict__ block_tensor, RangeParams p,
                                           double* curve, RangeChoice* out, unsigned int* counters) {
  extern __shared__ __align__(16) unsigned char smem[];
  const int t = block_tensor[blockIdx.x];
  const RangeTensor T = tensors[t];
  const int n = T.nbins;
  const Prefix s = carve(smem, p.max_bins, false);
  load_and_scan(T.counts, n, false, s);
  const long long* H = s.B;
  const int* NZ = s.N;
  // one thread per candidate (p.group is not used): the serial loop over the slice is ORT's
  // float32 smoothing, in order
  const int c0 = (blockIdx.x - T.block0) * p.chunk, c1 = min(T.ncand, c0 + p.chunk);
  for (int c = c0 + (int)threadIdx.x; c < c1; c += blockDim.x) {
    const int i = T.first + c * T.stride;
    const int z = n / 2;
    const int st = z - i, en = min(z + i + 1, n), L = en - st;
    const int lv = p.levels, m = L / lv;
    const long long left = H[st], right = H[n] - H[en];
    const long long h0 = H[st + 1] - H[st], hl = H[en] - H[en - 1];
    const long long p0 = h0 + left + (L == 1 ? right : 0);
    const long long pl = hl + right + (L == 1 ? left : 0);
    // nonzero p over slice positions [a, b)
    auto nnz_p = [&](int a, int b) -> int {
      if (a >= b) return 0;
      int r = NZ[st + b] - NZ[st + a];
      if (a == 0) r += (p0 != 0) - (h0 != 0);
      if (b == L && L > 1) r += (pl != 0) - (hl != 0);
      return r;
    };
    auto group_q = [&](int g) -> long long {
      long long S = H[st + (g + 1) * m] - H[st + g * m];
      if (g == lv - 1) S += H[en] - H[st + lv * m];
      const int norm = nnz_p(g * m, (g + 1) * m);
      return norm > 0 ? S / norm : 0;
    };
    int nnzq = 0;
    for (int g = 0; g < lv; ++g) nnzq += group_q(g) != 0 ? m : 0;
    const int nnzp = nnz_p(0, L);
    const double e1p = (p.eps * (double)(L - nnzp)) / (double)max(nnzp, 1);
    const double e1q = (p.eps * (double)(L - nnzq)) / (double)max(nnzq, 1);
    double kl = INFINITY;
    if (nnzp > 0 && nnzq > 0 && e1p < 1.0 && e1q < 1.0) {
      const float fe = (float)p.eps, fe1p = (float)(-e1p), fe1q = (float)(-e1q);
      const double lfe = log((double)fe);
      double Sp = 0.0, Sq = 0.0, X = 0.0;
      for (int g = 0; g <= lv; ++g) {
        const int a = g * m, b = g < lv ? a + m : L;
        double qt = fe, lq = lfe;
        if (g < lv) {
          const long long qg = group_q(g);
          if (qg != 0) {
            qt = (double)__fadd_rn(__ll2float_rn(qg), fe1q);
            lq = log(qt);
          }
        }
        for (int j = a; j < b; ++j) {
          long long pj = H[st + j + 1] - H[st + j];
          if (j == 0) pj += left;
          if (j == L - 1) pj += right;
          const double pt = pj == 0 ? (double)fe : (double)__fadd_rn(__ll2float_rn(pj), fe1p);
          Sp += pt;
          Sq += qt;
          X += pt * (log(pt) - lq);
        }
      }
      kl = X / Sp + log(Sq / Sp);
    }
    curve[T.curve + c] = kl;
  }
  finish_tensor(t, T, p, curve, out, counters);
}

__device__ __forceinline__ double edge_at(const RangeTensor& T, int k) {
  if (T.edges) return T.edges[k];
  if (k == T.nbins) return T.hi;
  return __dadd_rn(__dmul_rn((double)k, T.step), T.lo);
}
__device__ __forceinline__ double center_at(const RangeTensor& T, int j) {
  return __dmul_rn(__dadd_rn(edge_at(T, j), edge_at(T, j + 1)), 0.5);
}

// MSE: a block compacts the nonzero bins of a tile (center, count) into shared memory, then
// the `group` lanes of a candidate stride over them; per-candidate sums of the tiles are kept
// in shared memory (tile order, fixed).
__global__ void mse_kernel(const RangeTensor* __restrict__ tensors, const int32_t* __restrict__ block_tensor,
                           RangeParams p, double* curve, RangeChoice* out, unsigned int* counters) {
  extern __shared__ __align__(16) unsigned char smem[];
  __shared__ int wcount[32];
  const int tile = min(p.max_bins, kMseTile);
  double* s_c = reinterpret_cast<double*>(smem);
  double* s_w = s_c + tile;
  double* s_acc = s_w + tile;
  const int t = block_tensor[blockIdx.x];
  const RangeTensor T = tensors[t];
  const int n = T.nbins, tid = threadIdx.x, nt = blockDim.x;
  const int g = p.group, ngroups = nt / g, lane = tid & (g - 1), grp = tid / g;
  const int c0 = (blockIdx.x - T.block0) * p.chunk, c1 = min(T.ncand, c0 + p.chunk);
  const double mb = (double)p.max_bound;
  for (int c = c0 + tid; c < c1; c += nt) s_acc[c - c0] = 0.0;
  for (int tile0 = 0; tile0 < n; tile0 += tile) {
    const int tile1 = min(n, tile0 + tile);
    __syncthreads();  // s_acc zeroed; the previous tile's readers are done
    int nnz = 0;
    for (int base = tile0; base < tile1; base += nt) {
      const int j = base + tid;
      const long long cnt = j < tile1 ? __ldg(T.counts + j) : 0;
      int tot;
      const int pos = nnz + block_excl_count(cnt != 0, wcount, tot);
      if (cnt != 0) {
        s_c[pos] = center_at(T, j);
        s_w[pos] = (double)cnt;
      }
      nnz += tot;
    }
    __syncthreads();
    for (int base = c0; base < c1; base += ngroups) {  // the same trip count in every thread
      const int c = base + grp;
      double acc = 0.0;
      if (c < c1) {
        const double a = p.per_bin == 1 ? center_at(T, T.first + c * T.stride)
                                        : __dadd_rn(__dmul_rn((double)c, T.h), T.a0);
        const double scale = mb / a, step = a / mb;
        for (int m = lane; m < nnz; m += g) {
          const double cj = s_c[m];
          double q = rint(__dmul_rn(cj, scale));
          q = fmin(fmax(q, -mb), mb);
          const double err = __dsub_rn(__dmul_rn(q, step), cj);
          acc = __dadd_rn(acc, __dmul_rn(__dmul_rn(err, err), s_w[m]));
        }
      }
      for (int o = g >> 1; o; o >>= 1) acc = __dadd_rn(acc, __shfl_xor_sync(kFull, acc, o));
      if (c < c1 && lane == 0) s_acc[c - c0] = __dadd_rn(s_acc[c - c0], acc);
    }
  }
  __syncthreads();
  for (int c = c0 + tid; c < c1; c += nt) curve[T.curve + c] = s_acc[c - c0] / (double)n;
  finish_tensor(t, T, p, curve, out, counters);
}

// Percentile: one block per tensor. The total is an exact int64 block sum, the quotients
// counts[j] / total are computed in parallel, and one thread adds them in order, exactly as
// NumPy's cumsum(counts / total) does (so the searchsorted index is the same bit for bit),
// stopping once the CDF reaches the larger target; the block then finds the first index at
// or above each target.
__global__ void percentile_kernel(const RangeTensor* __restrict__ tensors, RangeChoice* out) {
  __shared__ double cdf[kPercentileTile];
  __shared__ long long wsum[32];
  __shared__ int found[2];
  __shared__ int valid_len;
  const int t = blockIdx.x;
  const RangeTensor T = tensors[t];
  const int n = T.nbins, tid = threadIdx.x, nt = blockDim.x, lane = tid & 31, warp = tid >> 5, nw = nt >> 5;
  long long sum = 0;
  for (int j = tid; j < n; j += nt) sum += __ldg(T.counts + j);
  for (int o = 16; o; o >>= 1) sum += __shfl_xor_sync(kFull, sum, o);
  if (lane == 0) wsum[warp] = sum;
  if (tid == 0) found[0] = found[1] = INT_MAX;
  __syncthreads();
  long long total = 0;
  for (int w = 0; w < nw; ++w) total += wsum[w];
  const bool two = T.target1 >= 0.0;
  if (total > 0) {
    const double dt = (double)total;
    const double tmax = two ? fmax(T.target0, T.target1) : T.target0;
    double run = 0.0;  // thread 0: the CDF so far
    for (int tile0 = 0; tile0 < n; tile0 += kPercentileTile) {
      const int len = min(kPercentileTile, n - tile0);
      for (int j = tid; j < len; j += nt) cdf[j] = __ddiv_rn((double)__ldg(T.counts + tile0 + j), dt);
      __syncthreads();
      if (tid == 0) {
        double c = run;
        int j = 0;
        while (j + 16 <= len) {
#pragma unroll
          for (int u = 0; u < 16; ++u) {
            c = __dadd_rn(c, cdf[j + u]);
            cdf[j + u] = c;
          }
          j += 16;
          if (c >= tmax) break;
        }
        if (c < tmax) {
          for (; j < len; ++j) {
            c = __dadd_rn(c, cdf[j]);
            cdf[j] = c;
          }
        }
        run = c;
        valid_len = j;  // cdf[0, j) hold the CDF; beyond it is not needed
      }
      __syncthreads();
      const int m = valid_len;
      for (int j = tid; j < m; j += nt) {
        const double v = cdf[j];
        if (v >= T.target0) atomicMin(&found[0], tile0 + j);
        if (two && v >= T.target1) atomicMin(&found[1], tile0 + j);
      }
      __syncthreads();
      if (found[0] != INT_MAX && (!two || found[1] != INT_MAX)) break;
      __syncthreads();  // everyone has read `found` and `cdf` before the next tile overwrites cdf
    }
  }
  if (tid == 0) {
    out[t].value = 0.0;
    out[t].index = found[0] == INT_MAX ? n : found[0];
    out[t].index2 = two ? (found[1] == INT_MAX ? n : found[1]) : -1;
  }
}

}  // namespace

int32_t range_search_max_bins(int32_t method) {
  if (method == kRangeEntropyProportional) return kMaxBinsProportional;
  if (method == kRangeEntropyOnnxRuntime) return kMaxBinsOnnxRuntime;
  return 0;
}

size_t range_search_smem(const RangeParams& p) {
  switch (p.method) {
    case kRangeEntropyProportional:
      return prefix_bytes(p.max_bins, true) + 8 * (size_t)p.threads;
    case kRangeEntropyOnnxRuntime:
      return prefix_bytes(p.max_bins, false);
    case kRangeMse:
      return 16 * (size_t)std::min(p.max_bins, kMseTile) + 8 * (size_t)p.chunk;
    default:
      return 0;
  }
}

cudaError_t range_search_choose_shape(RangeParams* p, int device, long long total_cand, int group,
                                      int chunk) {
  constexpr long long kBlocksPerSm = 4;
  if (p->method == kRangePercentile) return cudaSuccess;
  static int sm_count[64] = {0};  // per device, asked once
  int sms = device >= 0 && device < 64 ? sm_count[device] : 0;
  if (sms == 0) {
    TRTCAL_TRY(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    if (device >= 0 && device < 64) sm_count[device] = sms;
  }
  const long long want_blocks = kBlocksPerSm * std::max(sms, 1);
  int cap = 32;
  if (p->method == kRangeEntropyOnnxRuntime) {
    cap = 1;
  } else if (p->method == kRangeEntropyProportional) {
    const int nwarps = p->threads / 32;
    cap = 1;
    while (cap < 32 && nwarps % (cap * 2) == 0) cap *= 2;
  }
  int g = 1;
  if (group > 0) {
    while (g * 2 <= std::min(group, cap)) g *= 2;
  } else {
    while (g < cap && total_cand * g < want_blocks * p->threads) g *= 2;
  }
  const int slots = std::max(p->threads / g, 1);
  long long ch = chunk;
  if (ch == 0 && p->method == kRangeEntropyOnnxRuntime) {
    ch = std::min(p->threads, kRangeMaxChunk);  // one candidate per thread: its O(n) loop wants threads
  } else if (ch == 0) {
    ch = (total_cand + want_blocks - 1) / want_blocks;
    ch = (ch + slots - 1) / slots * slots;
    ch = std::min<long long>(std::max<long long>(ch, slots), kRangeMaxChunk);
  }
  p->group = g;
  p->chunk = (int32_t)ch;
  return cudaSuccess;
}

cudaError_t range_search_layout(RangeSearchLayout* L, int device, int group, int chunk) {
  long long total_cand = 0;
  for (const RangeTensor& d : L->desc) total_cand += std::max(d.ncand, 0);
  TRTCAL_TRY(range_search_choose_shape(&L->p, device, total_cand, group, chunk));
  const bool percentile = L->p.method == kRangePercentile;
  L->ntensors = (int32_t)L->desc.size();
  L->block_tensor.clear();
  long long curve = 0;
  for (int32_t t = 0; t < L->ntensors; ++t) {
    RangeTensor& d = L->desc[t];
    d.curve = curve;
    d.block0 = (int32_t)L->block_tensor.size();
    d.nblocks = percentile ? 0 : (d.ncand + L->p.chunk - 1) / L->p.chunk;
    L->block_tensor.insert(L->block_tensor.end(), d.nblocks, t);
    if (!percentile) curve += d.ncand;
    L->p.max_bins = std::max(L->p.max_bins, d.nbins);
  }
  L->nblocks = (int32_t)L->block_tensor.size();
  L->curve_len = curve;
  return cudaSuccess;
}

cudaError_t range_search(const RangeTensor* tensors, int32_t ntensors, const int32_t* block_tensor,
                         int32_t nblocks, const RangeParams& p, double* curve, RangeChoice* out,
                         unsigned int* counters, cudaStream_t stream) {
  if (ntensors <= 0) return cudaSuccess;
  if (p.threads <= 0 || p.threads > 1024 || p.threads % 32) return cudaErrorInvalidValue;
  if (p.method != kRangePercentile &&
      (p.group < 1 || p.group > 32 || (p.group & (p.group - 1)) || p.chunk < 1 || p.chunk > kRangeMaxChunk ||
       p.levels < 1 || p.max_bins < 1))
    return cudaErrorInvalidValue;
  if (p.method == kRangeEntropyProportional && (p.threads / 32) % p.group) return cudaErrorInvalidValue;
  const int32_t limit = range_search_max_bins(p.method);
  if (limit && p.max_bins > limit) return cudaErrorInvalidValue;
  const size_t smem = range_search_smem(p);
  // counters are zero on entry (the plan zeroes them once; every tensor's last block resets
  // its own), so a launch is one kernel: no memset on the stream
  switch (p.method) {
    case kRangeEntropyProportional:
    case kRangeEntropyOnnxRuntime:
    case kRangeMse: {
      auto k = p.method == kRangeEntropyProportional  ? entropy_proportional_kernel
               : p.method == kRangeEntropyOnnxRuntime ? entropy_onnxruntime_kernel
                                                      : mse_kernel;
      TRTCAL_TRY(detail::allow_dynamic_smem(k, smem));
      k<<<nblocks, p.threads, smem, stream>>>(tensors, block_tensor, p, curve, out, counters);
      break;
    }
    case kRangePercentile:
      percentile_kernel<<<ntensors, p.threads, 0, stream>>>(tensors, out);
      break;
    default:
      return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace trtcal
