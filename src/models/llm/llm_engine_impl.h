// Internal: the backend interface behind LlmEngine (CPU in llm_engine_cpu.cpp, CUDA in
// llama_cuda.cu). The engine validates inputs (finite, in range, fits the context) before it
// calls in here; backends trust their arguments.
#pragma once

#include <memory>

#include "models/llm/llm_engine.h"

namespace omnirt::llm::detail {

class LlamaImpl {
 public:
  virtual ~LlamaImpl() = default;
  // Runs n = emb.dim(0) <= max_prefill_chunk tokens (F32 [n, hidden] host) at positions
  // pos..pos+n-1. Returns F32 logits on the backend device: [n, vocab] when all_logits, else
  // [vocab] of the last row.
  virtual Tensor forward(const Tensor& emb, int64_t pos, bool all_logits) = 0;
  // True when forward() itself rejects non-finite embeddings (with the engine's message, before
  // it changes any state), so the engine can skip its own scan of a single-chunk prompt: the CUDA
  // backend checks while it copies the rows into its pinned upload stage, one pass instead of two.
  virtual bool checks_finite_input() const { return false; }
  // One token at `pos`; returns F32 [vocab] on the backend device.
  virtual Tensor decode(int32_t token, int64_t pos) = 0;
  // The sequence restarts at position 0.
  virtual void reset() {}
  // Device-resident generation (see LlmEngine).
  virtual void set_sampler(DeviceSampler sampler) = 0;
  virtual void sample_last() = 0;
  virtual void decode_next(int64_t pos) = 0;
  virtual int32_t read_token() = 0;
  virtual const Tensor& embed_table() const = 0;
  virtual size_t kv_cache_bytes() const = 0;
  virtual size_t workspace_bytes() const = 0;
};

// Throws "prefill: input embedding row R, column C is not finite (v)" for the first non-finite
// value of e [count / hidden, hidden].
void check_finite_embeddings(const float* e, int64_t count, int64_t hidden);

std::unique_ptr<LlamaImpl> make_cpu_llama(const LlamaConfig& cfg, LlamaWeights weights,
                                          const LlmEngineOptions& opt, int64_t max_context);
std::unique_ptr<LlamaImpl> make_cuda_llama(const LlamaConfig& cfg, LlamaWeights weights,
                                           const LlmEngineOptions& opt, int64_t max_context);

}  // namespace omnirt::llm::detail
