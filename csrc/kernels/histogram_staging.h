// Pinned descriptors and their device copies for histogram_update_many, per device. Two
// rings of slots, each slot guarded by an event until its copy has left it, so that the host
// waits for the GPU only when it is a whole ring ahead: small launches (2..kSmallItems
// tensors; a single tensor takes the single-tensor kernels and no descriptors) share one
// arena allocated once, so the steady state neither waits nor allocates; larger batches (one
// per forward) use a short ring of slots that grow to fit. Allocation mid-forward
// (cudaMallocHost) or a shallow ring made the host wait and serialised host and GPU
// (benchmarks/NOTES.md, PyTorch hooks). Framework-free: the Python binding and C++ callers
// share it. Not thread-safe (one caller at a time per ring).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <vector>

#include "histogram.h"

namespace trtcal {

class HistogramStagingRing {
 public:
  static constexpr int kSmallSlots = 1024;
  static constexpr size_t kSmallItems = 8;
  static constexpr int kLargeSlots = 16;

  explicit HistogramStagingRing(int device) : device_(device) {}
  ~HistogramStagingRing();  // frees on `device` (makes it current for the time)
  HistogramStagingRing(const HistogramStagingRing&) = delete;
  HistogramStagingRing& operator=(const HistogramStagingRing&) = delete;

  // A slot with room for n descriptors: *host (pinned) and *dev (device) arrays. Waits for the
  // copy out of the slot's previous use; allocates on first use or to grow. The current device
  // must be `device`.
  cudaError_t take(size_t n, HistogramBatchItem** host, HistogramBatchItem** dev);
  // After the copy out of the slot last taken was queued on `stream`.
  cudaError_t copied(cudaStream_t stream);

 private:
  struct Slot {
    HistogramBatchItem* host = nullptr;
    HistogramBatchItem* dev = nullptr;
    cudaEvent_t done = nullptr;
    size_t capacity = 0;
    bool used = false;
  };
  int device_;
  HistogramBatchItem* small_host_ = nullptr;
  HistogramBatchItem* small_dev_ = nullptr;
  std::vector<cudaEvent_t> small_done_ = std::vector<cudaEvent_t>(kSmallSlots, nullptr);
  std::vector<bool> small_used_ = std::vector<bool>(kSmallSlots, false);
  std::vector<Slot> large_ = std::vector<Slot>(kLargeSlots);
  int next_small_ = 0, next_large_ = 0;
  cudaEvent_t current_ = nullptr;
};

}  // namespace trtcal
