// Where do the float16 |x| histogram's last 20 us go? The half2 fold of micro_hist_atomics.cu
// ran in 0.139 ms with no flush; trtcal's kernel, with the same fold, grid and layout, takes
// 0.161 ms, and float32 is 31 us above its floor. The difference is the end of the kernel:
// every block (3 per SM, all in one wave, so all at the same moment) sums its 8 sub-histograms
// and adds 2048 64-bit counts to global memory with atomics (396 x 2048 = 811K atomics on 2048
// addresses). Variants over 2^28 float16 values (512 MiB), 2048 bins, one 2^28 float32 set:
//   noflush     : the half2 fold, no flush (micro_hist_atomics.cu's half2)
//   atomics     : + trtcal's flush: per bin, sum the replicas, one 64-bit global atomic
//   slots       : + each block stores its 2048 sums (32-bit, coalesced) to its own slot; a
//                 second kernel adds the slots (both timed)
//   minmax-f    : trtcal's float16 min/max fold per value (cvt, |x| test, fminf, fmaxf)
//   minmax-h2   : min/max on half2 words (one integer test for both halves' non-finite)
// Build and run on the GPU:
//   nvcc -O3 -arch=sm_90 -o /tmp/flush benchmarks/micro_hist_flush.cu && /tmp/flush
#include "micro_common.cuh"

constexpr int kBins = 2048;
constexpr int kRep = 8;

enum Mode { kNoFlush, kAtomics, kSlots, kMinMaxF, kMinMaxH2 };

template <int MODE, int THREADS>
__global__ void __launch_bounds__(THREADS, 1536 / THREADS) kernel(const uint4* __restrict__ x, size_t nvec, float scale,
                                              unsigned long long* out, unsigned int* slots) {
  extern __shared__ unsigned int sh[];
  const int lane = threadIdx.x & 31;
  constexpr bool hist = MODE <= kSlots;
  if (hist) {
    for (int i = threadIdx.x; i < kBins * kRep; i += blockDim.x) sh[i] = 0;
    __syncthreads();
  }
  float lo = INFINITY, hi = -INFINITY;
  unsigned int rare = 0;
  __half2 lo2 = __float2half2_rn(INFINITY), hi2 = __float2half2_rn(-INFINITY);
  const __half2 scale2 = __float2half2_rn(scale);
  const unsigned int addc = hist ? (0x8000u - 0x4400u) * 0x10001u   // limit 4.0
                                 : (0x8000u - 0x7c00u) * 0x10001u;  // limit inf
  unsigned int* mine = sh + (lane & (kRep - 1));
  const size_t stride = (size_t)gridDim.x * blockDim.x;
  size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  constexpr int U = hist ? 4 : 8;
  for (; i + (U - 1) * stride < nvec; i += U * stride) {
    uint4 v[U];
#pragma unroll
    for (int u = 0; u < U; ++u) v[u] = __ldcs(x + i + u * stride);
#pragma unroll
    for (int u = 0; u < U; ++u) {
      if (MODE == kMinMaxF) {
        const __half* h = reinterpret_cast<const __half*>(&v[u]);
#pragma unroll
        for (int k = 0; k < 8; ++k) {
          const float f = __half2float(h[k]);
          if (fabsf(f) <= 3.402823466e38f) {
            lo = fminf(lo, f);
            hi = fmaxf(hi, f);
          } else {
            ++rare;
          }
        }
        continue;
      }
      const unsigned int w4[4] = {v[u].x, v[u].y, v[u].z, v[u].w};
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const unsigned int w = w4[q], a = w & 0x7fff7fffu;
        if ((a + addc) & 0x80008000u) {
          ++rare;
          continue;
        }
        const __half2 hv = *reinterpret_cast<const __half2*>(&w);
        lo2 = __hmin2(lo2, hv);
        hi2 = __hmax2(hi2, hv);
        if (hist) {
          const __half2 sc = __hmul2(*reinterpret_cast<const __half2*>(&a), scale2);
          atomicAdd(mine + __half2int_rz(__low2half(sc)) * kRep, 1u);
          atomicAdd(mine + __half2int_rz(__high2half(sc)) * kRep, 1u);
        }
      }
    }
  }
  const float keep = lo + hi + __half2float(__hadd(__low2half(lo2), __high2half(hi2))) + rare;
  if (keep == 12345.f) out[kBins] = 1;  // keep the work
  if (!hist) return;
  __syncthreads();
  if (MODE == kNoFlush) {
    unsigned long long s = 0;
    for (int w = threadIdx.x; w < kBins * kRep; w += blockDim.x) s += sh[w];
    if (s == 12345678901ull) out[0] = s;
  }
  for (int b = threadIdx.x; b < kBins && MODE != kNoFlush; b += blockDim.x) {
    unsigned int s = 0;
#pragma unroll
    for (int r = 0; r < kRep; ++r) s += sh[b * kRep + r];
    if (MODE == kAtomics && s) atomicAdd(out + b, (unsigned long long)s);
    if (MODE == kSlots) slots[(size_t)blockIdx.x * kBins + b] = s;
  }
}

__global__ void add_slots(const unsigned int* __restrict__ slots, int nslots, unsigned long long* out) {
  const int b = blockIdx.x * blockDim.x + threadIdx.x;
  if (b >= kBins) return;
  unsigned long long s = 0;
  for (int k = 0; k < nslots; ++k) s += slots[(size_t)k * kBins + b];
  out[b] += s;
}

template <int MODE, int THREADS = 512>
float run(const uint4* x, size_t nvec, float scale, unsigned long long* out, unsigned int* slots, int per_sm) {
  const int smem = MODE <= kSlots ? kBins * kRep * 4 : 0;
  cudaFuncSetAttribute(kernel<MODE, THREADS>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  const int blocks = sm_count() * per_sm;
  return median_ms([&] {
    kernel<MODE, THREADS><<<blocks, THREADS, smem>>>(x, nvec, scale, out, slots);
    if (MODE == kSlots) add_slots<<<kBins / 128, 128>>>(slots, blocks, out);
  });
}

int main() {
  const size_t n = (size_t)1 << 28;
  __half* x;
  unsigned long long* out;
  unsigned int* slots;
  CK(cudaMalloc(&x, n * sizeof(__half)));
  CK(cudaMalloc(&out, (kBins + 1) * 8));
  CK(cudaMalloc(&slots, (size_t)132 * 8 * kBins * 4));
  fill<<<4096, 256>>>(x, n, 12345u);
  CK(cudaDeviceSynchronize());
  const float scale = kBins / 4.0f;
  const uint4* v = reinterpret_cast<const uint4*>(x);
  const size_t nvec = n / 8;
  std::printf("2^28 float16, 2048 bins; floor at 4.2 TB/s: %.3f ms\n", n * 2 / 4.2e12 * 1e3);
  for (int per_sm : {2, 3}) {
    std::printf("%d blocks of 512 per SM\n", per_sm);
    std::printf("  noflush   %.3f ms\n", run<kNoFlush>(v, nvec, scale, out, slots, per_sm));
    std::printf("  atomics   %.3f ms\n", run<kAtomics>(v, nvec, scale, out, slots, per_sm));
    std::printf("  slots     %.3f ms\n", run<kSlots>(v, nvec, scale, out, slots, per_sm));
  }
  std::printf("1 block of 1024 per SM\n");
  std::printf("  atomics   %.3f ms\n", run<kAtomics, 1024>(v, nvec, scale, out, slots, 1));
  std::printf("  slots     %.3f ms\n", run<kSlots, 1024>(v, nvec, scale, out, slots, 1));
  for (int per_sm : {2, 4}) {
    std::printf("%d blocks of 512 per SM, UNROLL 8\n", per_sm);
    std::printf("  minmax-f  %.3f ms\n", run<kMinMaxF>(v, nvec, scale, out, slots, per_sm));
    std::printf("  minmax-h2 %.3f ms\n", run<kMinMaxH2>(v, nvec, scale, out, slots, per_sm));
  }
  CK(cudaGetLastError());
  return 0;
}
