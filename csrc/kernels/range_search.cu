// Ragged range-search kernels; see range_search.h and python/trtcal/reference/range_search.py.
#include <cmath>

#include "range_search.h"

namespace trtcal {
namespace {

constexpr int32_t kMaxBinsProportional = 8192;
constexpr int32_t kMaxBinsOnnxRuntime = 16384;

__device__ __forceinline__ size_t align16(size_t v) { return (v + 15) & ~size_t(15); }

// Shared-memory layout of the entropy kernels: prefix counts B (int64, n + 1), prefix
// nonzero counts N (int32, n + 1), b*log(b) (float64, n; proportional only) and the
// per-thread partial sums of the block scan.
struct ScanSmem {
  long long* B;
  int* N;
  double* bl;
  long long* partB;
  int* partN;
};

__device__ ScanSmem carve(unsigned char* base, int32_t max_bins, bool with_bl) {
  ScanSmem s;
  size_t off = 0;
  s.B = reinterpret_cast<long long*>(base + off);
  off = align16(off + sizeof(long long) * (max_bins + 1));
  s.partB = reinterpret_cast<long long*>(base + off);
  off = align16(off + sizeof(long long) * blockDim.x);
  s.bl = with_bl ? reinterpret_cast<double*>(base + off) : nullptr;
  if (with_bl) off = align16(off + sizeof(double) * max_bins);
  s.N = reinterpret_cast<int*>(base + off);
  off = align16(off + sizeof(int) * (max_bins + 1));
  s.partN = reinterpret_cast<int*>(base + off);
  return s;
}

// Loads the counts (counts[0] := counts[1] when zero_rule), fills b*log(b) if asked and
// turns B and N into inclusive prefix sums with B[0] = N[0] = 0. Integer sums: exact.
__device__ void load_and_scan(const long long* __restrict__ counts, int n, bool zero_rule,
                             ScanSmem s) {
  const int tid = threadIdx.x, nt = blockDim.x;
  for (int j = tid; j < n; j += nt) {
    long long v = counts[(zero_rule && j == 0 && n > 1) ? 1 : j];
    s.B[j + 1] = v;
    s.N[j + 1] = v > 0;
    if (s.bl) s.bl[j] = v > 0 ? (double)v * log((double)v) : 0.0;
  }
  if (tid == 0) {
    s.B[0] = 0;
    s.N[0] = 0;
  }
  __syncthreads();
  const int seg = (n + nt - 1) / nt;
  const int a = 1 + tid * seg, b = min(n + 1, a + seg);
  long long sb = 0;
  int sn = 0;
  for (int j = a; j < b; ++j) {
    sb += s.B[j];
    sn += s.N[j];
  }
  s.partB[tid] = sb;
  s.partN[tid] = sn;
  __syncthreads();
  if (tid == 0) {
    long long rb = 0;
    int rn = 0;
    for (int k = 0; k < nt; ++k) {
      const long long tb = s.partB[k];
      const int tn = s.partN[k];
      s.partB[k] = rb;
      s.partN[k] = rn;
      rb += tb;
      rn += tn;
    }
  }
  __syncthreads();
  long long rb = s.partB[tid];
  int rn = s.partN[tid];
  for (int j = a; j < b; ++j) {
    rb += s.B[j];
    rn += s.N[j];
    s.B[j] = rb;
    s.N[j] = rn;
  }
  __syncthreads();
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

__global__ void entropy_proportional_kernel(const RangeTensor* __restrict__ tensors,
                                            const int32_t* __restrict__ block_tensor, RangeParams p,
                                            double* curve, RangeChoice* out, unsigned int* counters) {
  extern __shared__ __align__(16) unsigned char smem[];
  const int t = block_tensor[blockIdx.x];
  const RangeTensor T = tensors[t];
  const int n = T.nbins;
  ScanSmem s = carve(smem, p.max_bins, true);
  load_and_scan(T.counts, n, p.zero_bin_rule != 0, s);
  const long long total = s.B[n];
  const int c = (blockIdx.x - T.block0) * blockDim.x + threadIdx.x;
  if (c < T.ncand) {
    const long long i = (long long)T.first + (long long)c * T.stride;
    double kl = INFINITY;
    if (total > 0 && s.B[i] > 0) {
      const long long L = p.levels;
      const long long klast = ((i - 1) * L) / i;
      double X = 0.0, s_last = 0.0;
      int n_last = 0;
      long long j0 = 0;
      for (long long k = 0; k < L; ++k) {
        const long long j1 = ((k + 1) * i + L - 1) / L;
        const int nk = s.N[j1] - s.N[j0];
        if (nk > 0) {
          const double S = (double)(s.B[j1] - s.B[j0]);
          double G = 0.0;
          for (long long j = j0; j < j1; ++j) G += s.bl[j];
          X += G - S * log(S / (double)nk);
          if (k == klast) {
            s_last = S;
            n_last = nk;
          }
        }
        j0 = j1;
      }
      const long long outl = total - s.B[i];
      if (outl > 0) {
        const long long blast = s.B[i] - s.B[i - 1];
        if (blast > 0) {
          const double Q = s_last / (double)max(n_last, 1);
          const double bo = (double)(blast + outl), bl = (double)blast;
          X += bo * log(bo / Q) - bl * log(bl / Q);
        } else {
          X = INFINITY;
        }
      }
      kl = X / (double)total + log((double)s.B[i] / (double)total);
    }
    curve[T.curve + c] = kl;
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
  ScanSmem s = carve(smem, p.max_bins, false);
  load_and_scan(T.counts, n, false, s);
  const long long* H = s.B;
  const int* NZ = s.N;
  const int c = (blockIdx.x - T.block0) * blockDim.x + threadIdx.x;
  if (c < T.ncand) {
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

__global__ void mse_kernel(const RangeTensor* __restrict__ tensors, const int32_t* __restrict__ block_tensor,
                           RangeParams p, double* curve, RangeChoice* out, unsigned int* counters) {
  const int t = block_tensor[blockIdx.x];
  const RangeTensor T = tensors[t];
  const int n = T.nbins;
  const int c = (blockIdx.x - T.block0) * blockDim.x + threadIdx.x;
  if (c < T.ncand) {
    const double a = p.per_bin == 1 ? center_at(T, T.first + c * T.stride)
                                    : __dadd_rn(__dmul_rn((double)c, T.h), T.a0);
    const double mb = (double)p.max_bound;
    const double scale = mb / a, step = a / mb;
    double acc = 0.0;
    for (int j = 0; j < n; ++j) {
      const long long cnt = __ldg(T.counts + j);
      if (cnt == 0) continue;
      const double cj = center_at(T, j);
      double q = rint(__dmul_rn(cj, scale));
      q = fmin(fmax(q, -mb), mb);
      const double err = __dsub_rn(__dmul_rn(q, step), cj);
      acc = __dadd_rn(acc, __dmul_rn(__dmul_rn(err, err), (double)cnt));
    }
    curve[T.curve + c] = acc / (double)n;
  }
  finish_tensor(t, T, p, curve, out, counters);
}

// One thread per tensor: the CDF is accumulated in order, exactly as NumPy's
// cumsum(counts / total) does, so the searchsorted index is the same bit for bit.
__global__ void percentile_kernel(const RangeTensor* __restrict__ tensors, int32_t ntensors,
                                  RangeChoice* out) {
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= ntensors) return;
  const RangeTensor T = tensors[t];
  const int n = T.nbins;
  long long total = 0;
  for (int j = 0; j < n; ++j) total += T.counts[j];
  int i0 = n, i1 = n;
  const bool two = T.target1 >= 0.0;
  if (total > 0) {
    const double dt = (double)total;
    double cdf = 0.0;
    for (int j = 0; j < n; ++j) {
      cdf = __dadd_rn(cdf, __ddiv_rn((double)T.counts[j], dt));
      if (i0 == n && cdf >= T.target0) i0 = j;
      if (two && i1 == n && cdf >= T.target1) i1 = j;
      if (i0 < n && (!two || i1 < n)) break;
    }
  }
  out[t].value = 0.0;
  out[t].index = i0;
  out[t].index2 = two ? i1 : -1;
}

}  // namespace

int32_t range_search_max_bins(int32_t method) {
  if (method == kRangeEntropyProportional) return kMaxBinsProportional;
  if (method == kRangeEntropyOnnxRuntime) return kMaxBinsOnnxRuntime;
  return 0;
}

size_t range_search_smem(const RangeParams& p) {
  auto a16 = [](size_t v) { return (v + 15) & ~size_t(15); };
  const size_t nb = (size_t)p.max_bins, th = (size_t)p.threads;
  if (p.method != kRangeEntropyProportional && p.method != kRangeEntropyOnnxRuntime) return 0;
  size_t s = a16(8 * (nb + 1)) + a16(8 * th) + a16(4 * (nb + 1)) + a16(4 * th);
  if (p.method == kRangeEntropyProportional) s += a16(8 * nb);
  return s;
}

cudaError_t range_search(const RangeTensor* tensors, int32_t ntensors, const int32_t* block_tensor,
                         int32_t nblocks, const RangeParams& p, double* curve, RangeChoice* out,
                         unsigned int* counters, cudaStream_t stream) {
  if (ntensors <= 0) return cudaSuccess;
  if (p.threads <= 0 || p.threads > 1024 || p.threads % 32) return cudaErrorInvalidValue;
  const int32_t limit = range_search_max_bins(p.method);
  if (limit && p.max_bins > limit) return cudaErrorInvalidValue;
  const size_t smem = range_search_smem(p);
  cudaError_t err = cudaSuccess;
  switch (p.method) {
    case kRangeEntropyProportional:
    case kRangeEntropyOnnxRuntime: {
      auto k = p.method == kRangeEntropyProportional ? entropy_proportional_kernel : entropy_onnxruntime_kernel;
      if (smem > 48 * 1024 &&
          (err = cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem)) != cudaSuccess)
        return err;
      if ((err = cudaMemsetAsync(counters, 0, sizeof(unsigned int) * ntensors, stream)) != cudaSuccess) return err;
      k<<<nblocks, p.threads, smem, stream>>>(tensors, block_tensor, p, curve, out, counters);
      break;
    }
    case kRangeMse:
      if ((err = cudaMemsetAsync(counters, 0, sizeof(unsigned int) * ntensors, stream)) != cudaSuccess) return err;
      mse_kernel<<<nblocks, p.threads, 0, stream>>>(tensors, block_tensor, p, curve, out, counters);
      break;
    case kRangePercentile:
      percentile_kernel<<<(ntensors + 63) / 64, 64, 0, stream>>>(tensors, ntensors, out);
      break;
    default:
      return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace trtcal
