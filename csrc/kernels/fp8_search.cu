// FP8 (E4M3FN) range search kernels; see fp8_search.h and python/trtcal/reference/fp8.py.
#include <cmath>

#include "error.h"
#include "fp8_search.h"

namespace trtcal {
namespace {

constexpr double kE4m3Max = 448.0;
constexpr int kPickThreads = 256;

// x >= 0 rounded to E4M3FN, nearest even, saturating: the spacing at x is 2^max(e - 4, -9)
// with x = m * 2^e, m in [0.5, 1); frexp, ldexp and rint are exact.
__device__ __forceinline__ double round_e4m3(double x) {
  if (x > kE4m3Max) return kE4m3Max;
  int e;
  frexp(x, &e);
  const int sp = max(e - 4, -9);
  return ldexp(rint(ldexp(x, -sp)), sp);
}

__global__ void fp8_mse_kernel(const Fp8Tensor* __restrict__ tensors, const int32_t* __restrict__ cand_tensor,
                               const double* __restrict__ cand_amax, long long ncand,
                               double* __restrict__ curve) {
  const long long g = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (g >= ncand) return;
  const Fp8Tensor t = tensors[cand_tensor[g]];
  const double a = cand_amax[g];
  const double inv = __ddiv_rn(kE4m3Max, a);
  const double s = __ddiv_rn(a, kE4m3Max);
  double acc = 0.0;
  for (int32_t j = 0; j < t.nbins; ++j) {
    const long long cnt = t.counts[j];
    if (cnt == 0) continue;  // adds exactly 0 (the reference skips empty bins too)
    const double c = t.centers[j];
    const double err = __dsub_rn(__dmul_rn(round_e4m3(__dmul_rn(c, inv)), s), c);
    acc = __dadd_rn(acc, __dmul_rn(__dmul_rn(err, err), (double)cnt));
  }
  curve[g] = __ddiv_rn(acc, (double)t.nbins);
}

__global__ void fp8_kl_kernel(const Fp8Tensor* __restrict__ tensors, const int32_t* __restrict__ cand_tensor,
                              const int32_t* __restrict__ cand_keep, const double* __restrict__ cand_amax,
                              long long ncand, double* __restrict__ curve) {
  const long long g = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (g >= ncand) return;
  const Fp8Tensor t = tensors[cand_tensor[g]];
  const int32_t keep = cand_keep[g];
  long long kept = 0;
  for (int32_t j = 0; j < keep; ++j) kept += t.counts[j];
  if (kept == 0 || t.total == 0) {
    curve[g] = INFINITY;
    return;
  }
  const long long outl = t.total - kept;
  const double inv = __ddiv_rn(kE4m3Max, cand_amax[g]);
  double X = 0.0, S = 0.0, Pg = 0.0, G = 0.0, N = 0.0;
  double prev = 0.0;
  for (int32_t j = 0; j < keep; ++j) {
    const double code = round_e4m3(__dmul_rn(t.centers[j], inv));
    if (j > 0 && code != prev) {  // the level ends: its term, then a new level
      if (N > 0.0) X = __dadd_rn(X, S > 0.0 ? __dsub_rn(G, __dmul_rn(Pg, log(__ddiv_rn(S, N)))) : INFINITY);
      S = Pg = G = N = 0.0;
    }
    prev = code;
    const long long b = t.counts[j];
    const long long p = j == keep - 1 ? b + outl : b;
    const double pf = (double)p;
    S = __dadd_rn(S, (double)b);
    Pg = __dadd_rn(Pg, pf);
    G = __dadd_rn(G, p > 0 ? __dmul_rn(pf, log(pf)) : 0.0);
    N = __dadd_rn(N, p > 0 ? 1.0 : 0.0);
  }
  if (N > 0.0) X = __dadd_rn(X, S > 0.0 ? __dsub_rn(G, __dmul_rn(Pg, log(__ddiv_rn(S, N)))) : INFINITY);
  const double total = (double)t.total;
  curve[g] = __dadd_rn(__ddiv_rn(X, total), log(__ddiv_rn((double)kept, total)));
}

// One block per tensor: the minimum (exact in any order), then the first index within the tie
// tolerance (a curve of all +inf picks the first +inf).
__global__ void fp8_pick_kernel(const Fp8Tensor* __restrict__ tensors, const double* __restrict__ curve,
                                double tol, int32_t* __restrict__ out_index) {
  __shared__ double smin[kPickThreads];
  __shared__ int32_t sidx[kPickThreads];
  const Fp8Tensor t = tensors[blockIdx.x];
  const double* v = curve + t.cand0;
  double m = INFINITY;
  for (int32_t c = threadIdx.x; c < t.ncand; c += blockDim.x) m = fmin(m, v[c]);
  smin[threadIdx.x] = m;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w) smin[threadIdx.x] = fmin(smin[threadIdx.x], smin[threadIdx.x + w]);
    __syncthreads();
  }
  m = smin[0];
  const bool inf = isinf(m);
  const double thr = inf ? m : __dadd_rn(m, __dmul_rn(tol, __dadd_rn(1.0, fabs(m))));
  int32_t first = INT32_MAX;
  for (int32_t c = threadIdx.x; c < t.ncand; c += blockDim.x) {
    const bool tie = inf ? isinf(v[c]) : v[c] <= thr;
    if (tie) {
      first = c;
      break;
    }
  }
  sidx[threadIdx.x] = first;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w) sidx[threadIdx.x] = min(sidx[threadIdx.x], sidx[threadIdx.x + w]);
    __syncthreads();
  }
  if (threadIdx.x == 0) out_index[blockIdx.x] = t.ncand > 0 ? sidx[0] : -1;
}

}  // namespace

cudaError_t fp8_search(int32_t method, const Fp8Tensor* tensors, int32_t ntensors, const int32_t* cand_tensor,
                       const int32_t* cand_keep, const double* cand_amax, long long ncand_total, double tol,
                       double* curve, int32_t* out_index, cudaStream_t stream) {
  if (ntensors <= 0) return cudaSuccess;
  if (method != kFp8Mse && method != kFp8Kl) return cudaErrorInvalidValue;
  if (method == kFp8Kl && cand_keep == nullptr && ncand_total > 0) return cudaErrorInvalidValue;
  if (ncand_total > 0) {
    constexpr int kThreads = 128;
    const long long blocks = (ncand_total + kThreads - 1) / kThreads;
    if (blocks > 0x7fffffffLL) return cudaErrorInvalidValue;
    if (method == kFp8Mse)
      fp8_mse_kernel<<<(unsigned)blocks, kThreads, 0, stream>>>(tensors, cand_tensor, cand_amax, ncand_total,
                                                                curve);
    else
      fp8_kl_kernel<<<(unsigned)blocks, kThreads, 0, stream>>>(tensors, cand_tensor, cand_keep, cand_amax,
                                                               ncand_total, curve);
    TRTCAL_TRY(cudaGetLastError());
  }
  fp8_pick_kernel<<<ntensors, kPickThreads, 0, stream>>>(tensors, curve, tol, out_index);
  return cudaGetLastError();
}

}  // namespace trtcal
