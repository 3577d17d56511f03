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

// One method over many tensors: descriptors uploaded once, then launch() (enqueue only)
// and read() (waits) as often as wanted.
class RangeSearchPlan {
 public:
  RangeSearchPlan(int device, int method, int levels, bool zero_bin_rule, bool tie_last, int per_bin,
                  int max_bound, int threads, double tol, double eps, carray<uint64_t> counts_ptrs,
                  carray<int32_t> nbins, carray<uint64_t> edges_ptrs, carray<double> linspace,
                  carray<double> grid, carray<double> targets, carray<int32_t> cands, int group, int chunk)
      : device_(device) {
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
    p_ = RangeParams{method, levels, zero_bin_rule, tie_last, per_bin, max_bound, threads, 1, 1, 0, tol, eps};
    ntensors_ = (int32_t)T;
    long long total_cand = 0;
    for (py::ssize_t t = 0; t < T; ++t) total_cand += std::max(cands.at(3 * t + 2), 0);
    choose_shape(device, total_cand, group, chunk);
    std::vector<RangeTensor> desc(T);
    std::vector<int32_t> block_tensor;
    long long curve = 0;
    for (py::ssize_t t = 0; t < T; ++t) {
      RangeTensor& d = desc[t];
      d.counts = reinterpret_cast<const long long*>(counts_ptrs.at(t));
      d.edges = reinterpret_cast<const double*>(edges_ptrs.at(t));
      d.lo = linspace.at(3 * t);
      d.step = linspace.at(3 * t + 1);
      d.hi = linspace.at(3 * t + 2);
      d.a0 = grid.at(2 * t);
      d.h = grid.at(2 * t + 1);
      d.target0 = targets.at(2 * t);
      d.target1 = targets.at(2 * t + 1);
      d.nbins = nbins.at(t);
      d.first = cands.at(3 * t);
      d.stride = cands.at(3 * t + 1);
      d.ncand = cands.at(3 * t + 2);
      TRTCAL_CHECK_ARG(d.nbins >= 1 && d.counts, "trtcal: every tensor needs counts and >= 1 bin");
      TRTCAL_CHECK_ARG(method == kRangePercentile || (d.ncand >= 1 && d.stride >= 1 && d.first >= 0),
                       "trtcal: every tensor needs >= 1 candidate");
      d.curve = curve;
      d.block0 = (int32_t)block_tensor.size();
      d.nblocks = method == kRangePercentile ? 0 : (d.ncand + p_.chunk - 1) / p_.chunk;
      for (int b = 0; b < d.nblocks; ++b) block_tensor.push_back((int32_t)t);
      if (method != kRangePercentile) curve += d.ncand;
      p_.max_bins = std::max(p_.max_bins, d.nbins);
    }
    const int32_t limit = range_search_max_bins(method);
    TRTCAL_CHECK_ARG(!limit || p_.max_bins <= limit,
                     "trtcal: this range-search method takes at most " + std::to_string(limit) +
                         " bins per histogram on the GPU, got " + std::to_string(p_.max_bins));
    nblocks_ = (int32_t)block_tensor.size();
    curve_len_ = curve;
    const size_t desc_bytes = sizeof(RangeTensor) * T;
    const size_t map_off = (desc_bytes + 255) & ~size_t(255);
    const size_t map_bytes = sizeof(int32_t) * block_tensor.size();
    const size_t out_off = (map_off + map_bytes + 255) & ~size_t(255);
    const size_t cnt_off = (out_off + sizeof(RangeChoice) * T + 255) & ~size_t(255);
    const size_t curve_off = (cnt_off + sizeof(unsigned int) * T + 255) & ~size_t(255);
    const size_t total = curve_off + sizeof(double) * (size_t)std::max<long long>(curve, 1);
    buf_.reset(new DeviceBuffer(total, device));
    char* base = static_cast<char*>(buf_->data());
    d_desc_ = reinterpret_cast<RangeTensor*>(base);
    d_map_ = reinterpret_cast<int32_t*>(base + map_off);
    d_out_ = reinterpret_cast<RangeChoice*>(base + out_off);
    d_counters_ = reinterpret_cast<unsigned int*>(base + cnt_off);
    d_curve_ = reinterpret_cast<double*>(base + curve_off);
    DeviceGuard g(device);
    TRTCAL_CHECK_CUDA(cudaMemcpy(d_desc_, desc.data(), desc_bytes, cudaMemcpyHostToDevice));
    if (map_bytes) TRTCAL_CHECK_CUDA(cudaMemcpy(d_map_, block_tensor.data(), map_bytes, cudaMemcpyHostToDevice));
    TRTCAL_CHECK_CUDA(cudaMemset(d_counters_, 0, sizeof(unsigned int) * T));  // launches leave them at 0
    // cudaMemcpy from pageable memory and cudaMemset may return before the device has the data,
    // and both are ordered on the legacy default stream only: a launch on a non-blocking stream
    // could read stale descriptors or counters (seen once as 4 wrong tensors of 2100 with 8
    // processes sharing the GPU). Wait for them here, once per plan.
    TRTCAL_CHECK_CUDA(cudaStreamSynchronize(cudaStreamLegacy));
  }

  void launch(uintptr_t stream) {
    py::gil_scoped_release nogil;
    DeviceGuard g(device_);
    const cudaError_t err =
        range_search(d_desc_, ntensors_, d_map_, nblocks_, p_, d_curve_, d_out_, d_counters_, as_stream(stream));
    if (err != cudaSuccess) {
      throw std::runtime_error(
          std::string("trtcal: range search launch failed: ") + cudaGetErrorName(err) + " (" +
          cudaGetErrorString(err) + "); method " + std::to_string(p_.method) + ", tensors " +
          std::to_string(ntensors_) + ", blocks " + std::to_string(nblocks_) + ", threads " +
          std::to_string(p_.threads) + ", group " + std::to_string(p_.group) + ", chunk " +
          std::to_string(p_.chunk) + ", levels " + std::to_string(p_.levels) + ", max_bins " +
          std::to_string(p_.max_bins) + ", shared bytes " + std::to_string(range_search_smem(p_)));
    }
  }

  // (index int32[T], index2 int32[T], value float64[T], curve float64[...] or None). Waits.
  py::tuple read(uintptr_t stream, bool with_curve) {
    std::vector<RangeChoice> out(ntensors_);
    py::array_t<int32_t> index(ntensors_), index2(ntensors_);
    py::array_t<double> value(ntensors_);
    py::object curve = py::none();
    py::array_t<double> c;
    if (with_curve) c = py::array_t<double>(curve_len_);
    {
      py::gil_scoped_release nogil;
      DeviceGuard g(device_);
      cudaStream_t s = as_stream(stream);
      TRTCAL_CHECK_CUDA(cudaMemcpyAsync(out.data(), d_out_, sizeof(RangeChoice) * ntensors_, cudaMemcpyDeviceToHost, s));
      if (with_curve && curve_len_)
        TRTCAL_CHECK_CUDA(cudaMemcpyAsync(c.mutable_data(), d_curve_, sizeof(double) * curve_len_, cudaMemcpyDeviceToHost, s));
      TRTCAL_CHECK_CUDA(cudaStreamSynchronize(s));
    }
    for (int32_t t = 0; t < ntensors_; ++t) {
      index.mutable_at(t) = out[t].index;
      index2.mutable_at(t) = out[t].index2;
      value.mutable_at(t) = out[t].value;
    }
    if (with_curve) curve = c;
    return py::make_tuple(index, index2, value, curve);
  }

  int32_t blocks() const { return p_.method == kRangePercentile ? ntensors_ : nblocks_; }
  py::tuple shape() const { return py::make_tuple(p_.threads, p_.group, p_.chunk); }

 private:
  // Launch shape. `group` threads work on one candidate and a block takes `chunk` candidates
  // of one tensor. group: proportional entropy splits levels over `group` warps (a power of
  // two dividing threads/32), MSE splits bins over `group` adjacent lanes (<= 32), ONNX Runtime
  // entropy keeps one thread per candidate (its loop is ORT's serial smoothing); an explicit
  // group is clamped to what the method allows (`shape` reports the result). Auto (0): the
  // smallest group that keeps kBlocksPerSm * SMs blocks' worth of threads busy (the largest
  // for one or a few tensors, 1 for many: no partial sums to combine), and a chunk giving about
  // kBlocksPerSm blocks per SM over all tensors, at least one round of the block's candidate
  // slots and at most kRangeMaxChunk (so many tensors get few blocks each and load their
  // histogram few times); ONNX Runtime entropy: chunk = threads, as before v2. Percentile runs
  // one block per tensor and ignores both.
  void choose_shape(int device, long long total_cand, int group, int chunk) {
    constexpr long long kBlocksPerSm = 4;
    if (p_.method == kRangePercentile) return;
    int sms = 0;
    {
      DeviceGuard dg(device);
      TRTCAL_CHECK_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    }
    const long long want_blocks = kBlocksPerSm * std::max(sms, 1);
    int cap = 32;
    if (p_.method == kRangeEntropyOnnxRuntime) {
      cap = 1;
    } else if (p_.method == kRangeEntropyProportional) {
      const int nwarps = p_.threads / 32;
      cap = 1;
      while (cap < 32 && nwarps % (cap * 2) == 0) cap *= 2;
    }
    int g = 1;
    if (group > 0) {
      while (g * 2 <= std::min(group, cap)) g *= 2;
    } else {
      while (g < cap && total_cand * g < want_blocks * p_.threads) g *= 2;
    }
    const int slots = std::max(p_.threads / g, 1);
    long long ch = chunk;
    if (ch == 0 && p_.method == kRangeEntropyOnnxRuntime) {
      ch = std::min(p_.threads, kRangeMaxChunk);  // one candidate per thread: its O(n) loop wants threads
    } else if (ch == 0) {
      ch = (total_cand + want_blocks - 1) / want_blocks;
      ch = (ch + slots - 1) / slots * slots;
      ch = std::min<long long>(std::max<long long>(ch, slots), kRangeMaxChunk);
    }
    p_.group = g;
    p_.chunk = (int32_t)ch;
  }

  int device_;
  RangeParams p_{};
  int32_t ntensors_ = 0, nblocks_ = 0;
  long long curve_len_ = 0;
  std::unique_ptr<DeviceBuffer> buf_;
  RangeTensor* d_desc_ = nullptr;
  int32_t* d_map_ = nullptr;
  RangeChoice* d_out_ = nullptr;
  unsigned int* d_counters_ = nullptr;
  double* d_curve_ = nullptr;
};

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

  py::class_<RangeSearchPlan>(m, "RangeSearchPlan")
      .def(py::init<int, int, int, bool, bool, int, int, int, double, double, carray<uint64_t>, carray<int32_t>,
                    carray<uint64_t>, carray<double>, carray<double>, carray<double>, carray<int32_t>, int, int>(),
           py::arg("device"), py::arg("method"), py::arg("levels"), py::arg("zero_bin_rule"), py::arg("tie_last"),
           py::arg("per_bin"), py::arg("max_bound"), py::arg("threads"), py::arg("tol"), py::arg("eps"),
           py::arg("counts_ptrs"), py::arg("nbins"), py::arg("edges_ptrs"), py::arg("linspace"), py::arg("grid"),
           py::arg("targets"), py::arg("cands"), py::arg("group") = 0, py::arg("chunk") = 0)
      .def("launch", &RangeSearchPlan::launch, py::arg("stream"))
      .def("read", &RangeSearchPlan::read, py::arg("stream"), py::arg("with_curve"))
      .def_property_readonly("blocks", &RangeSearchPlan::blocks)
      .def_property_readonly("shape", &RangeSearchPlan::shape);  // (threads, group, chunk)
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
      // hist16 and counts are adjacent: one memset
      TRTCAL_CHECK_CUDA(cudaMemsetAsync(sc.hist16(), 0, SelectScratch::kHist16 + SelectScratch::kCounts, s));
      TRTCAL_CHECK_CUDA(select_sample_histogram(as_ptr<const void>(x), t, n, use_abs, runs, sc.hist16(), s));
      TRTCAL_CHECK_CUDA(select_sample_bounds(sc.hist16(), t_lo, t_hi, sigmas, kSelectSampleRun, sc.bounds(), s));
      TRTCAL_CHECK_CUDA(select_partition(as_ptr<const void>(x), t, n, use_abs, sc.bounds(), keys, capacity,
                                         sc.counts(), s));
      for (size_t i = 0; i < ranks.size(); ++i) resolved[i] = SelectRank{ranks[i], 0, 0, 0, 0};
      if (!ranks.empty()) {
        TRTCAL_CHECK_CUDA(cudaMemcpyAsync(sc.ranks(), resolved.data(), resolved.size() * sizeof(SelectRank),
                                          cudaMemcpyHostToDevice, s));
        for (size_t i = 0; i < ranks.size(); i += kSelectMaxRanks) {
          const int count = (int)std::min<size_t>(kSelectMaxRanks, ranks.size() - i);
          TRTCAL_CHECK_CUDA(select_resolve(sc.counts(), sc.bounds(), keys, capacity, sc.ranks() + i, count,
                                           sc.resolve_hist(), s));
        }
      }
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
