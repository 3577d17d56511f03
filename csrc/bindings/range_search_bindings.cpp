// Range search (entropy / percentile / MSE over many histograms) and exact percentile.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "common.h"
#include "kernels/range_search.h"
#include "kernels/select.h"
#include "workspace.h"

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

// The descriptor arrays as Python passes them (python/trtcal/range_search.py: _plan_arrays).
struct PlanArrays {
  carray<uint64_t> counts_ptrs;
  carray<int32_t> nbins;
  carray<uint64_t> edges_ptrs;
  carray<double> linspace, grid, targets;
  carray<int32_t> cands;
};

// A request over `a` (sizes checked here; the rest in range_search_build).
RangeSearchRequest make_request(int method, int levels, bool zero_bin_rule, bool tie_last, int per_bin,
                                int max_bound, int threads, double tol, double eps, const PlanArrays& a,
                                int group, int chunk) {
  const py::ssize_t T = a.nbins.size();
  TRTCAL_CHECK_ARG(a.counts_ptrs.size() == T && a.edges_ptrs.size() == T, "trtcal: one pointer per tensor");
  TRTCAL_CHECK_ARG(a.linspace.size() == 3 * T && a.grid.size() == 2 * T && a.targets.size() == 2 * T &&
                       a.cands.size() == 3 * T,
                   "trtcal: range-search descriptor arrays have the wrong sizes");
  RangeSearchRequest r;
  r.method = method;
  r.levels = levels;
  r.zero_bin_rule = zero_bin_rule;
  r.tie_last = tie_last;
  r.per_bin = per_bin;
  r.max_bound = max_bound;
  r.threads = threads;
  r.tol = tol;
  r.eps = eps;
  r.group = group;
  r.chunk = chunk;
  r.ntensors = (int32_t)T;
  r.counts_ptrs = a.counts_ptrs.data();
  r.nbins = a.nbins.data();
  r.edges_ptrs = a.edges_ptrs.data();
  r.linspace = a.linspace.data();
  r.grid = a.grid.data();
  r.targets = a.targets.data();
  r.cands = a.cands.data();
  return r;
}

PlanLayout build_layout(const RangeSearchRequest& r, int device) {
  PlanLayout L;
  cudaError_t err = cudaSuccess;
  const RangeSearchProblem problem = range_search_build(r, device, &L, &err);
  TRTCAL_CHECK_ARG(problem.ok(), std::string(problem.text));
  TRTCAL_CHECK_CUDA(err);
  return L;
}

std::string describe(const PlanLayout& L) {
  char text[256];
  range_search_describe(L, text, sizeof(text));
  return text;
}

[[noreturn]] void throw_search_failed(const PlanLayout& L, cudaError_t err, const char* what) {
  if (err == cudaErrorMemoryAllocation) throw_cuda(err, what, __FILE__, __LINE__);
  throw std::runtime_error(std::string("trtcal: range search ") + what + " failed: " + cudaGetErrorName(err) +
                           " (" + cudaGetErrorString(err) + "); " + describe(L));
}

void launch_layout(const PlanLayout& L, char* base, cudaStream_t stream) {
  const cudaError_t err = range_search_launch(L, base, stream);
  if (err != cudaSuccess) throw_search_failed(L, err, "launch");
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
        L_(build_layout(
            make_request(method, levels, zero_bin_rule, tie_last, per_bin, max_bound, threads, tol, eps,
                         PlanArrays{counts_ptrs, nbins, edges_ptrs, linspace, grid, targets, cands}, group,
                         chunk),
            device)) {
    buf_.reset(new DeviceBuffer(L_.total(), device));
    char* base = static_cast<char*>(buf_->data());
    DeviceGuard g(device);
    TRTCAL_CHECK_CUDA(
        cudaMemcpy(base, L_.desc.data(), sizeof(RangeTensor) * L_.desc.size(), cudaMemcpyHostToDevice));
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

// One search, start to end, in the device's cached workspace (kernels/range_search.h,
// range_search_once): host histograms packed in `host_counts` / `host_edges` at element offsets
// host_counts_off[t] / host_edges_off[t] (-1: none, then counts_ptrs[t] / edges_ptrs[t] are
// device pointers). Waits for the stream. Returns what RangeSearchPlan.read does.
py::tuple range_search_once_py(int device, int method, int levels, bool zero_bin_rule, bool tie_last,
                               int per_bin, int max_bound, int threads, double tol, double eps,
                               carray<uint64_t> counts_ptrs, carray<int32_t> nbins,
                               carray<uint64_t> edges_ptrs, carray<double> linspace, carray<double> grid,
                               carray<double> targets, carray<int32_t> cands, int group, int chunk,
                               carray<int64_t> host_counts, carray<int64_t> host_counts_off,
                               carray<double> host_edges, carray<int64_t> host_edges_off, uintptr_t stream,
                               bool with_curve) {
  RangeSearchRequest r =
      make_request(method, levels, zero_bin_rule, tie_last, per_bin, max_bound, threads, tol, eps,
                   PlanArrays{counts_ptrs, nbins, edges_ptrs, linspace, grid, targets, cands}, group, chunk);
  TRTCAL_CHECK_ARG(host_counts_off.size() == r.ntensors && host_edges_off.size() == r.ntensors,
                   "trtcal: one host offset per tensor (-1: none)");
  r.host_counts = host_counts.data();
  r.host_counts_len = (size_t)host_counts.size();
  r.host_counts_off = host_counts_off.data();
  r.host_edges = host_edges.data();
  r.host_edges_len = (size_t)host_edges.size();
  r.host_edges_off = host_edges_off.data();
  r.with_curve = with_curve;
  PlanLayout L = build_layout(r, device);
  const RangeSearchOnceScratch need = range_search_once_scratch(L, r);
  std::vector<RangeChoice> out(L.ntensors);
  std::vector<double> curve(with_curve ? L.curve_len : 0);
  {
    py::gil_scoped_release nogil;
    DeviceGuard g(device);
    Workspace& ws = Workspace::get(device);
    std::lock_guard<std::mutex> lock(ws.mutex());
    void* dev = ws.device(need.device);
    void* host = ws.pinned(need.pinned);
    const cudaError_t err = range_search_once(&L, r, dev, host, out.data(), curve.data(), as_stream(stream));
    if (err != cudaSuccess) throw_search_failed(L, err, "(one-shot)");
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
    TRTCAL_CHECK_CUDA(
        cudaMemset(s.small->data(), 0, SelectScratch::kSmall));  // select_resolve keeps its part zeroed
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
      .def(py::init<int, int, int, bool, bool, int, int, int, double, double, carray<uint64_t>,
                    carray<int32_t>, carray<uint64_t>, carray<double>, carray<double>, carray<double>,
                    carray<int32_t>, int, int>(),
           py::kw_only(), py::arg("device"), py::arg("method"), py::arg("levels"), py::arg("zero_bin_rule"),
           py::arg("tie_last"), py::arg("per_bin"), py::arg("max_bound"), py::arg("threads"), py::arg("tol"),
           py::arg("eps"), py::arg("counts_ptrs"), py::arg("nbins"), py::arg("edges_ptrs"),
           py::arg("linspace"), py::arg("grid"), py::arg("targets"), py::arg("cands"), py::arg("group") = 0,
           py::arg("chunk") = 0)
      .def("launch", &RangeSearchPlan::launch, py::arg("stream"))
      .def("read", &RangeSearchPlan::read, py::arg("stream"), py::arg("with_curve"))
      .def_property_readonly("blocks", &RangeSearchPlan::blocks)
      .def_property_readonly("shape", &RangeSearchPlan::shape);  // (threads, group, chunk)
  // Keyword-only, like RangeSearchPlan: 25 parameters, several of the same type.
  m.def("range_search_once", &range_search_once_py, py::kw_only(), py::arg("device"), py::arg("method"),
        py::arg("levels"), py::arg("zero_bin_rule"), py::arg("tie_last"), py::arg("per_bin"),
        py::arg("max_bound"), py::arg("threads"), py::arg("tol"), py::arg("eps"), py::arg("counts_ptrs"),
        py::arg("nbins"), py::arg("edges_ptrs"), py::arg("linspace"), py::arg("grid"), py::arg("targets"),
        py::arg("cands"), py::arg("group"), py::arg("chunk"), py::arg("host_counts"),
        py::arg("host_counts_off"), py::arg("host_edges"), py::arg("host_edges_off"), py::arg("stream"),
        py::arg("with_curve"),
        "One range search in the cached workspace (no allocation); waits. "
        "Returns what RangeSearchPlan.read does");
  m.def("range_search_max_bins", &range_search_max_bins, py::arg("method"));

  // Radix-select passes (python/trtcal/percentile.py drives them). `x` is a float array
  // (dtype code) or, when keys != 0, a uint32 key buffer. Both wait for the stream.
  m.def(
      "select_histogram",
      [](uintptr_t x, int dtype, uintptr_t keys, size_t n, bool use_abs, int shift, int bits,
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
          TRTCAL_CHECK_CUDA(select_histogram(as_ptr<const void>(x), t, as_ptr<const uint32_t>(keys), n,
                                             use_abs, shift, bits, prefix_shift, prefix, h, s));
          TRTCAL_CHECK_CUDA(cudaMemcpyAsync(hist.mutable_data(), h, nbytes, cudaMemcpyDeviceToHost, s));
          TRTCAL_CHECK_CUDA(cudaStreamSynchronize(s));
        }
        return hist;
      },
      py::arg("x"), py::arg("dtype"), py::arg("keys"), py::arg("n"), py::arg("abs"), py::arg("shift"),
      py::arg("bits"), py::arg("prefix_shift"), py::arg("prefix"), py::arg("stream"), py::arg("device"));

  // The thread's cached compaction buffer on `device` with room for `count` keys (grown and
  // kept, never shrunk): the two-pass select compacts into it instead of allocating per call.
  // Valid until the next select call on this thread and device.
  m.def(
      "select_key_buffer",
      [](size_t count, int device) {
        DeviceGuard g(device);
        return reinterpret_cast<uintptr_t>(select_scratch(device).key_buffer(count, device));
      },
      py::arg("count"), py::arg("device"));

  m.def(
      "select_compact",
      [](uintptr_t x, int dtype, uintptr_t keys, size_t n, bool use_abs, uint32_t lo, uint32_t hi,
         uintptr_t out, uintptr_t stream, int device) {
        const DType t = keys ? DType::kFloat32 : as_float_dtype(dtype);
        unsigned long long count = 0;
        {
          py::gil_scoped_release nogil;
          DeviceGuard g(device);
          auto* c = select_scratch(device).counts();
          cudaStream_t s = as_stream(stream);
          TRTCAL_CHECK_CUDA(cudaMemsetAsync(c, 0, sizeof(count), s));
          TRTCAL_CHECK_CUDA(select_compact(as_ptr<const void>(x), t, as_ptr<const uint32_t>(keys), n, use_abs,
                                           lo, hi, as_ptr<uint32_t>(out), c, s));
          TRTCAL_CHECK_CUDA(cudaMemcpyAsync(&count, c, sizeof(count), cudaMemcpyDeviceToHost, s));
          TRTCAL_CHECK_CUDA(cudaStreamSynchronize(s));
        }
        return count;
      },
      py::arg("x"), py::arg("dtype"), py::arg("keys"), py::arg("n"), py::arg("abs"), py::arg("lo"),
      py::arg("hi"), py::arg("out"), py::arg("stream"), py::arg("device"));

  // Bracketed selection (select.h): sample, bounds around the fractions [t_lo, t_hi] of
  // the non-NaN values with a margin of `sigmas`, one partition pass into the thread's
  // compaction buffer (`capacity` keys), then the wanted `ranks` (ascending, among all keys
  // assuming no NaN) resolved on the device. One wait for the stream at the end. Returns
  // (below, equal_lo, inside, nan, lo, hi, keys_ptr, [(status, key) per rank]): `inside`
  // keys in (lo, hi], the first min(inside, capacity) at keys_ptr (valid until the next call
  // on this thread and device); status 0: key found, 1: rank outside the bracket.
  m.def(
      "select_bracket",
      [](uintptr_t x, int dtype, size_t n, bool use_abs, int runs, double t_lo, double t_hi, double sigmas,
         size_t capacity, std::vector<unsigned long long> ranks, uintptr_t stream, int device) {
        const DType t = as_float_dtype(dtype);
        TRTCAL_CHECK_ARG(runs >= 1 && n >= (size_t)runs * kSelectSampleRun,
                         "trtcal: select_bracket needs n >= 8 * runs");
        TRTCAL_CHECK_ARG(ranks.size() <= (size_t)SelectScratch::kMaxRanks,
                         "trtcal: select_bracket takes <= 64 ranks");
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
                                           scratch, keys, capacity, resolved.data(), (int)resolved.size(),
                                           s));
          // counts, bounds and ranks are adjacent: one copy
          std::vector<unsigned char> host(SelectScratch::kCounts + SelectScratch::kBounds +
                                          ranks.size() * sizeof(SelectRank));
          TRTCAL_CHECK_CUDA(
              cudaMemcpyAsync(host.data(), sc.counts(), host.size(), cudaMemcpyDeviceToHost, s));
          TRTCAL_CHECK_CUDA(cudaStreamSynchronize(s));
          std::memcpy(counts, host.data(), sizeof(counts));
          std::memcpy(bounds, host.data() + SelectScratch::kCounts, sizeof(bounds));
          if (!ranks.empty())
            std::memcpy(resolved.data(), host.data() + SelectScratch::kCounts + SelectScratch::kBounds,
                        resolved.size() * sizeof(SelectRank));
        }
        py::list keys_out;
        for (const SelectRank& r : resolved) keys_out.append(py::make_tuple(r.status, r.key));
        return py::make_tuple(counts[0], counts[1], counts[2], counts[3], bounds[0], bounds[1], keys_ptr,
                              keys_out);
      },
      py::arg("x"), py::arg("dtype"), py::arg("n"), py::arg("abs"), py::arg("runs"), py::arg("t_lo"),
      py::arg("t_hi"), py::arg("sigmas"), py::arg("capacity"), py::arg("ranks"), py::arg("stream"),
      py::arg("device"));
}

}  // namespace trtcal
