// Exact order statistics of large float arrays by radix select on order-preserving keys.
//
// key(x) is a uint32 whose unsigned order is the order of x (signed mode) or of |x| (abs
// mode); every NaN maps to 0xffffffff, above all other keys (+Inf included), so NaNs are
// the top ranks and are excluded by the caller.
//
// Bracketed selection (large arrays, one pass over the data): a sample of the keys
// (select_sample_histogram) gives a key interval that holds the wanted ranks with near
// certainty (select_sample_bounds, on the device: no host wait); one pass
// (select_partition) counts the keys below it and compacts the keys inside it; the caller
// checks that the wanted ranks fell inside (else it falls back) and resolves them on the
// compacted buffer. Fallback (two passes): one histogram of the top 12 key bits, one
// compaction of the keys in the chosen bucket(s).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "dtype.h"

namespace trtcal {

constexpr uint32_t kSelectNaNKey = 0xffffffffu;
constexpr int kSelectSampleRun = 8;  // consecutive values per sample run

// hist[b] += number of keys k with (k >> prefix_shift) == prefix (prefix_shift >= 32: all
// keys) and b == (k >> shift) & ((1 << bits) - 1). Reads the float array x (dtype) or,
// when `keys` is not null, the uint32 keys. bits <= 12; hist holds 2^bits zeroed counts.
cudaError_t select_histogram(const void* x, DType dtype, const uint32_t* keys, size_t n, bool use_abs,
                             int shift, int bits, int prefix_shift, uint32_t prefix, unsigned long long* hist,
                             cudaStream_t stream);

// Appends every key k of x (or of `keys`) with lo <= k <= hi to out (order unspecified)
// and adds their number to *count (zeroed by the caller).
cudaError_t select_compact(const void* x, DType dtype, const uint32_t* keys, size_t n, bool use_abs,
                           uint32_t lo, uint32_t hi, uint32_t* out, unsigned long long* count,
                           cudaStream_t stream);

// Sample: `runs` runs of kSelectSampleRun consecutive values, run i at a fixed pseudo-random offset in the
// i-th of `runs` equal slices of x (so no period of the data lines up with the sample);
// hist16[key >> 16] += 1 for each sampled key. Needs n >= kSelectSampleRun * runs; hist16 holds 65536
// zeroed counts.
cudaError_t select_sample_histogram(const void* x, DType dtype, size_t n, bool use_abs, int runs,
                                    unsigned int* hist16, cudaStream_t stream);

// One block: the sample ranks that bracket the fractions [t_lo, t_hi] of the non-NaN
// samples, m of them, with a margin of `sigmas` standard deviations of a sample of runs of
// `run` correlated values (sigmas * sqrt(m t (1 - t) run) + 4 run ranks), then
// bounds[0] = the first key of the 16-bit bucket holding the low rank (0 when the margin
// reaches below the first sample), bounds[1] = the last key of the bucket holding the high
// rank (0xffffffff when it reaches past the last).
cudaError_t select_sample_bounds(const unsigned int* hist16, double t_lo, double t_hi, double sigmas, int run,
                                 uint32_t* bounds, cudaStream_t stream);

// One pass over x with lo = bounds[0], hi = bounds[1] read on the device:
// counts[0] += keys < lo, counts[1] += keys == lo, counts[3] += NaN keys; every non-NaN key
// in (lo, hi] is counted in counts[2] and appended to out while its slot is < capacity
// (order unspecified). counts (4 values) are zeroed by the caller.
cudaError_t select_partition(const void* x, DType dtype, size_t n, bool use_abs, const uint32_t* bounds,
                             uint32_t* out, size_t capacity, unsigned long long* counts, cudaStream_t stream);

// Device-side resolution of wanted ranks after select_partition (no host wait): for each
// rank, status 1 when it fell outside the bracket (below lo, past the kept keys, or the
// buffer overflowed), else status 0 and its key: lo itself, or found by radix select over the
// compacted keys on the bits below the common prefix of lo and hi (12 + 12 + 8 at most, one
// multi-block histogram launch and one one-block choice launch per level).
constexpr int kSelectMaxRanks = 4;  // ranks resolved together (one shared histogram each)
struct SelectRank {
  unsigned long long rank;  // in: ascending rank among all keys; then: rank inside the prefix
  uint32_t prefix;          // resolved high bits
  int32_t pshift;           // bits still to resolve below the prefix (0: done)
  int32_t status;           // 0: resolved (key), 1: outside the bracket, 2: inconsistent counts
  uint32_t key;
};

// ranks: `nranks` (<= kSelectMaxRanks) device SelectRank with .rank set; hist: scratch of
// kSelectMaxRanks * 4096 zeroed counts, left zeroed. counts, bounds, keys, capacity as
// given to / filled by select_partition.
cudaError_t select_resolve(const unsigned long long* counts, const uint32_t* bounds, const uint32_t* keys,
                           size_t capacity, SelectRank* ranks, int nranks, unsigned long long* hist,
                           cudaStream_t stream);

// Device scratch of select_bracket. hist16: 65536 counts; counts: 4; bounds: 2; ranks:
// `nranks` SelectRank; resolve_hist: kSelectMaxRanks * 4096 counts, zeroed once before the
// first call (select_resolve leaves it zeroed). When `counts` directly follows `hist16`
// (65536 * 4 bytes after it) both are cleared by one memset.
struct SelectBracketScratch {
  unsigned int* hist16;
  unsigned long long* counts;
  uint32_t* bounds;
  SelectRank* ranks;
  unsigned long long* resolve_hist;
};

// Bracketed selection, enqueued on `stream` (no host wait): clears hist16 and counts, samples
// `runs` runs (select_sample_histogram), places bounds around the fractions [t_lo, t_hi] with
// a margin of `sigmas` (select_sample_bounds), partitions into `keys` (`capacity` keys;
// select_partition) and, when nranks > 0, uploads `host_ranks` (.rank set, ascending) to
// scratch.ranks and resolves them kSelectMaxRanks at a time (select_resolve). The caller reads
// counts, bounds and ranks back after the stream.
cudaError_t select_bracket(const void* x, DType dtype, size_t n, bool use_abs, int runs, double t_lo,
                           double t_hi, double sigmas, const SelectBracketScratch& scratch, uint32_t* keys,
                           size_t capacity, const SelectRank* host_ranks, int nranks, cudaStream_t stream);

}  // namespace trtcal
