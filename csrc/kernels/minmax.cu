#include <cfloat>
#include <cstring>

#include "device_common.cuh"
#include "minmax.h"

namespace trtcal {
namespace {

using detail::float_to_ordered;

// Float min/max in registers (fminf/fmaxf ignore NaN); non-finite values take a rare
// branch. Converted to the ordered form once per thread.
struct MinMaxFold {
  float flo = INFINITY, fhi = -INFINITY;
  unsigned int nan = 0, pinf = 0, ninf = 0;
  uint32_t lo = detail::kOrderedMinInit;
  uint32_t hi = detail::kOrderedMaxInit;
  __device__ __forceinline__ void operator()(float v) {
    if (fabsf(v) <= FLT_MAX) {
      flo = fminf(flo, v);
      fhi = fmaxf(fhi, v);
    } else if (isnan(v)) {
      ++nan;
    } else if (v > 0.f) {
      ++pinf;
    } else {
      ++ninf;
    }
  }
  __device__ __forceinline__ void finish() {
    if (flo <= fhi) {
      lo = float_to_ordered(flo);
      hi = float_to_ordered(fhi);
    }
  }
};

// Block-sum the non-finite counts and add them with one atomic each (all threads call).
__device__ __forceinline__ void publish_nonfinite(const MinMaxFold& f, unsigned long long* nonfinite) {
  if (!nonfinite) return;
  __shared__ unsigned long long s64[32];
  const unsigned long long c[3] = {f.nan, f.pinf, f.ninf};
#pragma unroll
  for (int i = 0; i < 3; ++i) {
    const unsigned long long v = detail::block_reduce(c[i], detail::SumOp(), s64, 0ull);
    if (threadIdx.x == 0 && v) atomicAdd(nonfinite + i, v);
  }
}

// Block-reduce a fold and publish it with one atomic per quantity.
__device__ __forceinline__ void publish(MinMaxFold& f, uint32_t* min_o, uint32_t* max_o,
                                        unsigned long long* nonfinite) {
  f.finish();
  __shared__ uint32_t s32[32];
  const uint32_t lo = detail::block_reduce(f.lo, detail::MinOp(), s32, detail::kOrderedMinInit);
  const uint32_t hi = detail::block_reduce(f.hi, detail::MaxOp(), s32, detail::kOrderedMaxInit);
  publish_nonfinite(f, nonfinite);
  if (threadIdx.x == 0) {
    if (lo != detail::kOrderedMinInit) atomicMin(min_o, lo);
    if (hi != detail::kOrderedMaxInit) atomicMax(max_o, hi);
  }
}

template <typename T>
__global__ void minmax_flat_kernel(const T* __restrict__ x, size_t n, uint32_t* min_o, uint32_t* max_o,
                                   unsigned long long* nonfinite) {
  MinMaxFold f;
  detail::for_each_value<T, 8>(x, n, f);
  publish(f, min_o, max_o, nonfinite);
}

// minmax_flat_kernel whose last block hands the result to `out` and resets `state`.
template <typename T>
__global__ void minmax_scalar_kernel(const T* __restrict__ x, size_t n, MinMaxScalarState* state,
                                     MinMaxScalarResult* out, unsigned int seq) {
  MinMaxFold f;
  detail::for_each_value<T, 8>(x, n, f);
  publish(f, &state->min_ordered, &state->max_ordered, state->nonfinite);
  if (threadIdx.x != 0) return;  // thread 0 made every atomic of the block
  __threadfence();
  if (atomicAdd(&state->arrived, 1u) != gridDim.x - 1) return;
  __threadfence();  // every other block's atomics are visible now
  volatile MinMaxScalarState* s = state;
  volatile MinMaxScalarResult* o = out;
  o->min_ordered = s->min_ordered;
  o->max_ordered = s->max_ordered;
  for (int i = 0; i < 3; ++i) o->nonfinite[i] = s->nonfinite[i];
  s->min_ordered = detail::kOrderedMinInit;
  s->max_ordered = detail::kOrderedMaxInit;
  for (int i = 0; i < 3; ++i) s->nonfinite[i] = 0;
  s->arrived = 0;
  __threadfence_system();  // the result and the reset before the sequence number
  o->seq = seq;
}

__global__ void minmax_scalar_init_kernel(MinMaxScalarState* state) {
  state->min_ordered = detail::kOrderedMinInit;
  state->max_ordered = detail::kOrderedMaxInit;
  for (int i = 0; i < 3; ++i) state->nonfinite[i] = 0;
  state->arrived = 0;
}

// One block per (outer, channel) row of `inner` contiguous values; a y-dimension
// of the grid covers rows beyond 2^31.
template <typename T>
__global__ void minmax_rows_kernel(const T* __restrict__ x, int64_t rows, int64_t channels, int64_t inner,
                                   uint32_t* min_o, uint32_t* max_o, unsigned long long* nonfinite) {
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    MinMaxFold f;
    detail::for_each_value<T, 2>(x + row * inner, (size_t)inner, f, threadIdx.x, blockDim.x);
    const int64_t c = row % channels;
    publish(f, min_o + c, max_o + c, nonfinite);
  }
}

// Few values per row: view x as a matrix [outer, channels*inner]; each thread owns a
// column and walks a slice of the rows (coalesced across the warp).
template <typename T>
__global__ void minmax_columns_kernel(const T* __restrict__ x, int64_t outer, int64_t channels, int64_t inner,
                                      uint32_t* min_o, uint32_t* max_o, unsigned long long* nonfinite) {
  const int64_t width = channels * inner;
  const int64_t col = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  MinMaxFold f;
  if (col < width) {
    for (int64_t r = blockIdx.y; r < outer; r += gridDim.y) f(detail::to_float(x[r * width + col]));
    f.finish();
    const int64_t c = col / inner;
    if (f.lo != detail::kOrderedMinInit) atomicMin(min_o + c, f.lo);
    if (f.hi != detail::kOrderedMaxInit) atomicMax(max_o + c, f.hi);
  }
  publish_nonfinite(f, nonfinite);
}

__global__ void minmax_reset_kernel(uint32_t* min_o, uint32_t* max_o, int64_t channels,
                                    unsigned long long* nonfinite) {
  for (int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; c < channels;
       c += (int64_t)gridDim.x * blockDim.x) {
    min_o[c] = detail::kOrderedMinInit;
    max_o[c] = detail::kOrderedMaxInit;
  }
  if (nonfinite && blockIdx.x == 0 && threadIdx.x < 3) nonfinite[threadIdx.x] = 0;
}

}  // namespace

cudaError_t minmax_reset(uint32_t* min_ordered, uint32_t* max_ordered, int64_t channels,
                         unsigned long long* nonfinite, cudaStream_t stream) {
  if (channels < 1) return cudaErrorInvalidValue;
  const int threads = 256;
  int64_t blocks = (channels + threads - 1) / threads;
  if (blocks > 65535) blocks = 65535;
  minmax_reset_kernel<<<(int)blocks, threads, 0, stream>>>(min_ordered, max_ordered, channels, nonfinite);
  return cudaGetLastError();
}

cudaError_t minmax_accumulate(const void* x, DType dtype, int64_t outer, int64_t channels, int64_t inner,
                              uint32_t* min_ordered, uint32_t* max_ordered, unsigned long long* nonfinite,
                              cudaStream_t stream) {
  if (outer < 0 || channels < 1 || inner < 0) return cudaErrorInvalidValue;
  const size_t n = (size_t)outer * channels * inner;
  if (n == 0) return cudaSuccess;
  TRTCAL_FLOAT_SWITCH(dtype, T, {
    const T* p = static_cast<const T*>(x);
    if (channels == 1) {
      const int threads = 512;
      const int blocks = detail::streaming_grid(n, threads * 16, 4);
      minmax_flat_kernel<T><<<blocks, threads, 0, stream>>>(p, n, min_ordered, max_ordered, nonfinite);
    } else if (inner >= 512) {
      const int64_t rows = outer * channels;
      const int blocks = (int)(rows < (1 << 20) ? rows : (1 << 20));
      minmax_rows_kernel<T>
          <<<blocks, 256, 0, stream>>>(p, rows, channels, inner, min_ordered, max_ordered, nonfinite);
    } else {
      const int threads = 256;
      const int64_t width = channels * inner;
      const int64_t bx = (width + threads - 1) / threads;
      if (bx > 0x7fffffff) return cudaErrorInvalidValue;
      int64_t by = (outer + 63) / 64;  // about 64 rows per thread
      if (by > 65535) by = 65535;
      if (by < 1) by = 1;
      minmax_columns_kernel<T><<<dim3((unsigned)bx, (unsigned)by), threads, 0, stream>>>(
          p, outer, channels, inner, min_ordered, max_ordered, nonfinite);
    }
  });
  return cudaGetLastError();
}

cudaError_t minmax_scalar_init(MinMaxScalarState* state, cudaStream_t stream) {
  minmax_scalar_init_kernel<<<1, 1, 0, stream>>>(state);
  return cudaGetLastError();
}

cudaError_t minmax_scalar(const void* x, DType dtype, size_t n, MinMaxScalarState* state,
                          MinMaxScalarResult* out, unsigned int seq, cudaStream_t stream) {
  if (n == 0) return cudaErrorInvalidValue;  // no block would write `out`
  TRTCAL_FLOAT_SWITCH(dtype, T, {
    const int threads = 512;
    const int blocks = detail::streaming_grid(n, threads * 16, 4);
    minmax_scalar_kernel<T><<<blocks, threads, 0, stream>>>(static_cast<const T*>(x), n, state, out, seq);
  });
  return cudaGetLastError();
}

uint32_t float_to_ordered_host(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return detail::ordered_from_bits(bits);
}

float ordered_to_float_host(uint32_t ordered) {
  const uint32_t bits = detail::bits_from_ordered(ordered);
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

}  // namespace trtcal
