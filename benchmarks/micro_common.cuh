// What the standalone micro-benchmarks (micro_*.cu) share: an error check, the float16 test data
// and the timing loop (CUDA events, 5 warm-up launches, the median of 20).
#pragma once
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <vector>

#define CK(x)                                                               \
  do {                                                                      \
    cudaError_t e = (x);                                                    \
    if (e != cudaSuccess) {                                                 \
      std::printf("%s:%d %s\n", __FILE__, __LINE__, cudaGetErrorString(e)); \
      return 1;                                                             \
    }                                                                       \
  } while (0)

// A cheap normal-ish float16 value per index: the sum of 4 hashed uniforms, centred (|x| < 3.4).
__global__ void fill(__half* x, size_t n, unsigned seed) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    unsigned h = (unsigned)i * 2654435761u ^ seed;
    float s = 0.f;
    for (int k = 0; k < 4; ++k) {
      h ^= h >> 13; h *= 0x5bd1e995u; h ^= h >> 15;
      s += (h & 0xffffff) / 16777216.f;
    }
    x[i] = __float2half((s - 2.f) * 1.7f);
  }
}

// Median milliseconds of `launch()` (which queues the work on the legacy stream); -1 on error.
template <typename Launch>
float median_ms(Launch launch) {
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  std::vector<float> t;
  for (int r = 0; r < 25; ++r) {
    cudaEventRecord(a);
    launch();
    cudaEventRecord(b);
    cudaEventSynchronize(b);
    float ms = 0;
    cudaEventElapsedTime(&ms, a, b);
    if (r >= 5) t.push_back(ms);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(t.begin(), t.end());
  if (cudaGetLastError() != cudaSuccess) return -1.f;
  return t[t.size() / 2];
}

inline int sm_count() {
  int sms = 0;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  return sms;
}
