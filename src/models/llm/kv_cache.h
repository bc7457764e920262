// The KV cache of a LLaMA decoder: one preallocated block
//   [layers, 2 (k, v), kv_heads, max_context, head_dim]
// in the engine dtype on the engine device. Keys are stored after RoPE. Positions >= the
// engine's current length hold stale values and are never read (attention is bounded by the
// length), so reset() needs no memset.
#pragma once

#include "core/tensor.h"
#include "models/llm/llama.h"

namespace omnirt::llm {

class KvCache {
 public:
  KvCache() = default;
  KvCache(const LlamaConfig& cfg, int64_t max_context, DType dtype, Device device);

  const Tensor& data() const { return data_; }
  Tensor& data() { return data_; }
  // [kv_heads, max_context, head_dim] views of one layer.
  Tensor keys(int64_t layer) const { return data_.select(0, layer).select(0, 0); }
  Tensor values(int64_t layer) const { return data_.select(0, layer).select(0, 1); }
  int64_t max_context() const { return max_context_; }
  size_t bytes() const { return data_.defined() ? data_.nbytes() : 0; }

 private:
  Tensor data_;
  int64_t max_context_ = 0;
};

}  // namespace omnirt::llm
