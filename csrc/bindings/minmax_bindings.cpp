// Min/max per tensor and per channel: a one-shot call and a streaming state.
#include <pybind11/numpy.h>

#include <memory>

#include "common.h"
#include "kernels/minmax.h"
#include "stream_order.h"

namespace trtcal {
namespace {

// Device buffers: [min ordered x C][max ordered x C][pad][nonfinite x 3 (u64)].
class MinMaxState {
 public:
  MinMaxState(int64_t channels, int device)
      : channels_(channels), device_(device), order_(device),
        buf_(offset_nonfinite(channels) + 3 * sizeof(unsigned long long), device) {
    TRTCAL_CHECK_ARG(channels >= 1, "trtcal: channels must be >= 1");
  }
  void reset(uintptr_t stream) {
    DeviceGuard g(device_);
    order_.before(stream);
    TRTCAL_CHECK_CUDA(minmax_reset(mins(), maxs(), channels_, nonfinite(), as_stream(stream)));
    order_.after(stream);
  }
  void update(uintptr_t x, int dtype, int64_t outer, int64_t inner, uintptr_t stream) {
    const DType t = as_float_dtype(dtype);
    py::gil_scoped_release nogil;
    DeviceGuard g(device_);
    order_.before(stream);
    TRTCAL_CHECK_CUDA(minmax_accumulate(as_ptr<const void>(x), t, outer, channels_, inner, mins(),
                                        maxs(), nonfinite(), as_stream(stream)));
    order_.after(stream);
  }
  // Host copy: (min ordered uint32[C], max ordered uint32[C], nonfinite uint64[3]). Waits.
  py::tuple read(uintptr_t stream) {
    py::array_t<uint32_t> lo(channels_), hi(channels_);
    py::array_t<uint64_t> nf(3);
    {
      py::gil_scoped_release nogil;
      DeviceGuard g(device_);
      order_.before(stream);
      cudaStream_t s = as_stream(stream);
      TRTCAL_CHECK_CUDA(cudaMemcpyAsync(lo.mutable_data(), mins(), channels_ * 4, cudaMemcpyDeviceToHost, s));
      TRTCAL_CHECK_CUDA(cudaMemcpyAsync(hi.mutable_data(), maxs(), channels_ * 4, cudaMemcpyDeviceToHost, s));
      TRTCAL_CHECK_CUDA(cudaMemcpyAsync(nf.mutable_data(), nonfinite(), 24, cudaMemcpyDeviceToHost, s));
      TRTCAL_CHECK_CUDA(cudaStreamSynchronize(s));
    }
    return py::make_tuple(lo, hi, nf);
  }
  void load(py::array_t<uint32_t, py::array::c_style> lo, py::array_t<uint32_t, py::array::c_style> hi,
            py::array_t<uint64_t, py::array::c_style> nf, uintptr_t stream) {
    TRTCAL_CHECK_ARG(lo.size() == channels_ && hi.size() == channels_ && nf.size() == 3,
                     "trtcal: min/max state has the wrong size");
    py::gil_scoped_release nogil;
    DeviceGuard g(device_);
    order_.before(stream);
    cudaStream_t s = as_stream(stream);
    TRTCAL_CHECK_CUDA(cudaMemcpyAsync(mins(), lo.data(), channels_ * 4, cudaMemcpyHostToDevice, s));
    TRTCAL_CHECK_CUDA(cudaMemcpyAsync(maxs(), hi.data(), channels_ * 4, cudaMemcpyHostToDevice, s));
    TRTCAL_CHECK_CUDA(cudaMemcpyAsync(nonfinite(), nf.data(), 24, cudaMemcpyHostToDevice, s));
    TRTCAL_CHECK_CUDA(cudaStreamSynchronize(s));  // the host arrays may go away
    order_.after(stream);
  }
  int64_t channels() const { return channels_; }
  int device() const { return device_; }

 private:
  static size_t offset_nonfinite(int64_t c) { return ((size_t)c * 8 + 7) / 8 * 8; }
  uint32_t* mins() const { return static_cast<uint32_t*>(buf_.data()); }
  uint32_t* maxs() const { return mins() + channels_; }
  unsigned long long* nonfinite() const {
    return reinterpret_cast<unsigned long long*>(static_cast<char*>(buf_.data()) + offset_nonfinite(channels_));
  }
  int64_t channels_;
  int device_;
  StreamOrder order_;
  DeviceBuffer buf_;
};

}  // namespace

void init_minmax_bindings(py::module_& m) {
  py::class_<MinMaxState>(m, "MinMaxState")
      .def(py::init<int64_t, int>(), py::arg("channels"), py::arg("device"))
      .def("reset", &MinMaxState::reset, py::arg("stream"))
      .def("update", &MinMaxState::update, py::arg("ptr"), py::arg("dtype"), py::arg("outer"),
           py::arg("inner"), py::arg("stream"))
      .def("read", &MinMaxState::read, py::arg("stream"))
      .def("load", &MinMaxState::load, py::arg("min_ordered"), py::arg("max_ordered"),
           py::arg("nonfinite"), py::arg("stream"))
      .def_property_readonly("channels", &MinMaxState::channels)
      .def_property_readonly("device", &MinMaxState::device);
}

}  // namespace trtcal
