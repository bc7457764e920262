// Checking CUDA calls. Include only from .cu files or CUDA-enabled .cpp files.
#pragma once

#include <cuda_runtime.h>

#include "core/error.h"

#define OMNIRT_CUDA_CHECK(call)                                                          \
  do {                                                                                   \
    cudaError_t omnirt_err_ = (call);                                                    \
    if (omnirt_err_ != cudaSuccess) {                                                    \
      OMNIRT_FAIL("CUDA error in ", #call, ": ", cudaGetErrorName(omnirt_err_), " (",   \
                  cudaGetErrorString(omnirt_err_), ")");                                 \
    }                                                                                    \
  } while (0)

// After a kernel launch: catches bad launch configurations immediately.
#define OMNIRT_CUDA_CHECK_LAUNCH(name)                                                   \
  do {                                                                                   \
    cudaError_t omnirt_err_ = cudaGetLastError();                                        \
    if (omnirt_err_ != cudaSuccess) {                                                    \
      OMNIRT_FAIL("CUDA kernel ", name, " failed to launch: ", cudaGetErrorString(omnirt_err_)); \
    }                                                                                    \
  } while (0)

namespace omnirt::cuda {
// The stream every op launches on. One stream per thread; set by StreamGuard.
cudaStream_t current_stream();
class StreamGuard {
 public:
  explicit StreamGuard(cudaStream_t s);
  ~StreamGuard();
  StreamGuard(const StreamGuard&) = delete;
  StreamGuard& operator=(const StreamGuard&) = delete;

 private:
  cudaStream_t prev_;
};
}  // namespace omnirt::cuda
