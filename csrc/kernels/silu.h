// SiLU(x) = x * sigmoid(x): float, int8 -> int8 (exact table), and the Q/DQ boundaries
// (int8 -> float, float -> int8). Raw pointers, 64-bit sizes, any alignment, stream last.
// Shared by the Python extension and the TensorRT plugin library.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "dtype.h"

namespace trtcal {

// ---- Definitions (mirrored exactly by python/trtcal/reference/silu.py) ----------------
//
// Float SiLU: y = silu(float32(x)) evaluated in float32 as
//     t = exp(-|x|);  y = (x >= 0 ? x : x * t) / (1 + t)
// (no overflow for any input; silu(-inf) = -0, silu(+inf) = +inf, NaN -> NaN), rounded to
// nearest-even into the output dtype. float32 uses expf and IEEE division; float16 and
// bfloat16 use the fast exp/division (their output rounding hides the difference).
//
// INT8 table (int8 in, int8 out): for every code q in [-128, 127]
//     v = float32(q) * float32(scale_in)             (one float32 product: TensorRT's dequantize)
//     s = v / (1 + exp(-v))   evaluated in float64 (stable form as above)
//     table[q + 128] = clamp(round_half_even(s / float64(scale_out)), -128, 127)
// float64 makes the table reproducible across CUDA, libm and NumPy (float32 exp differs
// between them by ULPs); the result is the correctly rounded one.
//
// INT8 -> float table: table[q + 128] = dtype(float32(s)) with s as above: the float64 value
// rounded to float32, then (float16 / bfloat16) rounded again to the output dtype.
//
// Float -> INT8: q = clamp(round_half_even(y / scale_out), -128, 127) with y the float32
// SiLU value above (before any output rounding) and an IEEE float32 division; NaN -> 0.

constexpr int kSiluTableSize = 256;  // index = q + 128

// Host: fills table[256] (int8) from the scales. Returns false for scales that are not
// positive and finite.
bool silu_int8_table(float scale_in, float scale_out, int8_t* table);

// Host: fills table[256] of the output dtype (float32: 1 KiB, float16/bfloat16: 512 bytes
// of raw bits) for int8 -> float SiLU. Returns false for a bad scale or dtype.
bool silu_int8_to_float_table(float scale_in, DType out_dtype, void* table);

// y[i] = silu(x[i]) for n elements of a float dtype (x and y may be the same buffer).
cudaError_t silu(const void* x, void* y, DType dtype, size_t n, cudaStream_t stream);

// y[i] = table[q[i] + 128]; `table` is a HOST array of 256 int8 (from silu_int8_table),
// passed by value to the kernel (no device memory, no copy, graph-capturable).
cudaError_t silu_int8(const int8_t* q, int8_t* y, size_t n, const int8_t* table, cudaStream_t stream);

// y[i] = table[q[i] + 128] in the output dtype; `table` is a HOST array from
// silu_int8_to_float_table for the same dtype.
cudaError_t silu_int8_to_float(const int8_t* q, void* y, DType out_dtype, size_t n, const void* table,
                               cudaStream_t stream);

// FP8 E4M3FN table (fp8 in, fp8 out; TensorRT's DataType::kFP8), indexed by the input byte c:
//     v = float32(e4m3(c)) * float32(scale_in)        (one float32 product, as above)
//     s = silu(v) in float64                           (as the INT8 table)
//     table[c] = e4m3 code of s / float64(scale_out), rounded once to nearest even, saturating
//                at +-448 (E4M3FN has no infinity); the NaN codes 0x7F and 0xFF give 0x7F.
// python/trtcal/reference/silu.py:silu_fp8_table mirrors it.
bool silu_fp8_table(float scale_in, float scale_out, uint8_t* table);

// y[i] = table[x[i]] on E4M3 bytes; `table` is a HOST array of 256 from silu_fp8_table (the
// INT8 table kernel does the lookup, with the table permuted to its q + 128 index).
cudaError_t silu_fp8(const uint8_t* x, uint8_t* y, size_t n, const uint8_t* table, cudaStream_t stream);

// y[i] = quantize(silu(x[i]), scale_out) for a float input dtype.
cudaError_t silu_float_to_int8(const void* x, DType dtype, int8_t* y, size_t n, float scale_out,
                               cudaStream_t stream);

}  // namespace trtcal
