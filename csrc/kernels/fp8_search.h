// FP8 (E4M3FN) range search over many |x| histograms at once: the amax whose E4M3 quantization
// (amax mapped to 448) minimises the MSE, or the KL divergence, to the float histogram.
//
// The float64 reference and the exact definitions are python/trtcal/reference/fp8.py: bin j
// is represented by its centre c_j; dq(c) = round_e4m3(c * (448 / a)) * (a / 448), to nearest
// even, saturating at 448. One thread computes one candidate's value, adding bin by bin in
// ascending order with explicit float64 roundings (never contracted into FMAs), the order of
// the reference, so the MSE curve is bit-identical to NumPy's (KL also goes through log()).
// A second launch picks, per tensor, the first candidate within tol * (1 + |min|) of the
// minimum (python/trtcal/reference/range_search.py:pick with tie 'first').
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace trtcal {

enum Fp8Method : int32_t {
  kFp8Mse = 0,
  kFp8Kl = 1,
};

struct Fp8Tensor {
  const long long* counts;  // nbins counts on the device
  const double* centers;    // nbins bin centres (e_j + e_{j+1}) / 2, on the device
  long long total;          // sum of counts
  long long cand0;          // offset of this tensor's candidates in the flat candidate arrays
  int32_t nbins;
  int32_t ncand;
};

// `cand_tensor[g]` (tensor of flat candidate g), `cand_keep[g]` (KL: bins kept, 1..nbins; MSE:
// unused, may be null) and `cand_amax[g]` (the candidate amax, > 0 and finite) hold
// `ncand_total` entries; `curve` receives each candidate's value, `out_index` each tensor's
// chosen candidate (0-based within the tensor; -1 for a tensor with no candidates). All
// pointers are device pointers.
cudaError_t fp8_search(int32_t method, const Fp8Tensor* tensors, int32_t ntensors, const int32_t* cand_tensor,
                       const int32_t* cand_keep, const double* cand_amax, long long ncand_total, double tol,
                       double* curve, int32_t* out_index, cudaStream_t stream);

}  // namespace trtcal
