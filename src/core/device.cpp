#include "core/device.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

#include "core/error.h"
#include "core/graph_memory.h"
#include "core/stage_timer.h"

#ifdef OMNIRT_WITH_CUDA
#include "core/cuda_check.h"
#endif

namespace omnirt {

namespace {
std::atomic<size_t> g_cuda_in_use{0};
std::atomic<size_t> g_cuda_peak{0};
constexpr size_t kHostAlign = 256;  // like cudaMalloc, so Arena blocks are 256-aligned on both

#ifdef OMNIRT_WITH_CUDA
// A caching allocator for GPU memory, in the spirit of PyTorch's: freed blocks are kept per
// (rounded) size and handed out again, because cudaMalloc/cudaFree synchronise the device and
// cost tens of microseconds each. Engines run the same shapes every frame, so exact-size reuse
// is enough. All work is on one stream per thread, so a block freed while a kernel still reads
// it can only be reused by work queued after that kernel. OMNIRT_CUDA_NO_CACHE=1 disables it
// (for compute-sanitizer runs).
std::mutex g_cache_mutex;
std::unordered_map<size_t, std::vector<void*>> g_cache;
std::atomic<size_t> g_cached_bytes{0};
bool cache_enabled() {
  static const bool on = std::getenv("OMNIRT_CUDA_NO_CACHE") == nullptr;
  return on;
}
size_t cache_round(size_t bytes) {
  const size_t g = bytes < (1u << 20) ? 512 : (1u << 20);
  return (bytes + g - 1) / g * g;
}
void* cache_take(size_t rounded) {
  if (!cache_enabled()) return nullptr;
  std::lock_guard<std::mutex> lock(g_cache_mutex);
  auto it = g_cache.find(rounded);
  if (it == g_cache.end() || it->second.empty()) return nullptr;
  void* p = it->second.back();
  it->second.pop_back();
  g_cached_bytes -= rounded;
  return p;
}
void cache_put(size_t rounded, void* p) {
  if (!cache_enabled()) {
    cudaFree(p);
    return;
  }
  std::lock_guard<std::mutex> lock(g_cache_mutex);
  g_cache[rounded].push_back(p);
  g_cached_bytes += rounded;
}
// GraphMemoryPool (graph_memory.h): which pool owns a block, and the thread's active pool.
std::mutex g_pool_mutex;
std::unordered_map<void*, GraphMemoryPool*> g_pool_of;
std::atomic<size_t> g_pool_blocks{0};
thread_local GraphMemoryPool* t_pool = nullptr;

void cache_release_all() {
  std::lock_guard<std::mutex> lock(g_cache_mutex);
  cudaDeviceSynchronize();
  for (auto& [size, blocks] : g_cache)
    for (void* p : blocks) cudaFree(p);
  g_cache.clear();
  g_cached_bytes = 0;
}
#endif
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

namespace {
// Counted in current_stream(): every kernel launch site, cuBLASLt call and asynchronous
// copy/memset asks for the stream once (StageTimer's "GPU work items").
thread_local uint64_t t_work_items = 0;
}  // namespace
uint64_t gpu_work_items() { return t_work_items; }

namespace cuda {
namespace {
thread_local cudaStream_t t_stream = nullptr;
}
cudaStream_t current_stream() {
  ++t_work_items;
  return t_stream;
}
StreamGuard::StreamGuard(cudaStream_t s) : prev_(t_stream) { t_stream = s; }
StreamGuard::~StreamGuard() { t_stream = prev_; }
}  // namespace cuda
#else
uint64_t gpu_work_items() { return 0; }
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
  const size_t rounded = cache_round(bytes);
  void* p = cache_take(rounded);
  if (p == nullptr) {
    // In a graph capture (a GraphMemoryPool scope), cudaMalloc is a "potentially unsafe" call
    // that the capture's thread-local mode would refuse; the block is not part of the graph
    // (the pool keeps it for the graph's lifetime), so allow it for this one call.
    cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
    if (t_pool != nullptr) (void)cudaThreadExchangeStreamCaptureMode(&mode);
    cudaError_t err = cudaMalloc(&p, rounded);
    if (t_pool != nullptr) (void)cudaThreadExchangeStreamCaptureMode(&mode);
    if (err != cudaSuccess) {  // give the cached blocks back and try once more
      cudaGetLastError();
      cache_release_all();
      err = cudaMalloc(&p, rounded);
    }
    if (err != cudaSuccess) {
      size_t free_b = 0, total_b = 0;
      cudaGetLastError();
      cudaMemGetInfo(&free_b, &total_b);
      OMNIRT_FAIL("out of GPU memory allocating ", bytes, " bytes (", free_b, " of ", total_b,
                  " bytes free): ", cudaGetErrorString(err));
    }
  }
  if (t_pool != nullptr) {
    std::lock_guard<std::mutex> lock(g_pool_mutex);
    g_pool_of[p] = t_pool;
    t_pool->blocks_[p] = {rounded, true};
    ++g_pool_blocks;
  }
  size_t now = g_cuda_in_use.fetch_add(rounded) + rounded;
  size_t peak = g_cuda_peak.load();
  while (now > peak && !g_cuda_peak.compare_exchange_weak(peak, now)) {
  }
  return p;
#else
  OMNIRT_FAIL("a CUDA tensor was requested but omnirt was built without CUDA");
#endif
}

void device_free(Device d, void* p, size_t bytes) {
  if (p == nullptr) return;
  if (d == Device::CPU) {
    ::operator delete(p, std::align_val_t(kHostAlign));
    return;
  }
#ifdef OMNIRT_WITH_CUDA
  const size_t rounded = cache_round(bytes == 0 ? 1 : bytes);
  g_cuda_in_use.fetch_sub(rounded);
  if (g_pool_blocks.load() > 0 || t_pool != nullptr) {
    std::lock_guard<std::mutex> lock(g_pool_mutex);
    auto it = g_pool_of.find(p);
    if (it != g_pool_of.end()) {  // a graph's block: stays reserved for the graph
      it->second->blocks_[p].live = false;
      return;
    }
    if (t_pool != nullptr) {  // freed during a capture: the graph may still read it
      g_pool_of[p] = t_pool;
      t_pool->blocks_[p] = {rounded, false};
      ++g_pool_blocks;
      return;
    }
  }
  cache_put(rounded, p);
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
  // Only a copy to the host has to wait: the caller reads `dst` next. Device-to-device copies
  // are ordered with the kernels on the stream, and a copy from pageable host memory returns
  // once the source has been staged (CUDA's documented behaviour), so the caller may reuse it.
  // Not waiting there keeps the GPU busy while the host queues the next work.
  if (kind == cudaMemcpyDeviceToHost) OMNIRT_CUDA_CHECK(cudaStreamSynchronize(s));
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

#ifdef OMNIRT_WITH_CUDA
GraphMemoryPool::~GraphMemoryPool() {
  (void)cudaDeviceSynchronize();  // no replay may still use the blocks
  std::vector<std::pair<void*, size_t>> free_blocks;
  {
    std::lock_guard<std::mutex> lock(g_pool_mutex);
    for (const auto& [p, b] : blocks_) {
      g_pool_of.erase(p);
      --g_pool_blocks;
      if (!b.live) free_blocks.emplace_back(p, b.rounded);
    }
    blocks_.clear();
  }
  // Live blocks go back through device_free when their tensors die (no longer in g_pool_of).
  for (const auto& [p, rounded] : free_blocks) cache_put(rounded, p);
}
GraphMemoryPool::Scope::Scope(GraphMemoryPool& pool) : prev_(t_pool) { t_pool = &pool; }
GraphMemoryPool::Scope::~Scope() { t_pool = prev_; }
size_t GraphMemoryPool::bytes() const {
  std::lock_guard<std::mutex> lock(g_pool_mutex);
  size_t n = 0;
  for (const auto& [p, b] : blocks_) n += b.rounded;
  return n;
}
size_t GraphMemoryPool::blocks() const {
  std::lock_guard<std::mutex> lock(g_pool_mutex);
  return blocks_.size();
}
#else
GraphMemoryPool::~GraphMemoryPool() = default;
GraphMemoryPool::Scope::Scope(GraphMemoryPool&) : prev_(nullptr) {}
GraphMemoryPool::Scope::~Scope() = default;
size_t GraphMemoryPool::bytes() const { return 0; }
size_t GraphMemoryPool::blocks() const { return 0; }
#endif

size_t cuda_bytes_in_use() { return g_cuda_in_use.load(); }
size_t cuda_peak_bytes() { return g_cuda_peak.load(); }
size_t cuda_cached_bytes() {
#ifdef OMNIRT_WITH_CUDA
  return g_cached_bytes.load();
#else
  return 0;
#endif
}


}  // namespace omnirt
