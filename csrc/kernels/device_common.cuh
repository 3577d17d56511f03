// Device helpers shared by the statistics kernels: vectorised traversal, ordered
// float bits for atomic min/max, and block reductions.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "error.h"

namespace trtcal {
namespace detail {

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

// Monotonic map float -> uint32 so that unsigned integer order equals float order
// (-0.0 sorts just below +0.0). Used for atomicMin/atomicMax on floats.
__host__ __device__ __forceinline__ uint32_t ordered_from_bits(uint32_t u) {
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__host__ __device__ __forceinline__ uint32_t bits_from_ordered(uint32_t o) {
  return (o & 0x80000000u) ? (o & 0x7fffffffu) : ~o;
}
__device__ __forceinline__ uint32_t float_to_ordered(float f) {
  return ordered_from_bits(__float_as_uint(f));
}
__device__ __forceinline__ float ordered_to_float(uint32_t o) {
  return __uint_as_float(bits_from_ordered(o));
}

constexpr uint32_t kOrderedMinInit = 0xffffffffu;  // identity of min
constexpr uint32_t kOrderedMaxInit = 0x00000000u;  // identity of max

// The traversal shared by the streaming kernels: x[0, n) with 16-byte loads, a scalar head up
// to the first 16-byte boundary, UNROLL independent vector loads in flight per thread, and a
// scalar tail; grid-stride, 64-bit indices. vec(uint4) takes each 16-byte body vector,
// one(T) each head and tail element. `tid` and `nthreads` place this thread among those
// sharing the range (the whole grid, or one block when each block owns a row).
// A thread sees at most 16 / sizeof(T) * ceil(nvec / nthreads) + 2 elements.
template <typename T, int UNROLL, typename Vec, typename One>
__device__ __forceinline__ void for_each_vector(const T* __restrict__ x, size_t n, Vec&& vec, One&& one,
                                                size_t tid, size_t nthreads) {
  constexpr int kVec = 16 / sizeof(T);

  const uintptr_t addr = reinterpret_cast<uintptr_t>(x);
  size_t head = ((16 - (addr & 15)) & 15) / sizeof(T);
  if (head > n) head = n;
  if (tid < head) one(x[tid]);

  const T* body = x + head;
  const size_t nvec = (n - head) / kVec;
  const uint4* vbody = reinterpret_cast<const uint4*>(body);

  size_t i = tid;
  for (; i + (UNROLL - 1) * nthreads < nvec; i += UNROLL * nthreads) {
    uint4 v[UNROLL];
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) v[u] = __ldcs(vbody + i + u * nthreads);
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) vec(v[u]);
  }
  for (; i < nvec; i += nthreads) vec(__ldcs(vbody + i));
  const size_t tail_start = head + nvec * kVec;
  for (size_t j = tail_start + tid; j < n; j += nthreads) one(x[j]);
}

// Calls f(float value) for every element of x[0, n) (see for_each_vector).
template <typename T, int UNROLL, typename F>
__device__ __forceinline__ void for_each_value(const T* __restrict__ x, size_t n, F& f, size_t tid,
                                               size_t nthreads) {
  constexpr int kVec = 16 / sizeof(T);
  for_each_vector<T, UNROLL>(
      x, n,
      [&](const uint4& v) {
        const T* e = reinterpret_cast<const T*>(&v);
#pragma unroll
        for (int k = 0; k < kVec; ++k) f(to_float(e[k]));
      },
      [&](T v) { f(to_float(v)); }, tid, nthreads);
}

template <typename T, int UNROLL, typename F>
__device__ __forceinline__ void for_each_value(const T* __restrict__ x, size_t n, F& f) {
  for_each_value<T, UNROLL>(x, n, f, blockIdx.x * (size_t)blockDim.x + threadIdx.x,
                            (size_t)gridDim.x * blockDim.x);
}

template <typename V, typename Op>
__device__ __forceinline__ V warp_reduce(V v, Op op) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Reduce within the block; the result is valid in thread 0. `scratch` holds 32 Vs;
// `identity` fills the lanes of warp 0 beyond the number of warps.
template <typename V, typename Op>
__device__ __forceinline__ V block_reduce(V v, Op op, V* scratch, V identity) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_reduce(v, op);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  const int nwarps = (blockDim.x + 31) >> 5;
  if (warp == 0) {
    v = lane < nwarps ? scratch[lane] : identity;
    v = warp_reduce(v, op);
  }
  return v;
}

struct MinOp {
  __device__ uint32_t operator()(uint32_t a, uint32_t b) const { return a < b ? a : b; }
};
struct MaxOp {
  __device__ uint32_t operator()(uint32_t a, uint32_t b) const { return a > b ? a : b; }
};
struct SumOp {
  __device__ unsigned long long operator()(unsigned long long a, unsigned long long b) const { return a + b; }
};

// Lets `kernel` launch with `bytes` of dynamic shared memory on the current device. A block's
// static and dynamic shared memory together may pass the default 48 KB only after an opt-in,
// so the test is on their sum: testing the dynamic bytes alone let launches whose dynamic part
// was just under 48 KB fail with cudaErrorInvalidValue (seen as an intermittent range-search
// failure, for histograms of ~1900 bins). Cheap when nothing needs to change.
template <typename K>
inline cudaError_t allow_dynamic_smem(K* kernel, size_t bytes) {
  cudaFuncAttributes a;
  TRTCAL_TRY(cudaFuncGetAttributes(&a, kernel));
  if (bytes + a.sharedSizeBytes <= 48 * 1024 || bytes <= (size_t)a.maxDynamicSharedSizeBytes)
    return cudaSuccess;
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
}

// Number of blocks for a streaming kernel: enough to fill every SM `per_sm` times,
// and enough that no block sees more than 2^30 elements (32-bit block counters).
inline int streaming_grid(size_t n, int threads, int per_sm) {
  int dev = 0, sms = 0;
  cudaGetDevice(&dev);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  if (sms <= 0) sms = 80;
  size_t want = (size_t)sms * per_sm;
  const size_t by_size = (n + (1u << 30) - 1) >> 30;
  if (want < by_size) want = by_size;
  const size_t useful = (n + threads - 1) / threads;
  if (want > useful) want = useful;
  if (want < 1) want = 1;
  return (int)want;
}

}  // namespace detail
}  // namespace trtcal
