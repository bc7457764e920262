// Where a tensor's bytes live, and the raw memory primitives for each place.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace omnirt {

enum class Device : uint8_t { CPU, CUDA };

std::string device_name(Device d);

// True when the runtime was built with CUDA *and* a CUDA device is usable now.
bool cuda_available();
// Name and compute capability of device 0, e.g. "NVIDIA H200 (sm_90)"; throws if none.
std::string cuda_device_description();
int cuda_compute_capability();  // 90 for sm_90; throws if no device

// Raw allocation on a device. CUDA calls are checked and throw omnirt::Error with context.
void* device_alloc(Device d, size_t bytes);
// `bytes` is the size given to device_alloc (GPU blocks go back to a size-keyed cache).
void device_free(Device d, void* p, size_t bytes = 0);
// Copy between any two places (host<->device, device<->device, host<->host), in order with the
// work queued on the thread's current stream. Returns when `src` may be reused; a copy to the
// host also waits until `dst` holds the data. Device-to-device copies do not wait.
void device_copy(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes);
void device_memset(Device d, void* p, int value, size_t bytes);
void device_synchronize();
// Current/peak bytes allocated through device_alloc on the GPU (what our runtime holds).
size_t cuda_bytes_in_use();
size_t cuda_peak_bytes();
// Bytes held in the allocator's cache of freed GPU blocks (reserved, not in use).
size_t cuda_cached_bytes();

}  // namespace omnirt
