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
    case DType::kFloat32:
      detail::for_each_value<float, 4>(static_cast<const float*>(x), n, g);
      break;
    case DType::kFloat16:
      detail::for_each_value<__half, 4>(static_cast<const __half*>(x), n, g);
      break;
    case DType::kBFloat16:
      detail::for_each_value<__nv_bfloat16, 4>(static_cast<const __nv_bfloat16*>(x), n, g);
      break;
    default:
      break;
  }
}

__global__ void __launch_bounds__(kThreads)
    histogram_kernel(const void* x, DType dtype, const uint32_t* keys, size_t n, bool use_abs, int shift,
                     int bits, int prefix_shift, uint32_t prefix, unsigned long long* hist) {
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

__global__ void __launch_bounds__(kThreads)
    compact_kernel(const void* x, DType dtype, const uint32_t* keys, size_t n, bool use_abs, uint32_t lo,
                   uint32_t hi, uint32_t* out, unsigned long long* count) {
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

// 32-bit integer hash (a murmur3-style finaliser): the sample's offsets.
__device__ __forceinline__ uint32_t mix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x7feb352du;
  h ^= h >> 15;
  h *= 0x846ca68bu;
  h ^= h >> 16;
  return h;
}

constexpr int kSampleThreads = 1024;  // runs per block: 8192 samples, so 16-bit counters cannot overflow

// The block counts its samples in 65536 16-bit counters (two per word, 128 KB of shared
// memory), then adds the nonzero ones to the global histogram: a few thousand global atomics
// per block instead of one per sample on the hot buckets.
template <typename T>
__device__ __forceinline__ void sample_runs(const T* x, size_t n, bool use_abs, int runs, unsigned int* sh) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= runs) return;
  const size_t slice = n / (size_t)runs;  // >= kSelectSampleRun
  const unsigned long long r = ((unsigned long long)mix32((uint32_t)i * 2654435761u + 0x9e3779b9u) << 32) |
                               mix32((uint32_t)i ^ 0x85ebca6bu);
  const T* p = x + (size_t)i * slice + (size_t)(r % (slice - kSelectSampleRun + 1));
  uint32_t b[kSelectSampleRun];
#pragma unroll
  for (int j = 0; j < kSelectSampleRun; ++j) b[j] = key_of(detail::to_float(p[j]), use_abs) >> 16;
#pragma unroll
  for (int j = 0; j < kSelectSampleRun; ++j) atomicAdd(sh + (b[j] >> 1), 1u << ((b[j] & 1u) * 16));
}

__global__ void __launch_bounds__(kSampleThreads)
    sample_kernel(const void* x, DType dtype, size_t n, bool use_abs, int runs, unsigned int* hist16) {
  extern __shared__ unsigned int sh[];  // 32768 words
  for (int i = threadIdx.x; i < 32768; i += blockDim.x) sh[i] = 0;
  __syncthreads();
  switch (dtype) {
    case DType::kFloat32:
      sample_runs(static_cast<const float*>(x), n, use_abs, runs, sh);
      break;
    case DType::kFloat16:
      sample_runs(static_cast<const __half*>(x), n, use_abs, runs, sh);
      break;
    case DType::kBFloat16:
      sample_runs(static_cast<const __nv_bfloat16*>(x), n, use_abs, runs, sh);
      break;
    default:
      break;
  }
  __syncthreads();
  for (int i = threadIdx.x; i < 32768; i += blockDim.x) {
    const unsigned int w = sh[i];
    if (w & 0xffffu) atomicAdd(hist16 + 2 * i, w & 0xffffu);
    if (w >> 16) atomicAdd(hist16 + 2 * i + 1, w >> 16);
  }
}

// One block of 32 warps; warp w owns buckets [2048 w, 2048 (w + 1)), read 32 at a time
// (coalesced). Warp totals -> sample ranks -> the warp holding a rank finds its bucket.
constexpr int kBoundThreads = 1024;
constexpr int kBucketsPerWarp = 65536 / (kBoundThreads / 32);

__global__ void __launch_bounds__(kBoundThreads)
    bounds_kernel(const unsigned int* hist16, double t_lo, double t_hi, double sigmas, int run,
                  uint32_t* bounds) {
  __shared__ unsigned long long wbegin[32], wtotal[32];
  __shared__ long long ranks[2];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const unsigned int* h = hist16 + warp * kBucketsPerWarp;
  unsigned long long s = 0;
  for (int j = lane; j < kBucketsPerWarp; j += 32) s += h[j];
  s = detail::warp_reduce(s, detail::SumOp());
  if (lane == 0) wtotal[warp] = s;
  __syncthreads();
  if (threadIdx.x == 0) {
    unsigned long long c = 0;
    for (int w = 0; w < 32; ++w) {
      wbegin[w] = c;
      c += wtotal[w];
    }
    // sample ranks among the non-NaN samples (bucket 0xffff holds only NaN keys)
    const double m = (double)(c - hist16[0xffff]);
    auto margin = [&](double q) { return sigmas * sqrt(m * q * (1.0 - q) * run) + 4.0 * run; };
    const double lo = floor(t_lo * m - margin(t_lo)), hi = ceil(t_hi * m + margin(t_hi));
    ranks[0] = lo <= 0.0 ? -1 : (long long)lo;  // -1: from key 0
    ranks[1] = hi >= m ? -1 : (long long)hi;    // -1: to the last key
    bounds[0] = 0u;
    bounds[1] = 0xffffffffu;
  }
  __syncthreads();
  for (int w = 0; w < 2; ++w) {
    if (ranks[w] < 0) continue;
    const unsigned long long r = (unsigned long long)ranks[w];
    if (r < wbegin[warp] || r >= wbegin[warp] + wtotal[warp]) continue;  // warp-uniform
    unsigned long long c = wbegin[warp];
    for (int j = 0; j < kBucketsPerWarp; j += 32) {
      const unsigned long long v = h[j + lane];
      unsigned long long incl = v;  // inclusive scan over the warp
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const unsigned long long u = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += u;
      }
      const unsigned hit = __ballot_sync(0xffffffffu, r < c + incl);
      if (hit) {
        const uint32_t b = (uint32_t)(warp * kBucketsPerWarp + j + __ffs(hit) - 1);
        if (lane == 0) bounds[w] = w == 0 ? b << 16 : (b << 16) | 0xffffu;
        break;
      }
      c += __shfl_sync(0xffffffffu, incl, 31);
    }
  }
}

constexpr int kStage = 8192;  // keys staged per block in shared memory before the global append

__global__ void __launch_bounds__(kThreads)
    partition_kernel(const void* x, DType dtype, size_t n, bool use_abs, const uint32_t* bounds,
                     uint32_t* out, size_t capacity, unsigned long long* counts) {
  __shared__ unsigned long long scratch[32];
  __shared__ uint32_t stage[kStage];
  __shared__ unsigned int staged, stage_fail;
  __shared__ unsigned long long stage_base;
  if (threadIdx.x == 0) {
    staged = 0;
    stage_fail = kStage;
  }
  __syncthreads();
  const uint32_t lo = __ldg(bounds), hi = __ldg(bounds + 1);
  unsigned int below = 0, eq = 0, nan = 0;  // a block sees at most 2^30 values
  auto f = [&](uint32_t k) {
    nan += k == kSelectNaNKey;
    below += k < lo;
    eq += k == lo;
    const bool keep = k > lo && k <= hi && k != kSelectNaNKey;
    // warp-aggregated append: into the block's stage (a shared atomic per warp), or, once
    // the stage is full, straight to the global buffer (a global atomic per warp)
    const unsigned active = __activemask();
    const unsigned ballot = __ballot_sync(active, keep);
    if (!ballot) return;
    const int lane = threadIdx.x & 31;
    const int leader = __ffs(ballot) - 1;
    const unsigned int rank = __popc(ballot & ((1u << lane) - 1u));
    unsigned int slot = 0;
    if (lane == leader) slot = atomicAdd(&staged, (unsigned int)__popc(ballot));
    slot = __shfl_sync(active, slot, leader);
    if (slot + __popc(ballot) <= (unsigned int)kStage) {
      if (keep) stage[slot + rank] = k;
      return;
    }
    unsigned long long base = 0;
    if (lane == leader) atomicMin(&stage_fail, slot);
    if (lane == leader) base = atomicAdd(counts + 2, (unsigned long long)__popc(ballot));
    base = __shfl_sync(active, base, leader);
    if (keep && base + rank < capacity) out[base + rank] = k;
  };
  for_each_key(x, dtype, nullptr, n, use_abs, f);
  __syncthreads();
  // Reservations are handed out in order, so the ones that fit whole end at or before the
  // first one that did not (whose keys went to the global buffer): the stage's valid prefix.
  const unsigned int valid = staged < stage_fail ? staged : stage_fail;
  if (threadIdx.x == 0) stage_base = valid ? atomicAdd(counts + 2, (unsigned long long)valid) : 0ull;
  __syncthreads();
  for (unsigned int i = threadIdx.x; i < valid; i += blockDim.x)
    if (stage_base + i < capacity) out[stage_base + i] = stage[i];
  const unsigned long long totals[3] = {
      detail::block_reduce((unsigned long long)below, detail::SumOp(), scratch, 0ull),
      detail::block_reduce((unsigned long long)eq, detail::SumOp(), scratch, 0ull),
      detail::block_reduce((unsigned long long)nan, detail::SumOp(), scratch, 0ull)};
  if (threadIdx.x == 0) {
    if (totals[0]) atomicAdd(counts + 0, totals[0]);
    if (totals[1]) atomicAdd(counts + 1, totals[1]);
    if (totals[2]) atomicAdd(counts + 3, totals[2]);
  }
}

__global__ void resolve_init_kernel(const unsigned long long* counts, const uint32_t* bounds, size_t capacity,
                                    SelectRank* ranks, int nranks) {
  const int w = threadIdx.x;
  if (w >= nranks) return;
  SelectRank r = ranks[w];
  const unsigned long long below = counts[0], eq = counts[1], inside = counts[2];
  const uint32_t lo = bounds[0], hi = bounds[1];
  r.pshift = 0;
  r.status = 0;
  r.key = lo;
  r.prefix = 0;
  if (r.rank < below || r.rank >= below + eq + inside || (r.rank >= below + eq && inside > capacity)) {
    r.status = 1;
  } else if (r.rank >= below + eq) {
    // keys in (lo, hi] share the bits of lo and hi above their highest differing bit
    r.rank -= below + eq;
    const int top = lo == hi ? 0 : 32 - __clz((int)(lo ^ hi));
    r.pshift = top;
    r.prefix = top >= 32 ? 0u : lo >> top;
    if (top == 0) r.status = 2;
  }
  ranks[w] = r;
}

__device__ __forceinline__ int level_shift(int pshift) { return pshift > 12 ? pshift - 12 : 0; }

__global__ void __launch_bounds__(kThreads)
    resolve_hist_kernel(const uint32_t* keys, const unsigned long long* counts, size_t capacity,
                        const SelectRank* ranks, int nranks, unsigned long long* hist) {
  extern __shared__ unsigned int sh[];  // nranks x 4096
  __shared__ SelectRank rs[kSelectMaxRanks];
  if (threadIdx.x < nranks) rs[threadIdx.x] = ranks[threadIdx.x];
  __syncthreads();
  bool any = false;
  for (int w = 0; w < nranks; ++w) any |= rs[w].pshift > 0;
  if (!any) return;
  for (int i = threadIdx.x; i < nranks * 4096; i += blockDim.x) sh[i] = 0;
  __syncthreads();
  unsigned long long m = counts[2];
  if (m > capacity) m = capacity;
  const size_t stride = (size_t)gridDim.x * blockDim.x;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < m; i += stride) {
    const uint32_t k = __ldg(keys + i);
    for (int w = 0; w < nranks; ++w) {
      const int ps = rs[w].pshift;
      if (ps == 0) continue;
      if (ps < 32 && (k >> ps) != rs[w].prefix) continue;
      const int shift = level_shift(ps);
      atomicAdd(sh + w * 4096 + ((k >> shift) & ((1u << (ps - shift)) - 1u)), 1u);
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < nranks * 4096; i += blockDim.x)
    if (sh[i]) atomicAdd(hist + i, (unsigned long long)sh[i]);
}

constexpr int kChooseThreads = 1024;

__global__ void __launch_bounds__(kChooseThreads)
    resolve_choose_kernel(SelectRank* ranks, int nranks, unsigned long long* hist) {
  __shared__ unsigned long long part[kChooseThreads];
  const int t = threadIdx.x;
  for (int w = 0; w < nranks; ++w) {
    const SelectRank r = ranks[w];  // uniform across the block
    if (r.pshift == 0) continue;
    unsigned long long* h = hist + w * 4096;
    const int shift = level_shift(r.pshift), bits = r.pshift - shift;
    const int per = 4096 / kChooseThreads;
    unsigned long long s = 0;
    for (int j = 0; j < per; ++j) s += h[t * per + j];
    part[t] = s;
    __syncthreads();
    for (int o = 1; o < kChooseThreads; o <<= 1) {
      const unsigned long long v = t >= o ? part[t - o] : 0;
      __syncthreads();
      part[t] += v;
      __syncthreads();
    }
    const unsigned long long end = part[t], begin = end - s;
    if (t == kChooseThreads - 1 && r.rank >= end) ranks[w].status = 2, ranks[w].pshift = 0;
    if (r.rank >= begin && r.rank < end) {
      unsigned long long c = begin;
      for (int j = 0; j < per; ++j) {
        const unsigned long long next = c + h[t * per + j];
        if (r.rank < next) {
          SelectRank o = r;
          o.prefix = (r.pshift >= 32 ? 0u : r.prefix << bits) | (uint32_t)(t * per + j);
          o.rank = r.rank - c;
          o.pshift = shift;
          if (shift == 0) o.key = o.prefix;
          ranks[w] = o;
          break;
        }
        c = next;
      }
    }
    __syncthreads();
    for (int j = 0; j < per; ++j) h[t * per + j] = 0;  // zeroed for the next level
    __syncthreads();
  }
}

}  // namespace

cudaError_t select_resolve(const unsigned long long* counts, const uint32_t* bounds, const uint32_t* keys,
                           size_t capacity, SelectRank* ranks, int nranks, unsigned long long* hist,
                           cudaStream_t stream) {
  if (nranks < 1 || nranks > kSelectMaxRanks) return cudaErrorInvalidValue;
  resolve_init_kernel<<<1, 32, 0, stream>>>(counts, bounds, capacity, ranks, nranks);
  TRTCAL_TRY(cudaGetLastError());
  const size_t smem = sizeof(unsigned int) * 4096 * kSelectMaxRanks;
  TRTCAL_TRY(
      cudaFuncSetAttribute(resolve_hist_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  int dev = 0, sms = 0;
  cudaGetDevice(&dev);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  // enough blocks for the largest buffer; a block with no key to read exits at once
  const int blocks = sms > 0 ? sms : 80;
  for (int level = 0; level < 3; ++level) {  // 32 bits = 12 + 12 + 8
    resolve_hist_kernel<<<blocks, kThreads, sizeof(unsigned int) * 4096 * nranks, stream>>>(
        keys, counts, capacity, ranks, nranks, hist);
    resolve_choose_kernel<<<1, kChooseThreads, 0, stream>>>(ranks, nranks, hist);
  }
  return cudaGetLastError();
}

cudaError_t select_bracket(const void* x, DType dtype, size_t n, bool use_abs, int runs, double t_lo,
                           double t_hi, double sigmas, const SelectBracketScratch& sc, uint32_t* keys,
                           size_t capacity, const SelectRank* host_ranks, int nranks, cudaStream_t stream) {
  constexpr size_t kHist16 = sizeof(unsigned int) << 16;
  constexpr size_t kCounts = 4 * sizeof(unsigned long long);
  if (nranks < 0) return cudaErrorInvalidValue;
  if (reinterpret_cast<char*>(sc.counts) == reinterpret_cast<char*>(sc.hist16) + kHist16) {
    TRTCAL_TRY(cudaMemsetAsync(sc.hist16, 0, kHist16 + kCounts, stream));  // adjacent: one memset
  } else {
    TRTCAL_TRY(cudaMemsetAsync(sc.hist16, 0, kHist16, stream));
    TRTCAL_TRY(cudaMemsetAsync(sc.counts, 0, kCounts, stream));
  }
  TRTCAL_TRY(select_sample_histogram(x, dtype, n, use_abs, runs, sc.hist16, stream));
  TRTCAL_TRY(select_sample_bounds(sc.hist16, t_lo, t_hi, sigmas, kSelectSampleRun, sc.bounds, stream));
  TRTCAL_TRY(select_partition(x, dtype, n, use_abs, sc.bounds, keys, capacity, sc.counts, stream));
  if (nranks == 0) return cudaSuccess;
  TRTCAL_TRY(cudaMemcpyAsync(sc.ranks, host_ranks, sizeof(SelectRank) * (size_t)nranks,
                             cudaMemcpyHostToDevice, stream));
  for (int i = 0; i < nranks; i += kSelectMaxRanks) {
    const int count = nranks - i < kSelectMaxRanks ? nranks - i : kSelectMaxRanks;
    TRTCAL_TRY(
        select_resolve(sc.counts, sc.bounds, keys, capacity, sc.ranks + i, count, sc.resolve_hist, stream));
  }
  return cudaSuccess;
}

cudaError_t select_sample_histogram(const void* x, DType dtype, size_t n, bool use_abs, int runs,
                                    unsigned int* hist16, cudaStream_t stream) {
  if (dtype != DType::kFloat32 && dtype != DType::kFloat16 && dtype != DType::kBFloat16)
    return cudaErrorInvalidValue;
  if (runs < 1 || n < (size_t)runs * kSelectSampleRun) return cudaErrorInvalidValue;
  const int smem = 32768 * sizeof(unsigned int);
  TRTCAL_TRY(cudaFuncSetAttribute(sample_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  sample_kernel<<<(runs + kSampleThreads - 1) / kSampleThreads, kSampleThreads, smem, stream>>>(
      x, dtype, n, use_abs, runs, hist16);
  return cudaGetLastError();
}

cudaError_t select_sample_bounds(const unsigned int* hist16, double t_lo, double t_hi, double sigmas, int run,
                                 uint32_t* bounds, cudaStream_t stream) {
  if (!(t_lo >= 0.0 && t_lo <= t_hi && t_hi <= 1.0 && sigmas >= 0.0 && run >= 1))
    return cudaErrorInvalidValue;
  bounds_kernel<<<1, kBoundThreads, 0, stream>>>(hist16, t_lo, t_hi, sigmas, run, bounds);
  return cudaGetLastError();
}

cudaError_t select_partition(const void* x, DType dtype, size_t n, bool use_abs, const uint32_t* bounds,
                             uint32_t* out, size_t capacity, unsigned long long* counts,
                             cudaStream_t stream) {
  if (dtype != DType::kFloat32 && dtype != DType::kFloat16 && dtype != DType::kBFloat16)
    return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  const int blocks = detail::streaming_grid(n, kThreads * 16, 2);
  partition_kernel<<<blocks, kThreads, 0, stream>>>(x, dtype, n, use_abs, bounds, out, capacity, counts);
  return cudaGetLastError();
}

cudaError_t select_histogram(const void* x, DType dtype, const uint32_t* keys, size_t n, bool use_abs,
                             int shift, int bits, int prefix_shift, uint32_t prefix, unsigned long long* hist,
                             cudaStream_t stream) {
  if (bits < 1 || bits > 12 || shift < 0 || shift > 31) return cudaErrorInvalidValue;
  if (!keys && dtype != DType::kFloat32 && dtype != DType::kFloat16 && dtype != DType::kBFloat16)
    return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  const size_t smem = sizeof(unsigned int) * ((size_t)1 << bits) * kReplicas;
  TRTCAL_TRY(cudaFuncSetAttribute(histogram_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
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
