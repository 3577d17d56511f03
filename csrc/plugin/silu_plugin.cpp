// SiluPlugin: build-time queries, shape/format negotiation and enqueue on trtcal's kernels.
#include "silu_plugin.h"

#include <cmath>
#include <cstring>
#include <exception>
#include <new>

#include "kernels/silu.h"

namespace trtcal {
namespace plugin {

using nvinfer1::DataType;
using nvinfer1::DynamicPluginTensorDesc;
using nvinfer1::PluginTensorDesc;
using nvinfer1::TensorFormat;

namespace {

bool good(float s) { return std::isfinite(s) && s > 0.f; }

// The plugin's one CUDA check (it does not use the extension's): a failed kernel call is
// reported through fail() and ends the member function with its result.
#define TRTCAL_PLUGIN_TRY(call)                                                          \
  do {                                                                                   \
    const cudaError_t trtcal_plugin_err_ = (call);                                       \
    if (trtcal_plugin_err_ != cudaSuccess)                                               \
      return fail(std::string("CUDA error: ") + cudaGetErrorString(trtcal_plugin_err_)); \
  } while (0)

char const* type_name(DataType t) {
  switch (t) {
    case DataType::kFLOAT:
      return "FP32";
    case DataType::kHALF:
      return "FP16";
    case DataType::kBF16:
      return "BF16";
    case DataType::kINT8:
      return "INT8";
    case DataType::kFP8:
      return "FP8";
    default:
      return "an unsupported type";
  }
}

}  // namespace

bool Int8Scales::valid() const { return good(in) && good(out); }

Int8Scales Int8Scales::from_desc(PluginTensorDesc const& in, PluginTensorDesc const& out) {
  Int8Scales s;
  if (good(in.scale) && good(out.scale)) {
    s.in = in.scale;
    s.out = out.scale;
  }
  return s;
}

SiluPlugin::SiluPlugin(std::string layer_name, Int8Scales fields)
    : layer_name_(std::move(layer_name)), fields_(fields) {}

// Copies the state; the serialisation view is rebuilt by getFieldsToSerialize.
SiluPlugin::SiluPlugin(SiluPlugin const& other)
    : nvinfer1::IPluginV3(other),
      nvinfer1::IPluginV3OneCore(other),
      nvinfer1::IPluginV3OneBuild(other),
      nvinfer1::IPluginV3OneRuntime(other),
      layer_name_(other.layer_name_),
      fields_(other.fields_),
      adopted_(other.adopted_),
      table_scales_(other.table_scales_),
      fp8_table_scales_(other.fp8_table_scales_) {
  std::memcpy(table_, other.table_, sizeof(table_));
  std::memcpy(fp8_table_, other.fp8_table_, sizeof(fp8_table_));
}

int32_t SiluPlugin::fail(std::string const& what) const {
  log(nvinfer1::ILogger::Severity::kERROR, "trtcal SiLU plugin '" + layer_name_ + "': " + what);
  return -1;
}

nvinfer1::IPluginCapability* SiluPlugin::getCapabilityInterface(
    nvinfer1::PluginCapabilityType type) noexcept {
  switch (type) {
    case nvinfer1::PluginCapabilityType::kCORE:
      return static_cast<nvinfer1::IPluginV3OneCore*>(this);
    case nvinfer1::PluginCapabilityType::kBUILD:
      return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
    case nvinfer1::PluginCapabilityType::kRUNTIME:
      return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
  }
  return nullptr;
}

nvinfer1::IPluginV3* SiluPlugin::clone() noexcept {
  try {
    return new SiluPlugin(*this);
  } catch (std::exception const& e) {
    fail(std::string("clone failed: ") + e.what());
    return nullptr;
  }
}

bool SiluPlugin::supported_type(DataType t) {
  return t == DataType::kFLOAT || t == DataType::kHALF || t == DataType::kBF16 || t == DataType::kINT8 ||
         t == DataType::kFP8;
}

int32_t SiluPlugin::getOutputDataTypes(DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes,
                                       int32_t nbInputs) const noexcept {
  if (nbInputs != 1 || nbOutputs != 1 || outputTypes == nullptr || inputTypes == nullptr)
    return fail("expects 1 input and 1 output, got " + std::to_string(nbInputs) + " and " +
                std::to_string(nbOutputs));
  if (!supported_type(inputTypes[0]))
    return fail(std::string("input type ") + type_name(inputTypes[0]) +
                " is not supported (accepted: FP32, FP16, BF16, INT8, FP8)");
  outputTypes[0] = inputTypes[0];
  return 0;
}

int32_t SiluPlugin::getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
                                    nvinfer1::DimsExprs const* /*shapeInputs*/, int32_t nbShapeInputs,
                                    nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
                                    nvinfer1::IExprBuilder& /*exprBuilder*/) noexcept {
  if (nbInputs != 1 || nbOutputs != 1 || nbShapeInputs != 0 || inputs == nullptr || outputs == nullptr)
    return fail("expects 1 input, no shape inputs and 1 output");
  outputs[0] = inputs[0];  // element-wise: any rank, dynamic dimensions pass through
  return 0;
}

bool SiluPlugin::supportsFormatCombination(int32_t pos, DynamicPluginTensorDesc const* inOut,
                                           int32_t nbInputs, int32_t nbOutputs) noexcept {
  if (inOut == nullptr || nbInputs != 1 || nbOutputs != 1 || pos < 0 || pos > 1) return false;
  PluginTensorDesc const& d = inOut[pos].desc;
  if (d.format != TensorFormat::kLINEAR) return false;
  if (pos == 1) return d.type == inOut[0].desc.type;
  if (!supported_type(d.type)) return false;
  if (d.type == DataType::kINT8) return fields_.valid() || kImplicitInt8;
  if (d.type == DataType::kFP8) return fields_.valid();  // FP8 is explicit only: the scales are fields
  return true;
}

int32_t SiluPlugin::configurePlugin(DynamicPluginTensorDesc const* in, int32_t nbInputs,
                                    DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept {
  if (in == nullptr || out == nullptr || nbInputs != 1 || nbOutputs != 1)
    return fail("configurePlugin expects 1 input and 1 output");
  if (!supported_type(in[0].desc.type) || out[0].desc.type != in[0].desc.type)
    return fail(std::string("unsupported types: ") + type_name(in[0].desc.type) + " in, " +
                type_name(out[0].desc.type) + " out");
  if (in[0].desc.type == DataType::kINT8 && !fields_.valid()) {
    Int8Scales s = Int8Scales::from_desc(in[0].desc, out[0].desc);
    if (s.valid()) adopted_ = s;  // otherwise they may still arrive with onShapeChange
  }
  return 0;
}

size_t SiluPlugin::getWorkspaceSize(DynamicPluginTensorDesc const*, int32_t, DynamicPluginTensorDesc const*,
                                    int32_t) const noexcept {
  return 0;
}

Int8Scales SiluPlugin::int8_scales(PluginTensorDesc const& in, PluginTensorDesc const& out) {
  if (fields_.valid()) return fields_;
  Int8Scales s = Int8Scales::from_desc(in, out);
  if (s.valid()) adopted_ = s;
  return adopted_;
}

int32_t SiluPlugin::onShapeChange(PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out,
                                  int32_t nbOutputs) noexcept {
  if (in == nullptr || out == nullptr || nbInputs != 1 || nbOutputs != 1)
    return fail("onShapeChange expects 1 input and 1 output");
  if (!supported_type(in[0].type) || out[0].type != in[0].type)
    return fail(std::string("unsupported types: ") + type_name(in[0].type) + " in, " +
                type_name(out[0].type) + " out");
  if (in[0].dims.nbDims != out[0].dims.nbDims) return fail("input and output ranks differ");
  for (int32_t i = 0; i < in[0].dims.nbDims; ++i)
    if (in[0].dims.d[i] != out[0].dims.d[i]) return fail("input and output shapes differ");
  if (in[0].type == DataType::kINT8) int8_scales(in[0], out[0]);
  return 0;
}

int32_t SiluPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* outputDesc,
                            void const* const* inputs, void* const* outputs, void* /*workspace*/,
                            cudaStream_t stream) noexcept {
  if (inputDesc == nullptr || outputDesc == nullptr || inputs == nullptr || outputs == nullptr)
    return fail("enqueue got null descriptors or buffers");
  PluginTensorDesc const& id = inputDesc[0];
  PluginTensorDesc const& od = outputDesc[0];
  if (id.type != od.type) return fail("input and output types differ");
  int64_t n = 1;
  for (int32_t i = 0; i < id.dims.nbDims; ++i) {
    if (id.dims.d[i] < 0) return fail("enqueue got an unresolved (negative) dimension");
    n *= id.dims.d[i];
  }
  if (n == 0) return 0;
  void const* x = inputs[0];
  void* y = outputs[0];

  switch (id.type) {
    case DataType::kFLOAT:
      TRTCAL_PLUGIN_TRY(silu(x, y, DType::kFloat32, (size_t)n, stream));
      break;
    case DataType::kHALF:
      TRTCAL_PLUGIN_TRY(silu(x, y, DType::kFloat16, (size_t)n, stream));
      break;
    case DataType::kBF16:
      TRTCAL_PLUGIN_TRY(silu(x, y, DType::kBFloat16, (size_t)n, stream));
      break;
    case DataType::kINT8: {
      Int8Scales s = int8_scales(id, od);
      if (!s.valid())
        return fail(
            "INT8 needs scales: give the plugin fields scale_in and scale_out (explicit "
            "quantization) or calibrate the network (implicit INT8, TensorRT <= 10)");
      if (s.in != table_scales_.in || s.out != table_scales_.out) {
        silu_int8_table(s.in, s.out, table_);
        table_scales_ = s;
      }
      TRTCAL_PLUGIN_TRY(
          silu_int8(static_cast<int8_t const*>(x), static_cast<int8_t*>(y), (size_t)n, table_, stream));
    } break;
    case DataType::kFP8: {
      if (!fields_.valid())
        return fail("FP8 needs the plugin fields scale_in and scale_out (amax / 448 of the FP8 Q/DQ pairs)");
      if (fields_.in != fp8_table_scales_.in || fields_.out != fp8_table_scales_.out) {
        silu_fp8_table(fields_.in, fields_.out, fp8_table_);
        fp8_table_scales_ = fields_;
      }
      TRTCAL_PLUGIN_TRY(
          silu_fp8(static_cast<uint8_t const*>(x), static_cast<uint8_t*>(y), (size_t)n, fp8_table_, stream));
    } break;
    default:
      return fail(std::string("enqueue got ") + type_name(id.type));
  }
  return 0;
}

nvinfer1::IPluginV3* SiluPlugin::attachToContext(nvinfer1::IPluginResourceContext* /*context*/) noexcept {
  return clone();
}

nvinfer1::PluginFieldCollection const* SiluPlugin::getFieldsToSerialize() noexcept {
  try {
    serial_fields_.clear();
    Int8Scales s = fields_.valid() ? fields_ : adopted_;
    if (s.valid()) {
      serial_scales_[0] = s.in;
      serial_scales_[1] = s.out;
      serial_fields_.emplace_back(kFieldScaleIn, &serial_scales_[0], nvinfer1::PluginFieldType::kFLOAT32, 1);
      serial_fields_.emplace_back(kFieldScaleOut, &serial_scales_[1], nvinfer1::PluginFieldType::kFLOAT32, 1);
    }
    serial_collection_.nbFields = static_cast<int32_t>(serial_fields_.size());
    serial_collection_.fields = serial_fields_.empty() ? nullptr : serial_fields_.data();
    return &serial_collection_;
  } catch (std::exception const& e) {
    fail(std::string("getFieldsToSerialize failed: ") + e.what());
    return nullptr;
  }
}

}  // namespace plugin
}  // namespace trtcal
