// A cached scratch workspace per device for the one-shot calls (per-channel minmax, histogram,
// range search; the whole-tensor amax / minmax has its own tiny result slot): device memory and pinned host
// memory grown geometrically and kept, so a call pays no cudaMalloc/cudaFree (cudaFree waits for the whole
// device) and its results come back in one asynchronous copy. A call holds the device's lock from its first
// use of the workspace until it has waited for its stream, so calls on different streams or threads never
// share the memory while the GPU still uses it. Freed by trtcal's atexit hook while the CUDA runtime is still
// alive (never in a static destructor).
#pragma once
#include <algorithm>
#include <memory>
#include <mutex>
#include <vector>

#include "common.h"

namespace trtcal {

class Workspace {
 public:
  explicit Workspace(int device) : device_(device) {}
  ~Workspace() = delete;  // see free_all()

  std::mutex& mutex() { return mutex_; }

  // Device scratch of at least `bytes` (contents undefined). Call with the lock held.
  void* device(size_t bytes) {
    if (bytes > dev_bytes_) {
      release_device();
      const size_t want = std::max<size_t>({bytes, 2 * dev_bytes_, size_t(1) << 16});
      DeviceGuard g(device_);
      TRTCAL_CHECK_CUDA(cudaMalloc(&dev_, want));
      dev_bytes_ = want;
    }
    return dev_;
  }

  // Pinned host scratch of at least `bytes`. Call with the lock held.
  void* pinned(size_t bytes) {
    if (bytes > host_bytes_) {
      release_host();
      const size_t want = std::max<size_t>({bytes, 2 * host_bytes_, size_t(1) << 16});
      DeviceGuard g(device_);
      TRTCAL_CHECK_CUDA(cudaMallocHost(&host_, want));
      host_bytes_ = want;
    }
    return host_;
  }

  void release() {
    std::lock_guard<std::mutex> lock(mutex_);
    release_device();
    release_host();
  }

  static Workspace& get(int device) {
    std::lock_guard<std::mutex> lock(registry_mutex());
    auto& all = registry();
    if ((int)all.size() <= device) all.resize(device + 1, nullptr);
    if (!all[device]) all[device] = new Workspace(device);  // lives until the process ends
    return *all[device];
  }

  // Frees every workspace's memory (the objects stay; a later call allocates again).
  static void free_all() {
    std::lock_guard<std::mutex> lock(registry_mutex());
    for (Workspace* w : registry())
      if (w) w->release();
  }

 private:
  void release_device() {
    if (dev_) {
      DeviceGuard g(device_);
      cudaFree(dev_);
    }
    dev_ = nullptr;
    dev_bytes_ = 0;
  }
  void release_host() {
    if (host_) cudaFreeHost(host_);
    host_ = nullptr;
    host_bytes_ = 0;
  }
  static std::vector<Workspace*>& registry() {
    static auto* all = new std::vector<Workspace*>();
    return *all;
  }
  static std::mutex& registry_mutex() {
    static auto* m = new std::mutex();
    return *m;
  }

  int device_;
  std::mutex mutex_;
  void* dev_ = nullptr;
  size_t dev_bytes_ = 0;
  void* host_ = nullptr;
  size_t host_bytes_ = 0;
};

// Byte offsets of consecutive 256-byte-aligned parts of one workspace allocation.
inline size_t align256(size_t n) { return (n + 255) & ~size_t(255); }

}  // namespace trtcal
