// The host side of a range search (range_search.h): a request checked and laid out, and one
// search start to end in caller scratch. Framework-free; the Python binding is a thin wrapper.
#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstring>

#include "error.h"
#include "range_search.h"

namespace trtcal {

namespace {
RangeSearchProblem problem(const char* format, ...) {
  RangeSearchProblem p;
  va_list args;
  va_start(args, format);
  std::vsnprintf(p.text, sizeof(p.text), format, args);
  va_end(args);
  return p;
}
}  // namespace

RangeSearchProblem range_search_build(const RangeSearchRequest& r, int device, RangeSearchLayout* L,
                                      cudaError_t* err) {
  *err = cudaSuccess;
  const int32_t T = r.ntensors;
  if (T < 0) return problem("trtcal: one pointer per tensor");
  if (T > 0 && !(r.counts_ptrs && r.nbins && r.edges_ptrs && r.linspace && r.grid && r.targets && r.cands))
    return problem("trtcal: range-search descriptor arrays have the wrong sizes");
  if (r.method < kRangeEntropyProportional || r.method > kRangePercentile)
    return problem("trtcal: unknown range-search method %d", (int)r.method);
  if (r.threads < 32 || r.threads > 1024 || r.threads % 32 != 0)
    return problem("trtcal: threads must be a multiple of 32 in [32, 1024]");
  if (r.levels < 1 || r.max_bound < 1 || r.per_bin < 1)
    return problem("trtcal: levels, max_bound, per_bin must be >= 1");
  if (r.levels > (1 << 24))
    return problem("trtcal: levels must be <= 2^24 on the GPU, got %d", (int)r.levels);
  if (!(r.group == 0 || (r.group >= 1 && r.group <= 32 && (r.group & (r.group - 1)) == 0)))
    return problem("trtcal: group must be 0 (auto) or a power of two in [1, 32], got %d", (int)r.group);
  if (r.chunk < 0 || r.chunk > kRangeMaxChunk)
    return problem("trtcal: chunk must be 0 (auto) or in [1, %d], got %d", (int)kRangeMaxChunk, (int)r.chunk);
  L->p = RangeParams{r.method, r.levels, r.zero_bin_rule, r.tie_last, r.per_bin, r.max_bound, r.threads, 1,
                     1,        0,        r.tol,           r.eps};
  L->ntensors = T;
  L->desc.assign(T, RangeTensor{});
  for (int32_t t = 0; t < T; ++t) {
    RangeTensor& d = L->desc[t];
    d.counts = reinterpret_cast<const long long*>(r.counts_ptrs[t]);
    d.edges = reinterpret_cast<const double*>(r.edges_ptrs[t]);
    d.lo = r.linspace[3 * t];
    d.step = r.linspace[3 * t + 1];
    d.hi = r.linspace[3 * t + 2];
    d.a0 = r.grid[2 * t];
    d.h = r.grid[2 * t + 1];
    d.target0 = r.targets[2 * t];
    d.target1 = r.targets[2 * t + 1];
    d.nbins = r.nbins[t];
    d.first = r.cands[3 * t];
    d.stride = r.cands[3 * t + 1];
    d.ncand = r.cands[3 * t + 2];
    const bool host_counts = r.host_counts_off && r.host_counts_off[t] >= 0;
    if (!(d.nbins >= 1 && (d.counts || host_counts)))
      return problem("trtcal: every tensor needs counts and >= 1 bin");
    if (!(r.method == kRangePercentile || (d.ncand >= 1 && d.stride >= 1 && d.first >= 0)))
      return problem("trtcal: every tensor needs >= 1 candidate");
    if (host_counts && (size_t)(r.host_counts_off[t] + d.nbins) > r.host_counts_len)
      return problem("trtcal: host counts offset out of range");
    if (r.host_edges_off && r.host_edges_off[t] >= 0 &&
        (size_t)(r.host_edges_off[t] + d.nbins + 1) > r.host_edges_len)
      return problem("trtcal: host edges offset out of range");
  }
  *err = range_search_layout(L, device, r.group, r.chunk);  // shape, blocks, curve offsets
  if (*err != cudaSuccess) return {};
  const int32_t limit = range_search_max_bins(r.method);
  if (limit && L->p.max_bins > limit)
    return problem("trtcal: this range-search method takes at most %d bins per histogram on the GPU, got %d",
                   (int)limit, (int)L->p.max_bins);
  return {};
}

RangeSearchOnceScratch range_search_once_scratch(const RangeSearchLayout& L, const RangeSearchRequest& r) {
  using A = RangeSearchLayout;
  RangeSearchOnceScratch s;
  s.hc_off = A::align256(L.total());  // after the plan's own parts
  s.he_off = A::align256(s.hc_off + sizeof(int64_t) * r.host_counts_len);
  s.device = s.he_off + sizeof(double) * r.host_edges_len;
  const size_t down = A::align256(sizeof(RangeChoice) * L.ntensors) +
                      (r.with_curve ? sizeof(double) * (size_t)L.curve_len : 0);
  s.pinned = std::max(s.device, down);
  return s;
}

cudaError_t range_search_launch(const RangeSearchLayout& L, char* base, cudaStream_t stream) {
  return range_search(reinterpret_cast<RangeTensor*>(base), L.ntensors,
                      reinterpret_cast<int32_t*>(base + L.map_off()), L.nblocks, L.p,
                      reinterpret_cast<double*>(base + L.curve_off()),
                      reinterpret_cast<RangeChoice*>(base + L.out_off()),
                      reinterpret_cast<unsigned int*>(base + L.cnt_off()), stream);
}

void range_search_describe(const RangeSearchLayout& L, char* out, size_t size) {
  const RangeParams& p = L.p;
  std::snprintf(out, size,
                "method %d, tensors %d, blocks %d, threads %d, group %d, chunk %d, levels %d, max_bins %d, "
                "shared bytes %zu",
                (int)p.method, (int)L.ntensors, (int)L.nblocks, (int)p.threads, (int)p.group, (int)p.chunk,
                (int)p.levels, (int)p.max_bins, (size_t)range_search_smem(p));
}

cudaError_t range_search_once(RangeSearchLayout* L, const RangeSearchRequest& r, void* dev, void* host,
                              RangeChoice* out, double* curve, cudaStream_t stream) {
  const RangeSearchOnceScratch sc = range_search_once_scratch(*L, r);
  char* base = static_cast<char*>(dev);
  char* h = static_cast<char*>(host);
  for (int32_t t = 0; t < L->ntensors; ++t) {
    if (r.host_counts_off && r.host_counts_off[t] >= 0)
      L->desc[t].counts = reinterpret_cast<const long long*>(base + sc.hc_off) + r.host_counts_off[t];
    if (r.host_edges_off && r.host_edges_off[t] >= 0)
      L->desc[t].edges = reinterpret_cast<const double*>(base + sc.he_off) + r.host_edges_off[t];
  }
  // host staging: [desc | map] at 0, the host histograms at their device offsets
  std::memcpy(h, L->desc.data(), sizeof(RangeTensor) * L->desc.size());
  if (!L->block_tensor.empty())
    std::memcpy(h + L->map_off(), L->block_tensor.data(), sizeof(int32_t) * L->block_tensor.size());
  TRTCAL_TRY(cudaMemcpyAsync(base, h, L->cnt_off(), cudaMemcpyHostToDevice, stream));
  const size_t hc_bytes = sizeof(int64_t) * r.host_counts_len;
  const size_t he_bytes = sizeof(double) * r.host_edges_len;
  if (hc_bytes) {
    std::memcpy(h + sc.hc_off, r.host_counts, hc_bytes);
    TRTCAL_TRY(cudaMemcpyAsync(base + sc.hc_off, h + sc.hc_off, hc_bytes, cudaMemcpyHostToDevice, stream));
  }
  if (he_bytes) {
    std::memcpy(h + sc.he_off, r.host_edges, he_bytes);
    TRTCAL_TRY(cudaMemcpyAsync(base + sc.he_off, h + sc.he_off, he_bytes, cudaMemcpyHostToDevice, stream));
  }
  TRTCAL_TRY(cudaMemsetAsync(base + L->cnt_off(), 0, sizeof(unsigned int) * L->desc.size(), stream));
  TRTCAL_TRY(range_search_launch(*L, base, stream));
  // the pinned buffer is reused for the results: the uploads before them on `stream` are done
  const size_t down_out = sizeof(RangeChoice) * L->ntensors;
  const size_t curve_at = RangeSearchLayout::align256(down_out);
  const size_t down_curve = r.with_curve ? sizeof(double) * (size_t)L->curve_len : 0;
  TRTCAL_TRY(cudaMemcpyAsync(h, base + L->out_off(), down_out, cudaMemcpyDeviceToHost, stream));
  if (down_curve)
    TRTCAL_TRY(
        cudaMemcpyAsync(h + curve_at, base + L->curve_off(), down_curve, cudaMemcpyDeviceToHost, stream));
  TRTCAL_TRY(cudaStreamSynchronize(stream));
  std::memcpy(out, h, down_out);
  if (down_curve) std::memcpy(curve, h + curve_at, down_curve);
  return cudaSuccess;
}

}  // namespace trtcal
