// The kernels' enums, exported so that Python reads their codes from trtcal._C instead of
// copying them (python/trtcal/_arrays.py DTYPE_CODES, python/trtcal/range_search.py).
// Member names are what the Python side calls them; the bindings still take plain ints.
#include "common.h"
#include "kernels/minmax.h"
#include "kernels/range_search.h"

namespace trtcal {

void init_enum_bindings(py::module_& m) {
  py::enum_<DType>(m, "DType", "Element types of the kernels (csrc/kernels/dtype.h)")
      .value("float32", DType::kFloat32)
      .value("float16", DType::kFloat16)
      .value("bfloat16", DType::kBFloat16)
      .value("int8", DType::kInt8);
  py::enum_<RangeMethod>(m, "RangeMethod", "Range-search methods (csrc/kernels/range_search.h)")
      .value("entropy_proportional", kRangeEntropyProportional)
      .value("entropy_onnxruntime", kRangeEntropyOnnxRuntime)
      .value("mse", kRangeMse)
      .value("percentile", kRangePercentile);
  py::enum_<NonFinite>(m, "NonFinite", "Non-finite value counters (csrc/kernels/minmax.h)")
      .value("nan", kNaN)
      .value("posinf", kPosInf)
      .value("neginf", kNegInf);
}

}  // namespace trtcal
