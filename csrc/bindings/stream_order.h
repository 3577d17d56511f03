// Keeps work on one piece of device state ordered when callers switch streams.
#pragma once
#include <memory>

#include "common.h"

namespace trtcal {

// A CUDA event shared by the states that one batched launch touched.
class SharedEvent {
 public:
  explicit SharedEvent(int device) : device_(device) {
    DeviceGuard g(device);
    TRTCAL_CHECK_CUDA(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming));
  }
  ~SharedEvent() {
    DeviceGuard g(device_);
    cudaEventDestroy(event_);
  }
  SharedEvent(const SharedEvent&) = delete;
  SharedEvent& operator=(const SharedEvent&) = delete;
  void record(uintptr_t s) { TRTCAL_CHECK_CUDA(cudaEventRecord(event_, as_stream(s))); }
  cudaEvent_t get() const { return event_; }

 private:
  int device_;
  cudaEvent_t event_{};
};

// Orders the work on one piece of state across streams: after each update an event marks
// it (one event shared by all the states of a batched update); a later update on another
// stream waits for that event. Recording eagerly keeps this valid when the caller destroys
// the earlier stream.
class StreamOrder {
 public:
  explicit StreamOrder(int device) : device_(device) {}
  // Before queueing work on `s`: wait for the work last queued on another stream.
  void before(uintptr_t s) {
    if (event_ && s != last_) TRTCAL_CHECK_CUDA(cudaStreamWaitEvent(as_stream(s), event_->get(), 0));
  }
  // After queueing work on `s` (records an event of this state's own).
  void after(uintptr_t s) {
    if (!event_ || event_.use_count() > 1) event_ = std::make_shared<SharedEvent>(device_);
    event_->record(s);
    last_ = s;
  }
  // After a batched launch on `s` whose completion `ev` (already recorded on `s`) marks.
  void after_shared(uintptr_t s, std::shared_ptr<SharedEvent> ev) {
    event_ = std::move(ev);
    last_ = s;
  }

 private:
  int device_;
  std::shared_ptr<SharedEvent> event_;
  uintptr_t last_ = 0;
};

}  // namespace trtcal
