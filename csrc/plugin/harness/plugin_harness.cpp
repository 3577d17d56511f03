// trtcal_plugin_harness: drives libtrtcal_plugins.so the way TensorRT does, without TensorRT.
//
//   trtcal_plugin_harness <path to libtrtcal_plugins.so> [--no-gpu] [--verbose]
//
// dlopen + getCreators/setLoggerFinder, creator lookup, createPlugin from PluginFields,
// capability interfaces, clone, output types and shapes, supportsFormatCombination for every
// type x format pair, configurePlugin, workspace, then (with a GPU) onShapeChange + enqueue on
// device buffers and a stream against an independent float64 reference for every type and
// several ranks, sizes and alignments, serialisation through getFieldsToSerialize and
// recreation with identical output; malformed fields must give nullptr, not a crash.
// Prints one PASS/FAIL line per check and exits 1 if any failed.
#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>
#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

using namespace nvinfer1;

namespace {

int g_failed = 0, g_passed = 0;
bool g_verbose = false;

void check(bool ok, std::string const& what) {
  if (ok) {
    ++g_passed;
    if (g_verbose) std::printf("PASS %s\n", what.c_str());
  } else {
    ++g_failed;
    std::printf("FAIL %s\n", what.c_str());
  }
}

void section(char const* name) {
  std::printf("-- %s: %d passed, %d failed so far\n", name, g_passed, g_failed);
}

class CountingLogger : public ILogger {
 public:
  void log(Severity severity, AsciiChar const* msg) noexcept override {
    if (severity <= Severity::kERROR) ++errors;
    last = msg ? msg : "";
    if (g_verbose) std::printf("  [plugin log %d] %s\n", static_cast<int>(severity), last.c_str());
  }
  int errors = 0;
  std::string last;
};

class Finder : public ILoggerFinder {
 public:
  explicit Finder(ILogger* l) : logger_(l) {}
  ILogger* findLogger() override { return logger_; }

 private:
  ILogger* logger_;
};

// Dimension expressions are only passed through by the plugin: opaque sentinels suffice.
struct SentinelDim : IDimensionExpr {
  SentinelDim() { mImpl = nullptr; }
};
struct NoExprBuilder : IExprBuilder {
  NoExprBuilder() { mImpl = nullptr; }
};

// ---- Host reference (float64), independent of the library -------------------------

double silu64(double x) {
  if (std::isnan(x)) return x;
  if (std::isinf(x)) return x > 0 ? x : -0.0;
  const double t = std::exp(-std::fabs(x));
  return (x >= 0 ? x : x * t) / (1.0 + t);
}

float half_to_float(uint16_t h) {
  const uint32_t sign = (h >> 15) & 1u, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  float v;
  if (exp == 0) {
    v = std::ldexp(static_cast<float>(man), -24);
  } else if (exp == 31) {
    v = man ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
  } else {
    v = std::ldexp(static_cast<float>(man | 0x400u), static_cast<int>(exp) - 25);
  }
  return sign ? -v : v;
}

float bf16_to_float(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// E4M3FN byte -> value (NaN for 0x7F / 0xFF), written here independently of csrc/kernels/silu.cu.
double e4m3_value(uint8_t c) {
  if ((c & 0x7F) == 0x7F) return std::nan("");
  const int e = (c >> 3) & 0xF, m = c & 7;
  const double v = e == 0 ? m / 512.0 : (8 + m) / 8.0 * std::pow(2.0, e - 7);
  return (c & 0x80) ? -v : v;
}

// The E4M3FN byte nearest to x (ties to the even code, saturating at +-448): a search over the
// 126 finite magnitudes, independent of the library's frexp/ldexp rounding.
uint8_t e4m3_nearest(double x) {
  if (std::isnan(x)) return 0x7F;
  const uint8_t sign = std::signbit(x) ? 0x80 : 0;
  const double a = std::fabs(x);
  int best = 0;
  for (int c = 1; c <= 0x7E; ++c) {
    const double d = std::fabs(e4m3_value(static_cast<uint8_t>(c)) - a),
                 b = std::fabs(e4m3_value(static_cast<uint8_t>(best)) - a);
    if (d < b || (d == b && (c & 1) == 0)) best = c;
  }
  return sign | static_cast<uint8_t>(best);
}

uint8_t fp8_reference(uint8_t c, float scale_in, float scale_out) {
  const double d = e4m3_value(c);
  if (std::isnan(d)) return 0x7F;
  const float v = static_cast<float>(d) * scale_in;
  return e4m3_nearest(silu64(v) / static_cast<double>(scale_out));
}

int8_t int8_reference(int q, float scale_in, float scale_out) {
  const float v = static_cast<float>(q) * scale_in;
  double r = std::nearbyint(silu64(v) / static_cast<double>(scale_out));
  r = r < -128 ? -128 : (r > 127 ? 127 : r);
  return static_cast<int8_t>(r);
}

// Allowed distance from the float64 value: `ulps` units in the last place of the output type,
// and at least `floor` (results of magnitude below 1e-36 are compared absolutely: exp of
// x < -87 is subnormal in float32).
bool close(double got, double want, int mant_bits, int min_exp, double ulps, double floor) {
  if (std::isnan(want)) return std::isnan(got);
  if (std::isinf(want)) return got == want;
  if (std::isnan(got) || std::isinf(got)) return false;
  int e = 0;
  std::frexp(want, &e);
  const int exponent = std::max(e - 1, min_exp);
  return std::fabs(got - want) <= std::max(ulps * std::ldexp(1.0, exponent - mant_bits), floor);
}

// ---- Plugin plumbing --------------------------------------------------------------

struct Caps {
  IPluginV3* plugin = nullptr;
  IPluginV3OneCore* core = nullptr;
  IPluginV3OneBuild* build = nullptr;
  IPluginV3OneRuntime* runtime = nullptr;
};

Caps caps_of(IPluginV3* p) {
  Caps c;
  c.plugin = p;
  if (!p) return c;
  c.core = static_cast<IPluginV3OneCore*>(p->getCapabilityInterface(PluginCapabilityType::kCORE));
  c.build = static_cast<IPluginV3OneBuild*>(p->getCapabilityInterface(PluginCapabilityType::kBUILD));
  c.runtime = static_cast<IPluginV3OneRuntime*>(p->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
  return c;
}

struct OwnedFields {  // a deep copy of a field collection, as TensorRT keeps in a plan
  std::vector<std::string> names;
  std::vector<std::vector<char>> data;
  std::vector<PluginField> fields;
  PluginFieldCollection fc{};
};

size_t field_type_size(PluginFieldType t) {
  switch (t) {
    case PluginFieldType::kFLOAT64:
    case PluginFieldType::kINT64:
      return 8;
    case PluginFieldType::kFLOAT32:
    case PluginFieldType::kINT32:
      return 4;
    case PluginFieldType::kFLOAT16:
    case PluginFieldType::kBF16:
    case PluginFieldType::kINT16:
      return 2;
    default:
      return 1;
  }
}

std::unique_ptr<OwnedFields> deep_copy(PluginFieldCollection const* src) {
  auto o = std::make_unique<OwnedFields>();
  if (!src) return o;
  o->names.reserve(src->nbFields);
  o->data.reserve(src->nbFields);
  for (int32_t i = 0; i < src->nbFields; ++i) {
    PluginField const& f = src->fields[i];
    o->names.emplace_back(f.name);
    const size_t bytes = field_type_size(f.type) * static_cast<size_t>(f.length);
    o->data.emplace_back(static_cast<char const*>(f.data), static_cast<char const*>(f.data) + bytes);
  }
  for (int32_t i = 0; i < src->nbFields; ++i)
    o->fields.emplace_back(o->names[i].c_str(), o->data[i].data(), src->fields[i].type,
                           src->fields[i].length);
  o->fc.nbFields = static_cast<int32_t>(o->fields.size());
  o->fc.fields = o->fields.data();
  return o;
}

PluginTensorDesc desc(DataType t, Dims d, float scale = -1.f) {
  PluginTensorDesc p{};
  p.dims = d;
  p.type = t;
  p.format = TensorFormat::kLINEAR;
  p.scale = scale;
  return p;
}

DynamicPluginTensorDesc dyn(DataType t, Dims d, float scale = -1.f) {
  DynamicPluginTensorDesc p{};
  p.desc = desc(t, d, scale);
  p.min = d;
  p.max = d;
  p.opt = d;
  return p;
}

Dims dims_of(std::vector<int64_t> const& v) {
  Dims d{};
  d.nbDims = static_cast<int32_t>(v.size());
  for (size_t i = 0; i < v.size(); ++i) d.d[i] = v[i];
  return d;
}

char const* tname(DataType t) {
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
      return "other";
  }
}

size_t elem_size(DataType t) {
  return t == DataType::kFLOAT ? 4 : ((t == DataType::kINT8 || t == DataType::kFP8) ? 1 : 2);
}

// ---- GPU runs ----------------------------------------------------------------------

struct Run {
  std::vector<uint8_t> output;  // raw bytes
  int32_t status = -1;
};

bool cuda_ok(cudaError_t e, char const* what) {
  if (e != cudaSuccess) {
    check(false, std::string(what) + ": " + cudaGetErrorString(e));
    return false;
  }
  return true;
}

// Enqueues through the runtime capability on buffers offset by `offset` elements from an
// allocation (misaligned when offset is not a multiple of 16 bytes).
Run enqueue(Caps const& c, DataType t, Dims d, std::vector<uint8_t> const& input, size_t offset,
            float scale_in, float scale_out, cudaStream_t stream) {
  Run r;
  const size_t es = elem_size(t), bytes = input.size();
  void *vx = nullptr, *vy = nullptr;
  if (!cuda_ok(cudaMalloc(&vx, bytes + 64), "cudaMalloc") ||
      !cuda_ok(cudaMalloc(&vy, bytes + 64), "cudaMalloc"))
    return r;
  char* dx = static_cast<char*>(vx);
  char* dy = static_cast<char*>(vy);
  void* x = dx + offset * es;
  void* y = dy + ((offset * 3) % 7) * es;  // a different misalignment for the output
  cuda_ok(cudaMemcpy(x, input.data(), bytes, cudaMemcpyHostToDevice), "copy in");
  cuda_ok(cudaMemset(dy, 0x5a, bytes + 64), "memset");
  // the poison and the input must be in place before the plugin's (non-blocking) stream runs
  cuda_ok(cudaDeviceSynchronize(), "sync before enqueue");
  PluginTensorDesc in = desc(t, d, scale_in), out = desc(t, d, scale_out);
  r.status = c.runtime->onShapeChange(&in, 1, &out, 1);
  if (r.status == 0) {
    void const* ins[] = {x};
    void* outs[] = {y};
    r.status = c.runtime->enqueue(&in, &out, ins, outs, nullptr, stream);
  }
  cuda_ok(cudaStreamSynchronize(stream), "sync");
  r.output.resize(bytes);
  cuda_ok(cudaMemcpy(r.output.data(), y, bytes, cudaMemcpyDeviceToHost), "copy out");
  cudaFree(dx);
  cudaFree(dy);
  return r;
}

std::vector<uint8_t> make_input(DataType t, size_t n, std::mt19937_64& rng, bool exhaustive) {
  std::vector<uint8_t> v(n * elem_size(t));
  std::student_t_distribution<float> heavy(2.0f);
  std::uniform_int_distribution<uint32_t> bits;
  if (t == DataType::kFLOAT) {
    float* f = reinterpret_cast<float*>(v.data());
    const float specials[] = {0.f,
                              -0.f,
                              std::numeric_limits<float>::infinity(),
                              -std::numeric_limits<float>::infinity(),
                              std::numeric_limits<float>::quiet_NaN(),
                              -88.8f,
                              -104.f,
                              88.f,
                              1e-40f,
                              -1e-40f,
                              3.0e38f,
                              -3.0e38f};
    for (size_t i = 0; i < n; ++i) {
      if (i < sizeof(specials) / sizeof(float)) {
        f[i] = specials[i];
      } else if (i % 5 == 4) {
        uint32_t u = bits(rng);
        std::memcpy(&f[i], &u, 4);
      } else {
        f[i] = heavy(rng) * 4.f;
      }
    }
  } else if (t == DataType::kINT8 || t == DataType::kFP8) {
    for (size_t i = 0; i < n; ++i)
      v[i] = exhaustive ? static_cast<uint8_t>(i) : static_cast<uint8_t>(bits(rng));
  } else {
    uint16_t* h = reinterpret_cast<uint16_t*>(v.data());
    for (size_t i = 0; i < n; ++i)
      h[i] = exhaustive ? static_cast<uint16_t>(i) : static_cast<uint16_t>(bits(rng));
  }
  return v;
}

// Compares an output against the float64 reference; returns the number of mismatches.
size_t verify(DataType t, std::vector<uint8_t> const& in, std::vector<uint8_t> const& out, float s_in,
              float s_out, std::string& first) {
  size_t bad = 0;
  const size_t n = in.size() / elem_size(t);
  for (size_t i = 0; i < n; ++i) {
    bool ok = true;
    double x = 0, y = 0, want = 0;
    if (t == DataType::kFLOAT) {
      float a, b;
      std::memcpy(&a, &in[4 * i], 4);
      std::memcpy(&b, &out[4 * i], 4);
      x = a, y = b, want = silu64(a);
      ok = close(y, want, 23, -126, 4.0, 1e-36);
    } else if (t == DataType::kHALF || t == DataType::kBF16) {
      uint16_t a, b;
      std::memcpy(&a, &in[2 * i], 2);
      std::memcpy(&b, &out[2 * i], 2);
      const bool half = t == DataType::kHALF;
      x = half ? half_to_float(a) : bf16_to_float(a);
      y = half ? half_to_float(b) : bf16_to_float(b);
      want = silu64(x);
      ok = half ? close(y, want, 10, -14, 1.0, 0.0) : close(y, want, 7, -126, 1.0, 1e-36);
    } else if (t == DataType::kFP8) {
      x = in[i];
      y = out[i];
      want = fp8_reference(in[i], s_in, s_out);
      ok = y == want;
    } else {
      const int q = static_cast<int8_t>(in[i]);
      x = q;
      y = static_cast<int8_t>(out[i]);
      want = int8_reference(q, s_in, s_out);
      ok = y == want;
    }
    if (!ok && bad++ == 0) {
      char buf[160];
      std::snprintf(buf, sizeof(buf), " (first at %zu: x=%.9g got %.9g want %.9g)", i, x, y, want);
      first = buf;
    }
  }
  return bad;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s <libtrtcal_plugins.so> [--no-gpu] [--verbose]\n", argv[0]);
    return 2;
  }
  bool gpu = true;
  for (int i = 2; i < argc; ++i) {
    if (std::strcmp(argv[i], "--no-gpu") == 0) gpu = false;
    if (std::strcmp(argv[i], "--verbose") == 0) g_verbose = true;
  }
  std::printf("trtcal_plugin_harness: TensorRT headers %d.%d.%d, library %s\n", NV_TENSORRT_MAJOR,
              NV_TENSORRT_MINOR, NV_TENSORRT_PATCH, argv[1]);

  // ---- Loading, as IPluginRegistry::loadLibrary does ----
  void* lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  check(lib != nullptr, std::string("dlopen: ") + (lib ? "ok" : dlerror()));
  if (!lib) return 1;
  using GetCreators = IPluginCreatorInterface* const* (*)(int32_t&);
  using SetLoggerFinder = void (*)(ILoggerFinder*);
  auto get_creators = reinterpret_cast<GetCreators>(dlsym(lib, "getCreators"));
  auto set_logger_finder = reinterpret_cast<SetLoggerFinder>(dlsym(lib, "setLoggerFinder"));
  check(get_creators != nullptr, "exports getCreators");
  check(set_logger_finder != nullptr, "exports setLoggerFinder");
  check(dlsym(lib, "getPluginCreators") == nullptr, "exports no V2 getPluginCreators");
  if (!get_creators || !set_logger_finder) return 1;
  CountingLogger logger;
  Finder finder(&logger);
  set_logger_finder(&finder);

  int32_t nb = -1;
  IPluginCreatorInterface* const* list = get_creators(nb);
  check(nb == 1 && list != nullptr, "getCreators returns 1 creator");
  IPluginCreatorV3One* creator = nullptr;
  for (int32_t i = 0; list && i < nb; ++i) {
    InterfaceInfo info = list[i]->getInterfaceInfo();
    if (std::strcmp(info.kind, "PLUGIN CREATOR_V3ONE") == 0 && info.major == 1)
      creator = static_cast<IPluginCreatorV3One*>(list[i]);
  }
  check(creator != nullptr, "creator implements IPluginCreatorV3One (PLUGIN CREATOR_V3ONE 1.x)");
  if (!creator) return 1;
  check(std::strcmp(creator->getPluginName(), "SiLU") == 0, "creator name SiLU");
  check(std::strcmp(creator->getPluginVersion(), "1") == 0, "creator version 1");
  check(std::strcmp(creator->getPluginNamespace(), "trtcal") == 0, "creator namespace trtcal");
  PluginFieldCollection const* names = creator->getFieldNames();
  bool names_ok = names && names->nbFields == 2;
  for (int32_t i = 0; names_ok && i < 2; ++i)
    names_ok = names->fields[i].type == PluginFieldType::kFLOAT32 && names->fields[i].length == 1 &&
               std::strcmp(names->fields[i].name, i == 0 ? "scale_in" : "scale_out") == 0;
  check(names_ok, "getFieldNames lists scale_in, scale_out (kFLOAT32, length 1)");
  section("loading");

  // ---- Creation from fields ----
  const float s_in = 0.0473f, s_out = 0.0291f;
  PluginField scale_fields[] = {PluginField("scale_in", &s_in, PluginFieldType::kFLOAT32, 1),
                                PluginField("scale_out", &s_out, PluginFieldType::kFLOAT32, 1)};
  PluginFieldCollection with_scales{2, scale_fields};
  PluginFieldCollection no_fields{0, nullptr};

  for (int variant = 0; variant < 2; ++variant) {
    const bool scaled = variant == 1;
    const std::string tag = scaled ? "[fields] " : "[no fields] ";
    IPluginV3* p =
        creator->createPlugin("silu_layer", scaled ? &with_scales : &no_fields, TensorRTPhase::kBUILD);
    check(p != nullptr, tag + "createPlugin");
    if (!p) continue;
    Caps c = caps_of(p);
    check(c.core && c.build && c.runtime, tag + "getCapabilityInterface gives CORE, BUILD and RUNTIME");
    if (!(c.core && c.build && c.runtime)) continue;
    check(std::strcmp(c.core->getInterfaceInfo().kind, "PLUGIN_V3ONE_CORE") == 0 &&
              std::strcmp(c.build->getInterfaceInfo().kind, "PLUGIN_V3ONE_BUILD") == 0 &&
              std::strcmp(c.runtime->getInterfaceInfo().kind, "PLUGIN_V3ONE_RUNTIME") == 0,
          tag + "capability interface kinds");
    check(std::strcmp(p->getInterfaceInfo().kind, "PLUGIN") == 0, tag + "plugin interface kind PLUGIN");
    check(std::strcmp(c.core->getPluginName(), "SiLU") == 0 &&
              std::strcmp(c.core->getPluginVersion(), "1") == 0 &&
              std::strcmp(c.core->getPluginNamespace(), "trtcal") == 0,
          tag + "core name/version/namespace");

    IPluginV3* cl = p->clone();
    Caps cc = caps_of(cl);
    check(cl != nullptr && cl != p && cc.core && std::strcmp(cc.core->getPluginName(), "SiLU") == 0,
          tag + "clone");

    check(c.build->getNbOutputs() == 1, tag + "getNbOutputs == 1");
    for (DataType t : {DataType::kFLOAT, DataType::kHALF, DataType::kBF16, DataType::kINT8}) {
      DataType o = DataType::kBOOL;
      const int32_t st = c.build->getOutputDataTypes(&o, 1, &t, 1);
      check(st == 0 && o == t, tag + "getOutputDataTypes " + tname(t) + " -> same type");
    }
    {
      DataType t = DataType::kINT32, o = DataType::kBOOL;
      const int errors = logger.errors;
      check(c.build->getOutputDataTypes(&o, 1, &t, 1) != 0 && logger.errors > errors,
            tag + "getOutputDataTypes INT32 is an error (logged)");
    }
    SentinelDim dims[Dims::MAX_DIMS];
    NoExprBuilder builder;
    for (int32_t rank = 0; rank <= Dims::MAX_DIMS; ++rank) {
      DimsExprs in{}, out{};
      in.nbDims = rank;
      for (int32_t i = 0; i < rank; ++i) in.d[i] = &dims[i];
      const int32_t st = c.build->getOutputShapes(&in, 1, nullptr, 0, &out, 1, builder);
      bool same = st == 0 && out.nbDims == rank;
      for (int32_t i = 0; same && i < rank; ++i) same = out.d[i] == in.d[i];
      check(same, tag + "getOutputShapes rank " + std::to_string(rank) + " = input shape");
    }

    // Every (type, format) pair at both positions.
    const int ntypes = EnumMax<DataType>(), nformats = EnumMax<TensorFormat>();
    int wrong = 0, accepted = 0;
    for (int ti = 0; ti < ntypes; ++ti)
      for (int fi = 0; fi < nformats; ++fi)
        for (int to = 0; to < ntypes; ++to)
          for (int fo = 0; fo < nformats; ++fo) {
            DynamicPluginTensorDesc io[2] = {dyn(static_cast<DataType>(ti), dims_of({2, 3})),
                                             dyn(static_cast<DataType>(to), dims_of({2, 3}))};
            io[0].desc.format = static_cast<TensorFormat>(fi);
            io[1].desc.format = static_cast<TensorFormat>(fo);
            const DataType it = static_cast<DataType>(ti);
            const bool linear_in = io[0].desc.format == TensorFormat::kLINEAR;
            const bool float_in = it == DataType::kFLOAT || it == DataType::kHALF || it == DataType::kBF16;
            const bool int8_in = it == DataType::kINT8 && (scaled || NV_TENSORRT_MAJOR <= 10);
            const bool fp8_in = it == DataType::kFP8 && scaled;  // FP8: explicit scales (fields) only
            const bool want0 = linear_in && (float_in || int8_in || fp8_in);
            const bool want1 = io[1].desc.format == TensorFormat::kLINEAR && to == ti;
            const bool got0 = c.build->supportsFormatCombination(0, io, 1, 1);
            const bool got1 = c.build->supportsFormatCombination(1, io, 1, 1);
            wrong += (got0 != want0) + (got1 != want1);
            accepted += got0 && got1;
          }
    check(wrong == 0, tag + "supportsFormatCombination over " + std::to_string(ntypes * nformats) +
                          "^2 pairs (" + std::to_string(wrong) + " wrong, " + std::to_string(accepted) +
                          " accepted)");
    check(!c.build->supportsFormatCombination(2, nullptr, 1, 1),
          tag + "supportsFormatCombination rejects bad pos");

    for (DataType t : {DataType::kFLOAT, DataType::kHALF, DataType::kBF16, DataType::kINT8}) {
      DynamicPluginTensorDesc in = dyn(t, dims_of({-1, 3, 5})), out = dyn(t, dims_of({-1, 3, 5}));
      in.min = out.min = dims_of({1, 3, 5});
      in.max = out.max = dims_of({64, 3, 5});
      check(c.build->configurePlugin(&in, 1, &out, 1) == 0,
            tag + "configurePlugin " + tname(t) + " (dynamic)");
      check(c.build->getWorkspaceSize(&in, 1, &out, 1) == 0, tag + "getWorkspaceSize " + tname(t) + " == 0");
    }
    {
      DynamicPluginTensorDesc in = dyn(DataType::kFLOAT, dims_of({4})),
                              out = dyn(DataType::kHALF, dims_of({4}));
      check(c.build->configurePlugin(&in, 1, &out, 1) != 0, tag + "configurePlugin FP32 -> FP16 is an error");
    }
    PluginFieldCollection const* ser = c.runtime->getFieldsToSerialize();
    check(ser != nullptr && ser->nbFields == (scaled ? 2 : 0), tag + "getFieldsToSerialize field count");
    if (scaled && ser && ser->nbFields == 2) {
      float a = 0, b = 0;
      std::memcpy(&a, ser->fields[0].data, 4);
      std::memcpy(&b, ser->fields[1].data, 4);
      check(std::strcmp(ser->fields[0].name, "scale_in") == 0 && a == s_in &&
                std::strcmp(ser->fields[1].name, "scale_out") == 0 && b == s_out &&
                ser->fields[0].type == PluginFieldType::kFLOAT32,
            tag + "getFieldsToSerialize gives scale_in, scale_out");
    }
    IPluginV3* attached = c.runtime->attachToContext(nullptr);
    check(attached != nullptr && attached != p, tag + "attachToContext gives a new plugin");
    delete attached;
    delete cl;
    delete p;
  }
  section("build-time queries");

  // ---- Malformed fields: nullptr and a logged error, never a crash ----
  {
    const int32_t i32 = 1;
    const float two[2] = {0.1f, 0.2f}, neg = -0.5f, zero = 0.f, nan = std::nanf(""), inf = INFINITY;
    const double f64 = 0.25;
    struct Case {
      char const* what;
      std::vector<PluginField> fields;
    };
    std::vector<Case> cases = {
        {"kINT32 scale", {PluginField("scale_in", &i32, PluginFieldType::kINT32, 1), scale_fields[1]}},
        {"length 2", {PluginField("scale_in", two, PluginFieldType::kFLOAT32, 2), scale_fields[1]}},
        {"negative scale", {PluginField("scale_in", &neg, PluginFieldType::kFLOAT32, 1), scale_fields[1]}},
        {"zero scale", {scale_fields[0], PluginField("scale_out", &zero, PluginFieldType::kFLOAT32, 1)}},
        {"NaN scale", {PluginField("scale_in", &nan, PluginFieldType::kFLOAT32, 1), scale_fields[1]}},
        {"Inf scale", {scale_fields[0], PluginField("scale_out", &inf, PluginFieldType::kFLOAT32, 1)}},
        {"only scale_in", {scale_fields[0]}},
        {"only scale_out", {scale_fields[1]}},
        {"unknown field",
         {scale_fields[0], scale_fields[1], PluginField("mode", &i32, PluginFieldType::kINT32, 1)}},
        {"null data", {PluginField("scale_in", nullptr, PluginFieldType::kFLOAT32, 1), scale_fields[1]}},
        {"null name", {PluginField(nullptr, &s_in, PluginFieldType::kFLOAT32, 1), scale_fields[1]}},
        {"duplicate", {scale_fields[0], scale_fields[0], scale_fields[1]}},
    };
    for (Case const& k : cases) {
      PluginFieldCollection fc{static_cast<int32_t>(k.fields.size()), k.fields.data()};
      const int errors = logger.errors;
      IPluginV3* p = creator->createPlugin("bad", &fc, TensorRTPhase::kBUILD);
      check(p == nullptr && logger.errors > errors,
            std::string("wrong fields (") + k.what + ") -> nullptr, logged");
      delete p;
    }
    PluginFieldCollection negative{-1, nullptr};
    IPluginV3* p = creator->createPlugin("bad", &negative, TensorRTPhase::kBUILD);
    check(p == nullptr, "nbFields = -1 -> nullptr");
    delete p;
    p = creator->createPlugin(nullptr, nullptr, TensorRTPhase::kRUNTIME);
    check(p != nullptr, "null name and null collection -> a plugin without scales");
    delete p;
    PluginField f64_fields[] = {PluginField("scale_in", &f64, PluginFieldType::kFLOAT64, 1), scale_fields[1]};
    PluginFieldCollection fc64{2, f64_fields};
    p = creator->createPlugin("f64", &fc64, TensorRTPhase::kBUILD);
    check(p != nullptr, "kFLOAT64 scale accepted");
    delete p;
  }
  section("field validation");

  // ---- INT8 without any scale fails at enqueue (before touching memory) ----
  {
    IPluginV3* p = creator->createPlugin("noscale", &no_fields, TensorRTPhase::kRUNTIME);
    Caps c = caps_of(p);
    PluginTensorDesc in = desc(DataType::kINT8, dims_of({16})), out = desc(DataType::kINT8, dims_of({16}));
    int8_t dummy[16];
    void const* ins[] = {dummy};
    void* outs[] = {dummy};
    const int errors = logger.errors;
    check(c.runtime && c.runtime->enqueue(&in, &out, ins, outs, nullptr, nullptr) != 0 &&
              logger.errors > errors,
          "INT8 enqueue without scales is a logged error");
    delete p;
  }

  if (!gpu) {
    std::printf("GPU checks skipped (--no-gpu)\n");
  } else {
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
      check(false, "a CUDA device is needed for the enqueue checks (pass --no-gpu to skip them)");
    } else {
      cudaStream_t stream;
      cuda_ok(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "stream");
      std::mt19937_64 rng(std::random_device{}());
      struct Config {
        DataType t;
        bool fields;  // scales from fields, else from PluginTensorDesc::scale
      };
      std::vector<Config> configs = {{DataType::kFLOAT, false},
                                     {DataType::kHALF, false},
                                     {DataType::kBF16, false},
                                     {DataType::kINT8, true},
                                     {DataType::kFP8, true}};
      if (NV_TENSORRT_MAJOR <= 10) configs.push_back({DataType::kINT8, false});
      const std::vector<std::vector<int64_t>> shapes = {{},
                                                        {1},
                                                        {7},
                                                        {3, 5, 7},
                                                        {2, 3, 5, 7, 11},
                                                        {1, 2, 1, 3, 1, 5, 1, 7},
                                                        {0, 5},
                                                        {1000003},
                                                        {2, 32, 81, 81}};
      for (Config const& cfg : configs) {
        const std::string tag = std::string("[") + tname(cfg.t) +
                                (cfg.t == DataType::kINT8 ? (cfg.fields ? " fields" : " desc.scale") : "") +
                                "] ";
        IPluginV3* p =
            creator->createPlugin("silu", cfg.fields ? &with_scales : &no_fields, TensorRTPhase::kBUILD);
        IPluginV3* rt_plugin = caps_of(p).runtime->attachToContext(nullptr);
        Caps c = caps_of(rt_plugin);
        const float desc_in = cfg.fields ? -1.f : s_in, desc_out = cfg.fields ? -1.f : s_out;
        std::vector<std::vector<int64_t>> all = shapes;
        if (cfg.t == DataType::kHALF || cfg.t == DataType::kBF16)
          all.push_back({65536});                                                       // every 16-bit input
        if (cfg.t == DataType::kINT8 || cfg.t == DataType::kFP8) all.push_back({256});  // every code
        for (auto const& shape : all) {
          int64_t n = 1;
          for (int64_t v : shape) n *= v;
          const bool exhaustive = (shape.size() == 1 && (shape[0] == 65536 || shape[0] == 256));
          std::vector<uint8_t> input = make_input(cfg.t, static_cast<size_t>(n), rng, exhaustive);
          std::string dims = "[";
          for (size_t i = 0; i < shape.size(); ++i) dims += (i ? "," : "") + std::to_string(shape[i]);
          dims += "]";
          for (size_t offset : {size_t(0), size_t(1), size_t(3)}) {
            Run r = enqueue(c, cfg.t, dims_of(shape), input, offset, desc_in, desc_out, stream);
            std::string first;
            const size_t bad = r.status == 0 ? verify(cfg.t, input, r.output, s_in, s_out, first) : 0;
            check(r.status == 0 && bad == 0, tag + "enqueue " + dims + " offset " + std::to_string(offset) +
                                                 ": status " + std::to_string(r.status) + ", " +
                                                 std::to_string(bad) + " mismatches" + first);
            if (offset != 1) continue;
            // Serialise, recreate at runtime from the copied fields, run again: same bytes.
            auto owned = deep_copy(c.runtime->getFieldsToSerialize());
            IPluginV3* again = creator->createPlugin("silu", &owned->fc, TensorRTPhase::kRUNTIME);
            Caps ca = caps_of(again);
            check(again != nullptr, tag + "recreate from getFieldsToSerialize " + dims);
            if (!again) continue;
            // a recreated INT8 plugin must not need the descriptor scales any more
            Run r2 = enqueue(ca, cfg.t, dims_of(shape), input, offset, -1.f, -1.f, stream);
            const bool int8_desc = cfg.t == DataType::kINT8 && !cfg.fields;
            check(r2.status == 0 && r2.output == r.output,
                  tag + "recreated plugin gives identical output " + dims +
                      (int8_desc ? " (scales adopted from desc.scale were serialised)" : ""));
            delete again;
          }
        }
        delete rt_plugin;
        delete p;
      }
      cudaStreamDestroy(stream);
    }
    section("enqueue on the GPU");
  }

  std::printf("%s: %d passed, %d failed\n", g_failed ? "FAILED" : "OK", g_passed, g_failed);
  // The library stays loaded: TensorRT never unloads a library whose creators it holds.
  return g_failed ? 1 : 0;
}
