// Element types the kernels accept, and one dispatch macro for the floating ones.
#pragma once
#include <cstdint>

namespace trtcal {

enum class DType : int32_t { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2, kInt8 = 3 };

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::kFloat32:
      return "float32";
    case DType::kFloat16:
      return "float16";
    case DType::kBFloat16:
      return "bfloat16";
    case DType::kInt8:
      return "int8";
  }
  return "unknown";
}

inline int dtype_size(DType t) {
  switch (t) {
    case DType::kFloat32:
      return 4;
    case DType::kFloat16:
      return 2;
    case DType::kBFloat16:
      return 2;
    case DType::kInt8:
      return 1;
  }
  return 0;
}

}  // namespace trtcal

// Dispatch a floating DType to a C++ type named T; the default case returns
// cudaErrorInvalidValue (callers validate first and name float32/float16/bfloat16).
#define TRTCAL_FLOAT_SWITCH(dtype, T, ...) \
  switch (dtype) {                         \
    case ::trtcal::DType::kFloat32: {      \
      using T = float;                     \
      __VA_ARGS__;                         \
    } break;                               \
    case ::trtcal::DType::kFloat16: {      \
      using T = __half;                    \
      __VA_ARGS__;                         \
    } break;                               \
    case ::trtcal::DType::kBFloat16: {     \
      using T = __nv_bfloat16;             \
      __VA_ARGS__;                         \
    } break;                               \
    default:                               \
      return cudaErrorInvalidValue;        \
  }
