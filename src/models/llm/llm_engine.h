// The LLaMA planner engine: prefill from input embeddings, then token-by-token decode over a
// preallocated KV cache, on the CPU (float32, the executable spec) or CUDA (fp32/fp16/bf16).
//
// Inputs are embeddings, not ids, the way TensorRT-LLM's prompt table and Edge-LLM's
// inputs_embeds work: build_prompt_embeddings() splices the 513 vision rows into the text
// embeddings at the -200 image placeholder. All device buffers (activations, KV cache, logits)
// are planned when the engine is built; prefill/decode never allocate on the device.
//
// CUDA decode: one step (embedding lookup of the token held in device memory, all layers,
// final norm, lm_head, the in-graph sampler) is captured once in a CUDA graph and replayed per
// token; the position is read from device memory, so the same graph serves every step.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "models/llm/kv_cache.h"
#include "models/llm/llama.h"
#include "models/llm/prompt.h"  // kImageTokenIndex
#include "models/llm/tokenizer.h"

namespace omnirt::llm {

// The input of which decoder linear a LinearInputHook sees (q/k/v share one input, gate/up too).
enum class LinearSite { kQkv, kO, kGateUp, kDown };
const char* linear_site_name(LinearSite site);  // "qkv", "o", "gate_up", "down"
// Called with the rows x (F32 [n, K], host, valid only during the call) that the decoder linear
// `site` of layer `layer` is about to multiply: the RMSNormed hidden state (kQkv, kGateUp), the
// attention output (kO), the SwiGLU output (kDown). Used by AWQ calibration (quant/awq.h).
using LinearInputHook = std::function<void(int64_t layer, LinearSite site, const Tensor& x)>;

struct LlmEngineOptions {
  Device device = Device::CPU;
  DType dtype = DType::F32;           // CPU: F32 only. CUDA: F32, F16 or BF16.
  int64_t max_context = 0;            // KV-cache length; 0 = config.max_position_embeddings
  int64_t max_prefill_chunk = 1024;   // tokens per prefill pass; longer prompts run in chunks
  bool all_logits = false;            // plan a [chunk, V] logits buffer for prefill_all_logits
  bool cuda_graph = true;             // CUDA: replay the decode step from a captured graph
  // Weight-only quantisation at load (quant/llm_quant.h): "" or "fp" = dense; "int4" (per output
  // channel), "int4-g<G>", "nvfp4", "fp8" (E4M3, one scale per output row). The decoder linears get quantised copies that the CUDA decode
  // GEMVs read (models/llm/quant_gemv.h); the dense tensors are replaced by the dequantised
  // weights, which the prefill GEMMs and the CPU engine use. lm_head stays dense unless
  // quantize_lm_head.
  std::string weight_format;
  bool quantize_lm_head = false;
  // CPU engine only (a CUDA engine rejects it): see LinearInputHook. Costs nothing when unset.
  LinearInputHook linear_input_hook;
};

// Writes the next token id (int32 [1], engine device) from logits (F32 [V], engine device). On
// CUDA it runs on omnirt::cuda::current_stream() and must not synchronise or allocate: it is
// captured into the decode graph.
using DeviceSampler = std::function<void(const Tensor& logits, Tensor& token_out)>;

namespace detail {
class LlamaImpl;
}

class LlmEngine {
 public:
  LlmEngine(const LlamaConfig& config, LlamaWeights weights, const LlmEngineOptions& options);
  ~LlmEngine();
  LlmEngine(const LlmEngine&) = delete;
  LlmEngine& operator=(const LlmEngine&) = delete;

  // A checkpoint folder: config.json (plain HF or with an "llm" section) + *.safetensors.
  static std::unique_ptr<LlmEngine> from_folder(const std::string& dir,
                                                const LlmEngineOptions& options);

  const LlamaConfig& config() const { return config_; }
  const LlmEngineOptions& options() const { return options_; }
  int64_t max_context() const { return max_context_; }
  // Tokens currently held in the KV cache (the position the next token gets).
  int64_t position() const { return position_; }
  // Empties the KV cache (position 0). Cheap: no memset of the cache is needed.
  void reset();

  // Appends `embeddings` (F32 [L, hidden], host or device) to the sequence and returns the
  // logits of the last position (F32 [vocab] on the engine device; valid until the next call).
  // Throws before any GPU work when an embedding is not finite or the context would overflow.
  Tensor prefill(const Tensor& embeddings);
  // The same, returning the logits of every position (F32 [L, vocab] on the host) for
  // teacher-forced parity. Needs options.all_logits.
  Tensor prefill_all_logits(const Tensor& embeddings);

  // Appends one token and returns its logits (F32 [vocab], engine device, valid until the next
  // call). Throws when the id is out of range or the context is full.
  Tensor decode(int32_t token);

  // Device-resident generation: sample_first() runs the sampler on the logits of the last call
  // into the device token slot; decode_next() appends the token in that slot and samples the
  // next one into it (on CUDA one graph replay, no host synchronisation); read_token() waits and
  // returns the slot's value.
  void set_sampler(DeviceSampler sampler);  // default: greedy argmax
  void sample_first();
  void decode_next();
  int32_t read_token();

  // Text embeddings of `ids` (F32 [n, hidden], host), rows of the embedding table.
  Tensor embed_tokens(const std::vector<int32_t>& ids) const;
  // Prompt ids with exactly one kImageTokenIndex -> F32 [n - 1 + R, hidden] host: text rows with
  // the R rows of `vision` (F32 [R, hidden], host or device) spliced at the placeholder. Without
  // a placeholder, `vision` must be undefined or empty. Checks the context budget.
  Tensor build_prompt_embeddings(const std::vector<int32_t>& ids, const Tensor& vision) const;

  // Bytes of weights, KV cache and planned workspace held on the engine device.
  size_t weight_bytes() const { return weight_bytes_; }
  // Weight bytes one decode step reads (quantised copies instead of their dense tensors) and the
  // weight format ("" dense, else e.g. "int4-g128"; LlamaWeights::quant_name).
  size_t decode_weight_bytes() const { return decode_weight_bytes_; }
  const std::string& weight_format() const { return weight_format_; }
  size_t kv_cache_bytes() const;
  size_t workspace_bytes() const;

 private:
  Tensor run_prefill(const Tensor& embeddings, bool all_logits);

  LlamaConfig config_;
  LlmEngineOptions options_;
  int64_t max_context_ = 0;
  int64_t position_ = 0;
  size_t weight_bytes_ = 0;
  size_t decode_weight_bytes_ = 0;
  std::string weight_format_;
  std::unique_ptr<detail::LlamaImpl> impl_;
};

// A tokenizer must not produce ids the LLM has no embedding for: more pieces than vocab_size is an
// error (Tokenizer::expect_vocab's message). Fewer pieces is allowed with a warning (our random
// full-size checkpoints pair the 512-piece test tokenizer with a 32000-row LLM; ids past the
// tokenizer decode to nothing).
void check_tokenizer_vocab(const Tokenizer& tokenizer, const LlamaConfig& config);

// Greedy argmax over F32 logits on the host (ties: lowest id), used by tests and the CPU path.
int32_t argmax_host(const Tensor& logits);

}  // namespace omnirt::llm
