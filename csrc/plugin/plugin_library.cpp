// Entry points of libtrtcal_plugins.so for IPluginRegistry::loadLibrary and trtexec
// --staticPlugins / --dynamicPlugins, and the library's logger. Only these two symbols are
// exported; no TensorRT library is linked.
#include <cstdio>
#include <mutex>

#include "silu_plugin.h"

#define TRTCAL_PLUGIN_EXPORT extern "C" __attribute__((visibility("default")))

namespace trtcal {
namespace plugin {
namespace {

std::mutex g_logger_mutex;
nvinfer1::ILoggerFinder* g_logger_finder = nullptr;

char const* severity_name(nvinfer1::ILogger::Severity s) {
  switch (s) {
    case nvinfer1::ILogger::Severity::kINTERNAL_ERROR:
      return "INTERNAL_ERROR";
    case nvinfer1::ILogger::Severity::kERROR:
      return "ERROR";
    case nvinfer1::ILogger::Severity::kWARNING:
      return "WARNING";
    case nvinfer1::ILogger::Severity::kINFO:
      return "INFO";
    case nvinfer1::ILogger::Severity::kVERBOSE:
      return "VERBOSE";
  }
  return "LOG";
}

}  // namespace

void log(nvinfer1::ILogger::Severity severity, std::string const& message) noexcept {
  try {
    nvinfer1::ILogger* logger = nullptr;
    {
      std::lock_guard<std::mutex> lock(g_logger_mutex);
      if (g_logger_finder != nullptr) logger = g_logger_finder->findLogger();
    }
    if (logger != nullptr) {
      logger->log(severity, message.c_str());
    } else if (severity <= nvinfer1::ILogger::Severity::kWARNING) {
      std::fprintf(stderr, "[%s] %s\n", severity_name(severity), message.c_str());
    }
  } catch (...) {
  }
}

}  // namespace plugin
}  // namespace trtcal

TRTCAL_PLUGIN_EXPORT void setLoggerFinder(nvinfer1::ILoggerFinder* finder) {
  std::lock_guard<std::mutex> lock(trtcal::plugin::g_logger_mutex);
  trtcal::plugin::g_logger_finder = finder;
}

TRTCAL_PLUGIN_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators) {
  static trtcal::plugin::SiluPluginCreator silu_creator;
  static nvinfer1::IPluginCreatorInterface* const creators[] = {&silu_creator};
  nbCreators = 1;
  return creators;
}
