// trtcal._C: the private extension module. Each topic registers itself here.
#include "common.h"

PYBIND11_MODULE(_C, m) {
  m.doc() = "trtcal CUDA kernels (private; use the trtcal package)";
  pybind11::register_exception<trtcal::DeviceOutOfMemory>(m, "DeviceOutOfMemory", PyExc_MemoryError);
  trtcal::init_enum_bindings(m);
  trtcal::init_runtime_bindings(m);
  trtcal::init_minmax_bindings(m);
  trtcal::init_histogram_bindings(m);
  trtcal::init_silu_bindings(m);
  trtcal::init_range_search_bindings(m);
  trtcal::init_fp8_bindings(m);
}
