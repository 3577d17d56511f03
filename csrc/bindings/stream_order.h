// Keeps work on one piece of device state ordered when callers switch streams.
#pragma once
#include "common.h"

namespace trtcal {

class StreamOrder {
 public:
  explicit StreamOrder(int device) : device_(device) {
    DeviceGuard g(device);
    TRTCAL_CHECK_CUDA(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming));
  }
  ~StreamOrder() {
    DeviceGuard g(device_);
    cudaEventDestroy(event_);
  }
  StreamOrder(const StreamOrder&) = delete;
  StreamOrder& operator=(const StreamOrder&) = delete;
  // Before queueing work on `s`: wait for the work queued on another stream.
  void before(uintptr_t s) {
    if (used_ && s != last_) TRTCAL_CHECK_CUDA(cudaStreamWaitEvent(as_stream(s), event_, 0));
  }
  // After queueing work on `s`.
  void after(uintptr_t s) {
    TRTCAL_CHECK_CUDA(cudaEventRecord(event_, as_stream(s)));
    last_ = s;
    used_ = true;
  }

 private:
  int device_;
  cudaEvent_t event_{};
  uintptr_t last_ = 0;
  bool used_ = false;
};

}  // namespace trtcal
