// SiLU: float, int8 -> int8 (exact table), int8 -> float and float -> int8.
#include <pybind11/numpy.h>

#include <cmath>

#include "common.h"
#include "kernels/silu.h"

namespace trtcal {
namespace {

void check_scale(float s, const char* what) {
  TRTCAL_CHECK_ARG(
      std::isfinite(s) && s > 0.f,
      std::string("trtcal: ") + what + " must be a positive finite float32, got " + std::to_string(s));
}

py::array_t<int8_t> int8_table(float scale_in, float scale_out) {
  check_scale(scale_in, "scale_in");
  check_scale(scale_out, "scale_out");
  py::array_t<int8_t> t(kSiluTableSize);
  silu_int8_table(scale_in, scale_out, t.mutable_data());
  return t;
}

// Raw bits of the output dtype: uint32 for float32, uint16 for float16/bfloat16.
py::array float_table(float scale_in, int dtype) {
  check_scale(scale_in, "scale_in");
  const DType t = as_float_dtype(dtype);
  if (t == DType::kFloat32) {
    py::array_t<uint32_t> a(kSiluTableSize);
    silu_int8_to_float_table(scale_in, t, a.mutable_data());
    return std::move(a);
  }
  py::array_t<uint16_t> a(kSiluTableSize);
  silu_int8_to_float_table(scale_in, t, a.mutable_data());
  return std::move(a);
}

}  // namespace

void init_silu_bindings(py::module_& m) {
  m.def(
      "silu",
      [](uintptr_t x, uintptr_t y, int dtype, size_t n, uintptr_t stream, int device) {
        const DType t = as_float_dtype(dtype);
        py::gil_scoped_release nogil;
        DeviceGuard g(device);
        TRTCAL_CHECK_CUDA(silu(as_ptr<const void>(x), as_ptr<void>(y), t, n, as_stream(stream)));
      },
      py::arg("x"), py::arg("y"), py::arg("dtype"), py::arg("n"), py::arg("stream"), py::arg("device"));

  m.def("silu_int8_table", &int8_table, py::arg("scale_in"), py::arg("scale_out"));
  m.def("silu_int8_to_float_table", &float_table, py::arg("scale_in"), py::arg("dtype"));

  m.def(
      "silu_int8",
      [](uintptr_t q, uintptr_t y, size_t n, float scale_in, float scale_out, uintptr_t stream, int device) {
        check_scale(scale_in, "scale_in");
        check_scale(scale_out, "scale_out");
        int8_t table[kSiluTableSize];
        silu_int8_table(scale_in, scale_out, table);
        py::gil_scoped_release nogil;
        DeviceGuard g(device);
        TRTCAL_CHECK_CUDA(silu_int8(as_ptr<const int8_t>(q), as_ptr<int8_t>(y), n, table, as_stream(stream)));
      },
      py::arg("q"), py::arg("y"), py::arg("n"), py::arg("scale_in"), py::arg("scale_out"), py::arg("stream"),
      py::arg("device"));

  m.def(
      "silu_int8_to_float",
      [](uintptr_t q, uintptr_t y, int dtype, size_t n, float scale_in, uintptr_t stream, int device) {
        check_scale(scale_in, "scale_in");
        const DType t = as_float_dtype(dtype);
        uint32_t table[kSiluTableSize];  // large enough for every output dtype
        silu_int8_to_float_table(scale_in, t, table);
        py::gil_scoped_release nogil;
        DeviceGuard g(device);
        TRTCAL_CHECK_CUDA(
            silu_int8_to_float(as_ptr<const int8_t>(q), as_ptr<void>(y), t, n, table, as_stream(stream)));
      },
      py::arg("q"), py::arg("y"), py::arg("dtype"), py::arg("n"), py::arg("scale_in"), py::arg("stream"),
      py::arg("device"));

  m.def(
      "silu_float_to_int8",
      [](uintptr_t x, int dtype, uintptr_t y, size_t n, float scale_out, uintptr_t stream, int device) {
        check_scale(scale_out, "scale_out");
        const DType t = as_float_dtype(dtype);
        py::gil_scoped_release nogil;
        DeviceGuard g(device);
        TRTCAL_CHECK_CUDA(
            silu_float_to_int8(as_ptr<const void>(x), t, as_ptr<int8_t>(y), n, scale_out, as_stream(stream)));
      },
      py::arg("x"), py::arg("dtype"), py::arg("y"), py::arg("n"), py::arg("scale_out"), py::arg("stream"),
      py::arg("device"));
}

}  // namespace trtcal
