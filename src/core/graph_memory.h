// GPU memory for captured CUDA graphs.
//
// A captured graph keeps the device addresses of every tensor its kernels touched, including the
// temporaries that the captured code allocated and freed again. With the shared caching
// allocator (device.cpp) a freed temporary's block would be handed to other code after the
// capture while each replay still writes to it. While a GraphMemoryPool::Scope is active on a
// thread, that thread's GPU blocks belong to the pool instead:
//   * every block allocated in the scope is the pool's; freeing it (in the scope or later) only
//     marks it free, it is not given back to the shared cache;
//   * a block from outside the pool that is freed in the scope is taken over as well (the
//     captured work may still read it on replay).
// Blocks are not reused inside the pool (simple and obviously safe; a graph's scratch memory is
// a few tens of MB). The destructor synchronises the device and hands the pool's free blocks to
// the shared cache; blocks still held by live tensors then go back when those tensors die.
// Destroy the graph before its pool, and keep the pool alive as long as the graph may replay.
#pragma once

#include <cstddef>
#include <unordered_map>

namespace omnirt {

class GraphMemoryPool {
 public:
  GraphMemoryPool() = default;
  ~GraphMemoryPool();
  GraphMemoryPool(const GraphMemoryPool&) = delete;
  GraphMemoryPool& operator=(const GraphMemoryPool&) = delete;

  class Scope {
   public:
    explicit Scope(GraphMemoryPool& pool);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    GraphMemoryPool* prev_;
  };

  // GPU bytes the pool holds (live and free blocks), and how many blocks.
  size_t bytes() const;
  size_t blocks() const;

  // Internal to device.cpp (guarded by its pool mutex): block -> (rounded size, still live).
  struct Block {
    size_t rounded = 0;
    bool live = true;
  };
  std::unordered_map<void*, Block> blocks_;
};

}  // namespace omnirt
