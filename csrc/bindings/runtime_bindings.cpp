// Devices, pointers, streams and staging buffers.
#include <pybind11/numpy.h>

#include "common.h"
#include "workspace.h"

namespace trtcal {

void init_runtime_bindings(py::module_& m) {
  // Frees the cached one-shot workspaces (registered with atexit by trtcal._backend, while
  // the CUDA runtime is alive); a later call allocates again.
  m.def("free_workspaces", []() {
    py::gil_scoped_release nogil;
    Workspace::free_all();
  });
  m.def("device_count", []() {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();
      return 0;
    }
    return n;
  });
  m.def("runtime_version", []() {
    int v = 0;
    cudaRuntimeGetVersion(&v);
    return v;
  });
  // (device ordinal, memory type) of a pointer; type: 0 unregistered host, 1 host,
  // 2 device, 3 managed.
  m.def("pointer_info", [](uintptr_t ptr) -> py::tuple {
    cudaPointerAttributes a{};
    cudaError_t err = cudaPointerGetAttributes(&a, reinterpret_cast<void*>(ptr));
    if (err != cudaSuccess) {
      cudaGetLastError();
      return py::make_tuple(-1, 0);
    }
    return py::make_tuple(a.device, static_cast<int>(a.type));
  });
  m.def("stream_synchronize", [](uintptr_t stream, int device) {
    py::gil_scoped_release nogil;
    DeviceGuard g(device);
    TRTCAL_CHECK_CUDA(cudaStreamSynchronize(as_stream(stream)));
  });

  py::class_<DeviceBuffer>(m, "DeviceBuffer")
      .def(py::init<size_t, int>(), py::arg("nbytes"), py::arg("device"))
      .def_property_readonly("ptr",
                             [](const DeviceBuffer& b) { return reinterpret_cast<uintptr_t>(b.data()); })
      .def_property_readonly("nbytes", &DeviceBuffer::nbytes)
      .def_property_readonly("device", &DeviceBuffer::device)
      // Copies a C-contiguous host array into the buffer (ordered on `stream`; the
      // host memory must stay valid until the stream reaches the copy, so this waits).
      .def("upload", [](DeviceBuffer& b, py::buffer src, uintptr_t stream) {
        py::buffer_info info = src.request();
        const size_t nbytes = static_cast<size_t>(info.size) * info.itemsize;
        TRTCAL_CHECK_ARG(nbytes <= b.nbytes(), "trtcal: upload larger than the device buffer");
        py::gil_scoped_release nogil;
        DeviceGuard g(b.device());
        TRTCAL_CHECK_CUDA(
            cudaMemcpyAsync(b.data(), info.ptr, nbytes, cudaMemcpyHostToDevice, as_stream(stream)));
        TRTCAL_CHECK_CUDA(cudaStreamSynchronize(as_stream(stream)));
      });
  // Copies nbytes from a device pointer into a writable host buffer and waits.
  m.def("download", [](uintptr_t src, py::buffer dst, uintptr_t stream, int device) {
    py::buffer_info info = dst.request(true);
    const size_t nbytes = static_cast<size_t>(info.size) * info.itemsize;
    py::gil_scoped_release nogil;
    DeviceGuard g(device);
    TRTCAL_CHECK_CUDA(cudaMemcpyAsync(info.ptr, reinterpret_cast<void*>(src), nbytes, cudaMemcpyDeviceToHost,
                                      as_stream(stream)));
    TRTCAL_CHECK_CUDA(cudaStreamSynchronize(as_stream(stream)));
  });
}

}  // namespace trtcal
