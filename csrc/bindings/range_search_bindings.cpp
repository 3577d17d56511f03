// Range search (entropy / percentile / MSE over many histograms) and exact percentile.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "common.h"
#include "workspace.h"
#include "kernels/range_search.h"
#include "kernels/select.h"

namespace trtcal {
namespace {

template <typename T>
using carray = py::array_t<T, py::array::c_style | py::array::forcecast>;

// A stream owned by trtcal, for work on host inputs that must not touch the caller's
// streams (created non-blocking, destroyed with the object).
class PrivateStream {
 public:
  explicit PrivateStream(int device) : device_(device) {
    DeviceGuard g(device);
    TRTCAL_CHECK_CUDA(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking));
  }
  ~PrivateStream() {
    DeviceGuard g(device_);
    cudaStreamDestroy(s_);
  }
  PrivateStream(const PrivateStream&) = delete;
  PrivateStream& operator=(const PrivateStream&) = delete;
  uintptr_t handle() const { return reinterpret_cast<uintptr_t>(s_); }

 private:
  int device_;
  cudaStream_t s_{};
};

// The launch of one method over many tensors, as built on the host (kernels/range_search.h).
using PlanLayout = RangeSearchLayout;

PlanLayout build_layout(int device, int method, int levels, bool zero_bin_rule, bool tie_last, int per_bin,
                        int max_bound, int threads, double tol, double eps, const carray<uint64_t>& counts_ptrs,
                        const carray<int32_t>& nbins, const carray<uint64_t>& edges_ptrs,
                        const carray<double>& linspace, const carray<double>& grid, const carray<double>& targets,
                        const carray<int32_t>& cands, int group, int chunk,
                        const int64_t* host_counts_off = nullptr) {
  const py::ssize_t T = nbins.size();
  TRTCAL_CHECK_ARG(counts_ptrs.size() == T && edges_ptrs.size() == T, "trtcal: one pointer per tensor");
  TRTCAL_CHECK_ARG(linspace.size() == 3 * T && grid.size() == 2 * T && targets.size() == 2 * T &&
                       cands.size() == 3 * T,
                   "trtcal: range-search descriptor arrays have the wrong sizes");
  TRTCAL_CHECK_ARG(method >= kRangeEntropyProportional && method <= kRangePercentile,
                   "trtcal: unknown range-search method " + std::to_string(method));
  TRTCAL_CHECK_ARG(threads >= 32 && threads <= 1024 && threads % 32 == 0,
                   "trtcal: threads must be a multiple of 32 in [32, 1024]");
  TRTCAL_CHECK_ARG(levels >= 1 && max_bound >= 1 && per_bin >= 1, "trtcal: levels, max_bound, per_bin must be >= 1");
  TRTCAL_CHECK_ARG(levels <= (1 << 24), "trtcal: levels must be <= 2^24 on the GPU, got " + std::to_string(levels));
  TRTCAL_CHECK_ARG(group == 0 || (group >= 1 && group <= 32 && (group & (group - 1)) == 0),
                   "trtcal: group must be 0 (auto) or a power of two in [1, 32], got " + std::to_string(group));
  TRTCAL_CHECK_ARG(chunk >= 0 && chunk <= kRangeMaxChunk,
                   "trtcal: chunk must be 0 (auto) or in [1, " + std::to_string(kRangeMaxChunk) + "], got " +
                       std::to_string(chunk));
  PlanLayout L;
  L.p = RangeParams{method, levels, zero_bin_rule, tie_last, per_bin, max_bound, threads, 1, 1, 0, tol, eps};
  L.ntensors = (int32_t)T;
  const uint64_t* cp = counts_ptrs.data();
  const uint64_t* ep = edges_ptrs.data();
  const int32_t* nb = nbins.data();
  const double* lin = linspace.data();
  const double* gr = grid.data();
  const double* tg = targets.data();
  const int32_t* cd = cands.data();
  L.desc.resize(T);
  for (py::ssize_t t = 0; t < T; ++t) {
    RangeTensor& d = L.desc[t];
    d.counts = reinterpret_cast<const long long*>(cp[t]);
    d.edges = reinterpret_cast<const double*>(ep[t]);
    d.lo = lin[3 * t];
    d.step = lin[3 * t + 1];
    d.hi = lin[3 * t + 2];
    d.a0 = gr[2 * t];
    d.h = gr[2 * t + 1];
    d.target0 = tg[2 * t];
    d.target1 = tg[2 * t + 1];
    d.nbins = nb[t];
    d.first = cd[3 * t];
    d.stride = cd[3 * t + 1];
    d.ncand = cd[3 * t + 2];
    TRTCAL_CHECK_ARG(d.nbins >= 1 && (d.counts || (host_counts_off && host_counts_off[t] >= 0)),
                     "trtcal: every tensor needs counts and >= 1 bin");
    TRTCAL_CHECK_ARG(method == kRangePercentile || (d.ncand >= 1 && d.stride >= 1 && d.first >= 0),
                     "trtcal: every tensor needs >= 1 candidate");
  }
  TRTCAL_CHECK_CUDA(range_search_layout(&L, device, group, chunk));  // shape, blocks, curve offsets
  const int32_t limit = range_search_max_bins(method);
  TRTCAL_CHECK_ARG(!limit || L.p.max_bins <= limit,
                   "trtcal: this range-search method takes at most " + std::to_string(limit) +
                       " bins per histogram on the GPU, got " + std::to_string(L.p.max_bins));
  return L;
}

void launch_layout(const PlanLayout& L, char* base, cudaStream_t stream) {
  const cudaError_t err = range_search(reinterpret_cast<RangeTensor*>(base), L.ntensors,
                                       reinterpret_cast<int32_t*>(base + L.map_off()), L.nblocks, L.p,
                                       reinterpret_cast<double*>(base + L.curve_off()),
                                       reinterpret_cast<RangeChoice*>(base + L.out_off()),
                                       reinterpret_cast<unsigned int*>(base + L.cnt_off()), stream);
  if (err != cudaSuccess) {
    const RangeParams& p = L.p;
    throw std::runtime_error(
        std::string("trtcal: range search launch failed: ") + cudaGetErrorName(err) + " (" +
        cudaGetErrorString(err) + "); method " + std::to_string(p.method) + ", tensors " +
        std::to_string(L.ntensors) + ", blocks " + std::to_string(L.nblocks) + ", threads " +
        std::to_string(p.threads) + ", group " + std::to_string(p.group) + ", chunk " +
        std::to_string(p.chunk) + ", levels " + std::to_string(p.levels) + ", max_bins " +
        std::to_string(p.max_bins) + ", shared bytes " + std::to_string(range_search_smem(p)));
  }
}

// (index int32[T], index2 int32[T], value float64[T], curve float64[...] or None) from the
// host copies of the choices and the curve.
py::tuple choices_to_python(const RangeChoice* out, int32_t T, const double* curve, long long curve_len,
                            bool with_curve) {
  py::array_t<int32_t> index(T), index2(T);
  py::array_t<double> value(T);
  int32_t* ip = index.mutable_data();
  int32_t* i2 = index2.mutable_data();
  double* vp = value.mutable_data();
  for (int32_t t = 0; t < T; ++t) {
    ip[t] = out[t].index;
    i2[t] = out[t].index2;
    vp[t] = out[t].value;
  }
  py::object c = py::none();
  if (with_curve) {
    py::array_t<double> a(curve_len);
    if (curve_len) std::memcpy(a.mutable_data(), curve, sizeof(double) * curve_len);
    c = a;
  }
  return py::make_tuple(index, index2, value, c);
}

// One method over many tensors: descriptors uploaded once, then launch() (enqueue only)
// and read() (waits) as often as wanted. (A single search: range_search_once.)
class RangeSearchPlan {
 public:
  RangeSearchPlan(int device, int method, int levels, bool zero_bin_rule, bool tie_last, int per_bin,
                  int max_bound, int threads, double tol, double eps, carray<uint64_t> counts_ptrs,
                  carray<int32_t> nbins, carray<uint64_t> edges_ptrs, carray<double> linspace,
                  carray<double> grid, carray<double> targets, carray<int32_t> cands, int group, int chunk)
      : device_(device),
        L_(build_layout(device, method, levels, zero_bin_rule, tie_last, per_bin, max_bound, threads, tol, eps,
                        counts_ptrs, nbins, edges_ptrs, linspace, grid, targets, cands, group, chunk)) {
    buf_.reset(new DeviceBuffer(L_.total(), device));
    char* base = static_cast<char*>(buf_->data());
    DeviceGuard g(device);
    TRTCAL_CHECK_CUDA(cudaMemcpy(base, L_.desc.data(), sizeof(RangeTensor) * L_.desc.size(), cudaMemcpyHostToDevice));
    if (!L_.block_tensor.empty())
      TRTCAL_CHECK_CUDA(cudaMemcpy(base + L_.map_off(), L_.block_tensor.data(),
                                   sizeof(int32_t) * L_.block_tensor.size(), cudaMemcpyHostToDevice));
    TRTCAL_CHECK_CUDA(cudaMemset(base + L_.cnt_off(), 0, sizeof(unsigned int) * L_.desc.size()));
    // cudaMemcpy from pageable memory and cudaMemset may return before the device has the data,
    // and both are ordered on the legacy default stream only: a launch on a non-blocking stream
    // could read stale descriptors or counters (seen once as 4 wrong tensors of 2100 with 8
    // processes sharing the GPU). Wait for them here, once per plan.
    TRTCAL_CHECK_CUDA(cudaStreamSynchronize(cudaStreamLegacy));
  }

  void launch(uintptr_t stream) {
    py::gil_scoped_release nogil;
    DeviceGuard g(device_);
    launch_layout(L_, static_cast<char*>(buf_->data()), as_stream(stream));
  }

  // (index int32[T], index2 int32[T], value float64[T], curve float64[...] or None). Waits.
  py::tuple read(uintptr_t stream, bool with_curve) {
    std::vector<RangeChoice> out(L_.ntensors);
    std::vector<double> c(with_curve ? L_.curve_len : 0);
    {
      py::gil_scoped_release nogil;
      DeviceGuard g(device_);
      cudaStream_t s = as_stream(stream);
      char* base = static_cast<char*>(buf_->data());
      TRTCAL_CHECK_CUDA(cudaMemcpyAsync(out.data(), base + L_.out_off(), sizeof(RangeChoice) * L_.ntensors,
                                        cudaMemcpyDeviceToHost, s));
      if (with_curve && L_.curve_len)
        TRTCAL_CHECK_CUDA(cudaMemcpyAsync(c.data(), base + L_.curve_off(), sizeof(double) * L_.curve_len,
                                          cudaMemcpyDeviceToHost, s));
      TRTCAL_CHECK_CUDA(cudaStreamSynchronize(s));
    }
    return choices_to_python(out.data(), L_.ntensors, c.data(), L_.curve_len, with_curve);
  }

  int32_t blocks() const { return L_.p.method == kRangePercentile ? L_.ntensors : L_.nblocks; }
  py::tuple shape() const { return py::make_tuple(L_.p.threads, L_.p.group, L_.p.chunk); }

 private:
  int device_;
  PlanLayout L_;
  std::unique_ptr<DeviceBuffer> buf_;
};

// One search, start to end, in the device's cached workspace: descriptors (and the host
// histograms, packed: `host_counts` int64 and `host_edges` float64, tensor t's at element
// offset host_counts_off[t] / host_edges_off[t], -1 for none: then counts_ptrs[t] /
// edges_ptrs[t] are device pointers) go through pinned memory in one asynchronous upload on
// `stream`, then the launch and one copy back; waits for the stream. No allocation (once the
// workspace has grown), no wait on the legacy stream. Returns what RangeSearchPlan.read does.
py::tuple range_search_once(int device, int method, int levels, bool zero_bin_rule, bool tie_last, int per_bin,
                            int max_bound, int threads, double tol, double eps, carray<uint64_t> counts_ptrs,
                            carray<int32_t> nbins, carray<uint64_t> edges_ptrs, carray<double> linspace,
                            carray<double> grid, carray<double> targets, carray<int32_t> cands, int group,
                            int chunk, carray<int64_t> host_counts, carray<int64_t> host_counts_off,
                            carray<double> host_edges, carray<int64_t> host_edges_off, uintptr_t stream,
                            bool with_curve) {
  const py::ssize_t T = nbins.size();
  TRTCAL_CHECK_ARG(host_counts_off.size() == T && host_edges_off.size() == T,
                   "trtcal: one host offset per tensor (-1: none)");
  const int64_t* hco = host_counts_off.data();
  const int64_t* heo = host_edges_off.data();
  for (py::ssize_t t = 0; t < T; ++t) {
    TRTCAL_CHECK_ARG(hco[t] < 0 || hco[t] + nbins.data()[t] <= host_counts.size(),
                     "trtcal: host counts offset out of range");
    TRTCAL_CHECK_ARG(heo[t] < 0 || heo[t] + nbins.data()[t] + 1 <= host_edges.size(),
                     "trtcal: host edges offset out of range");
  }
  PlanLayout L = build_layout(device, method, levels, zero_bin_rule, tie_last, per_bin, max_bound, threads, tol,
                              eps, counts_ptrs, nbins, edges_ptrs, linspace, grid, targets, cands, group, chunk, hco);
  const size_t hc_off = align256(L.total());  // after the plan's own parts
  const size_t hc_bytes = sizeof(int64_t) * (size_t)host_counts.size();
  const size_t he_off = align256(hc_off + hc_bytes);
  const size_t he_bytes = sizeof(double) * (size_t)host_edges.size();
  const size_t down_out = sizeof(RangeChoice) * L.ntensors;
  const size_t down_curve = with_curve ? sizeof(double) * (size_t)L.curve_len : 0;
  std::vector<RangeChoice> out(L.ntensors);
  std::vector<double> curve(with_curve ? L.curve_len : 0);
  const int64_t* hc = host_counts.data();
  const double* he = host_edges.data();
  {
    py::gil_scoped_release nogil;
    DeviceGuard g(device);
    Workspace& ws = Workspace::get(device);
    std::lock_guard<std::mutex> lock(ws.mutex());
    char* base = static_cast<char*>(ws.device(he_off + he_bytes));
    for (py::ssize_t t = 0; t < T; ++t) {
      if (hco[t] >= 0) L.desc[t].counts = reinterpret_cast<const long long*>(base + hc_off) + hco[t];
      if (heo[t] >= 0) L.desc[t].edges = reinterpret_cast<const double*>(base + he_off) + heo[t];
    }
    // host staging: [desc | map] at 0, the host histograms at their device offsets
    const size_t up = L.cnt_off();
    char* host = static_cast<char*>(ws.pinned(std::max(he_off + he_bytes, align256(down_out) + down_curve)));
    std::memcpy(host, L.desc.data(), sizeof(RangeTensor) * L.desc.size());
    if (!L.block_tensor.empty())
      std::memcpy(host + L.map_off(), L.block_tensor.data(), sizeof(int32_t) * L.block_tensor.size());
    cudaStream_t s = as_stream(stream);
    TRTCAL_CHECK_CUDA(cudaMemcpyAsync(base, host, up, cudaMemcpyHostToDevice, s));
    if (hc_bytes) {
      std::memcpy(host + hc_off, hc, hc_bytes);
      TRTCAL_CHECK_CUDA(cudaMemcpyAsync(base + hc_off, host + hc_off, hc_bytes, cudaMemcpyHostToDevice, s));
    }
    if (he_bytes) {
      std::memcpy(host + he_off, he, he_bytes);
      TRTCAL_CHECK_CUDA(cudaMemcpyAsync(base + he_off, host + he_off, he_bytes, cudaMemcpyHostToDevice, s));
    }
    TRTCAL_CHECK_CUDA(cudaMemsetAsync(base + L.cnt_off(), 0, sizeof(unsigned int) * L.desc.size(), s));
    launch_layout(L, base, s);
    // the pinned buffer is reused for the results: the uploads before them on `s` are done
    TRTCAL_CHECK_CUDA(cudaMemcpyAsync(host, base + L.out_off(), down_out, cudaMemcpyDeviceToHost, s));
    if (down_curve)
      TRTCAL_CHECK_CUDA(cudaMemcpyAsync(host + align256(down_out), base + L.curve_off(), down_curve,
                                        cudaMemcpyDeviceToHost, s));
    TRTCAL_CHECK_CUDA(cudaStreamSynchronize(s));
    std::memcpy(out.data(), host, down_out);
    if (down_curve) std::memcpy(curve.data(), host + align256(down_out), down_curve);
  }
  return choices_to_python(out.data(), L.ntensors, curve.data(), L.curve_len, with_curve);
}

// Per-thread, per-device scratch of the select passes, reused across calls so an exact
// percentile pays no cudaMalloc/cudaFree pair (cudaFree waits for the device) per pass:
// a histogram of <= 2^12 counts, the 2^16-bucket sample histogram, the partition's 4 counts
// and 2 bounds, and the compaction buffer (grown on demand, kept; at most n/16 keys of the
// largest array selected on the thread). Never freed: it may outlive the CUDA runtime at
// process exit. Every call that uses it waits for its stream before returning.
struct SelectScratch {
  static constexpr size_t kHist = sizeof(unsigned long long) << 12;
  static constexpr size_t kHist16 = sizeof(unsigned int) << 16;
  static constexpr size_t kCounts = 4 * sizeof(unsigned long long);
  static constexpr size_t kBounds = 4 * sizeof(uint32_t);  // 2 used; 16 bytes keep what follows aligned
  static constexpr int kMaxRanks = 64;
  static constexpr size_t kRanks = kMaxRanks * sizeof(SelectRank);
  static constexpr size_t kResolveHist = sizeof(unsigned long long) * 4096 * kSelectMaxRanks;
  static constexpr size_t kSmall = kHist + kHist16 + kCounts + kBounds + kRanks + kResolveHist;
  DeviceBuffer* small = nullptr;
  DeviceBuffer* keys = nullptr;

  char* at(size_t offset) const { return static_cast<char*>(small->data()) + offset; }
  unsigned long long* hist() const { return reinterpret_cast<unsigned long long*>(at(0)); }
  unsigned int* hist16() const { return reinterpret_cast<unsigned int*>(at(kHist)); }
  unsigned long long* counts() const { return reinterpret_cast<unsigned long long*>(at(kHist + kHist16)); }
  uint32_t* bounds() const { return reinterpret_cast<uint32_t*>(at(kHist + kHist16 + kCounts)); }
  SelectRank* ranks() const { return reinterpret_cast<SelectRank*>(at(kHist + kHist16 + kCounts + kBounds)); }
  unsigned long long* resolve_hist() const {
    return reinterpret_cast<unsigned long long*>(at(kHist + kHist16 + kCounts + kBounds + kRanks));
  }
  uint32_t* key_buffer(size_t count, int device) {
    const size_t nbytes = std::max<size_t>(count, 1) * sizeof(uint32_t);
    if (!keys || keys->nbytes() < nbytes) {
      delete keys;
      keys = nullptr;
      keys = new DeviceBuffer(nbytes, device);
    }
    return static_cast<uint32_t*>(keys->data());
  }
};

SelectScratch& select_scratch(int device) {
  thread_local std::vector<SelectScratch> cache;
  if ((int)cache.size() <= device) cache.resize(device + 1);
  SelectScratch& s = cache[device];
  if (!s.small) {
    s.small = new DeviceBuffer(SelectScratch::kSmall, device);
    TRTCAL_CHECK_CUDA(cudaMemset(s.small->data(), 0, SelectScratch::kSmall));  // select_resolve keeps its part zeroed
    TRTCAL_CHECK_CUDA(cudaDeviceSynchronize());
  }
  return s;
}

}  // namespace

void init_range_search_bindings(py::module_& m) {
  py::class_<PrivateStream>(m, "PrivateStream")
      .def(py::init<int>(), py::arg("device"))
      .def_property_readonly("handle", &PrivateStream::handle);

  // Keyword-only construction: 19 parameters, several of the same type.
  py::class_<RangeSearchPlan>(m, "RangeSearchPlan")
      .def(py::init<int, int, int, bool, bool, int, int, int, double, double, carray<uint64_t>, carray<int32_t>,
                    carray<uint64_t>, carray<double>, carray<double>, carray<double>, carray<int32_t>, int, int>(),
           py::kw_only(), py::arg("device"), py::arg("method"), py::arg("levels"), py::arg("zero_bin_rule"),
           py::arg("tie_last"), py::arg("per_bin"), py::arg("max_bound"), py::arg("threads"), py::arg("tol"),
           py::arg("eps"), py::arg("counts_ptrs"), py::arg("nbins"), py::arg("edges_ptrs"),
           py::arg("linspace"), py::arg("grid"), py::arg("targets"), py::arg("cands"), py::arg("group") = 0,
           py::arg("chunk") = 0)
      .def("launch", &RangeSearchPlan::launch, py::arg("stream"))
      .def("read", &RangeSearchPlan::read, py::arg("stream"), py::arg("with_curve"))
      .def_property_readonly("blocks", &RangeSearchPlan::blocks)
      .def_property_readonly("shape", &RangeSearchPlan::shape);  // (threads, group, chunk)
  m.def("range_search_once", &range_search_once, py::arg("device"), py::arg("method"), py::arg("levels"),
        py::arg("zero_bin_rule"), py::arg("tie_last"), py::arg("per_bin"), py::arg("max_bound"), py::arg("threads"),
        py::arg("tol"), py::arg("eps"), py::arg("counts_ptrs"), py::arg("nbins"), py::arg("edges_ptrs"),
        py::arg("linspace"), py::arg("grid"), py::arg("targets"), py::arg("cands"), py::arg("group"),
        py::arg("chunk"), py::arg("host_counts"), py::arg("host_counts_off"), py::arg("host_edges"),
        py::arg("host_edges_off"), py::arg("stream"), py::arg("with_curve"),
        "One range search in the cached workspace (no allocation); waits. Returns what RangeSearchPlan.read does");
  m.def("range_search_max_bins", &range_search_max_bins, py::arg("method"));

  // Radix-select passes (python/trtcal/percentile.py drives them). `x` is a float array
  // (dtype code) or, when keys != 0, a uint32 key buffer. Both wait for the stream.
  m.def("select_histogram", [](uintptr_t x, int dtype, uintptr_t keys, size_t n, bool use_abs, int shift, int bits,
                               int prefix_shift, uint32_t prefix, uintptr_t stream, int device) {
    TRTCAL_CHECK_ARG(bits >= 1 && bits <= 12, "trtcal: select bits must be in [1, 12]");
    const DType t = keys ? DType::kFloat32 : as_float_dtype(dtype);
    py::array_t<uint64_t> hist((py::ssize_t)1 << bits);
    {
      py::gil_scoped_release nogil;
      DeviceGuard g(device);
      auto* h = select_scratch(device).hist();
      const size_t nbytes = sizeof(unsigned long long) << bits;
      cudaStream_t s = as_stream(stream);
      TRTCAL_CHECK_CUDA(cudaMemsetAsync(h, 0, nbytes, s));
      TRTCAL_CHECK_CUDA(select_histogram(as_ptr<const void>(x), t, as_ptr<const uint32_t>(keys), n, use_abs, shift,
                                         bits, prefix_shift, prefix, h, s));
      TRTCAL_CHECK_CUDA(cudaMemcpyAsync(hist.mutable_data(), h, nbytes, cudaMemcpyDeviceToHost, s));
      TRTCAL_CHECK_CUDA(cudaStreamSynchronize(s));
    }
    return hist;
  }, py::arg("x"), py::arg("dtype"), py::arg("keys"), py::arg("n"), py::arg("abs"), py::arg("shift"),
     py::arg("bits"), py::arg("prefix_shift"), py::arg("prefix"), py::arg("stream"), py::arg("device"));

  // The thread's cached compaction buffer on `device` with room for `count` keys (grown and
  // kept, never shrunk): the two-pass select compacts into it instead of allocating per call.
  // Valid until the next select call on this thread and device.
  m.def("select_key_buffer", [](size_t count, int device) {
    DeviceGuard g(device);
    return reinterpret_cast<uintptr_t>(select_scratch(device).key_buffer(count, device));
  }, py::arg("count"), py::arg("device"));

  m.def("select_compact", [](uintptr_t x, int dtype, uintptr_t keys, size_t n, bool use_abs, uint32_t lo,
                             uint32_t hi, uintptr_t out, uintptr_t stream, int device) {
    const DType t = keys ? DType::kFloat32 : as_float_dtype(dtype);
    unsigned long long count = 0;
    {
      py::gil_scoped_release nogil;
      DeviceGuard g(device);
      auto* c = select_scratch(device).counts();
      cudaStream_t s = as_stream(stream);
      TRTCAL_CHECK_CUDA(cudaMemsetAsync(c, 0, sizeof(count), s));
      TRTCAL_CHECK_CUDA(select_compact(as_ptr<const void>(x), t, as_ptr<const uint32_t>(keys), n, use_abs, lo, hi,
                                       as_ptr<uint32_t>(out), c, s));
      TRTCAL_CHECK_CUDA(cudaMemcpyAsync(&count, c, sizeof(count), cudaMemcpyDeviceToHost, s));
      TRTCAL_CHECK_CUDA(cudaStreamSynchronize(s));
    }
    return count;
  }, py::arg("x"), py::arg("dtype"), py::arg("keys"), py::arg("n"), py::arg("abs"), py::arg("lo"), py::arg("hi"),
     py::arg("out"), py::arg("stream"), py::arg("device"));

  // Bracketed selection (select.h): sample, bounds around the fractions [t_lo, t_hi] of
  // the non-NaN values with a margin of `sigmas`, one partition pass into the thread's
  // compaction buffer (`capacity` keys), then the wanted `ranks` (ascending, among all keys
  // assuming no NaN) resolved on the device. One wait for the stream at the end. Returns
  // (below, equal_lo, inside, nan, lo, hi, keys_ptr, [(status, key) per rank]): `inside`
  // keys in (lo, hi], the first min(inside, capacity) at keys_ptr (valid until the next call
  // on this thread and device); status 0: key found, 1: rank outside the bracket.
  m.def("select_bracket", [](uintptr_t x, int dtype, size_t n, bool use_abs, int runs, double t_lo, double t_hi,
                             double sigmas, size_t capacity, std::vector<unsigned long long> ranks,
                             uintptr_t stream, int device) {
    const DType t = as_float_dtype(dtype);
    TRTCAL_CHECK_ARG(runs >= 1 && n >= (size_t)runs * kSelectSampleRun,
                     "trtcal: select_bracket needs n >= 8 * runs");
    TRTCAL_CHECK_ARG(ranks.size() <= (size_t)SelectScratch::kMaxRanks, "trtcal: select_bracket takes <= 64 ranks");
    unsigned long long counts[4] = {0, 0, 0, 0};
    uint32_t bounds[2] = {0, 0};
    std::vector<SelectRank> resolved(ranks.size());
    uintptr_t keys_ptr = 0;
    {
      py::gil_scoped_release nogil;
      DeviceGuard g(device);
      SelectScratch& sc = select_scratch(device);
      uint32_t* keys = sc.key_buffer(capacity, device);
      keys_ptr = reinterpret_cast<uintptr_t>(keys);
      cudaStream_t s = as_stream(stream);
      for (size_t i = 0; i < ranks.size(); ++i) resolved[i] = SelectRank{ranks[i], 0, 0, 0, 0};
      const SelectBracketScratch scratch{sc.hist16(), sc.counts(), sc.bounds(), sc.ranks(),
                                         sc.resolve_hist()};
      TRTCAL_CHECK_CUDA(select_bracket(as_ptr<const void>(x), t, n, use_abs, runs, t_lo, t_hi, sigmas,
                                       scratch, keys, capacity, resolved.data(), (int)resolved.size(), s));
      // counts, bounds and ranks are adjacent: one copy
      std::vector<unsigned char> host(SelectScratch::kCounts + SelectScratch::kBounds +
                                      ranks.size() * sizeof(SelectRank));
      TRTCAL_CHECK_CUDA(cudaMemcpyAsync(host.data(), sc.counts(), host.size(), cudaMemcpyDeviceToHost, s));
      TRTCAL_CHECK_CUDA(cudaStreamSynchronize(s));
      std::memcpy(counts, host.data(), sizeof(counts));
      std::memcpy(bounds, host.data() + SelectScratch::kCounts, sizeof(bounds));
      if (!ranks.empty())
        std::memcpy(resolved.data(), host.data() + SelectScratch::kCounts + SelectScratch::kBounds,
                    resolved.size() * sizeof(SelectRank));
    }
    py::list keys_out;
    for (const SelectRank& r : resolved) keys_out.append(py::make_tuple(r.status, r.key));
    return py::make_tuple(counts[0], counts[1], counts[2], counts[3], bounds[0], bounds[1], keys_ptr, keys_out);
  }, py::arg("x"), py::arg("dtype"), py::arg("n"), py::arg("abs"), py::arg("runs"), py::arg("t_lo"),
     py::arg("t_hi"), py::arg("sigmas"), py::arg("capacity"), py::arg("ranks"), py::arg("stream"),
     py::arg("device"));
}

}  // namespace trtcal
