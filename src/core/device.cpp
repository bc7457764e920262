#include "core/device.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>

#include "core/error.h"

#ifdef OMNIRT_WITH_CUDA
#include "core/cuda_check.h"
#endif

namespace omnirt {

namespace {
std::atomic<size_t> g_cuda_in_use{0};
std::atomic<size_t> g_cuda_peak{0};
constexpr size_t kHostAlign = 256;  // like cudaMalloc, so Arena blocks are 256-aligned on both
}  // namespace

std::string device_name(Device d) { return d == Device::CPU ? "cpu" : "cuda"; }

#ifdef OMNIRT_WITH_CUDA
bool cuda_available() {
  static const bool available = [] {
    if (std::getenv("OMNIRT_DISABLE_CUDA") != nullptr) return false;
    int n = 0;
    return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
  }();
  return available;
}
std::string cuda_device_description() {
  OMNIRT_CHECK(cuda_available(), "no CUDA device is available");
  cudaDeviceProp prop{};
  OMNIRT_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  return detail::concat(prop.name, " (sm_", prop.major, prop.minor, ")");
}
int cuda_compute_capability() {
  OMNIRT_CHECK(cuda_available(), "no CUDA device is available");
  int major = 0, minor = 0;
  OMNIRT_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0));
  OMNIRT_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, 0));
  return major * 10 + minor;
}

namespace cuda {
namespace {
thread_local cudaStream_t t_stream = nullptr;
}
cudaStream_t current_stream() { return t_stream; }
StreamGuard::StreamGuard(cudaStream_t s) : prev_(t_stream) { t_stream = s; }
StreamGuard::~StreamGuard() { t_stream = prev_; }
}  // namespace cuda
#else
bool cuda_available() { return false; }
std::string cuda_device_description() { OMNIRT_FAIL("omnirt was built without CUDA"); }
int cuda_compute_capability() { OMNIRT_FAIL("omnirt was built without CUDA"); }
#endif

void* device_alloc(Device d, size_t bytes) {
  if (bytes == 0) bytes = 1;
  if (d == Device::CPU) {
    void* p = ::operator new(bytes, std::align_val_t(kHostAlign), std::nothrow);
    OMNIRT_CHECK(p != nullptr, "out of host memory allocating ", bytes, " bytes");
    return p;
  }
#ifdef OMNIRT_WITH_CUDA
  OMNIRT_CHECK(cuda_available(), "a CUDA tensor was requested but no CUDA device is available");
  void* p = nullptr;
  cudaError_t err = cudaMalloc(&p, bytes);
  if (err != cudaSuccess) {
    size_t free_b = 0, total_b = 0;
    cudaGetLastError();
    cudaMemGetInfo(&free_b, &total_b);
    OMNIRT_FAIL("out of GPU memory allocating ", bytes, " bytes (", free_b, " of ", total_b,
                " bytes free): ", cudaGetErrorString(err));
  }
  size_t now = g_cuda_in_use.fetch_add(bytes) + bytes;
  size_t peak = g_cuda_peak.load();
  while (now > peak && !g_cuda_peak.compare_exchange_weak(peak, now)) {
  }
  return p;
#else
  OMNIRT_FAIL("a CUDA tensor was requested but omnirt was built without CUDA");
#endif
}

void device_free(Device d, void* p) {
  if (p == nullptr) return;
  if (d == Device::CPU) {
    ::operator delete(p, std::align_val_t(kHostAlign));
    return;
  }
#ifdef OMNIRT_WITH_CUDA
  // Size accounting for frees is done by the owner (Storage) via cuda_note_free.
  cudaFree(p);
#endif
}

void device_copy(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes) {
  if (bytes == 0) return;
  if (dst_dev == Device::CPU && src_dev == Device::CPU) {
    std::memcpy(dst, src, bytes);
    return;
  }
#ifdef OMNIRT_WITH_CUDA
  cudaMemcpyKind kind = dst_dev == Device::CPU   ? cudaMemcpyDeviceToHost
                        : src_dev == Device::CPU ? cudaMemcpyHostToDevice
                                                 : cudaMemcpyDeviceToDevice;
  cudaStream_t s = cuda::current_stream();
  OMNIRT_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, s));
  OMNIRT_CUDA_CHECK(cudaStreamSynchronize(s));
#else
  OMNIRT_FAIL("CUDA copy requested but omnirt was built without CUDA");
#endif
}

void device_memset(Device d, void* p, int value, size_t bytes) {
  if (d == Device::CPU) {
    std::memset(p, value, bytes);
    return;
  }
#ifdef OMNIRT_WITH_CUDA
  OMNIRT_CUDA_CHECK(cudaMemsetAsync(p, value, bytes, cuda::current_stream()));
#endif
}

void device_synchronize() {
#ifdef OMNIRT_WITH_CUDA
  if (cuda_available()) OMNIRT_CUDA_CHECK(cudaDeviceSynchronize());
#endif
}

size_t cuda_bytes_in_use() { return g_cuda_in_use.load(); }
size_t cuda_peak_bytes() { return g_cuda_peak.load(); }

namespace detail {
void cuda_note_free(size_t bytes) { g_cuda_in_use.fetch_sub(bytes); }
}  // namespace detail

}  // namespace omnirt
