// Radix-select passes; see select.h.
#include "device_common.cuh"
#include "select.h"

namespace trtcal {
namespace {

constexpr int kThreads = 512;
constexpr int kReplicas = 4;

__device__ __forceinline__ uint32_t key_of(float v, bool use_abs) {
  if (isnan(v)) return kSelectNaNKey;
  const uint32_t u = __float_as_uint(v);
  return use_abs ? (u & 0x7fffffffu) : detail::ordered_from_bits(u);
}

template <typename F>
__device__ __forceinline__ void for_each_key(const void* x, DType dtype, const uint32_t* keys, size_t n,
                                             bool use_abs, F& f) {
  if (keys) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += stride) f(__ldg(keys + i));
    return;
  }
  auto g = [&](float v) { f(key_of(v, use_abs)); };
  switch (dtype) {
    case DType::kFloat32: detail::for_each_value<float, 4>(static_cast<const float*>(x), n, g); break;
    case DType::kFloat16: detail::for_each_value<__half, 4>(static_cast<const __half*>(x), n, g); break;
    case DType::kBFloat16:
      detail::for_each_value<__nv_bfloat16, 4>(static_cast<const __nv_bfloat16*>(x), n, g);
      break;
    default: break;
  }
}

__global__ void __launch_bounds__(kThreads) histogram_kernel(const void* x, DType dtype, const uint32_t* keys,
                                                             size_t n, bool use_abs, int shift, int bits,
                                                             int prefix_shift, uint32_t prefix,
                                                             unsigned long long* hist) {
  extern __shared__ unsigned int sh[];
  const int nb = 1 << bits;
  for (int i = threadIdx.x; i < nb * kReplicas; i += blockDim.x) sh[i] = 0;
  __syncthreads();
  unsigned int* mine = sh + ((threadIdx.x >> 5) % kReplicas) * nb;
  const uint32_t mask = (uint32_t)nb - 1;
  auto f = [&](uint32_t k) {
    if (prefix_shift < 32 && (k >> prefix_shift) != prefix) return;
    atomicAdd(mine + ((k >> shift) & mask), 1u);
  };
  for_each_key(x, dtype, keys, n, use_abs, f);
  __syncthreads();
  for (int b = threadIdx.x; b < nb; b += blockDim.x) {
    unsigned long long s = 0;
    for (int r = 0; r < kReplicas; ++r) s += sh[r * nb + b];
    if (s) atomicAdd(hist + b, s);
  }
}

__global__ void __launch_bounds__(kThreads) compact_kernel(const void* x, DType dtype, const uint32_t* keys,
                                                           size_t n, bool use_abs, uint32_t lo, uint32_t hi,
                                                           uint32_t* out, unsigned long long* count) {
  auto f = [&](uint32_t k) {
    const bool keep = k >= lo && k <= hi;
    // warp-aggregated append (the lanes calling f together share one atomic)
    const unsigned active = __activemask();
    const unsigned ballot = __ballot_sync(active, keep);
    if (!ballot) return;
    const int lane = threadIdx.x & 31;
    const int leader = __ffs(ballot) - 1;
    unsigned long long base = 0;
    if (lane == leader) base = atomicAdd(count, (unsigned long long)__popc(ballot));
    base = __shfl_sync(active, base, leader);
    if (keep) out[base + __popc(ballot & ((1u << lane) - 1u))] = k;
  };
  for_each_key(x, dtype, keys, n, use_abs, f);
}

}  // namespace

cudaError_t select_histogram(const void* x, DType dtype, const uint32_t* keys, size_t n, bool use_abs,
                             int shift, int bits, int prefix_shift, uint32_t prefix,
                             unsigned long long* hist, cudaStream_t stream) {
  if (bits < 1 || bits > 12 || shift < 0 || shift > 31) return cudaErrorInvalidValue;
  if (!keys && dtype != DType::kFloat32 && dtype != DType::kFloat16 && dtype != DType::kBFloat16)
    return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  const size_t smem = sizeof(unsigned int) * ((size_t)1 << bits) * kReplicas;
  cudaError_t err = cudaFuncSetAttribute(histogram_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
  if (err != cudaSuccess) return err;
  const int blocks = detail::streaming_grid(n, kThreads * 16, 2);
  histogram_kernel<<<blocks, kThreads, smem, stream>>>(x, dtype, keys, n, use_abs, shift, bits, prefix_shift,
                                                       prefix, hist);
  return cudaGetLastError();
}

cudaError_t select_compact(const void* x, DType dtype, const uint32_t* keys, size_t n, bool use_abs,
                           uint32_t lo, uint32_t hi, uint32_t* out, unsigned long long* count,
                           cudaStream_t stream) {
  if (!keys && dtype != DType::kFloat32 && dtype != DType::kFloat16 && dtype != DType::kBFloat16)
    return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  const int blocks = detail::streaming_grid(n, kThreads * 16, 2);
  compact_kernel<<<blocks, kThreads, 0, stream>>>(x, dtype, keys, n, use_abs, lo, hi, out, count);
  return cudaGetLastError();
}

}  // namespace trtcal
