// SiLU kernels: one element-wise map with vector accesses of 16 bytes on the wider side,
// a scalar head up to the first aligned element and a scalar tail; a scalar path when the
// input and output cannot both be aligned. INT8 SiLU is a 256-entry table passed by value.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstring>

#include "device_common.cuh"
#include "silu.h"

namespace trtcal {
namespace {

// ---- SiLU values --------------------------------------------------------------------

// float32: expf and IEEE division (a few ULP from the exact value).
__device__ __forceinline__ float silu_accurate(float x) {
  const float t = expf(-fabsf(x));
  const float r = (x >= 0.f ? x : x * t) / (1.f + t);
  return x == -INFINITY ? -0.f : r;
}

// 16-bit outputs: fast exp and division (1 + t lies in [1, 2], where __fdividef is exact
// to 2 ULP); the float16/bfloat16 rounding that follows hides the difference.
__device__ __forceinline__ float silu_fast(float x) {
  const float t = __expf(-fabsf(x));
  const float r = __fdividef(x >= 0.f ? x : x * t, 1.f + t);
  return x == -INFINITY ? -0.f : r;
}

template <typename T>
__device__ __forceinline__ float silu_value(float x) {
  return silu_fast(x);
}
template <>
__device__ __forceinline__ float silu_value<float>(float x) {
  return silu_accurate(x);
}

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// ---- Element-wise operations (constructed once per block; may fill shared memory) ---

template <typename T>
struct SiluOp {
  using In = T;
  using Out = T;
  struct Params {};
  __device__ explicit SiluOp(const Params&) {}
  __device__ __forceinline__ T operator()(T v) const {
    return from_float<T>(silu_value<T>(detail::to_float(v)));
  }
};

template <typename T>
struct SiluQuantizeOp {
  using In = T;
  using Out = int8_t;
  struct Params {
    float scale_out;
  };
  float scale;
  __device__ explicit SiluQuantizeOp(const Params& p) : scale(p.scale_out) {}
  __device__ __forceinline__ int8_t operator()(T v) const {
    int q = __float2int_rn(silu_value<T>(detail::to_float(v)) / scale);  // NaN -> 0
    q = q < -128 ? -128 : (q > 127 ? 127 : q);
    return static_cast<int8_t>(q);
  }
};

// int8 -> int8: one copy of the table per lane so that every lookup hits the lane's own
// shared-memory bank (32 x 256 bytes). Byte b of lane l lives at word (b / 4) * 32 + l.
struct Int8TableParams {
  uint32_t words[kSiluTableSize / 4];  // table bytes, index q + 128, little-endian words
};

struct SiluInt8Op {
  using In = int8_t;
  using Out = int8_t;
  using Params = Int8TableParams;
  const unsigned char* lane_table;
  __device__ explicit SiluInt8Op(const Params& p) {
    __shared__ uint32_t s[kSiluTableSize / 4 * 32];
    for (int w = threadIdx.x; w < kSiluTableSize / 4 * 32; w += blockDim.x) s[w] = p.words[w >> 5];
    __syncthreads();
    lane_table = reinterpret_cast<const unsigned char*>(s) + (threadIdx.x & 31) * 4;
  }
  __device__ __forceinline__ int8_t operator()(int8_t q) const {
    const unsigned u = static_cast<unsigned char>(q) ^ 0x80u;  // q + 128
    return static_cast<int8_t>(lane_table[((u & 0xfcu) << 5) | (u & 3u)]);
  }
};

// int8 -> float32/float16/bfloat16, moved as raw bits of the output type.
template <typename Bits>
struct FloatTableParams {
  Bits v[kSiluTableSize];
};

template <typename Bits>
struct SiluInt8ToFloatOp {
  using In = int8_t;
  using Out = Bits;
  using Params = FloatTableParams<Bits>;
  const Bits* table;
  __device__ explicit SiluInt8ToFloatOp(const Params& p) {
    __shared__ Bits s[kSiluTableSize];
    for (int i = threadIdx.x; i < kSiluTableSize; i += blockDim.x) s[i] = p.v[i];
    __syncthreads();
    table = s;
  }
  __device__ __forceinline__ Bits operator()(int8_t q) const {
    return table[static_cast<unsigned char>(q) ^ 0x80u];
  }
};

// ---- The map ----------------------------------------------------------------------

template <int Bytes>
struct Storage;
template <>
struct Storage<4> {
  using type = uint32_t;
};
template <>
struct Storage<8> {
  using type = uint2;
};
template <>
struct Storage<16> {
  using type = uint4;
};

template <typename Op>
struct MapShape {
  using In = typename Op::In;
  using Out = typename Op::Out;
  static constexpr int kWide = sizeof(In) > sizeof(Out) ? sizeof(In) : sizeof(Out);
  static constexpr int kVec = 16 / kWide;  // elements per vector access
  using InVec = typename Storage<kVec * sizeof(In)>::type;
  using OutVec = typename Storage<kVec * sizeof(Out)>::type;
};

constexpr int kThreads = 256;
constexpr int kUnroll = 4;

// y[i] = op(x[i]). When `vectorised`, x + head and y + head are aligned to the vector
// sizes; otherwise every element takes the scalar loop. Grid-stride, 64-bit indices.
// x and y may be the same buffer (each element is read before it is written, by the same
// thread), so neither pointer is __restrict__.
template <typename Op>
__global__ void __launch_bounds__(kThreads)
    map_kernel(const typename Op::In* x, typename Op::Out* y, size_t n, size_t head, bool vectorised,
               typename Op::Params params) {
  using S = MapShape<Op>;
  using In = typename S::In;
  using Out = typename S::Out;
  using InVec = typename S::InVec;
  using OutVec = typename S::OutVec;
  constexpr int kVec = S::kVec;

  const Op op(params);
  const size_t tid = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  const size_t nthreads = (size_t)gridDim.x * blockDim.x;

  if (!vectorised) {
    for (size_t i = tid; i < n; i += nthreads) y[i] = op(x[i]);
    return;
  }
  if (tid < head) y[tid] = op(x[tid]);

  const size_t nvec = (n - head) / kVec;
  const InVec* xv = reinterpret_cast<const InVec*>(x + head);
  OutVec* yv = reinterpret_cast<OutVec*>(y + head);

  size_t i = tid;
  for (; i + (kUnroll - 1) * nthreads < nvec; i += kUnroll * nthreads) {
    InVec in[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) in[u] = xv[i + u * nthreads];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      OutVec out;
      const In* e = reinterpret_cast<const In*>(&in[u]);
      Out* o = reinterpret_cast<Out*>(&out);
#pragma unroll
      for (int k = 0; k < kVec; ++k) o[k] = op(e[k]);
      yv[i + u * nthreads] = out;
    }
  }
  for (; i < nvec; i += nthreads) {
    const InVec in = xv[i];
    OutVec out;
    const In* e = reinterpret_cast<const In*>(&in);
    Out* o = reinterpret_cast<Out*>(&out);
#pragma unroll
    for (int k = 0; k < kVec; ++k) o[k] = op(e[k]);
    yv[i] = out;
  }
  for (size_t j = head + nvec * kVec + tid; j < n; j += nthreads) y[j] = op(x[j]);
}

template <typename Kernel>
int resident_blocks(Kernel kernel) {
  int per_sm = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, 0) != cudaSuccess ||
      per_sm < 1) {
    cudaGetLastError();
    per_sm = 4;
  }
  return per_sm;
}

template <typename Op>
cudaError_t launch_map(const void* x, void* y, size_t n, const typename Op::Params& params,
                       cudaStream_t stream) {
  using S = MapShape<Op>;
  using In = typename S::In;
  using Out = typename S::Out;
  if (n == 0) return cudaSuccess;
  if (x == nullptr || y == nullptr) return cudaErrorInvalidValue;
  const uintptr_t ax = reinterpret_cast<uintptr_t>(x), ay = reinterpret_cast<uintptr_t>(y);
  if (ax % sizeof(In) || ay % sizeof(Out)) return cudaErrorMisalignedAddress;

  constexpr uintptr_t kInAlign = S::kVec * sizeof(In), kOutAlign = S::kVec * sizeof(Out);
  size_t head = ((kInAlign - ax % kInAlign) % kInAlign) / sizeof(In);
  if (head > n) head = n;
  const bool vectorised = (ay + head * sizeof(Out)) % kOutAlign == 0;

  // Persistent grid: exactly the blocks that fit on the GPU at once (a second partial
  // wave of a grid-stride kernel would leave most SMs idle at the end).
  static const int per_sm = resident_blocks(map_kernel<Op>);
  const size_t work = vectorised ? (n - head) / S::kVec + head : n;
  const int blocks = detail::streaming_grid(work, kThreads, per_sm);
  map_kernel<Op><<<blocks, kThreads, 0, stream>>>(static_cast<const In*>(x), static_cast<Out*>(y), n, head,
                                                  vectorised, params);
  return cudaGetLastError();
}

bool good_scale(float s) { return std::isfinite(s) && s > 0.f; }

// silu(float32(q) * scale_in) in float64 (see silu.h).
double silu_of_code(int q, float scale_in) {
  const float v = static_cast<float>(q) * scale_in;  // one float32 product
  if (std::isinf(v) && v < 0) return -0.0;
  const double x = v;
  const double t = std::exp(-std::fabs(x));
  return (x >= 0 ? x : x * t) / (1.0 + t);
}

// |x| (finite or not, not NaN) rounded to E4M3FN, nearest even, saturating: the spacing at x is
// 2^max(e - 4, -9) with x = m * 2^e, m in [0.5, 1) (python/trtcal/reference/fp8.py:round_e4m3).
uint8_t e4m3_encode(double x) {
  if (std::isnan(x)) return 0x7F;
  const uint8_t sign = std::signbit(x) ? 0x80 : 0x00;
  double a = std::fabs(x);
  if (a > 448.0) a = 448.0;
  int e = 0;
  std::frexp(a, &e);
  const int sp = e - 4 > -9 ? e - 4 : -9;
  double q = std::ldexp(std::nearbyint(std::ldexp(a, -sp)), sp);
  if (q > 448.0) q = 448.0;
  if (q < 0.015625) return sign | static_cast<uint8_t>(q * 512.0);  // subnormal: k * 2^-9, k < 8
  int e2 = 0;
  const double m = std::frexp(q, &e2);  // q = (2m) * 2^(e2 - 1), 2m in [1, 2)
  const int man = static_cast<int>((2.0 * m - 1.0) * 8.0);
  return sign | static_cast<uint8_t>(((e2 - 1 + 7) << 3) | man);
}

double e4m3_decode(uint8_t c) {
  if ((c & 0x7F) == 0x7F) return std::nan("");
  const int exp = (c >> 3) & 0xF, man = c & 7;
  const double v = exp == 0 ? std::ldexp(static_cast<double>(man), -9) : std::ldexp(1.0 + man / 8.0, exp - 7);
  return (c & 0x80) ? -v : v;
}

}  // namespace

bool silu_fp8_table(float scale_in, float scale_out, uint8_t* table) {
  if (!good_scale(scale_in) || !good_scale(scale_out) || table == nullptr) return false;
  for (int c = 0; c < 256; ++c) {
    const double d = e4m3_decode(static_cast<uint8_t>(c));
    if (std::isnan(d)) {
      table[c] = 0x7F;
      continue;
    }
    const float v = static_cast<float>(d) * scale_in;  // one float32 product
    double s;
    if (std::isinf(v) && v < 0) {
      s = -0.0;
    } else {
      const double x = v;
      const double t = std::exp(-std::fabs(x));
      s = (x >= 0 ? x : x * t) / (1.0 + t);
    }
    table[c] = e4m3_encode(s / static_cast<double>(scale_out));
  }
  return true;
}

cudaError_t silu_fp8(const uint8_t* x, uint8_t* y, size_t n, const uint8_t* table, cudaStream_t stream) {
  if (table == nullptr) return cudaErrorInvalidValue;
  int8_t by_q[kSiluTableSize];  // the INT8 kernel indexes by q + 128, q the byte read as int8
  for (int q = -128; q <= 127; ++q) by_q[q + 128] = static_cast<int8_t>(table[static_cast<uint8_t>(q)]);
  return silu_int8(reinterpret_cast<const int8_t*>(x), reinterpret_cast<int8_t*>(y), n, by_q, stream);
}

bool silu_int8_table(float scale_in, float scale_out, int8_t* table) {
  if (!good_scale(scale_in) || !good_scale(scale_out) || table == nullptr) return false;
  for (int q = -128; q <= 127; ++q) {
    double r = std::nearbyint(silu_of_code(q, scale_in) / static_cast<double>(scale_out));
    r = r < -128.0 ? -128.0 : (r > 127.0 ? 127.0 : r);
    table[q + 128] = static_cast<int8_t>(r);
  }
  return true;
}

bool silu_int8_to_float_table(float scale_in, DType out_dtype, void* table) {
  if (!good_scale(scale_in) || table == nullptr) return false;
  for (int q = -128; q <= 127; ++q) {
    const float f = static_cast<float>(silu_of_code(q, scale_in));
    char* dst = static_cast<char*>(table);
    switch (out_dtype) {
      case DType::kFloat32:
        std::memcpy(dst + 4 * (q + 128), &f, 4);
        break;
      case DType::kFloat16: {
        const __half h = __float2half_rn(f);
        std::memcpy(dst + 2 * (q + 128), &h, 2);
      } break;
      case DType::kBFloat16: {
        const __nv_bfloat16 b = __float2bfloat16_rn(f);
        std::memcpy(dst + 2 * (q + 128), &b, 2);
      } break;
      default:
        return false;
    }
  }
  return true;
}

cudaError_t silu(const void* x, void* y, DType dtype, size_t n, cudaStream_t stream) {
  TRTCAL_FLOAT_SWITCH(dtype, T,
                      { return launch_map<SiluOp<T>>(x, y, n, typename SiluOp<T>::Params{}, stream); });
  return cudaSuccess;
}

cudaError_t silu_int8(const int8_t* q, int8_t* y, size_t n, const int8_t* table, cudaStream_t stream) {
  if (table == nullptr) return cudaErrorInvalidValue;
  Int8TableParams p;
  std::memcpy(p.words, table, kSiluTableSize);
  return launch_map<SiluInt8Op>(q, y, n, p, stream);
}

cudaError_t silu_int8_to_float(const int8_t* q, void* y, DType out_dtype, size_t n, const void* table,
                               cudaStream_t stream) {
  if (table == nullptr) return cudaErrorInvalidValue;
  switch (out_dtype) {
    case DType::kFloat32: {
      FloatTableParams<uint32_t> p;
      std::memcpy(p.v, table, sizeof(p.v));
      return launch_map<SiluInt8ToFloatOp<uint32_t>>(q, y, n, p, stream);
    }
    case DType::kFloat16:
    case DType::kBFloat16: {
      FloatTableParams<uint16_t> p;
      std::memcpy(p.v, table, sizeof(p.v));
      return launch_map<SiluInt8ToFloatOp<uint16_t>>(q, y, n, p, stream);
    }
    default:
      return cudaErrorInvalidValue;
  }
}

cudaError_t silu_float_to_int8(const void* x, DType dtype, int8_t* y, size_t n, float scale_out,
                               cudaStream_t stream) {
  if (!good_scale(scale_out)) return cudaErrorInvalidValue;
  TRTCAL_FLOAT_SWITCH(dtype, T, {
    return launch_map<SiluQuantizeOp<T>>(x, y, n, typename SiluQuantizeOp<T>::Params{scale_out}, stream);
  });
  return cudaSuccess;
}

}  // namespace trtcal
