// Histograms of |x| over [0, R) or of x over [-R, R) with 64-bit counts.
//
// Streaming (collector) histograms live on a power-of-two range grid: R = 2^e with e the
// smallest exponent such that every finite |x| seen so far is < R. When a batch exceeds
// R, the range doubles (possibly several times) and 2^m old bins merge into one new bin;
// the mapping is exact for any bin count, so the final histogram equals the histogram of
// all data at the final range whatever the batch order or size. Bin of a value v:
//   abs:    floor(|v| * nbins / R)
//   signed: nbins/2 + floor(v * (nbins/2) / R)          (nbins even)
// evaluated exactly (float32 when the scale is a power of two, float64 otherwise; the
// product is exact for nbins <= 2^24).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "dtype.h"

namespace trtcal {

constexpr int64_t kMaxHistogramBins = int64_t(1) << 24;

// Device-resident state of a streaming histogram (counts are a separate buffer).
struct HistogramState {
  int32_t nbins;
  int32_t is_signed;
  int32_t has_range;       // 0 until a finite non-zero value was seen
  int32_t exponent;        // R = 2^exponent when has_range
  int32_t prev_has_range;  // range before the last update's growth (pass 2 reads it)
  int32_t prev_exponent;
  int32_t grew;              // the last update must run pass 2
  uint32_t batch_amax_bits;  // max |x| of the batch being added (float bits)
  uint32_t amax_bits;        // max |x| over everything (float bits)
  uint32_t min_ordered;      // min over finite values (ordered bits)
  uint32_t max_ordered;      // max over finite values (ordered bits)
  uint32_t reserved;
  unsigned long long finite;        // finite values binned
  unsigned long long nonfinite[3];  // NaN, +Inf, -Inf (never binned)
};

// Initialises `state` and zeroes `counts` (nbins values).
cudaError_t histogram_state_init(HistogramState* state, unsigned long long* counts, int32_t nbins,
                                 bool is_signed, cudaStream_t stream);

// Adds the n values of x to the histogram. `scratch` holds nbins counts. At most two
// passes over x: one that bins what fits the current range and finds the batch's
// max |x|, and one that bins the values beyond the old range, only when it grew.
cudaError_t histogram_update(const void* x, DType dtype, size_t n, HistogramState* state,
                             unsigned long long* counts, unsigned long long* scratch, int32_t nbins,
                             bool is_signed, cudaStream_t stream);

// One tensor of a batched update (see histogram_update_many).
struct HistogramBatchItem {
  const void* x;  // values (dtype: 0 float32, 1 float16, 2 bfloat16)
  unsigned long long n;
  HistogramState* state;  // this tensor's histogram (device)
  unsigned long long* counts;
  unsigned long long* scratch;
  int32_t dtype;
  int32_t nbins;
  int32_t is_signed;
  int32_t first_block;  // filled by histogram_update_many
  int32_t nblocks;      // filled by histogram_update_many
  int32_t reserved;
};

// histogram_update for many tensors in three launches in all (pass 1, growth, pass 2),
// whatever their number, sizes, dtypes and bin counts: per-tensor launches cost more than
// the work for the small activations of a model. `items` (host, nitems) is completed with
// the block split and copied to `items_dev` (device, room for nitems) on `stream`; the host
// array may be reused when this returns.
cudaError_t histogram_update_many(HistogramBatchItem* items, int32_t nitems, HistogramBatchItem* items_dev,
                                  cudaStream_t stream);

// a += b (same nbins and sign). Both are re-binned onto the larger range.
cudaError_t histogram_merge(HistogramState* a, unsigned long long* counts_a, const HistogramState* b,
                            const unsigned long long* counts_b, unsigned long long* scratch, int32_t nbins,
                            cudaStream_t stream);

// One-shot histogram over a caller-chosen range [0, R] (abs) or [-R, R] (signed):
// bin = floor(v * (nbins / R)) in float64, the last bin closed. Accumulates into counts
// and stats[0..3] = values outside the range, NaN, +Inf, -Inf.
cudaError_t histogram_fixed_range(const void* x, DType dtype, size_t n, double range, int32_t nbins,
                                  bool is_signed, unsigned long long* counts, unsigned long long* stats,
                                  cudaStream_t stream);

// dst[i] = *src[i] for i < n (device arrays): many collectors' states read in one copy.
cudaError_t histogram_gather_states(const HistogramState* const* src, HistogramState* dst, int32_t n,
                                    cudaStream_t stream);

// Benchmarking knob: number of lane-interleaved sub-histograms per block (0 = automatic).
void histogram_set_replicas(int replicas);
void histogram_set_blocks_per_sm(int blocks);

}  // namespace trtcal
