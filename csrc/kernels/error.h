// The kernels' one error-check macro: every entry point returns cudaError_t, and a failed
// step returns its error at once (no exceptions in the framework-free layer).
#pragma once
#include <cuda_runtime.h>

// Evaluates `call` (a cudaError_t expression) once and returns it from the enclosing
// function when it is not cudaSuccess.
#define TRTCAL_TRY(call)                                        \
  do {                                                          \
    const cudaError_t trtcal_try_err_ = (call);                 \
    if (trtcal_try_err_ != cudaSuccess) return trtcal_try_err_; \
  } while (0)
