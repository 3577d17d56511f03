// Shared by the binding files: error translation, device selection, argument checks.
#pragma once
#include <cuda_runtime.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>

#include "kernels/dtype.h"

namespace trtcal {
namespace py = pybind11;

// CUDA ran out of device memory: surfaces as Python's MemoryError.
struct DeviceOutOfMemory : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] inline void throw_cuda(cudaError_t err, const char* what, const char* file, int line) {
  std::ostringstream os;
  os << "trtcal: CUDA error in " << what << ": " << cudaGetErrorName(err) << " (" << cudaGetErrorString(err)
     << ") at " << file << ":" << line;
  if (err == cudaErrorMemoryAllocation) throw DeviceOutOfMemory(os.str());
  throw std::runtime_error(os.str());
}

#define TRTCAL_CHECK_CUDA(call)                                                                   \
  do {                                                                                            \
    cudaError_t trtcal_err_ = (call);                                                             \
    if (trtcal_err_ != cudaSuccess) ::trtcal::throw_cuda(trtcal_err_, #call, __FILE__, __LINE__); \
  } while (0)

// Bad arguments from Python: ValueError with the message.
#define TRTCAL_CHECK_ARG(cond, msg)                  \
  do {                                               \
    if (!(cond)) throw ::pybind11::value_error(msg); \
  } while (0)

inline cudaStream_t as_stream(uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }
template <typename T>
inline T* as_ptr(uintptr_t p) {
  return reinterpret_cast<T*>(p);
}

inline DType as_float_dtype(int code) {
  TRTCAL_CHECK_ARG(code >= 0 && code <= 2, "trtcal: unsupported dtype code " + std::to_string(code) +
                                               " (accepted: float32, float16, bfloat16)");
  return static_cast<DType>(code);
}

// Makes `device` current for the scope and restores the previous one. It also clears the
// thread's last-error state first: a non-sticky error that another library's call left
// there (and already returned to its caller) would otherwise be read back by the
// cudaGetLastError() after our own launches and reported as theirs. Sticky errors (a broken
// context) still fail our calls.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    (void)cudaGetLastError();
    TRTCAL_CHECK_CUDA(cudaGetDevice(&previous_));
    if (device >= 0 && device != previous_) TRTCAL_CHECK_CUDA(cudaSetDevice(device));
  }
  ~DeviceGuard() { cudaSetDevice(previous_); }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
};

// Owning device allocation.
class DeviceBuffer {
 public:
  DeviceBuffer(size_t nbytes, int device) : nbytes_(nbytes), device_(device) {
    DeviceGuard g(device);
    if (nbytes_) TRTCAL_CHECK_CUDA(cudaMalloc(&ptr_, nbytes_));
  }
  ~DeviceBuffer() {
    if (ptr_) {
      DeviceGuard g(device_);
      cudaFree(ptr_);
    }
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* data() const { return ptr_; }
  size_t nbytes() const { return nbytes_; }
  int device() const { return device_; }

 private:
  void* ptr_ = nullptr;
  size_t nbytes_ = 0;
  int device_ = 0;
};

void init_enum_bindings(py::module_& m);
void init_runtime_bindings(py::module_& m);
void init_minmax_bindings(py::module_& m);
void init_histogram_bindings(py::module_& m);
void init_silu_bindings(py::module_& m);
void init_range_search_bindings(py::module_& m);
void init_fp8_bindings(py::module_& m);

}  // namespace trtcal
