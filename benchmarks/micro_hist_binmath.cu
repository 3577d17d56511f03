// The float16 |x| histogram's fast path after the per-vector test (trtcal v6): which per-value
// instructions still cost time? 2^28 float16 values (512 MiB), 2048 bins over [0, 4), 8
// sub-histograms (3 blocks of 512 per SM) unless noted. Every variant tests each 16-byte vector
// once for rare values (none here) and keeps a packed min/max.
//   f2i      : trtcal v6: HMUL2 by the power-of-two scale, F2I.F16 truncation, bin * 8 + lane % 8,
//              generic shared atomicAdd (IMAD + LEA per address)
//   ffma-rz  : |x| to float, one FFMA rounding toward zero against 2^23 gives 2^23 + bin in the
//              bits (exact: the scale is a power of two); the shared byte address is one IMAD
//              of those bits (the 2^23 offset folded into the base, mod 2^32) and the atomic
//              is PTX atom.shared (no generic-to-shared conversion)
//   ffma-nomm: ffma-rz without the min/max
//   lanes16  : ffma-rz math on 16-bit counters, one column per lane (word (bin/2)*32 + lane,
//              conflict-free), 1024 threads, one block per SM
//   rep16h   : ffma-rz math on 16 sub-histograms of 16-bit counters (word (bin/2)*16 + lane%16:
//              lanes l and l+16 share a bank only when bin/2 has the same parity), 64 KB, so
//              3 blocks of 512 per SM as trtcal's 8 x 32-bit layout
// Build and run on the GPU:
//   nvcc -O3 -arch=sm_90 -o /tmp/binmath benchmarks/micro_hist_binmath.cu && /tmp/binmath
#include "micro_common.cuh"

constexpr int kBins = 2048;
constexpr int kRep = 8;
enum Mode { kF2I, kFfma, kFfmaNoMinMax, kLanes16, kRep16h };

__device__ __forceinline__ void atom_shared_inc(uint32_t addr) {
  asm volatile("red.shared.add.u32 [%0], 1;" ::"r"(addr) : "memory");
}
__device__ __forceinline__ void atom_shared_add(uint32_t addr, uint32_t v) {
  asm volatile("red.shared.add.u32 [%0], %1;" ::"r"(addr), "r"(v) : "memory");
}

template <int MODE, int THREADS>
__global__ void __launch_bounds__(THREADS, 1536 / THREADS)
    kernel(const uint4* __restrict__ x, size_t nvec, float scale, unsigned long long* out) {
  extern __shared__ unsigned int sh[];
  const int lane = threadIdx.x & 31;
  constexpr int words = MODE == kLanes16 ? kBins / 2 * 32 : MODE == kRep16h ? kBins / 2 * 16 : kBins * kRep;
  for (int i = threadIdx.x; i < words; i += blockDim.x) sh[i] = 0;
  __syncthreads();
  unsigned int rare = 0;
  __half2 lo2 = __float2half2_rn(INFINITY), hi2 = __float2half2_rn(-INFINITY);
  const __half2 scale2 = __float2half2_rn(scale);
  const unsigned int addc = (0x8000u - 0x4400u) * 0x10001u;  // limit 4.0
  unsigned int* mine = sh + (lane & (kRep - 1));
  const uint32_t sbase = (uint32_t)__cvta_generic_to_shared(sh);
  // byte address of bin b for this lane = (2^23 + b bits) * stride + base', mod 2^32
  const uint32_t stride = MODE == kLanes16 ? 0u : kRep * 4u;
  const uint32_t base = sbase + (lane & (kRep - 1)) * 4u - 0x4B000000u * stride;
  const size_t gstride = (size_t)gridDim.x * blockDim.x;
  size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  for (; i + 3 * gstride < nvec; i += 4 * gstride) {
    uint4 v[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) v[u] = __ldcs(x + i + u * gstride);
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const unsigned int w[4] = {v[u].x, v[u].y, v[u].z, v[u].w};
      unsigned int a[4], flags = 0;
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        a[q] = w[q] & 0x7fff7fffu;
        flags |= a[q] + addc;
      }
      if (flags & 0x80008000u) {
        ++rare;
        continue;
      }
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const __half2 hv = *reinterpret_cast<const __half2*>(&w[q]);
        if (MODE != kFfmaNoMinMax) {
          lo2 = __hmin2(lo2, hv);
          hi2 = __hmax2(hi2, hv);
        }
        if (MODE == kF2I) {
          const __half2 sc = __hmul2(*reinterpret_cast<const __half2*>(&a[q]), scale2);
          atomicAdd(mine + __half2int_rz(__low2half(sc)) * kRep, 1u);
          atomicAdd(mine + __half2int_rz(__high2half(sc)) * kRep, 1u);
        } else {
          const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&a[q]));
          const uint32_t b0 = __float_as_uint(__fmaf_rz(f.x, scale, 8388608.f));
          const uint32_t b1 = __float_as_uint(__fmaf_rz(f.y, scale, 8388608.f));
          if (MODE == kLanes16) {
            // word (bin / 2) * 32 + lane, half (bin & 1)
            atom_shared_add(sbase + ((b0 >> 1) & 0x3ffu) * 128u + lane * 4u, 1u << ((b0 & 1u) * 16u));
            atom_shared_add(sbase + ((b1 >> 1) & 0x3ffu) * 128u + lane * 4u, 1u << ((b1 & 1u) * 16u));
          } else if (MODE == kRep16h) {
            // word (bin / 2) * 16 + lane % 16, half (bin & 1)
            atom_shared_add(sbase + ((b0 >> 1) & 0x3ffu) * 64u + (lane & 15) * 4u, 1u << ((b0 & 1u) * 16u));
            atom_shared_add(sbase + ((b1 >> 1) & 0x3ffu) * 64u + (lane & 15) * 4u, 1u << ((b1 & 1u) * 16u));
          } else {
            atom_shared_inc(b0 * stride + base);
            atom_shared_inc(b1 * stride + base);
          }
        }
      }
    }
  }
  __syncthreads();
  for (int b = threadIdx.x; b < kBins; b += blockDim.x) {
    unsigned int s = 0;
    if (MODE == kLanes16) {
      for (int l = 0; l < 32; ++l) s += (sh[(b >> 1) * 32 + l] >> ((b & 1) * 16)) & 0xffffu;
    } else if (MODE == kRep16h) {
      for (int l = 0; l < 16; ++l) s += (sh[(b >> 1) * 16 + l] >> ((b & 1) * 16)) & 0xffffu;
    } else {
#pragma unroll
      for (int r = 0; r < kRep; ++r) s += sh[b * kRep + r];
    }
    if (s) atomicAdd(out + b, (unsigned long long)s);
  }
  const float keep = __half2float(__hadd(__low2half(lo2), __high2half(hi2))) + rare;
  if (keep == 12345.f) out[kBins] = 1;
}

template <int MODE, int THREADS = 512>
float run(const uint4* x, size_t nvec, float scale, unsigned long long* out, int per_sm,
          unsigned long long* total) {
  const int smem = MODE == kLanes16 ? kBins / 2 * 32 * 4 : MODE == kRep16h ? kBins / 2 * 16 * 4 : kBins * kRep * 4;
  cudaFuncSetAttribute(kernel<MODE, THREADS>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  auto launch = [&] { kernel<MODE, THREADS><<<sm_count() * per_sm, THREADS, smem>>>(x, nvec, scale, out); };
  const float ms = median_ms(launch);
  cudaMemset(out, 0, (kBins + 1) * 8);  // one more launch for the counts' total
  launch();
  std::vector<unsigned long long> h(kBins);
  cudaMemcpy(h.data(), out, kBins * 8, cudaMemcpyDeviceToHost);
  *total = 0;
  for (auto c : h) *total += c;
  return ms;
}

int main() {
  const size_t n = (size_t)1 << 28;
  __half* x;
  unsigned long long* out;
  CK(cudaMalloc(&x, n * sizeof(__half)));
  CK(cudaMalloc(&out, (kBins + 1) * 8));
  fill<<<4096, 256>>>(x, n, 12345u);
  CK(cudaDeviceSynchronize());
  const float scale = kBins / 4.0f;
  const uint4* v = reinterpret_cast<const uint4*>(x);
  const size_t nvec = n / 8;
  unsigned long long total = 0;
  std::printf("2^28 float16, 2048 bins; floor at 4.2 TB/s: %.3f ms (counts must total %zu)\n",
              n * 2 / 4.2e12 * 1e3, n);
  float t;
  t = run<kF2I>(v, nvec, scale, out, 3, &total);
  std::printf("f2i       %.3f ms  total %llu\n", t, total);
  t = run<kFfma>(v, nvec, scale, out, 3, &total);
  std::printf("ffma-rz   %.3f ms  total %llu\n", t, total);
  t = run<kFfmaNoMinMax>(v, nvec, scale, out, 3, &total);
  std::printf("ffma-nomm %.3f ms  total %llu\n", t, total);
  t = run<kLanes16, 1024>(v, nvec, scale, out, 1, &total);
  std::printf("lanes16   %.3f ms  total %llu (16-bit columns overflow past 65535 per lane: timing only)\n", t, total);
  t = run<kRep16h>(v, nvec, scale, out, 3, &total);
  std::printf("rep16h    %.3f ms  total %llu (16-bit counters: timing only)\n", t, total);
  t = run<kFfma>(v, nvec, scale, out, 3, &total);
  std::printf("ffma-rz   %.3f ms  (again, for the run-to-run spread)\n", t);
  CK(cudaGetLastError());
  return 0;
}
