// Exact order statistics of large float arrays by radix select on order-preserving keys.
//
// key(x) is a uint32 whose unsigned order is the order of x (signed mode) or of |x| (abs
// mode); every NaN maps to 0xffffffff, above all other keys (+Inf included), so NaNs are
// the top ranks and are excluded by the caller. A selection reads the data twice: one
// histogram of the top 12 key bits, one compaction of the keys in the chosen bucket(s);
// the remaining bits are resolved on the (usually tiny) compacted buffer.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "dtype.h"

namespace trtcal {

constexpr uint32_t kSelectNaNKey = 0xffffffffu;

// hist[b] += number of keys k with (k >> prefix_shift) == prefix (prefix_shift >= 32: all
// keys) and b == (k >> shift) & ((1 << bits) - 1). Reads the float array x (dtype) or,
// when `keys` is not null, the uint32 keys. bits <= 12; hist holds 2^bits zeroed counts.
cudaError_t select_histogram(const void* x, DType dtype, const uint32_t* keys, size_t n, bool use_abs,
                             int shift, int bits, int prefix_shift, uint32_t prefix,
                             unsigned long long* hist, cudaStream_t stream);

// Appends every key k of x (or of `keys`) with lo <= k <= hi to out (order unspecified)
// and adds their number to *count (zeroed by the caller).
cudaError_t select_compact(const void* x, DType dtype, const uint32_t* keys, size_t n, bool use_abs,
                           uint32_t lo, uint32_t hi, uint32_t* out, unsigned long long* count,
                           cudaStream_t stream);

}  // namespace trtcal
