#include "models/llm/kv_cache.h"

#include "core/error.h"

namespace omnirt::llm {

KvCache::KvCache(const LlamaConfig& cfg, int64_t max_context, DType dtype, Device device)
    : max_context_(max_context) {
  OMNIRT_CHECK(max_context > 0, "KV cache: max_context must be positive, got ", max_context);
  // Zeroed once so a bug that reads past the length sees zeros, not NaN garbage.
  data_ = Tensor::zeros({cfg.num_hidden_layers, 2, cfg.num_key_value_heads, max_context,
                         cfg.head_dim},
                        dtype, device);
}

}  // namespace omnirt::llm
