#include <algorithm>

#include "error.h"
#include "histogram_staging.h"

namespace trtcal {

HistogramStagingRing::~HistogramStagingRing() {
  int previous = 0;
  cudaGetDevice(&previous);
  cudaSetDevice(device_);
  if (small_host_) cudaFreeHost(small_host_);
  if (small_dev_) cudaFree(small_dev_);
  for (cudaEvent_t e : small_done_)
    if (e) cudaEventDestroy(e);
  for (Slot& s : large_) {
    if (s.host) cudaFreeHost(s.host);
    if (s.dev) cudaFree(s.dev);
    if (s.done) cudaEventDestroy(s.done);
  }
  cudaSetDevice(previous);
}

cudaError_t HistogramStagingRing::take(size_t n, HistogramBatchItem** host, HistogramBatchItem** dev) {
  if (n <= kSmallItems) {
    if (!small_dev_) {
      const size_t bytes = kSmallSlots * kSmallItems * sizeof(HistogramBatchItem);
      if (!small_host_) TRTCAL_TRY(cudaMallocHost(reinterpret_cast<void**>(&small_host_), bytes));
      TRTCAL_TRY(cudaMalloc(reinterpret_cast<void**>(&small_dev_), bytes));
    }
    const int k = next_small_;
    if (!small_done_[k]) TRTCAL_TRY(cudaEventCreateWithFlags(&small_done_[k], cudaEventDisableTiming));
    next_small_ = (next_small_ + 1) % kSmallSlots;
    if (small_used_[k]) TRTCAL_TRY(cudaEventSynchronize(small_done_[k]));
    current_ = small_done_[k];
    small_used_[k] = true;
    *host = small_host_ + k * kSmallItems;
    *dev = small_dev_ + k * kSmallItems;
    return cudaSuccess;
  }
  Slot& s = large_[next_large_];
  next_large_ = (next_large_ + 1) % kLargeSlots;
  if (s.used) TRTCAL_TRY(cudaEventSynchronize(s.done));
  if (!s.done) TRTCAL_TRY(cudaEventCreateWithFlags(&s.done, cudaEventDisableTiming));
  if (n > s.capacity) {
    if (s.host) cudaFreeHost(s.host);
    if (s.dev) cudaFree(s.dev);
    s.host = nullptr;
    s.dev = nullptr;
    s.capacity = 0;
    const size_t cap = std::max<size_t>(n, 256);
    TRTCAL_TRY(cudaMallocHost(reinterpret_cast<void**>(&s.host), cap * sizeof(HistogramBatchItem)));
    TRTCAL_TRY(cudaMalloc(reinterpret_cast<void**>(&s.dev), cap * sizeof(HistogramBatchItem)));
    s.capacity = cap;
  }
  s.used = true;
  current_ = s.done;
  *host = s.host;
  *dev = s.dev;
  return cudaSuccess;
}

cudaError_t HistogramStagingRing::copied(cudaStream_t stream) {
  if (!current_) return cudaErrorInvalidResourceHandle;
  return cudaEventRecord(current_, stream);
}

}  // namespace trtcal
