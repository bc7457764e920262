#include <gtest/gtest.h>

#include <set>

#include "common/test_util.h"
#include "core/device.h"
#include "core/graph_memory.h"

using namespace omnirt;

// Blocks allocated or freed while a pool scope is active stay reserved for the pool (a captured
// graph keeps using their addresses); allocations outside never get them until the pool dies.
TEST(GraphMemoryPool, KeepsItsBlocksAwayFromTheSharedCache) {
  OMNIRT_REQUIRE_CUDA();
  const size_t bytes = 3 * 4096 + 100;  // an odd size: its own cache bucket in this test
  void* outside = device_alloc(Device::CUDA, bytes);
  std::set<void*> pool_blocks;
  {
    GraphMemoryPool pool;
    {
      GraphMemoryPool::Scope scope(pool);
      for (int i = 0; i < 4; ++i) {
        void* p = device_alloc(Device::CUDA, bytes);
        pool_blocks.insert(p);
        device_free(Device::CUDA, p, bytes);  // freed inside: still the pool's
      }
      device_free(Device::CUDA, outside, bytes);  // allocated outside, freed inside: taken over
      pool_blocks.insert(outside);
    }
    EXPECT_EQ(pool.blocks(), pool_blocks.size());
    EXPECT_GE(pool.bytes(), pool_blocks.size() * bytes);
    // Outside the scope, new allocations of the same size must not get any of the pool's blocks.
    std::vector<void*> fresh;
    for (int i = 0; i < 8; ++i) {
      fresh.push_back(device_alloc(Device::CUDA, bytes));
      EXPECT_EQ(pool_blocks.count(fresh.back()), 0u) << "a pool block was handed out";
    }
    for (void* p : fresh) device_free(Device::CUDA, p, bytes);
  }
  // The pool is gone: its blocks are back in the shared cache, so they are handed out again.
  std::vector<void*> again;
  size_t reused = 0;
  for (int i = 0; i < 16; ++i) {
    again.push_back(device_alloc(Device::CUDA, bytes));
    reused += pool_blocks.count(again.back());
  }
  for (void* p : again) device_free(Device::CUDA, p, bytes);
  if (std::getenv("OMNIRT_CUDA_NO_CACHE") == nullptr) EXPECT_EQ(reused, pool_blocks.size());
}

// A block allocated in the scope and still held when the pool dies goes back to the shared cache
// when it is freed later (not twice, not never).
TEST(GraphMemoryPool, LiveBlocksOutliveThePool) {
  OMNIRT_REQUIRE_CUDA();
  const size_t bytes = 5 * 4096 + 300;
  void* live = nullptr;
  {
    GraphMemoryPool pool;
    GraphMemoryPool::Scope scope(pool);
    live = device_alloc(Device::CUDA, bytes);
    EXPECT_EQ(pool.blocks(), 1u);
  }
  device_free(Device::CUDA, live, bytes);
  void* a = device_alloc(Device::CUDA, bytes);
  void* b = device_alloc(Device::CUDA, bytes);
  EXPECT_NE(a, b);  // a double insertion into the cache would hand the same block out twice
  device_free(Device::CUDA, a, bytes);
  device_free(Device::CUDA, b, bytes);
}
