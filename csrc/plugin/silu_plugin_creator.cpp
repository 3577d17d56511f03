// SiluPluginCreator: field names, validation of plugin fields, plugin creation.
#include <cmath>
#include <cstring>
#include <exception>
#include <new>

#include "silu_plugin.h"

namespace trtcal {
namespace plugin {

using nvinfer1::PluginFieldType;

namespace {

bool read_scale(nvinfer1::PluginField const& f, float& value, std::string& error) {
  std::string const name = f.name;
  if (f.data == nullptr) {
    error = "field '" + name + "' has no data";
    return false;
  }
  if (f.length != 1) {
    error = "field '" + name + "' must hold 1 value, got " + std::to_string(f.length);
    return false;
  }
  if (f.type == PluginFieldType::kFLOAT32) {
    std::memcpy(&value, f.data, sizeof(float));
  } else if (f.type == PluginFieldType::kFLOAT64) {
    double d;
    std::memcpy(&d, f.data, sizeof(double));
    value = static_cast<float>(d);
  } else {
    error = "field '" + name + "' must be kFLOAT32 (or kFLOAT64), got type " +
            std::to_string(static_cast<int>(f.type));
    return false;
  }
  if (!(std::isfinite(value) && value > 0.f)) {
    error = "field '" + name + "' must be a positive finite scale, got " + std::to_string(value);
    return false;
  }
  return true;
}

}  // namespace

bool parse_silu_fields(nvinfer1::PluginFieldCollection const* fc, Int8Scales& scales, std::string& error) {
  scales = Int8Scales{};
  if (fc == nullptr) return true;
  if (fc->nbFields < 0 || (fc->nbFields > 0 && fc->fields == nullptr)) {
    error = "malformed field collection";
    return false;
  }
  bool has_in = false, has_out = false;
  for (int32_t i = 0; i < fc->nbFields; ++i) {
    nvinfer1::PluginField const& f = fc->fields[i];
    if (f.name == nullptr) {
      error = "field " + std::to_string(i) + " has no name";
      return false;
    }
    bool* seen = nullptr;
    float* target = nullptr;
    if (std::strcmp(f.name, kFieldScaleIn) == 0) {
      seen = &has_in;
      target = &scales.in;
    } else if (std::strcmp(f.name, kFieldScaleOut) == 0) {
      seen = &has_out;
      target = &scales.out;
    } else {
      error = std::string("unknown field '") + f.name + "' (accepted: scale_in, scale_out)";
      return false;
    }
    if (*seen) {
      error = std::string("field '") + f.name + "' given twice";
      return false;
    }
    *seen = true;
    if (!read_scale(f, *target, error)) return false;
  }
  if (has_in != has_out) {
    error = "scale_in and scale_out must be given together";
    return false;
  }
  return true;
}

SiluPluginCreator::SiluPluginCreator() {
  fields_.emplace_back(kFieldScaleIn, nullptr, PluginFieldType::kFLOAT32, 1);
  fields_.emplace_back(kFieldScaleOut, nullptr, PluginFieldType::kFLOAT32, 1);
  collection_.nbFields = static_cast<int32_t>(fields_.size());
  collection_.fields = fields_.data();
}

nvinfer1::IPluginV3* SiluPluginCreator::createPlugin(char const* name,
                                                     nvinfer1::PluginFieldCollection const* fc,
                                                     nvinfer1::TensorRTPhase /*phase*/) noexcept {
  try {
    std::string const layer = name ? name : "";
    Int8Scales scales;
    std::string error;
    if (!parse_silu_fields(fc, scales, error)) {
      log(nvinfer1::ILogger::Severity::kERROR, "trtcal SiLU plugin '" + layer + "': " + error);
      return nullptr;
    }
    return new SiluPlugin(layer, scales);
  } catch (std::exception const& e) {
    log(nvinfer1::ILogger::Severity::kERROR,
        std::string("trtcal SiLU plugin: createPlugin failed: ") + e.what());
    return nullptr;
  }
}

}  // namespace plugin
}  // namespace trtcal
