// Is the float16 |x| histogram bound by the shared-memory atomic rate, by bank conflicts, or
// by something else? Variants over the same 2^28 float16 values (512 MiB), 2048 bins:
//   read      : read and convert only (the bytes floor, plus a sum so nothing is elided)
//   lane      : one shared atomic per value to a per-lane word (no conflicts, no bin math)
//   rep8      : trtcal's layout: 8 sub-histograms, word = bin * 8 + lane % 8 (3 blocks/SM)
//   packed32  : 16-bit counters, two bins per word, one column per lane:
//               word = (bin / 2) * 32 + lane, conflict-free (128 KB, 1 block of 1024/SM)
//   zerohot   : rep8 with bin 0 counted in a register (post-ReLU data is half zeros)
//   fold      : rep8 with trtcal's pass-1 fold per value (float min/max, non-finite test,
//               range test, float bin)
//   half2     : rep8 with a fold on half2 words: one integer test finds the rare values
//               (non-finite or beyond the range) of both halves, packed min/max, packed
//               exact power-of-two scaling, then one atomic per value
// Build and run on the GPU:
//   nvcc -O3 -arch=sm_90 -o /tmp/micro benchmarks/micro_hist_atomics.cu && /tmp/micro
#include "micro_common.cuh"

constexpr int kBins = 2048;

__device__ __forceinline__ int bin_of(float v, float scale) {
  const int b = (int)(fabsf(v) * scale);
  return b < kBins ? b : kBins - 1;
}

template <int MODE>
__global__ void kernel(const uint4* __restrict__ x, size_t nvec, float scale, unsigned long long* out) {
  extern __shared__ unsigned int sh[];
  const int lane = threadIdx.x & 31;
  int words = 0;
  if (MODE == 1) words = 32;
  if (MODE == 2 || MODE == 4 || MODE == 5 || MODE == 6) words = kBins * 8;
  if (MODE == 3) words = kBins / 2 * 32;
  for (int i = threadIdx.x; i < words; i += blockDim.x) sh[i] = 0;
  __syncthreads();
  float sum = 0.f;
  unsigned int zeros = 0;
  float lo = INFINITY, hi = -INFINITY, limit = 4.0f;
  unsigned int nonfinite = 0;
  __half2 lo2 = __float2half2_rn(INFINITY), hi2 = __float2half2_rn(-INFINITY);
  const __half2 scale2 = __float2half2_rn(scale);
  const unsigned int addc = (0x8000u - 0x4400u) * 0x10001u;  // 0x4400: float16 bits of 4.0
  unsigned int* mine = sh + (lane & 7);
  const size_t stride = (size_t)gridDim.x * blockDim.x;
  size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  for (; i + 3 * stride < nvec; i += 4 * stride) {
    uint4 v[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) v[u] = __ldcs(x + i + u * stride);
    if (MODE == 6) {
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const unsigned int w4[4] = {v[u].x, v[u].y, v[u].z, v[u].w};
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          const unsigned int w = w4[q], a = w & 0x7fff7fffu;
          if ((a + addc) & 0x80008000u) {  // rare: a non-finite value or one beyond the range
            ++nonfinite;
            continue;
          }
          const __half2 hv = *reinterpret_cast<const __half2*>(&w);
          lo2 = __hmin2(lo2, hv);
          hi2 = __hmax2(hi2, hv);
          const __half2 sc = __hmul2(*reinterpret_cast<const __half2*>(&a), scale2);
          atomicAdd(mine + __half2int_rz(__low2half(sc)) * 8, 1u);
          atomicAdd(mine + __half2int_rz(__high2half(sc)) * 8, 1u);
        }
      }
      continue;
    }
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const __half* h = reinterpret_cast<const __half*>(&v[u]);
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        const float f = __half2float(h[k]);
        if (MODE == 0) sum += f;
        if (MODE == 1) atomicAdd(sh + lane, 1u);
        if (MODE == 2) atomicAdd(sh + bin_of(f, scale) * 8 + (lane & 7), 1u);
        if (MODE == 3) {
          const int b = bin_of(f, scale);
          atomicAdd(sh + (b >> 1) * 32 + lane, 1u << ((b & 1) * 16));
        }
        if (MODE == 4) {
          const int b = bin_of(f, scale);
          if (b == 0) ++zeros; else atomicAdd(sh + b * 8 + (lane & 7), 1u);
        }
        if (MODE == 5) {
          const float a = fabsf(f);
          if (a <= 3.402823466e38f) {
            lo = fminf(lo, f);
            hi = fmaxf(hi, f);
            if (a < limit) atomicAdd(mine + (int)(a * scale) * 8, 1u);
          } else {
            ++nonfinite;
          }
        }
      }
    }
  }
  __syncthreads();
  unsigned long long s = 0;
  for (int w = threadIdx.x; w < words; w += blockDim.x) s += sh[w] & 0xffffu;
  if (MODE == 0) s = (unsigned long long)sum;
  s += zeros + nonfinite + (unsigned long long)(lo + hi) + (unsigned long long)__half2float(__hadd(__low2half(lo2), __high2half(hi2)));
  if (s == 12345678901ull) out[0] = s;  // keep the work
}

template <int MODE>
float run(const uint4* x, size_t nvec, float scale, unsigned long long* out, int threads, int smem, int per_sm) {
  cudaFuncSetAttribute(kernel<MODE>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  return median_ms([&] { kernel<MODE><<<sm_count() * per_sm, threads, smem>>>(x, nvec, scale, out); });
}

int main() {
  const size_t n = (size_t)1 << 28;
  __half* x;
  unsigned long long* out;
  CK(cudaMalloc(&x, n * sizeof(__half)));
  CK(cudaMalloc(&out, 8));
  fill<<<4096, 256>>>(x, n, 12345u);
  CK(cudaDeviceSynchronize());
  const float scale = kBins / 4.0f;  // range [0, 4)
  const uint4* v = reinterpret_cast<const uint4*>(x);
  const size_t nvec = n / 8;
  std::printf("2^28 float16, 2048 bins; floor at 4.15 TB/s: %.3f ms\n", n * 2 / 4.15e12 * 1e3);
  std::printf("read     %.3f ms\n", run<0>(v, nvec, scale, out, 512, 0, 4));
  std::printf("lane     %.3f ms\n", run<1>(v, nvec, scale, out, 512, 128, 4));
  std::printf("rep8     %.3f ms (512 thr, 3/SM)\n", run<2>(v, nvec, scale, out, 512, kBins * 8 * 4, 3));
  std::printf("packed32 %.3f ms (1024 thr, 1/SM)\n", run<3>(v, nvec, scale, out, 1024, kBins / 2 * 32 * 4, 1));
  std::printf("packed32 %.3f ms (512 thr, 1/SM)\n", run<3>(v, nvec, scale, out, 512, kBins / 2 * 32 * 4, 1));
  std::printf("zerohot  %.3f ms (normal data: bin 0 is rare)\n", run<4>(v, nvec, scale, out, 512, kBins * 8 * 4, 3));
  std::printf("fold     %.3f ms\n", run<5>(v, nvec, scale, out, 512, kBins * 8 * 4, 3));
  std::printf("half2    %.3f ms\n", run<6>(v, nvec, scale, out, 512, kBins * 8 * 4, 3));
  CK(cudaGetLastError());
  return 0;
}
