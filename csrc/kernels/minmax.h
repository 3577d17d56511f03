// Min/max per tensor or per channel, accumulated into ordered-uint32 buffers so that
// repeated calls (batches) combine with atomics and no host round trip.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "dtype.h"

namespace trtcal {

// Non-finite counters, in this order, in a buffer of 3 unsigned long long.
enum NonFinite : int { kNaN = 0, kPosInf = 1, kNegInf = 2 };

// Sets min_ordered[c] / max_ordered[c] to the identities and, if `nonfinite` is not
// null, zeroes its 3 counters.
cudaError_t minmax_reset(uint32_t* min_ordered, uint32_t* max_ordered, int64_t channels,
                         unsigned long long* nonfinite, cudaStream_t stream);

// x is a dense array viewed as [outer, channels, inner] in memory order. Folds the
// finite values of channel c into min_ordered[c] / max_ordered[c] (use channels = 1,
// outer = 1, inner = n for a whole tensor) and counts NaN, +Inf and -Inf into
// nonfinite[0..2]. Values are compared as float32 (exact for every input dtype).
cudaError_t minmax_accumulate(const void* x, DType dtype, int64_t outer, int64_t channels, int64_t inner,
                              uint32_t* min_ordered, uint32_t* max_ordered, unsigned long long* nonfinite,
                              cudaStream_t stream);

// Whole-tensor min/max handed to the host without a copy step: the device keeps `state`
// (zeroed once by minmax_scalar_init), every block folds into it with atomics, and the last
// block to finish resets `state` for the next call, writes the result to `out` (typically mapped
// pinned host memory, given by its device pointer; device memory works too) and, after a
// system-wide fence, out->seq = seq. One kernel, no reset launch, no cudaMemcpy: the host either
// watches out->seq (mapped memory) or waits for the stream, then reads `out`. Once out->seq
// shows `seq`, every read of x and every write to `state` of the call is done. Calls sharing
// `state` must not overlap (the caller serialises them). Results are those of minmax_reset +
// minmax_accumulate (the same fold and atomics).
struct MinMaxScalarState {
  uint32_t min_ordered, max_ordered;
  unsigned long long nonfinite[3];
  unsigned int arrived;  // blocks done in the current call
};
struct MinMaxScalarResult {
  uint32_t min_ordered, max_ordered;  // identities (no finite value): 0xffffffff and 0
  unsigned long long nonfinite[3];    // NaN, +Inf, -Inf
  unsigned int seq;                   // written last: the call's `seq`
};
cudaError_t minmax_scalar_init(MinMaxScalarState* state, cudaStream_t stream);
cudaError_t minmax_scalar(const void* x, DType dtype, size_t n, MinMaxScalarState* state,
                          MinMaxScalarResult* out, unsigned int seq, cudaStream_t stream);

// Host-side decoding of the ordered representation (identity values decode to NaN-free
// +-inf sentinels: an untouched min decodes to NaN, check counts first).
float ordered_to_float_host(uint32_t ordered);
// Host-side encoding into the ordered representation (detail::ordered_from_bits).
uint32_t float_to_ordered_host(float value);

}  // namespace trtcal
