// The TensorRT IPluginV3 plugin "SiLU" (version "1", namespace "trtcal") and its creator.
//
// y = x * sigmoid(x) for one input of any rank and dynamic shape; output type = input type,
// linear format. FP32, FP16, BF16 run trtcal's float kernels; INT8 in / INT8 out is the exact
// 256-entry table built from the scales (csrc/kernels/silu.h).
//
// INT8 scales, in this order of preference:
//   1. plugin fields `scale_in` and `scale_out` (kFLOAT32, length 1, both or neither): explicit
//      quantization, where the graph reads Q(scale_in) -> SiLU -> DQ(scale_out);
//   2. PluginTensorDesc::scale of the input and output (implicit INT8, TensorRT <= 10), read at
//      configurePlugin / onShapeChange / enqueue and serialised as fields once known.
// No workspace. Builds against TensorRT 10.x and 11.x headers; links no TensorRT library.
#pragma once
#include <NvInferRuntime.h>

#include <cstdint>
#include <string>
#include <vector>

namespace trtcal {
namespace plugin {

constexpr char const* kSiluName = "SiLU";
constexpr char const* kSiluVersion = "1";
constexpr char const* kSiluNamespace = "trtcal";
constexpr char const* kFieldScaleIn = "scale_in";
constexpr char const* kFieldScaleOut = "scale_out";

// INT8 formats are offered without field scales only where implicit INT8 (desc.scale) exists.
#if NV_TENSORRT_MAJOR <= 10
constexpr bool kImplicitInt8 = true;
#else
constexpr bool kImplicitInt8 = false;
#endif

// A pair of INT8 scales; unset (0) until both are known.
struct Int8Scales {
  float in = 0.f;
  float out = 0.f;
  bool valid() const;
  static Int8Scales from_desc(nvinfer1::PluginTensorDesc const& in, nvinfer1::PluginTensorDesc const& out);
};

class SiluPlugin final : public nvinfer1::IPluginV3,
                         public nvinfer1::IPluginV3OneCore,
                         public nvinfer1::IPluginV3OneBuild,
                         public nvinfer1::IPluginV3OneRuntime {
 public:
  // `fields`: scales from plugin fields (valid) or none (unset).
  SiluPlugin(std::string layer_name, Int8Scales fields);
  SiluPlugin(SiluPlugin const& other);
  SiluPlugin& operator=(SiluPlugin const&) = delete;
  ~SiluPlugin() override = default;

  // IPluginV3
  nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
  nvinfer1::IPluginV3* clone() noexcept override;

  // IPluginV3OneCore
  char const* getPluginName() const noexcept override { return kSiluName; }
  char const* getPluginVersion() const noexcept override { return kSiluVersion; }
  char const* getPluginNamespace() const noexcept override { return kSiluNamespace; }

  // IPluginV3OneBuild
  int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
                          nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
  int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
                             nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
  int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
                          nvinfer1::DimsExprs const* shapeInputs, int32_t nbShapeInputs,
                          nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
                          nvinfer1::IExprBuilder& exprBuilder) noexcept override;
  bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut,
                                 int32_t nbInputs, int32_t nbOutputs) noexcept override;
  int32_t getNbOutputs() const noexcept override { return 1; }
  size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
                          nvinfer1::DynamicPluginTensorDesc const* outputs,
                          int32_t nbOutputs) const noexcept override;

  // IPluginV3OneRuntime
  int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
                        nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
  int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
                  void const* const* inputs, void* const* outputs, void* workspace,
                  cudaStream_t stream) noexcept override;
  nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
  nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

 private:
  static bool supported_type(nvinfer1::DataType t);
  // The INT8 scales to run with (fields first, then what the descriptors carried).
  Int8Scales int8_scales(nvinfer1::PluginTensorDesc const& in, nvinfer1::PluginTensorDesc const& out);
  int32_t fail(std::string const& what) const;

  std::string layer_name_;
  Int8Scales fields_;   // from plugin fields
  Int8Scales adopted_;  // from PluginTensorDesc::scale (implicit INT8)
  int8_t table_[256] = {};
  Int8Scales table_scales_;      // scales table_ was built from
  uint8_t fp8_table_[256] = {};  // E4M3 -> E4M3 table (by input byte), built from fields_
  Int8Scales fp8_table_scales_;
  float serial_scales_[2] = {0.f, 0.f};
  std::vector<nvinfer1::PluginField> serial_fields_;
  nvinfer1::PluginFieldCollection serial_collection_{};
};

class SiluPluginCreator final : public nvinfer1::IPluginCreatorV3One {
 public:
  SiluPluginCreator();
  nvinfer1::IPluginV3* createPlugin(char const* name, nvinfer1::PluginFieldCollection const* fc,
                                    nvinfer1::TensorRTPhase phase) noexcept override;
  nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override { return &collection_; }
  char const* getPluginName() const noexcept override { return kSiluName; }
  char const* getPluginVersion() const noexcept override { return kSiluVersion; }
  char const* getPluginNamespace() const noexcept override { return kSiluNamespace; }

 private:
  std::vector<nvinfer1::PluginField> fields_;
  nvinfer1::PluginFieldCollection collection_{};
};

// Parses and validates plugin fields. Returns false (and sets `error`) for unknown names,
// wrong types or lengths, null data, non-positive or non-finite scales, duplicates, or one
// scale without the other.
bool parse_silu_fields(nvinfer1::PluginFieldCollection const* fc, Int8Scales& scales, std::string& error);

// Logging through the ILoggerFinder TensorRT hands the library (stderr before that).
void log(nvinfer1::ILogger::Severity severity, std::string const& message) noexcept;

}  // namespace plugin
}  // namespace trtcal
