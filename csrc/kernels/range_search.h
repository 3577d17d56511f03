// Range search over many histograms at once: entropy (KL), percentile and MSE amax.
//
// Every tensor is described by a RangeTensor (its counts stay wherever they are on the
// device: a collector's buffer or a packed upload). One launch per method covers all
// tensors: a block handles one (tensor, chunk of `chunk` candidates) pair, `group` threads
// work on one candidate (levels or bins split between them, partial sums added in a fixed
// order), and the block writes the chunk's values into `curve`; the last block
// of a tensor to finish picks the minimum with the tie rule of
// python/trtcal/reference/range_search.py:pick (a block reduction). Percentile runs one block
// per tensor. Values are float64; counts and prefix sums are 64-bit integers. The float64
// reference is the NumPy module above. The launch shape (threads, group, chunk) is chosen per
// plan by range_search_choose_shape and can be overridden.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace trtcal {

enum RangeMethod : int32_t {
  kRangeEntropyProportional = 0,  // pytorch-quantization / TensorRT construction
  kRangeEntropyOnnxRuntime = 1,   // ONNX Runtime get_entropy_threshold
  kRangeMse = 2,
  kRangePercentile = 3,
};

struct RangeTensor {
  const long long* counts;  // nbins counts on the device
  const double* edges;      // nbins + 1 edges, or null: linspace(lo, hi) as NumPy computes it
  double lo, step, hi;      // linspace: edge k = k * step + lo (k < nbins), edge nbins = hi
  double a0, h;             // MSE fine grid (per_bin > 1): amax_t = t * h + a0
  double target0, target1;  // percentile CDF targets (target1 < 0: none)
  long long curve;          // offset of this tensor's values in `curve`
  int32_t nbins;
  int32_t first, stride, ncand;  // candidates: first + c * stride, c < ncand
  int32_t block0, nblocks;       // blocks of this tensor in the launch
};

struct RangeParams {
  int32_t method;
  int32_t levels;         // entropy: quantized levels (128 for INT8)
  int32_t zero_bin_rule;  // proportional entropy: counts[0] := counts[1] (on a copy)
  int32_t tie_last;       // 1: last minimum, 0: first minimum
  int32_t per_bin;        // MSE: candidates per bin (1: the bin centers themselves)
  int32_t max_bound;      // MSE: 2^(bits-1) - 1
  int32_t threads;        // threads per block
  int32_t group;          // threads per candidate, a power of two <= 32: proportional entropy:
                          // the same lane of `group` warps (must divide threads/32); MSE:
                          // `group` adjacent lanes; ONNX Runtime entropy: unused (1)
  int32_t chunk;          // candidates per block, 1 .. kRangeMaxChunk (percentile: unused)
  int32_t max_bins;       // largest nbins in the launch (shared-memory size)
  double tol;             // tie tolerance: v <= min + tol * (1 + |min|) ties
  double eps;             // ONNX Runtime smoothing epsilon (1e-4)
};

struct RangeChoice {
  double value;    // minimum of the curve (percentile: unused)
  int32_t index;   // chosen candidate c (percentile: index for target0)
  int32_t index2;  // percentile: index for target1
};

// Largest `chunk` (MSE keeps one float64 accumulator per candidate of the chunk in shared memory).
constexpr int32_t kRangeMaxChunk = 1024;

// Bytes of dynamic shared memory a launch needs, and the largest nbins one launch can
// take for the method (0: unlimited).
size_t range_search_smem(const RangeParams& p);
int32_t range_search_max_bins(int32_t method);

// Launch shape: sets p->group and p->chunk for `total_cand` candidates over all tensors on
// `device` (p->method and p->threads set). `group` threads work on one candidate and a block
// takes `chunk` candidates of one tensor. group: proportional entropy splits levels over
// `group` warps (a power of two dividing threads/32), MSE splits bins over `group` adjacent
// lanes (<= 32), ONNX Runtime entropy keeps one thread per candidate (its loop is ORT's serial
// smoothing); an explicit group is clamped to what the method allows. Auto (0): the smallest
// group that keeps 4 * SMs blocks' worth of threads busy (the largest for one or a few
// tensors, 1 for many: no partial sums to combine), and a chunk giving about 4 blocks per SM
// over all tensors, at least one round of the block's candidate slots and at most
// kRangeMaxChunk (so many tensors get few blocks each and load their histogram few times);
// ONNX Runtime entropy: chunk = threads. Percentile runs one block per tensor and ignores
// both (p is left as it is). The SM count is asked once per device.
cudaError_t range_search_choose_shape(RangeParams* p, int device, long long total_cand, int group, int chunk);

// The host side of one launch over many tensors: parameters, one descriptor per tensor, the
// tensor of each block, and the byte layout of one device allocation holding
// [descriptors | block map | choices | counters | curve] (parts 256-byte aligned).
struct RangeSearchLayout {
  RangeParams p{};
  std::vector<RangeTensor> desc;
  std::vector<int32_t> block_tensor;
  int32_t ntensors = 0, nblocks = 0;
  long long curve_len = 0;

  static size_t align256(size_t v) { return (v + 255) & ~size_t(255); }
  size_t map_off() const { return align256(sizeof(RangeTensor) * desc.size()); }
  size_t out_off() const { return align256(map_off() + sizeof(int32_t) * block_tensor.size()); }
  size_t cnt_off() const { return align256(out_off() + sizeof(RangeChoice) * desc.size()); }
  size_t curve_off() const { return align256(cnt_off() + sizeof(unsigned int) * desc.size()); }
  size_t total() const { return curve_off() + sizeof(double) * (size_t)(curve_len > 1 ? curve_len : 1); }
};

// Completes a layout whose p (all but group, chunk, max_bins) and desc (counts .. ncand) are
// set: the launch shape (range_search_choose_shape over all tensors' candidates, with `group`
// and `chunk`, 0: auto), then each tensor's curve offset and blocks, block_tensor, p.max_bins,
// nblocks, ntensors and curve_len. The caller checks p.max_bins against range_search_max_bins.
cudaError_t range_search_layout(RangeSearchLayout* L, int device, int group, int chunk);

// One method over many tensors as a caller describes it: the kernel parameters and, per tensor,
// the descriptor arrays that python/trtcal/range_search.py builds (host memory, `ntensors`
// entries each: linspace lo, step, hi; grid a0, h; targets target0, target1; cands first,
// stride, ncand). Framework-free: the Python binding and C++ callers fill it in.
struct RangeSearchRequest {
  int32_t method = kRangeEntropyProportional;
  int32_t levels = 128;
  bool zero_bin_rule = false, tie_last = false;
  int32_t per_bin = 1, max_bound = 127, threads = 256;
  double tol = 0.0, eps = 1e-4;
  int32_t group = 0, chunk = 0;  // 0: auto
  int32_t ntensors = 0;
  const uint64_t* counts_ptrs = nullptr;  // device counts of tensor t (0: on the host, below)
  const int32_t* nbins = nullptr;
  const uint64_t* edges_ptrs = nullptr;  // device edges (0: linspace, or on the host)
  const double* linspace = nullptr;      // 3 per tensor
  const double* grid = nullptr;          // 2 per tensor
  const double* targets = nullptr;       // 2 per tensor
  const int32_t* cands = nullptr;        // 3 per tensor
  // range_search_once only: host histograms, packed (tensor t's at element offset
  // host_counts_off[t] / host_edges_off[t], -1: none, then the device pointer above is used)
  const int64_t* host_counts = nullptr;
  size_t host_counts_len = 0;
  const int64_t* host_counts_off = nullptr;
  const double* host_edges = nullptr;
  size_t host_edges_len = 0;
  const int64_t* host_edges_off = nullptr;
  bool with_curve = false;  // range_search_once copies the curve back too
};

// What is wrong with a request, in words (empty: nothing). A fixed buffer, so that the kernel
// layer needs no std::string (its template instances would be exported from the extension).
struct RangeSearchProblem {
  char text[256] = {0};
  bool ok() const { return text[0] == 0; }
};

// Checks `r` and builds its layout (descriptors, then range_search_layout and the method's bin
// limit). Returns an empty problem, or what is wrong in words (bad arguments: the binding raises
// it as ValueError). A CUDA error of the shape choice is returned in *err (problem empty).
RangeSearchProblem range_search_build(const RangeSearchRequest& r, int device, RangeSearchLayout* L,
                                      cudaError_t* err);

// Scratch of one range_search_once: `device` bytes of device memory, `pinned` bytes of pinned
// host memory; the packed host histograms go to the device at byte offsets hc_off / he_off.
struct RangeSearchOnceScratch {
  size_t device = 0, pinned = 0, hc_off = 0, he_off = 0;
};
RangeSearchOnceScratch range_search_once_scratch(const RangeSearchLayout& L, const RangeSearchRequest& r);

// One search start to end on `stream` in caller scratch of the sizes above (`dev` device,
// `host` pinned, both reused across calls): the descriptors and the host histograms go up in one
// asynchronous upload, then the launch and one copy back of the choices (and of the curve when
// r.with_curve) into out[L->ntensors] and curve[L->curve_len]; waits for the stream. No
// allocation, no wait on the legacy stream. On a failed launch the error is returned as it is
// (range_search_describe says what was launched).
cudaError_t range_search_once(RangeSearchLayout* L, const RangeSearchRequest& r, void* dev, void* host,
                              RangeChoice* out, double* curve, cudaStream_t stream);

// The launch of a layout into one device allocation at `base` (the layout's offsets).
cudaError_t range_search_launch(const RangeSearchLayout& L, char* base, cudaStream_t stream);

// The launch's shape in words, for an error message (into `out`, at most `size` bytes).
void range_search_describe(const RangeSearchLayout& L, char* out, size_t size);

// `tensors` and `block_tensor` (tensor of each block, nblocks entries; unused by percentile,
// which launches one block per tensor) live on the device; `counters` holds one unsigned int
// per tensor, zero before the call: the last block of each tensor resets its counter, so they
// are zero again after every completed launch (zero them once when the plan is made);
// `curve` has room for every tensor's candidates; `out` one RangeChoice per tensor.
cudaError_t range_search(const RangeTensor* tensors, int32_t ntensors, const int32_t* block_tensor,
                         int32_t nblocks, const RangeParams& params, double* curve, RangeChoice* out,
                         unsigned int* counters, cudaStream_t stream);

}  // namespace trtcal
