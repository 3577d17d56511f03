#include <cfloat>
#include <cmath>
#include <type_traits>

#include "device_common.cuh"
#include "histogram.h"
#include "minmax.h"

namespace trtcal {
namespace {

constexpr int kThreads = 512;
constexpr int kBlocksPerSm = 3;            // pass 1's __launch_bounds__ minimum
constexpr int kSharedBudget = 64 * 1024;   // bytes of sub-histograms per block
constexpr int kReplicaBudget = 16 * 1024;  // more than one sub-histogram only within this

struct Layout {
  int replicas;  // sub-histograms in shared memory; 0 = count in global memory
  size_t smem;
};

int g_replicas_override = 0;       // benchmarking knob: force this many replicas (1, 2, 4, 8, 16)
int g_blocks_per_sm_override = 0;  // benchmarking knob: force this many blocks per SM

Layout choose_layout(int32_t nbins) {
  const size_t one = (size_t)nbins * sizeof(unsigned int);
  if (g_replicas_override && one * g_replicas_override <= 2 * (size_t)kSharedBudget)
    return {g_replicas_override, one * g_replicas_override};
  // Two lane-interleaved sub-histograms up to 2048 bins, else one: measured on the H200
  // (benchmarks/NOTES.md, "sub-histograms and blocks per SM"), 8 replicas (64 KB) lost to 2 or 1
  // at every size, dtype and distribution tried (one bin, four bins, normal, ReLU, Student-t)
  // but four-bin float16 (-2..-8%): 2^28 float32 0.261 -> 0.245 ms, float16 0.145 -> 0.130 ms
  // (Student-t), 2^23 float32 26.5 -> 20 us.
  if (one * 2 <= (size_t)kReplicaBudget) return {2, one * 2};
  if (one <= (size_t)kSharedBudget) return {1, one};
  return {0, 0};
}

__device__ __forceinline__ bool is_pow2(int64_t v) { return v > 0 && (v & (v - 1)) == 0; }

// How values map to bins for one pass; built per block from the device state.
struct Binner {
  int nbh;     // nbins (abs) or nbins/2 (signed)
  bool use32;  // the scale is an exact float32 power of two
  float scale32;
  double scale64;
  __device__ void set(int nbins, bool is_signed, int exponent) {
    // (use32 stays false when there is no range: callers then never bin)
    nbh = is_signed ? nbins / 2 : nbins;
    scale64 = ldexp((double)nbh, -exponent);
    const int k = ilogb((double)nbh) - exponent;
    use32 = is_pow2(nbh) && k >= -149 && k <= 127;
    scale32 = use32 ? ldexpf(1.0f, k) : 0.f;
  }
  // v is |x| (abs) or x (signed), already known to lie inside the range.
  template <bool kSigned, bool kUse32>
  __device__ __forceinline__ int bin(float v) const {
    if (!kSigned) {
      return kUse32 ? (int)(v * scale32) : (int)((double)v * scale64);
    } else {
      int k;
      if (kUse32) {
        const float t = v * scale32;
        k = (int)floorf(t);
        if (t == 0.f && v < 0.f) k = -1;  // product underflowed to -0
      } else {
        k = (int)floor((double)v * scale64);
      }
      return nbh + k;
    }
  }
};

// Per-block sub-histograms in shared memory (or straight to global memory). Replica r
// of bin b lives at b * replicas + r and lane l uses replica l % replicas, so lanes that
// hit the same bin update different words in different banks.
struct BlockHist {
  unsigned int* smem;
  int replicas;
  int nbins;
  unsigned long long* global;
  unsigned int* mine;  // smem + this lane's replica
  __device__ void init(unsigned int* s, int r, int nb, unsigned long long* g) {
    smem = s;
    replicas = r;
    nbins = nb;
    global = g;
    mine = s + (r ? (threadIdx.x & 31) % r : 0);
    if (replicas) {
      for (int i = threadIdx.x; i < nbins * replicas; i += blockDim.x) smem[i] = 0;
      __syncthreads();
    }
  }
  __device__ __forceinline__ void add(int b) {
    if (replicas) {
      atomicAdd(mine + b * replicas, 1u);
    } else {
      atomicAdd(global + b, 1ull);
    }
  }
  __device__ void flush() {
    if (!replicas) return;
    __syncthreads();
    for (int b = threadIdx.x; b < nbins; b += blockDim.x) {
      unsigned long long s = 0;
      for (int r = 0; r < replicas; ++r) s += smem[b * replicas + r];
      if (s) atomicAdd(global + b, s);
    }
  }
};

// Per-thread running statistics shared by the passes that read finite values.
struct RunningStats {
  float lo = INFINITY, hi = -INFINITY;
  unsigned int nan = 0, pinf = 0, ninf = 0;
  __device__ __forceinline__ void nonfinite(float v) {
    if (isnan(v))
      ++nan;
    else if (v > 0.f)
      ++pinf;
    else
      ++ninf;
  }
};

template <bool kSigned, bool kUse32>
struct Pass1Fold {
  BlockHist* hist;
  Binner binner;
  float limit;  // |x| < limit is binned in this pass (0 when there is no range yet)
  RunningStats st;
  __device__ __forceinline__ void operator()(float v) {
    const float a = fabsf(v);
    if (a <= FLT_MAX) {
      st.lo = fminf(st.lo, v);
      st.hi = fmaxf(st.hi, v);
      if (a < limit) hist->add(binner.bin<kSigned, kUse32>(kSigned ? v : a));
    } else {
      st.nonfinite(v);
    }
  }
};

template <bool kSigned, bool kUse32>
struct Pass2Fold {
  BlockHist* hist;
  Binner binner;
  bool has_range;
  float old_limit;  // values below it were binned by pass 1
  int zero_bin;
  __device__ __forceinline__ void operator()(float v) {
    const float a = fabsf(v);
    if (!(a <= FLT_MAX) || a < old_limit) return;
    hist->add(has_range ? binner.bin<kSigned, kUse32>(kSigned ? v : a) : zero_bin);
  }
};

// |x| histograms of float16 / bfloat16 on 32-bit words (both values at once). One integer
// test per 16-byte vector finds the rare values (non-finite, or at or beyond the range) of its
// 8 values; such a vector goes word by word, and a word holding one through the per-value fold.
// Otherwise: packed min/max, a packed multiply of |x| by the bin scale 2^k, which is exact (a
// power of two; products below 1, where a subnormal could round, are bin 0 either way), and
// truncation to the bin: the same bins as the float path, with half the instructions per value.
// What bounds these types is then the shared-memory atomic per value (benchmarks/NOTES.md, v6).
template <typename V2>
struct PackedWord {  // what both 16-bit types share
  __device__ static V2 as2(uint32_t w) { return *reinterpret_cast<const V2*>(&w); }
  __device__ static float lo(V2 v) { return __low2float(v); }
  __device__ static float hi(V2 v) { return __high2float(v); }
};
template <typename T>
struct Packed;
template <>
struct Packed<__half> : PackedWord<__half2> {
  using V2 = __half2;
  static constexpr int kBias = 15, kMant = 10, kMinNormal = -14, kMaxExp = 15, kMinSub = -24;
  static constexpr uint32_t kInf = 0x7c00u;
  __device__ static int bin_lo(V2 v) { return __half2int_rz(__low2half(v)); }
  __device__ static int bin_hi(V2 v) { return __half2int_rz(__high2half(v)); }
};
template <>
struct Packed<__nv_bfloat16> : PackedWord<__nv_bfloat162> {
  using V2 = __nv_bfloat162;
  static constexpr int kBias = 127, kMant = 7, kMinNormal = -126, kMaxExp = 127, kMinSub = -133;
  static constexpr uint32_t kInf = 0x7f80u;
  __device__ static int bin_lo(V2 v) { return __bfloat162int_rz(__low2bfloat16(v)); }
  __device__ static int bin_hi(V2 v) { return __bfloat162int_rz(__high2bfloat16(v)); }
};

template <typename T, int kRep>
struct Pass1PackedAbs {
  using P = Packed<T>;
  Pass1Fold<false, true> scalar;  // the rare values, the head and the tail
  unsigned int* mine;             // this lane's sub-histogram: bin b at mine[b * kRep]
  uint32_t addc;                  // (0x8000 - bits of the limit) in both halves
  typename P::V2 lo2, hi2, scale2;
  __device__ __forceinline__ void operator()(float v) { scalar(v); }
  // The common case of a word: both halves finite and inside the range.
  __device__ __forceinline__ void fast(uint32_t w, uint32_t a) {
    const typename P::V2 v = P::as2(w);
    lo2 = __hmin2(lo2, v);
    hi2 = __hmax2(hi2, v);
    const typename P::V2 b = __hmul2(P::as2(a), scale2);
    atomicAdd(mine + P::bin_lo(b) * kRep, 1u);
    atomicAdd(mine + P::bin_hi(b) * kRep, 1u);
  }
  __device__ __forceinline__ void word(uint32_t w) {
    const uint32_t a = w & 0x7fff7fffu;  // |x| of both halves
    if ((a + addc) & 0x80008000u) {      // a half at or above the limit (non-finite included)
      const typename P::V2 v = P::as2(w);
      scalar(P::lo(v));
      scalar(P::hi(v));
      return;
    }
    fast(w, a);
  }
  // A 16-byte vector (8 values): one test for all of them, so the common case runs without a
  // branch per word; a vector holding a rare value goes word by word.
  __device__ __forceinline__ void vec(const uint4& v) {
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
    uint32_t a[4], flags = 0;
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      a[q] = w[q] & 0x7fff7fffu;
      flags |= a[q] + addc;
    }
    if (flags & 0x80008000u) {
#pragma unroll
      for (int q = 0; q < 4; ++q) word(w[q]);
      return;
    }
#pragma unroll
    for (int q = 0; q < 4; ++q) fast(w[q], a[q]);
  }
  // Bits of 2^e in T: normal, or subnormal when `subnormal_ok`; false when not representable.
  __device__ static bool pow2_bits(int e, bool subnormal_ok, uint32_t* bits) {
    if (e >= P::kMinNormal && e <= P::kMaxExp) {
      *bits = (uint32_t)(e + P::kBias) << P::kMant;
      return true;
    }
    if (subnormal_ok && e >= P::kMinSub && e < P::kMinNormal) {
      *bits = 1u << (e - P::kMinSub);
      return true;
    }
    return false;
  }
  // Packed folding applies when the bin scale is a normal power of two of T and the limit
  // is representable (or beyond every finite value of T).
  __device__ bool setup(const Binner& binner, int exponent) {
    const int k = ilogb((double)binner.nbh) - exponent;
    uint32_t sbits = 0, lbits = 0;
    if (!binner.use32 || !pow2_bits(k, false, &sbits)) return false;
    if (exponent > P::kMaxExp)
      lbits = P::kInf;
    else if (!pow2_bits(exponent, true, &lbits))
      return false;
    addc = (0x8000u - lbits) * 0x10001u;
    scale2 = P::as2(sbits * 0x10001u);
    lo2 = P::as2(P::kInf * 0x10001u);              // +inf
    hi2 = P::as2((P::kInf | 0x8000u) * 0x10001u);  // -inf
    return true;
  }
  __device__ void finish() {
    scalar.st.lo = fminf(scalar.st.lo, fminf(P::lo(lo2), P::hi(lo2)));
    scalar.st.hi = fmaxf(scalar.st.hi, fmaxf(P::lo(hi2), P::hi(hi2)));
  }
};

// float32 |x| with a known range: one integer compare of |x|'s bits against the limit's finds
// the rare values (at or beyond the range, non-finite), and the sub-histogram stride is a
// compile-time constant: fewer instructions per value than the generic fold, same bins.
template <int kRep>
struct Pass1Float32Abs {
  Pass1Fold<false, true> scalar;  // the rare values
  unsigned int* mine;
  uint32_t limit_bits;
  float lo = INFINITY, hi = -INFINITY;
  __device__ __forceinline__ void fast(float v, uint32_t a) {
    lo = fminf(lo, v);
    hi = fmaxf(hi, v);
    atomicAdd(mine + (int)(__uint_as_float(a) * scalar.binner.scale32) * kRep, 1u);
  }
  __device__ __forceinline__ void operator()(float v) {
    const uint32_t a = __float_as_uint(v) & 0x7fffffffu;
    if (a >= limit_bits) {
      scalar(v);
      return;
    }
    fast(v, a);
  }
  // A 16-byte vector (4 values): one compare of the largest |x| bits for all of them.
  __device__ __forceinline__ void vec(const uint4& v) {
    const float f[4] = {__uint_as_float(v.x), __uint_as_float(v.y), __uint_as_float(v.z),
                        __uint_as_float(v.w)};
    const uint32_t a[4] = {v.x & 0x7fffffffu, v.y & 0x7fffffffu, v.z & 0x7fffffffu, v.w & 0x7fffffffu};
    if (max(max(a[0], a[1]), max(a[2], a[3])) >= limit_bits) {
#pragma unroll
      for (int q = 0; q < 4; ++q) (*this)(f[q]);
      return;
    }
#pragma unroll
    for (int q = 0; q < 4; ++q) fast(f[q], a[q]);
  }
};

template <int kRep>
__device__ __forceinline__ bool pass1_float32(const float* __restrict__ x, size_t n, BlockHist& hist,
                                              const Binner& binner, float limit, int exponent, size_t tid,
                                              size_t nthreads, RunningStats* st) {
  if (!binner.use32 || exponent < -149) return false;
  Pass1Float32Abs<kRep> f;
  f.scalar = Pass1Fold<false, true>{&hist, binner, limit};
  f.mine = hist.mine;
  f.limit_bits = exponent > 127 ? 0x7f800000u : __float_as_uint(limit);
  detail::for_each_vector<float, 4>(
      x, n, [&](const uint4& v) { f.vec(v); }, [&](float v) { f(v); }, tid, nthreads);
  f.scalar.st.lo = fminf(f.scalar.st.lo, f.lo);
  f.scalar.st.hi = fmaxf(f.scalar.st.hi, f.hi);
  *st = f.scalar.st;
  return true;
}

// Runs the packed fold when it applies (false otherwise: the caller runs the generic one).
template <typename T, int kRep>
__device__ __forceinline__ bool pass1_packed(const T* __restrict__ x, size_t n, BlockHist& hist,
                                             const Binner& binner, float limit, int exponent, size_t tid,
                                             size_t nthreads, RunningStats* st) {
  Pass1PackedAbs<T, kRep> f;
  f.scalar = Pass1Fold<false, true>{&hist, binner, limit};
  f.mine = hist.mine;
  if (!f.setup(binner, exponent)) return false;
  detail::for_each_vector<T, 4>(
      x, n, [&](const uint4& v) { f.vec(v); }, [&](T v) { f(detail::to_float(v)); }, tid, nthreads);
  f.finish();
  *st = f.scalar.st;
  return true;
}

template <typename T>
struct IsPacked16 {
  static constexpr bool value = false;
};
template <>
struct IsPacked16<__half> {
  static constexpr bool value = true;
};
template <>
struct IsPacked16<__nv_bfloat16> {
  static constexpr bool value = true;
};

// Pass 1 over x[0, n) by the `nthreads` threads that share it (this one is `tid`);
// `first` marks the one block that adds n to the finite count.
template <typename T, bool kSigned>
__device__ __forceinline__ void pass1_body(const T* __restrict__ x, size_t n, HistogramState* state,
                                           unsigned long long* counts, int replicas, unsigned int* smem,
                                           size_t tid, size_t nthreads, bool first) {
  const HistogramState s = *state;
  BlockHist hist;
  hist.init(smem, replicas, s.nbins, counts);
  Binner binner{};
  float limit = 0.f;
  if (s.has_range) {
    binner.set(s.nbins, kSigned, s.exponent);
    limit = ldexpf(1.0f, s.exponent);
  }
  RunningStats st;
  bool done = false;
  if constexpr (!kSigned && IsPacked16<T>::value) {
    if (s.has_range) {
      switch (replicas) {  // compile-time sub-histogram stride
        case 8:
          done = pass1_packed<T, 8>(x, n, hist, binner, limit, s.exponent, tid, nthreads, &st);
          break;
        case 4:
          done = pass1_packed<T, 4>(x, n, hist, binner, limit, s.exponent, tid, nthreads, &st);
          break;
        case 2:
          done = pass1_packed<T, 2>(x, n, hist, binner, limit, s.exponent, tid, nthreads, &st);
          break;
        case 1:
          done = pass1_packed<T, 1>(x, n, hist, binner, limit, s.exponent, tid, nthreads, &st);
          break;
        default:
          break;  // counts in global memory: the generic fold
      }
    }
  }
  if constexpr (!kSigned && std::is_same<T, float>::value) {
    if (s.has_range) {
      switch (replicas) {
        case 8:
          done = pass1_float32<8>(x, n, hist, binner, limit, s.exponent, tid, nthreads, &st);
          break;
        case 4:
          done = pass1_float32<4>(x, n, hist, binner, limit, s.exponent, tid, nthreads, &st);
          break;
        case 2:
          done = pass1_float32<2>(x, n, hist, binner, limit, s.exponent, tid, nthreads, &st);
          break;
        case 1:
          done = pass1_float32<1>(x, n, hist, binner, limit, s.exponent, tid, nthreads, &st);
          break;
        default:
          break;
      }
    }
  }
  if (done) {
  } else if (binner.use32) {
    Pass1Fold<kSigned, true> f{&hist, binner, limit};
    detail::for_each_value<T, 4>(x, n, f, tid, nthreads);
    st = f.st;
  } else {
    Pass1Fold<kSigned, false> f{&hist, binner, limit};
    detail::for_each_value<T, 4>(x, n, f, tid, nthreads);
    st = f.st;
  }
  hist.flush();

  __shared__ uint32_t s32[32];
  __shared__ unsigned long long s64[32];
  const bool any = st.lo <= st.hi;
  const uint32_t amax =
      detail::block_reduce(any ? __float_as_uint(fmaxf(-st.lo, st.hi)) : 0u, detail::MaxOp(), s32, 0u);
  const uint32_t lo = detail::block_reduce(any ? detail::float_to_ordered(st.lo) : detail::kOrderedMinInit,
                                           detail::MinOp(), s32, detail::kOrderedMinInit);
  const uint32_t hi = detail::block_reduce(any ? detail::float_to_ordered(st.hi) : detail::kOrderedMaxInit,
                                           detail::MaxOp(), s32, detail::kOrderedMaxInit);
  unsigned long long c[3] = {st.nan, st.pinf, st.ninf};
#pragma unroll
  for (int i = 0; i < 3; ++i) c[i] = detail::block_reduce(c[i], detail::SumOp(), s64, 0ull);
  if (threadIdx.x == 0) {
    if (amax) atomicMax(&state->batch_amax_bits, amax);  // non-negative: bits are ordered
    if (lo != detail::kOrderedMinInit) atomicMin(&state->min_ordered, lo);
    if (hi != detail::kOrderedMaxInit) atomicMax(&state->max_ordered, hi);
    // finite = n - non-finite, added as n once and minus each block's non-finite count
    const unsigned long long nonfinite = c[0] + c[1] + c[2];
    const unsigned long long delta = (first ? (unsigned long long)n : 0ull) - nonfinite;
    if (delta) atomicAdd(&state->finite, delta);
    for (int i = 0; i < 3; ++i)
      if (c[i]) atomicAdd(&state->nonfinite[i], c[i]);
  }
}

template <typename T, bool kSigned>
__global__ void __launch_bounds__(kThreads, kBlocksPerSm)
    histogram_pass1_kernel(const T* __restrict__ x, size_t n, HistogramState* state,
                           unsigned long long* counts, int replicas) {
  extern __shared__ unsigned int smem[];
  pass1_body<T, kSigned>(x, n, state, counts, replicas, smem, blockIdx.x * (size_t)blockDim.x + threadIdx.x,
                         (size_t)gridDim.x * blockDim.x, blockIdx.x == 0);
}

template <typename T, bool kSigned>
__device__ __forceinline__ void pass2_body(const T* __restrict__ x, size_t n, const HistogramState* state,
                                           unsigned long long* counts, int replicas, unsigned int* smem,
                                           size_t tid, size_t nthreads) {
  const HistogramState s = *state;
  if (!s.grew) return;
  BlockHist hist;
  hist.init(smem, replicas, s.nbins, counts);
  Binner binner{};
  if (s.has_range) binner.set(s.nbins, kSigned, s.exponent);
  const float old_limit = s.prev_has_range ? ldexpf(1.0f, s.prev_exponent) : 0.f;
  const int zero_bin = kSigned ? s.nbins / 2 : 0;
  if (binner.use32) {
    Pass2Fold<kSigned, true> f{&hist, binner, (bool)s.has_range, old_limit, zero_bin};
    detail::for_each_value<T, 4>(x, n, f, tid, nthreads);
  } else {
    Pass2Fold<kSigned, false> f{&hist, binner, (bool)s.has_range, old_limit, zero_bin};
    detail::for_each_value<T, 4>(x, n, f, tid, nthreads);
  }
  hist.flush();
}

template <typename T, bool kSigned>
__global__ void __launch_bounds__(kThreads)
    histogram_pass2_kernel(const T* __restrict__ x, size_t n, const HistogramState* state,
                           unsigned long long* counts, int replicas) {
  extern __shared__ unsigned int smem[];
  pass2_body<T, kSigned>(x, n, state, counts, replicas, smem, blockIdx.x * (size_t)blockDim.x + threadIdx.x,
                         (size_t)gridDim.x * blockDim.x);
}

// Sum of the old bins that land in new bin j when the range grows by 2^m.
__device__ unsigned long long gather(const unsigned long long* old, int nbins, bool is_signed, int m, int j) {
  if (m == 0) return old[j];
  const int sh = m > 40 ? 40 : m;
  const int64_t c = is_signed ? nbins / 2 : 0;
  const int64_t knew = (int64_t)j - c;
  int64_t lo = (knew << sh) + c, hi = ((knew + 1) << sh) + c;
  if (lo < 0) lo = 0;
  if (hi > nbins) hi = nbins;
  unsigned long long s = 0;
  for (int64_t i = lo; i < hi; ++i) s += old[i];
  return s;
}

__device__ void grow_body(HistogramState* state, unsigned long long* counts, unsigned long long* scratch) {
  __shared__ int m_shared;
  HistogramState s = *state;
  const float batch_amax = __uint_as_float(s.batch_amax_bits);
  if (threadIdx.x == 0) {
    int m = 0;
    state->prev_has_range = s.has_range;
    state->prev_exponent = s.exponent;
    state->amax_bits = max(s.amax_bits, s.batch_amax_bits);
    state->batch_amax_bits = 0;
    const int need = batch_amax > 0.f ? ilogbf(batch_amax) + 1 : 0;
    if (!s.has_range) {
      state->grew = 1;  // pass 2 bins this whole batch
      if (batch_amax > 0.f) {
        state->has_range = 1;
        state->exponent = need;
      }
    } else if (batch_amax > 0.f && need > s.exponent) {
      state->grew = 1;
      state->exponent = need;
      m = need - s.exponent;
    } else {
      state->grew = 0;
    }
    m_shared = m;
  }
  __syncthreads();
  const int m = m_shared;
  if (m == 0) return;
  for (int j = threadIdx.x; j < s.nbins; j += blockDim.x)
    scratch[j] = gather(counts, s.nbins, s.is_signed, m, j);
  __syncthreads();
  for (int j = threadIdx.x; j < s.nbins; j += blockDim.x) counts[j] = scratch[j];
}

__global__ void histogram_grow_kernel(HistogramState* state, unsigned long long* counts,
                                      unsigned long long* scratch) {
  grow_body(state, counts, scratch);
}

// ---- many tensors in one launch per pass -------------------------------------------------

__device__ __forceinline__ int find_item(const HistogramBatchItem* items, int nitems, int block) {
  int lo = 0, hi = nitems - 1;  // last item whose first_block <= block
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (items[mid].first_block <= block)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

#define TRTCAL_ITEM_DISPATCH(it, BODY)                 \
  switch ((it).dtype * 2 + ((it).is_signed ? 1 : 0)) { \
    case 0:                                            \
      BODY(float, false);                              \
      break;                                           \
    case 1:                                            \
      BODY(float, true);                               \
      break;                                           \
    case 2:                                            \
      BODY(__half, false);                             \
      break;                                           \
    case 3:                                            \
      BODY(__half, true);                              \
      break;                                           \
    case 4:                                            \
      BODY(__nv_bfloat16, false);                      \
      break;                                           \
    case 5:                                            \
      BODY(__nv_bfloat16, true);                       \
      break;                                           \
    default:                                           \
      break;                                           \
  }

__global__ void __launch_bounds__(kThreads)
    histogram_pass1_many_kernel(const HistogramBatchItem* items, int nitems, int replicas) {
  extern __shared__ unsigned int smem[];
  const HistogramBatchItem it = items[find_item(items, nitems, blockIdx.x)];
  const int lb = blockIdx.x - it.first_block;
  const size_t tid = lb * (size_t)blockDim.x + threadIdx.x, nthreads = (size_t)it.nblocks * blockDim.x;
#define TRTCAL_PASS1(T, S)                                                                                \
  pass1_body<T, S>(static_cast<const T*>(it.x), it.n, it.state, it.counts, replicas, smem, tid, nthreads, \
                   lb == 0)
  TRTCAL_ITEM_DISPATCH(it, TRTCAL_PASS1)
#undef TRTCAL_PASS1
}

__global__ void histogram_grow_many_kernel(const HistogramBatchItem* items) {
  const HistogramBatchItem it = items[blockIdx.x];
  grow_body(it.state, it.counts, it.scratch);
}

__global__ void __launch_bounds__(kThreads)
    histogram_pass2_many_kernel(const HistogramBatchItem* items, int nitems, int replicas) {
  extern __shared__ unsigned int smem[];
  const HistogramBatchItem it = items[find_item(items, nitems, blockIdx.x)];
  const int lb = blockIdx.x - it.first_block;
  const size_t tid = lb * (size_t)blockDim.x + threadIdx.x, nthreads = (size_t)it.nblocks * blockDim.x;
#define TRTCAL_PASS2(T, S) \
  pass2_body<T, S>(static_cast<const T*>(it.x), it.n, it.state, it.counts, replicas, smem, tid, nthreads)
  TRTCAL_ITEM_DISPATCH(it, TRTCAL_PASS2)
#undef TRTCAL_PASS2
}

__global__ void histogram_merge_kernel(HistogramState* a, unsigned long long* ca, const HistogramState* b,
                                       const unsigned long long* cb, unsigned long long* scratch) {
  const HistogramState sa = *a, sb = *b;
  int e = 0;
  if (sa.has_range && sb.has_range)
    e = max(sa.exponent, sb.exponent);
  else if (sa.has_range)
    e = sa.exponent;
  else if (sb.has_range)
    e = sb.exponent;
  const int ma = sa.has_range ? e - sa.exponent : 0;
  const int mb = sb.has_range ? e - sb.exponent : 0;
  for (int j = threadIdx.x; j < sa.nbins; j += blockDim.x)
    scratch[j] = gather(ca, sa.nbins, sa.is_signed, ma, j) + gather(cb, sa.nbins, sa.is_signed, mb, j);
  __syncthreads();
  for (int j = threadIdx.x; j < sa.nbins; j += blockDim.x) ca[j] = scratch[j];
  if (threadIdx.x == 0) {
    a->has_range = sa.has_range || sb.has_range;
    a->exponent = e;
    a->amax_bits = max(sa.amax_bits, sb.amax_bits);
    a->min_ordered = min(sa.min_ordered, sb.min_ordered);
    a->max_ordered = max(sa.max_ordered, sb.max_ordered);
    a->finite = sa.finite + sb.finite;
    for (int i = 0; i < 3; ++i) a->nonfinite[i] = sa.nonfinite[i] + sb.nonfinite[i];
  }
}

__global__ void histogram_init_kernel(HistogramState* state, int32_t nbins, int32_t is_signed) {
  HistogramState s{};
  s.nbins = nbins;
  s.is_signed = is_signed;
  s.min_ordered = detail::kOrderedMinInit;
  s.max_ordered = detail::kOrderedMaxInit;
  *state = s;
}

template <typename T, bool kSigned>
__global__ void __launch_bounds__(kThreads)
    histogram_fixed_kernel(const T* __restrict__ x, size_t n, double range, double scale, int nbins,
                           unsigned long long* counts, unsigned long long* stats, int replicas) {
  extern __shared__ unsigned int smem[];
  BlockHist hist;
  hist.init(smem, replicas, nbins, counts);
  struct Fold {
    BlockHist* hist;
    double range, scale;
    int nbins;
    unsigned int out = 0, nan = 0, pinf = 0, ninf = 0;
    __device__ __forceinline__ void operator()(float v) {
      if (!isfinite(v)) {
        if (isnan(v))
          ++nan;
        else if (v > 0.f)
          ++pinf;
        else
          ++ninf;
        return;
      }
      const double d = kSigned ? (double)v : (double)fabsf(v);
      if (d > range || d < (kSigned ? -range : 0.0)) {
        ++out;
        return;
      }
      int b = kSigned ? nbins / 2 + (int)floor(d * scale) : (int)(d * scale);
      b = b < 0 ? 0 : (b >= nbins ? nbins - 1 : b);
      hist->add(b);
    }
  } f{&hist, range, scale, nbins};
  detail::for_each_value<T, 4>(x, n, f);
  hist.flush();
  __shared__ unsigned long long s64[32];
  unsigned long long c[4] = {f.out, f.nan, f.pinf, f.ninf};
#pragma unroll
  for (int i = 0; i < 4; ++i) c[i] = detail::block_reduce(c[i], detail::SumOp(), s64, 0ull);
  if (threadIdx.x == 0)
    for (int i = 0; i < 4; ++i)
      if (c[i]) atomicAdd(stats + i, c[i]);
}

// Blocks per SM as many as shared memory allows, at most the kBlocksPerSm that pass 1's
// registers allow (a 4th block of 512 threads would wait for a slot: 2^28 float32 0.245 ->
// 0.276 ms).
int grid_for(size_t n, const Layout& l) {
  int per_sm = l.smem ? (int)((200 * 1024) / (l.smem + 1024)) : kBlocksPerSm;
  per_sm = per_sm < 1 ? 1 : (per_sm > kBlocksPerSm ? kBlocksPerSm : per_sm);
  if (g_blocks_per_sm_override) per_sm = g_blocks_per_sm_override;
  return detail::streaming_grid(n, kThreads * 16, per_sm);
}

template <typename K>
cudaError_t prepare(K kernel, const Layout& l) {
  return detail::allow_dynamic_smem(kernel, l.smem);
}

}  // namespace

void histogram_set_replicas(int replicas) { g_replicas_override = replicas; }
void histogram_set_blocks_per_sm(int blocks) { g_blocks_per_sm_override = blocks; }

cudaError_t histogram_state_init(HistogramState* state, unsigned long long* counts, int32_t nbins,
                                 bool is_signed, cudaStream_t stream) {
  if (nbins < 1 || nbins > kMaxHistogramBins || (is_signed && nbins % 2)) return cudaErrorInvalidValue;
  histogram_init_kernel<<<1, 1, 0, stream>>>(state, nbins, is_signed);
  TRTCAL_TRY(cudaGetLastError());
  return cudaMemsetAsync(counts, 0, sizeof(unsigned long long) * nbins, stream);
}

cudaError_t histogram_update(const void* x, DType dtype, size_t n, HistogramState* state,
                             unsigned long long* counts, unsigned long long* scratch, int32_t nbins,
                             bool is_signed, cudaStream_t stream) {
  if (nbins < 1 || nbins > kMaxHistogramBins || (is_signed && nbins % 2)) return cudaErrorInvalidValue;
  const Layout l = choose_layout(nbins);
  const int blocks = grid_for(n, l);
  TRTCAL_FLOAT_SWITCH(dtype, T, {
    const T* p = static_cast<const T*>(x);
    auto p1 = is_signed ? histogram_pass1_kernel<T, true> : histogram_pass1_kernel<T, false>;
    auto p2 = is_signed ? histogram_pass2_kernel<T, true> : histogram_pass2_kernel<T, false>;
    TRTCAL_TRY(prepare(p1, l));
    TRTCAL_TRY(prepare(p2, l));
    if (n > 0) p1<<<blocks, kThreads, l.smem, stream>>>(p, n, state, counts, l.replicas);
    TRTCAL_TRY(cudaGetLastError());
    histogram_grow_kernel<<<1, 1024, 0, stream>>>(state, counts, scratch);
    TRTCAL_TRY(cudaGetLastError());
    if (n > 0) p2<<<blocks, kThreads, l.smem, stream>>>(p, n, state, counts, l.replicas);
  });
  return cudaGetLastError();
}

cudaError_t histogram_update_many(HistogramBatchItem* items, int32_t nitems, HistogramBatchItem* items_dev,
                                  cudaStream_t stream) {
  if (nitems <= 0) return cudaSuccess;
  int32_t max_bins = 1;
  size_t total = 0;
  for (int32_t i = 0; i < nitems; ++i) {
    const HistogramBatchItem& it = items[i];
    if (it.nbins < 1 || it.nbins > kMaxHistogramBins || (it.is_signed && it.nbins % 2) || it.dtype < 0 ||
        it.dtype > 2)
      return cudaErrorInvalidValue;
    max_bins = it.nbins > max_bins ? it.nbins : max_bins;
    total += it.n;
  }
  const Layout l = choose_layout(max_bins);
  // Values per block: 2^18 amortises a block's sub-histogram set-up and flush when the batch
  // fills the GPU many times over; a small batch (hooks read in-place-modified activations
  // as they come) is split finer so that it still spans every SM (a 25 MB activation in
  // 2^18-value blocks ran on 25 of 132 SMs).
  const size_t grid = (size_t)grid_for(total, l);
  size_t per_block = (total + grid - 1) / grid;
  per_block = per_block < (size_t)kThreads * 16 ? (size_t)kThreads * 16 : per_block;
  per_block = per_block > ((size_t)1 << 18) ? ((size_t)1 << 18) : per_block;
  int64_t blocks = 0;
  for (int32_t i = 0; i < nitems; ++i) {
    HistogramBatchItem& it = items[i];
    const int64_t nb = (int64_t)((it.n + per_block - 1) / per_block);
    it.nblocks = (int32_t)(nb < 1 ? 1 : nb);
    it.first_block = (int32_t)blocks;
    blocks += it.nblocks;
  }
  if (blocks > 0x7fffffff) return cudaErrorInvalidValue;
  TRTCAL_TRY(prepare(histogram_pass1_many_kernel, l));
  TRTCAL_TRY(prepare(histogram_pass2_many_kernel, l));
  TRTCAL_TRY(
      cudaMemcpyAsync(items_dev, items, sizeof(HistogramBatchItem) * nitems, cudaMemcpyHostToDevice, stream));
  histogram_pass1_many_kernel<<<(int)blocks, kThreads, l.smem, stream>>>(items_dev, nitems, l.replicas);
  TRTCAL_TRY(cudaGetLastError());
  histogram_grow_many_kernel<<<nitems, 1024, 0, stream>>>(items_dev);
  TRTCAL_TRY(cudaGetLastError());
  histogram_pass2_many_kernel<<<(int)blocks, kThreads, l.smem, stream>>>(items_dev, nitems, l.replicas);
  return cudaGetLastError();
}

cudaError_t histogram_merge(HistogramState* a, unsigned long long* counts_a, const HistogramState* b,
                            const unsigned long long* counts_b, unsigned long long* scratch, int32_t nbins,
                            cudaStream_t stream) {
  (void)nbins;
  histogram_merge_kernel<<<1, 1024, 0, stream>>>(a, counts_a, b, counts_b, scratch);
  return cudaGetLastError();
}

cudaError_t histogram_fixed_range(const void* x, DType dtype, size_t n, double range, int32_t nbins,
                                  bool is_signed, unsigned long long* counts, unsigned long long* stats,
                                  cudaStream_t stream) {
  if (nbins < 1 || nbins > kMaxHistogramBins || (is_signed && nbins % 2) || !(range > 0.0) ||
      !std::isfinite(range))
    return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  const Layout l = choose_layout(nbins);
  const int blocks = grid_for(n, l);
  const double scale = (is_signed ? nbins / 2 : nbins) / range;
  TRTCAL_FLOAT_SWITCH(dtype, T, {
    const T* p = static_cast<const T*>(x);
    auto k = is_signed ? histogram_fixed_kernel<T, true> : histogram_fixed_kernel<T, false>;
    TRTCAL_TRY(prepare(k, l));
    k<<<blocks, kThreads, l.smem, stream>>>(p, n, range, scale, nbins, counts, stats, l.replicas);
  });
  return cudaGetLastError();
}

namespace {
__global__ void histogram_gather_states_kernel(const HistogramState* const* src, HistogramState* dst,
                                               int32_t n) {
  const int32_t i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) dst[i] = *src[i];
}
}  // namespace

cudaError_t histogram_gather_states(const HistogramState* const* src, HistogramState* dst, int32_t n,
                                    cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  histogram_gather_states_kernel<<<(n + 127) / 128, 128, 0, stream>>>(src, dst, n);
  return cudaGetLastError();
}

}  // namespace trtcal
