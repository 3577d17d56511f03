// Min/max per tensor and per channel: a one-shot call and a streaming state.
#include <pybind11/numpy.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "common.h"
#include "kernels/minmax.h"
#include "stream_order.h"
#include "workspace.h"

namespace trtcal {
namespace {

// Device buffers: [min ordered x C][max ordered x C][pad][nonfinite x 3 (u64)].
class MinMaxState {
 public:
  MinMaxState(int64_t channels, int device)
      : channels_(channels),
        device_(device),
        order_(device),
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
    TRTCAL_CHECK_CUDA(minmax_accumulate(as_ptr<const void>(x), t, outer, channels_, inner, mins(), maxs(),
                                        nonfinite(), as_stream(stream)));
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
    return reinterpret_cast<unsigned long long*>(static_cast<char*>(buf_.data()) +
                                                 offset_nonfinite(channels_));
  }
  int64_t channels_;
  int device_;
  StreamOrder order_;
  DeviceBuffer buf_;
};

// NaN for an identity (no finite value), else the float value.
double decode_ordered(uint32_t o) {
  return (o == 0xffffffffu || o == 0u) ? std::nan("") : (double)ordered_to_float_host(o);
}

// The whole-tensor one-shot (trtcal.amax / minmax): per device, the kernel's running state
// (device memory, kept reset by the kernel itself) and a result in mapped pinned host memory
// that the kernel's last block writes, sequence number last (kernels/minmax.h, minmax_scalar).
// A call is one launch, then the host watches the sequence number (asking the stream now and
// then, so a failed kernel is reported and a missing write never hangs): no reset launch, no
// copy, no allocation after the first call, and no wait for the kernel's retirement after its
// result is there. Without mapped host memory the result goes to device memory and one copy
// brings it back after a stream wait. Guarded by its own lock, held until the result is in
// (calls never overlap); never freed (tiny).
struct ScalarSlot {
  std::mutex mutex;
  MinMaxScalarState* state = nullptr;
  MinMaxScalarResult* host = nullptr;  // pinned; mapped when `mapped`
  MinMaxScalarResult* out = nullptr;   // where the kernel writes: host's device pointer, or device memory
  bool mapped = false;
  bool needs_init = true;  // a call that did not finish may have left the state mid-way
  unsigned int seq = 0;    // of the last call
};

ScalarSlot& scalar_slot(int device) {
  static std::mutex registry_mutex;
  static auto* slots = new std::vector<ScalarSlot*>();
  std::lock_guard<std::mutex> lock(registry_mutex);
  if ((int)slots->size() <= device) slots->resize(device + 1, nullptr);
  if (!(*slots)[device]) (*slots)[device] = new ScalarSlot();
  return *(*slots)[device];
}

void scalar_slot_alloc(ScalarSlot& slot) {
  TRTCAL_CHECK_CUDA(cudaMalloc(&slot.state, 2 * sizeof(MinMaxScalarState) + sizeof(MinMaxScalarResult)));
  void* h = nullptr;
  const unsigned int flags = cudaHostAllocMapped | cudaHostAllocPortable;
  if (cudaHostAlloc(&h, sizeof(MinMaxScalarResult), flags) == cudaSuccess) {
    void* d = nullptr;
    if (cudaHostGetDevicePointer(&d, h, 0) == cudaSuccess) {
      std::memset(h, 0, sizeof(MinMaxScalarResult));
      slot.host = static_cast<MinMaxScalarResult*>(h);
      slot.out = static_cast<MinMaxScalarResult*>(d);
      slot.mapped = true;
      return;
    }
    cudaFreeHost(h);
  }
  (void)cudaGetLastError();  // no mapped memory here: a device result and one copy
  TRTCAL_CHECK_CUDA(cudaMallocHost(&h, sizeof(MinMaxScalarResult)));
  slot.host = static_cast<MinMaxScalarResult*>(h);
  slot.out = reinterpret_cast<MinMaxScalarResult*>(slot.state + 2);
}

// Waits until the kernel has written sequence number `seq` into the mapped result: spins on it,
// asking the stream every few hundred reads (an error is raised; a finished stream without the
// write is a bug, raised too).
void wait_for_result(const MinMaxScalarResult* host, unsigned int seq, cudaStream_t s) {
  const volatile unsigned int* flag = &host->seq;
  for (;;) {
    for (int i = 0; i < 256; ++i)
      if (*flag == seq) return;
    const cudaError_t q = cudaStreamQuery(s);
    if (q == cudaErrorNotReady) continue;
    TRTCAL_CHECK_CUDA(q);
    if (*flag == seq) return;
    throw std::runtime_error("trtcal: min/max kernel finished without writing its result");
  }
}

py::tuple minmax_scalar_once(uintptr_t x, DType t, size_t n, uintptr_t stream, int device) {
  MinMaxScalarResult r{};
  {
    py::gil_scoped_release nogil;
    DeviceGuard g(device);
    ScalarSlot& slot = scalar_slot(device);
    std::lock_guard<std::mutex> lock(slot.mutex);
    if (!slot.state) scalar_slot_alloc(slot);
    cudaStream_t s = as_stream(stream);
    if (slot.needs_init) TRTCAL_CHECK_CUDA(minmax_scalar_init(slot.state, s));
    slot.needs_init = true;             // until this call has finished
    if (++slot.seq == 0) slot.seq = 1;  // 0: the result's initial value
    TRTCAL_CHECK_CUDA(minmax_scalar(as_ptr<const void>(x), t, n, slot.state, slot.out, slot.seq, s));
    if (slot.mapped) {
      wait_for_result(slot.host, slot.seq, s);
      std::atomic_thread_fence(std::memory_order_acquire);  // the fields after the sequence number
    } else {
      TRTCAL_CHECK_CUDA(
          cudaMemcpyAsync(slot.host, slot.out, sizeof(MinMaxScalarResult), cudaMemcpyDeviceToHost, s));
      TRTCAL_CHECK_CUDA(cudaStreamSynchronize(s));
    }
    slot.needs_init = false;
    std::memcpy(&r, const_cast<const MinMaxScalarResult*>(slot.host), sizeof(r));
  }
  return py::make_tuple(decode_ordered(r.min_ordered), decode_ordered(r.max_ordered), r.nonfinite[0],
                        r.nonfinite[1], r.nonfinite[2]);
}

// One-shot min/max in the device's cached workspace: reset, one pass, one copy back; waits.
// Returns (lo, hi, nan, posinf, neginf): floats when channels == 1, else float64 arrays; NaN
// marks a channel with no finite value.
py::tuple minmax_once(uintptr_t x, int dtype, int64_t outer, int64_t channels, int64_t inner,
                      uintptr_t stream, int device) {
  const DType t = as_float_dtype(dtype);
  TRTCAL_CHECK_ARG(channels >= 1, "trtcal: channels must be >= 1");
  if (channels == 1 && outer == 1 && inner > 0)
    return minmax_scalar_once(x, t, (size_t)inner, stream, device);
  const size_t nf_off = ((size_t)channels * 8 + 7) / 8 * 8;
  const size_t bytes = nf_off + 3 * sizeof(unsigned long long);
  std::vector<uint32_t> ordered(channels == 1 ? 0 : 2 * (size_t)channels);
  uint32_t lo1 = 0, hi1 = 0;
  unsigned long long nf[3] = {0, 0, 0};
  {
    py::gil_scoped_release nogil;
    DeviceGuard g(device);
    Workspace& ws = Workspace::get(device);
    std::lock_guard<std::mutex> lock(ws.mutex());
    char* d = static_cast<char*>(ws.device(bytes));
    char* h = static_cast<char*>(ws.pinned(bytes));
    auto* mins = reinterpret_cast<uint32_t*>(d);
    auto* nfd = reinterpret_cast<unsigned long long*>(d + nf_off);
    cudaStream_t s = as_stream(stream);
    TRTCAL_CHECK_CUDA(minmax_reset(mins, mins + channels, channels, nfd, s));
    TRTCAL_CHECK_CUDA(
        minmax_accumulate(as_ptr<const void>(x), t, outer, channels, inner, mins, mins + channels, nfd, s));
    TRTCAL_CHECK_CUDA(cudaMemcpyAsync(h, d, bytes, cudaMemcpyDeviceToHost, s));
    TRTCAL_CHECK_CUDA(cudaStreamSynchronize(s));
    const auto* ho = reinterpret_cast<const uint32_t*>(h);
    if (channels == 1) {
      lo1 = ho[0];
      hi1 = ho[1];
    } else {
      std::memcpy(ordered.data(), ho, ordered.size() * sizeof(uint32_t));
    }
    std::memcpy(nf, h + nf_off, sizeof(nf));
  }
  if (channels == 1) return py::make_tuple(decode_ordered(lo1), decode_ordered(hi1), nf[0], nf[1], nf[2]);
  py::array_t<double> lo(channels), hi(channels);
  double* lp = lo.mutable_data();
  double* hp = hi.mutable_data();
  for (int64_t c = 0; c < channels; ++c) {
    lp[c] = decode_ordered(ordered[c]);
    hp[c] = decode_ordered(ordered[channels + c]);
  }
  return py::make_tuple(lo, hi, nf[0], nf[1], nf[2]);
}

}  // namespace

void init_minmax_bindings(py::module_& m) {
  m.def("minmax_once", &minmax_once, py::arg("ptr"), py::arg("dtype"), py::arg("outer"), py::arg("channels"),
        py::arg("inner"), py::arg("stream"), py::arg("device"),
        "One-shot min/max in the cached workspace (no allocation); waits");
  py::class_<MinMaxState>(m, "MinMaxState")
      .def(py::init<int64_t, int>(), py::arg("channels"), py::arg("device"))
      .def("reset", &MinMaxState::reset, py::arg("stream"))
      .def("update", &MinMaxState::update, py::arg("ptr"), py::arg("dtype"), py::arg("outer"),
           py::arg("inner"), py::arg("stream"))
      .def("read", &MinMaxState::read, py::arg("stream"))
      .def("load", &MinMaxState::load, py::arg("min_ordered"), py::arg("max_ordered"), py::arg("nonfinite"),
           py::arg("stream"))
      .def_property_readonly("channels", &MinMaxState::channels)
      .def_property_readonly("device", &MinMaxState::device);
}

}  // namespace trtcal
