// Streaming histogram state and the one-shot fixed-range histogram.
#include <pybind11/numpy.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "common.h"
#include "kernels/histogram.h"
#include "kernels/histogram_staging.h"
#include "kernels/minmax.h"
#include "stream_order.h"
#include "workspace.h"

namespace trtcal {
namespace {

float bits_to_float(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}
uint32_t float_to_bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

// The host form of a histogram state (HistogramState.read and histogram_once).
py::dict state_to_dict(const HistogramState& s, py::object counts) {
  py::dict d;
  d["bins"] = s.nbins;
  d["signed"] = bool(s.is_signed);
  d["exponent"] = s.has_range ? py::object(py::int_(s.exponent)) : py::object(py::none());
  d["amax"] = bits_to_float(s.amax_bits);
  const bool any = s.min_ordered != 0xffffffffu;
  d["min"] = any ? py::object(py::float_(ordered_to_float_host(s.min_ordered))) : py::object(py::none());
  d["max"] = any ? py::object(py::float_(ordered_to_float_host(s.max_ordered))) : py::object(py::none());
  d["finite"] = s.finite;
  d["nan"] = s.nonfinite[0];
  d["posinf"] = s.nonfinite[1];
  d["neginf"] = s.nonfinite[2];
  d["counts"] = counts;
  return d;
}

class HistogramStateBinding {
 public:
  HistogramStateBinding(int32_t nbins, bool is_signed, int device, uintptr_t stream)
      : nbins_(nbins),
        signed_(is_signed),
        device_(device),
        order_(device),
        state_(sizeof(HistogramState), device),
        counts_(sizeof(unsigned long long) * (size_t)nbins, device),
        scratch_(sizeof(unsigned long long) * (size_t)nbins, device) {
    TRTCAL_CHECK_ARG(nbins >= 1 && nbins <= kMaxHistogramBins,
                     "trtcal: bins must be in [1, 2^24], got " + std::to_string(nbins));
    TRTCAL_CHECK_ARG(!is_signed || nbins % 2 == 0,
                     "trtcal: a signed histogram needs an even number of bins, got " + std::to_string(nbins));
    DeviceGuard g(device_);
    order_.before(stream);
    TRTCAL_CHECK_CUDA(histogram_state_init(state(), counts(), nbins_, signed_, as_stream(stream)));
    order_.after(stream);
  }

  void update(uintptr_t x, int dtype, size_t n, uintptr_t stream) {
    const DType t = as_float_dtype(dtype);
    py::gil_scoped_release nogil;
    DeviceGuard g(device_);
    order_.before(stream);
    TRTCAL_CHECK_CUDA(histogram_update(as_ptr<const void>(x), t, n, state(), counts(), scratch(), nbins_,
                                       signed_, as_stream(stream)));
    order_.after(stream);
  }

  void merge(HistogramStateBinding& other, uintptr_t stream) {
    TRTCAL_CHECK_ARG(other.nbins_ == nbins_ && other.signed_ == signed_,
                     "trtcal: cannot merge histograms with different bins or sign");
    TRTCAL_CHECK_ARG(other.device_ == device_, "trtcal: cannot merge histograms on different devices");
    py::gil_scoped_release nogil;
    DeviceGuard g(device_);
    order_.before(stream);
    other.order_.before(stream);
    TRTCAL_CHECK_CUDA(histogram_merge(state(), counts(), other.state(), other.counts(), scratch(), nbins_,
                                      as_stream(stream)));
    order_.after(stream);
    other.order_.after(stream);
  }

  // Host copy of everything (waits for the stream).
  py::dict read(uintptr_t stream) {
    HistogramState s{};
    py::array_t<int64_t> counts(nbins_);
    {
      py::gil_scoped_release nogil;
      DeviceGuard g(device_);
      order_.before(stream);
      cudaStream_t cs = as_stream(stream);
      TRTCAL_CHECK_CUDA(cudaMemcpyAsync(&s, state(), sizeof(s), cudaMemcpyDeviceToHost, cs));
      TRTCAL_CHECK_CUDA(cudaMemcpyAsync(counts.mutable_data(), this->counts(), 8 * (size_t)nbins_,
                                        cudaMemcpyDeviceToHost, cs));
      TRTCAL_CHECK_CUDA(cudaStreamSynchronize(cs));
    }
    return state_to_dict(s, counts);
  }

  void load(int exponent, bool has_range, float amax, py::object vmin, py::object vmax, uint64_t finite,
            uint64_t nan, uint64_t posinf, uint64_t neginf, py::array_t<int64_t, py::array::c_style> counts,
            uintptr_t stream) {
    TRTCAL_CHECK_ARG(counts.size() == nbins_, "trtcal: histogram state has the wrong number of bins");
    HistogramState s{};
    s.nbins = nbins_;
    s.is_signed = signed_;
    s.has_range = has_range;
    s.exponent = has_range ? exponent : 0;
    s.amax_bits = float_to_bits(amax);
    s.min_ordered = vmin.is_none() ? 0xffffffffu : float_to_ordered_host(vmin.cast<float>());
    s.max_ordered = vmax.is_none() ? 0u : float_to_ordered_host(vmax.cast<float>());
    s.finite = finite;
    s.nonfinite[0] = nan;
    s.nonfinite[1] = posinf;
    s.nonfinite[2] = neginf;
    py::gil_scoped_release nogil;
    DeviceGuard g(device_);
    order_.before(stream);
    cudaStream_t cs = as_stream(stream);
    TRTCAL_CHECK_CUDA(cudaMemcpyAsync(state(), &s, sizeof(s), cudaMemcpyHostToDevice, cs));
    TRTCAL_CHECK_CUDA(
        cudaMemcpyAsync(this->counts(), counts.data(), 8 * (size_t)nbins_, cudaMemcpyHostToDevice, cs));
    TRTCAL_CHECK_CUDA(cudaStreamSynchronize(cs));
    order_.after(stream);
  }

  // Device pointers for batched launches.
  HistogramState* state_ptr() const { return state(); }
  unsigned long long* counts_dev() const { return counts(); }
  unsigned long long* scratch_dev() const { return scratch(); }
  StreamOrder& order() { return order_; }

  // Device pointer to the int64 counts (for kernels that read them in place).
  uintptr_t counts_ptr() const { return reinterpret_cast<uintptr_t>(counts_.data()); }
  int32_t nbins() const { return nbins_; }
  bool is_signed() const { return signed_; }
  int device() const { return device_; }

 private:
  HistogramState* state() const { return static_cast<HistogramState*>(state_.data()); }
  unsigned long long* counts() const { return static_cast<unsigned long long*>(counts_.data()); }
  unsigned long long* scratch() const { return static_cast<unsigned long long*>(scratch_.data()); }
  int32_t nbins_;
  bool signed_;
  int device_;
  StreamOrder order_;
  DeviceBuffer state_, counts_, scratch_;
};

// The descriptor staging ring of each device (kernels/histogram_staging.h).
HistogramStagingRing& staging_for(int device) {
  // never destroyed: the CUDA runtime may be gone at process exit
  static auto* all = new std::vector<std::unique_ptr<HistogramStagingRing>>();
  if ((int)all->size() <= device) all->resize(device + 1);
  if (!(*all)[device]) (*all)[device] = std::make_unique<HistogramStagingRing>(device);
  return *(*all)[device];
}

// Adds one batch to each of many histograms (same device) in three launches on `stream`.
void update_many(py::list states, py::list ptrs, py::list dtypes, py::list sizes, uintptr_t stream,
                 int device) {
  const size_t n = states.size();
  TRTCAL_CHECK_ARG(ptrs.size() == n && dtypes.size() == n && sizes.size() == n,
                   "trtcal: update_many needs one pointer, dtype and size per state");
  if (n == 0) return;
  std::vector<HistogramStateBinding*> hs(n);
  for (size_t i = 0; i < n; ++i) {
    hs[i] = states[i].cast<HistogramStateBinding*>();
    TRTCAL_CHECK_ARG(hs[i]->device() == device, "trtcal: update_many states must live on one device");
  }
  if (n == 1) {  // one tensor (hooks reading an activation before an in-place op changes it):
    // the single-tensor kernels, with no descriptor upload
    hs[0]->update(ptrs[0].cast<uintptr_t>(), dtypes[0].cast<int>(), sizes[0].cast<size_t>(), stream);
    return;
  }
  DeviceGuard g(device);
  HistogramStagingRing& st = staging_for(device);
  HistogramBatchItem* items = nullptr;
  HistogramBatchItem* items_dev = nullptr;
  TRTCAL_CHECK_CUDA(st.take(n, &items, &items_dev));
  for (size_t i = 0; i < n; ++i) {
    HistogramBatchItem& it = items[i];
    it = HistogramBatchItem{};
    it.x = reinterpret_cast<const void*>(ptrs[i].cast<uintptr_t>());
    it.n = sizes[i].cast<unsigned long long>();
    it.dtype = static_cast<int32_t>(as_float_dtype(dtypes[i].cast<int>()));
    it.state = hs[i]->state_ptr();
    it.counts = hs[i]->counts_dev();
    it.scratch = hs[i]->scratch_dev();
    it.nbins = hs[i]->nbins();
    it.is_signed = hs[i]->is_signed();
    hs[i]->order().before(stream);
  }
  {
    py::gil_scoped_release nogil;
    TRTCAL_CHECK_CUDA(histogram_update_many(items, (int32_t)n, items_dev, as_stream(stream)));
    TRTCAL_CHECK_CUDA(st.copied(as_stream(stream)));
  }
  auto done = std::make_shared<SharedEvent>(device);
  done->record(stream);
  for (size_t i = 0; i < n; ++i) hs[i]->order().after_shared(stream, done);
}

py::dict read_states(py::list states, uintptr_t stream, int device) {
  const size_t n = states.size();
  std::vector<HistogramStateBinding*> hs(n);
  for (size_t i = 0; i < n; ++i) {
    hs[i] = states[i].cast<HistogramStateBinding*>();
    TRTCAL_CHECK_ARG(hs[i]->device() == device,
                     "trtcal: histogram_read_states: states must live on one device");
  }
  std::vector<HistogramState> st(n);
  if (n) {
    py::gil_scoped_release nogil;
    DeviceGuard g(device);
    for (size_t i = 0; i < n; ++i) hs[i]->order().before(stream);
    Workspace& ws = Workspace::get(device);
    std::lock_guard<std::mutex> lock(ws.mutex());
    const size_t ptr_bytes = align256(sizeof(void*) * n);
    const size_t st_bytes = sizeof(HistogramState) * n;
    char* d = static_cast<char*>(ws.device(ptr_bytes + st_bytes));
    char* h = static_cast<char*>(ws.pinned(ptr_bytes + st_bytes));
    auto** src = reinterpret_cast<const HistogramState**>(h);
    for (size_t i = 0; i < n; ++i) src[i] = hs[i]->state_ptr();
    cudaStream_t s = as_stream(stream);
    TRTCAL_CHECK_CUDA(cudaMemcpyAsync(d, h, sizeof(void*) * n, cudaMemcpyHostToDevice, s));
    TRTCAL_CHECK_CUDA(histogram_gather_states(reinterpret_cast<const HistogramState* const*>(d),
                                              reinterpret_cast<HistogramState*>(d + ptr_bytes), (int32_t)n,
                                              s));
    TRTCAL_CHECK_CUDA(cudaMemcpyAsync(h + ptr_bytes, d + ptr_bytes, st_bytes, cudaMemcpyDeviceToHost, s));
    TRTCAL_CHECK_CUDA(cudaStreamSynchronize(s));
    std::memcpy(st.data(), h + ptr_bytes, st_bytes);
  }
  py::array_t<int32_t> exponent(n);
  py::array_t<bool> has_range(n);
  py::array_t<float> amax(n);
  py::array_t<double> vmin(n), vmax(n);
  py::array_t<uint64_t> finite(n), nan(n), posinf(n), neginf(n);
  for (size_t i = 0; i < n; ++i) {
    const HistogramState& s = st[i];
    exponent.mutable_at(i) = s.exponent;
    has_range.mutable_at(i) = s.has_range != 0;
    amax.mutable_at(i) = bits_to_float(s.amax_bits);
    const bool any = s.min_ordered != 0xffffffffu;
    vmin.mutable_at(i) = any ? ordered_to_float_host(s.min_ordered) : NAN;
    vmax.mutable_at(i) = any ? ordered_to_float_host(s.max_ordered) : NAN;
    finite.mutable_at(i) = s.finite;
    nan.mutable_at(i) = s.nonfinite[0];
    posinf.mutable_at(i) = s.nonfinite[1];
    neginf.mutable_at(i) = s.nonfinite[2];
  }
  py::dict d;
  d["exponent"] = exponent;
  d["has_range"] = has_range;
  d["amax"] = amax;
  d["min"] = vmin;
  d["max"] = vmax;
  d["finite"] = finite;
  d["nan"] = nan;
  d["posinf"] = posinf;
  d["neginf"] = neginf;
  return d;
}

}  // namespace

void init_histogram_bindings(py::module_& m) {
  m.def("histogram_update_many", &update_many, py::arg("states"), py::arg("ptrs"), py::arg("dtypes"),
        py::arg("sizes"), py::arg("stream"), py::arg("device"),
        "Adds one batch to each of many histograms in three launches (queued; does not wait)");
  py::class_<HistogramStateBinding>(m, "HistogramState")
      .def(py::init<int32_t, bool, int, uintptr_t>(), py::arg("bins"), py::arg("signed"), py::arg("device"),
           py::arg("stream"))
      .def("update", &HistogramStateBinding::update, py::arg("ptr"), py::arg("dtype"), py::arg("n"),
           py::arg("stream"))
      .def("merge", &HistogramStateBinding::merge, py::arg("other"), py::arg("stream"))
      .def("read", &HistogramStateBinding::read, py::arg("stream"))
      .def("load", &HistogramStateBinding::load, py::arg("exponent"), py::arg("has_range"), py::arg("amax"),
           py::arg("min"), py::arg("max"), py::arg("finite"), py::arg("nan"), py::arg("posinf"),
           py::arg("neginf"), py::arg("counts"), py::arg("stream"))
      .def_property_readonly("counts_ptr", &HistogramStateBinding::counts_ptr)
      .def_property_readonly("bins", &HistogramStateBinding::nbins)
      .def_property_readonly("signed", &HistogramStateBinding::is_signed)
      .def_property_readonly("device", &HistogramStateBinding::device);

  m.def("_histogram_set_replicas", &histogram_set_replicas, "benchmarking knob (0 = automatic)");
  m.def("_histogram_set_blocks_per_sm", &histogram_set_blocks_per_sm, "benchmarking knob (0 = automatic)");
  // One-shot histogram over a fixed range; returns (counts int64[bins], stats uint64[4] =
  // outside, NaN, +Inf, -Inf). Waits for the stream.
  m.def("histogram_fixed", [](uintptr_t x, int dtype, size_t n, double range, int32_t nbins, bool is_signed,
                              uintptr_t stream, int device) {
    const DType t = as_float_dtype(dtype);
    TRTCAL_CHECK_ARG(nbins >= 1 && nbins <= kMaxHistogramBins, "trtcal: bins must be in [1, 2^24]");
    TRTCAL_CHECK_ARG(!is_signed || nbins % 2 == 0, "trtcal: a signed histogram needs an even number of bins");
    py::array_t<int64_t> counts(nbins);
    py::array_t<uint64_t> stats(4);
    {
      py::gil_scoped_release nogil;
      DeviceGuard g(device);
      Workspace& ws = Workspace::get(device);
      std::lock_guard<std::mutex> lock(ws.mutex());
      const size_t bytes = 8 * ((size_t)nbins + 4);
      auto* c = static_cast<unsigned long long*>(ws.device(bytes));
      auto* h = static_cast<unsigned long long*>(ws.pinned(bytes));
      cudaStream_t s = as_stream(stream);
      TRTCAL_CHECK_CUDA(cudaMemsetAsync(c, 0, bytes, s));
      TRTCAL_CHECK_CUDA(
          histogram_fixed_range(as_ptr<const void>(x), t, n, range, nbins, is_signed, c, c + nbins, s));
      TRTCAL_CHECK_CUDA(cudaMemcpyAsync(h, c, bytes, cudaMemcpyDeviceToHost, s));
      TRTCAL_CHECK_CUDA(cudaStreamSynchronize(s));
      std::memcpy(counts.mutable_data(), h, 8 * (size_t)nbins);
      std::memcpy(stats.mutable_data(), h + nbins, 32);
    }
    return py::make_tuple(counts, stats);
  });
  // One-shot streaming-grid histogram (what a fresh HistogramState gives after one update),
  // in the cached workspace: no allocation, one copy back; waits. Returns HistogramState.read's dict.
  m.def(
      "histogram_once",
      [](uintptr_t x, int dtype, size_t n, int32_t nbins, bool is_signed, uintptr_t stream, int device) {
        const DType t = as_float_dtype(dtype);
        TRTCAL_CHECK_ARG(nbins >= 1 && nbins <= kMaxHistogramBins, "trtcal: bins must be in [1, 2^24]");
        TRTCAL_CHECK_ARG(!is_signed || nbins % 2 == 0,
                         "trtcal: a signed histogram needs an even number of bins");
        py::array_t<int64_t> counts(nbins);
        HistogramState st{};
        {
          py::gil_scoped_release nogil;
          DeviceGuard g(device);
          Workspace& ws = Workspace::get(device);
          std::lock_guard<std::mutex> lock(ws.mutex());
          const size_t counts_off = align256(sizeof(HistogramState));
          const size_t scratch_off = align256(counts_off + 8 * (size_t)nbins);
          char* d = static_cast<char*>(ws.device(scratch_off + 8 * (size_t)nbins));
          char* h = static_cast<char*>(ws.pinned(counts_off + 8 * (size_t)nbins));
          auto* state = reinterpret_cast<HistogramState*>(d);
          auto* c = reinterpret_cast<unsigned long long*>(d + counts_off);
          auto* scratch = reinterpret_cast<unsigned long long*>(d + scratch_off);
          cudaStream_t s = as_stream(stream);
          TRTCAL_CHECK_CUDA(histogram_state_init(state, c, nbins, is_signed, s));
          TRTCAL_CHECK_CUDA(
              histogram_update(as_ptr<const void>(x), t, n, state, c, scratch, nbins, is_signed, s));
          TRTCAL_CHECK_CUDA(cudaMemcpyAsync(h, d, counts_off + 8 * (size_t)nbins, cudaMemcpyDeviceToHost, s));
          TRTCAL_CHECK_CUDA(cudaStreamSynchronize(s));
          std::memcpy(&st, h, sizeof(st));
          std::memcpy(counts.mutable_data(), h + counts_off, 8 * (size_t)nbins);
        }
        return state_to_dict(st, counts);
      },
      py::arg("ptr"), py::arg("dtype"), py::arg("n"), py::arg("bins"), py::arg("signed"), py::arg("stream"),
      py::arg("device"));
  // The states (not the counts) of many histograms on one device in one gather and one copy;
  // waits. Returns arrays (exponent int32, has_range bool, amax float32, min/max float64 (NaN
  // when no finite value), finite/nan/posinf/neginf uint64), one entry per state.
  m.def("histogram_read_states", &read_states, py::arg("states"), py::arg("stream"), py::arg("device"));
}

}  // namespace trtcal
