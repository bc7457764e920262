// `omnirt info`: what this build and machine offer (backend, GPU, compute capability).
#include <cstdio>

#include "core/version.h"
#include "apps/omnirt/command.h"
#include "core/device.h"

namespace {
omnirt::cli::Command info_cmd("info", "Show the build and the GPU this machine has", [](CLI::App&) {
  return []() {
    std::printf("omnirt %s, commit %s\n", omnirt::version(), omnirt::git_commit());
#ifdef OMNIRT_WITH_CUDA
    std::printf("CUDA backend: built\n");
#else
    std::printf("CUDA backend: not built\n");
#endif
    if (omnirt::cuda_available())
      std::printf("GPU: %s\n", omnirt::cuda_device_description().c_str());
    else
      std::printf("GPU: none (the CPU backend will be used)\n");
    return 0;
  };
});
}  // namespace
