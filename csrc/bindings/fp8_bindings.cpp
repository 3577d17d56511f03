// FP8 (E4M3) range search over many host histograms: packed upload, one search launch and one
// pick launch, results back (waits for the stream).
#include <pybind11/numpy.h>

#include <cmath>
#include <string>
#include <vector>

#include "common.h"
#include "kernels/fp8_search.h"
#include "kernels/silu.h"

namespace trtcal {
namespace {

template <typename T>
using carray = py::array_t<T, py::array::c_style | py::array::forcecast>;

template <typename T>
void upload(DeviceBuffer& buf, const T* src, size_t n, cudaStream_t s) {
  if (n) TRTCAL_CHECK_CUDA(cudaMemcpyAsync(buf.data(), src, n * sizeof(T), cudaMemcpyHostToDevice, s));
}

py::tuple fp8_search_host(int device, int method, carray<long long> counts, carray<double> centers,
                          carray<int32_t> nbins, carray<long long> totals, carray<int32_t> ncand,
                          carray<int32_t> cand_keep, carray<double> cand_amax, double tol, uintptr_t stream) {
  TRTCAL_CHECK_ARG(method == kFp8Mse || method == kFp8Kl,
                   "trtcal: unknown FP8 search method " + std::to_string(method));
  const py::ssize_t T = nbins.size();
  TRTCAL_CHECK_ARG(totals.size() == T && ncand.size() == T, "trtcal: one nbins, total and ncand per tensor");
  TRTCAL_CHECK_ARG(counts.size() == centers.size(), "trtcal: counts and centers must have the same size");
  TRTCAL_CHECK_ARG(cand_amax.size() == cand_keep.size() || method == kFp8Mse,
                   "trtcal: one kept-bin count per KL candidate");
  TRTCAL_CHECK_ARG(tol >= 0.0, "trtcal: the tie tolerance must be >= 0");
  std::vector<Fp8Tensor> desc(T);
  std::vector<int32_t> cand_tensor;
  long long bin_off = 0, cand_off = 0;
  for (py::ssize_t t = 0; t < T; ++t) {
    TRTCAL_CHECK_ARG(nbins.at(t) >= 1 && ncand.at(t) >= 0, "trtcal: every tensor needs >= 1 bin");
    desc[t].total = totals.at(t);
    desc[t].nbins = nbins.at(t);
    desc[t].ncand = ncand.at(t);
    desc[t].cand0 = cand_off;
    desc[t].counts = reinterpret_cast<const long long*>(static_cast<uintptr_t>(bin_off));  // offsets for now
    desc[t].centers = reinterpret_cast<const double*>(static_cast<uintptr_t>(bin_off));
    bin_off += nbins.at(t);
    cand_off += ncand.at(t);
    cand_tensor.insert(cand_tensor.end(), ncand.at(t), static_cast<int32_t>(t));
  }
  TRTCAL_CHECK_ARG(bin_off == counts.size(), "trtcal: the packed counts do not match nbins");
  TRTCAL_CHECK_ARG(cand_off == cand_amax.size(), "trtcal: the packed candidates do not match ncand");
  const int32_t* kp = method == kFp8Kl ? cand_keep.data() : nullptr;
  if (kp) {
    for (py::ssize_t t = 0; t < T; ++t)
      for (int32_t c = 0; c < ncand.at(t); ++c) {
        const int32_t k = kp[desc[t].cand0 + c];
        TRTCAL_CHECK_ARG(k >= 1 && k <= nbins.at(t), "trtcal: a KL candidate keeps 1..nbins bins");
      }
  }
  for (py::ssize_t g = 0; g < cand_amax.size(); ++g) {
    const double a = cand_amax.data()[g];
    TRTCAL_CHECK_ARG(std::isfinite(a) && a > 0.0,
                     "trtcal: candidate amax values must be positive and finite");
  }
  py::array_t<int32_t> index(T);
  py::array_t<double> curve(cand_off);
  {
    py::gil_scoped_release nogil;
    DeviceGuard g(device);
    const cudaStream_t s = as_stream(stream);
    DeviceBuffer d_counts(bin_off * sizeof(long long), device), d_centers(bin_off * sizeof(double), device);
    DeviceBuffer d_desc(T * sizeof(Fp8Tensor), device), d_ct(cand_off * sizeof(int32_t), device);
    DeviceBuffer d_keep(kp ? cand_off * sizeof(int32_t) : 0, device),
        d_amax(cand_off * sizeof(double), device);
    DeviceBuffer d_curve(cand_off * sizeof(double), device), d_index(T * sizeof(int32_t), device);
    for (auto& d : desc) {  // offsets -> device pointers
      d.counts = static_cast<const long long*>(d_counts.data()) + reinterpret_cast<uintptr_t>(d.counts);
      d.centers = static_cast<const double*>(d_centers.data()) + reinterpret_cast<uintptr_t>(d.centers);
    }
    upload(d_counts, counts.data(), bin_off, s);
    upload(d_centers, centers.data(), bin_off, s);
    upload(d_desc, desc.data(), T, s);
    upload(d_ct, cand_tensor.data(), cand_off, s);
    if (kp) upload(d_keep, kp, cand_off, s);
    upload(d_amax, cand_amax.data(), cand_off, s);
    TRTCAL_CHECK_CUDA(
        fp8_search(method, static_cast<const Fp8Tensor*>(d_desc.data()), static_cast<int32_t>(T),
                   static_cast<const int32_t*>(d_ct.data()), static_cast<const int32_t*>(d_keep.data()),
                   static_cast<const double*>(d_amax.data()), cand_off, tol,
                   static_cast<double*>(d_curve.data()), static_cast<int32_t*>(d_index.data()), s));
    if (cand_off)
      TRTCAL_CHECK_CUDA(cudaMemcpyAsync(curve.mutable_data(), d_curve.data(), cand_off * sizeof(double),
                                        cudaMemcpyDeviceToHost, s));
    TRTCAL_CHECK_CUDA(cudaMemcpyAsync(index.mutable_data(), d_index.data(), T * sizeof(int32_t),
                                      cudaMemcpyDeviceToHost, s));
    TRTCAL_CHECK_CUDA(cudaStreamSynchronize(s));
  }
  return py::make_tuple(index, curve);
}

void check_scale(float s, const char* what) {
  TRTCAL_CHECK_ARG(
      std::isfinite(s) && s > 0.f,
      std::string("trtcal: ") + what + " must be a positive finite float32, got " + std::to_string(s));
}

py::array_t<uint8_t> fp8_silu_table(float scale_in, float scale_out) {
  check_scale(scale_in, "scale_in");
  check_scale(scale_out, "scale_out");
  py::array_t<uint8_t> t(kSiluTableSize);
  silu_fp8_table(scale_in, scale_out, t.mutable_data());
  return t;
}

}  // namespace

void init_fp8_bindings(py::module_& m) {
  m.def("silu_fp8_table", &fp8_silu_table, py::arg("scale_in"), py::arg("scale_out"),
        "uint8[256]: the E4M3 SiLU table by input byte (csrc/kernels/silu.h)");
  m.def(
      "silu_fp8",
      [](uintptr_t x, uintptr_t y, size_t n, float scale_in, float scale_out, uintptr_t stream, int device) {
        check_scale(scale_in, "scale_in");
        check_scale(scale_out, "scale_out");
        uint8_t table[kSiluTableSize];
        silu_fp8_table(scale_in, scale_out, table);
        py::gil_scoped_release nogil;
        DeviceGuard g(device);
        TRTCAL_CHECK_CUDA(
            silu_fp8(as_ptr<const uint8_t>(x), as_ptr<uint8_t>(y), n, table, as_stream(stream)));
      },
      py::arg("x"), py::arg("y"), py::arg("n"), py::arg("scale_in"), py::arg("scale_out"), py::arg("stream"),
      py::arg("device"));
  m.def("fp8_search", &fp8_search_host, py::arg("device"), py::arg("method"), py::arg("counts"),
        py::arg("centers"), py::arg("nbins"), py::arg("totals"), py::arg("ncand"), py::arg("cand_keep"),
        py::arg("cand_amax"), py::arg("tol"), py::arg("stream"),
        "FP8 (E4M3) MSE (method 0) or KL (method 1) search over packed host histograms; waits. "
        "Returns (chosen candidate per tensor, curve).");
}

}  // namespace trtcal
