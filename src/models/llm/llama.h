// The LLaMA decoder (TinyLlama-1.1B in OmniDrive): configuration and weights.
//
// The checkpoint uses Hugging Face names (model.embed_tokens.weight, model.layers.N.self_attn.
// {q,k,v,o}_proj.weight, model.layers.N.mlp.{gate,up,down}_proj.weight, model.layers.N.
// {input,post_attention}_layernorm.weight, model.norm.weight, lm_head.weight). At load the
// weights are rearranged once into the layout the kernels want:
//   wqkv      = [q; k; v] rows concatenated, [(Hq + 2 Hkv) D, H]  (one GEMM/GEMV for QKV)
//   w_gate_up = [gate; up] rows concatenated, [2 I, H]            (SwiGLU fused after it)
// Norm weights are kept in float32 whatever the engine dtype (the norm is computed in fp32).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/tensor.h"

namespace omnirt::llm {

struct LlamaConfig {
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;  // hidden_size / num_attention_heads unless config.json says otherwise
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-6;  // HF LlamaConfig default; TinyLlama sets 1e-5
  double rope_theta = 10000.0;
  bool tie_word_embeddings = false;

  int64_t q_dim() const { return num_attention_heads * head_dim; }
  int64_t kv_dim() const { return num_key_value_heads * head_dim; }
  int64_t qkv_dim() const { return q_dim() + 2 * kv_dim(); }

  // Throws naming the offending field when the numbers cannot describe a LLaMA.
  void validate(const std::string& what) const;

  // From a HF LlamaConfig JSON object. `what` names the source for error messages.
  static LlamaConfig from_json(const nlohmann::json& j, const std::string& what);
  // From a checkpoint folder: DIR/config.json, either a plain HF config or ours with an "llm"
  // section holding the HF fields.
  static LlamaConfig from_folder(const std::string& dir);
  // TinyLlama-1.1B-Chat-v1.0 (spec §7).
  static LlamaConfig tinyllama();

  std::string describe() const;
};

// A tensor by its checkpoint name; returns an undefined Tensor when there is none. Tensors may be
// of any float dtype and live on the host (e.g. mmapped safetensors).
using TensorLookup = std::function<Tensor(const std::string& name)>;

// The names and shapes a checkpoint must provide for `cfg` (HF naming).
struct ExpectedTensor {
  std::string name;
  Shape shape;
};
std::vector<ExpectedTensor> expected_llama_tensors(const LlamaConfig& cfg);

// A weight-only quantised copy of one linear weight [N, K] for the CUDA decode GEMVs
// (models/llm/quant_gemv.h; layouts in quant/int4.h, quant/nvfp4.h and quant/fp8_weight.h).
// Undefined (no codes) for dense weights.
enum class QuantFormat { kNone, kInt4, kNvfp4, kFp8 };
struct QuantLinear {
  QuantFormat format = QuantFormat::kNone;
  Tensor codes;           // U8 [N, K/2]; FP8: U8 (E4M3) [N, K]
  Tensor scales;          // INT4: F32 [N, K/G]; NVFP4: U8 (E4M3) [N, K/16]; FP8: F32 [N]
  Tensor in_scale;        // optional F32 [K] (AWQ); undefined = none
  int64_t group_size = 0; // INT4 G (K for per channel); 16 for NVFP4; K for FP8
  float global_scale = 1.f;  // NVFP4
  bool defined() const { return format != QuantFormat::kNone; }
  size_t bytes() const {
    return defined() ? codes.nbytes() + scales.nbytes() + (in_scale.defined() ? in_scale.nbytes() : 0)
                     : 0;
  }
};

// Engine-ready weights on one device in one dtype (norm weights always F32).
// With quantised weights (quantize_llama_weights, quant/llm_quant.h) each linear also has a
// QuantLinear: the decode GEMVs read it, and the dense tensor holds dequant(quantised) in the
// engine dtype, so prefill (dense GEMMs) and decode compute with the same weights.
struct LlamaLayerWeights {
  Tensor attn_norm;  // [H] F32
  Tensor wqkv;       // [(Hq + 2 Hkv) D, H]
  Tensor wo;         // [H, Hq D]
  Tensor mlp_norm;   // [H] F32
  Tensor w_gate_up;  // [2 I, H]
  Tensor w_down;     // [H, I]
  QuantLinear q_wqkv, q_wo, q_gate_up, q_down;
};
struct LlamaWeights {
  Device device = Device::CPU;
  DType dtype = DType::F32;
  Tensor embed;  // [V, H]
  std::vector<LlamaLayerWeights> layers;
  Tensor final_norm;  // [H] F32
  Tensor lm_head;     // [V, H] (shares embed's storage when tied)
  QuantLinear q_lm_head;  // quantised lm_head (only when asked for: it is usually kept dense)
  std::string quant_name;  // "" for dense; else e.g. "int4", "int4-g128", "nvfp4"
  // Bytes held on the device (dense tensors + quantised copies).
  size_t bytes() const;
  // Bytes one decode step reads: each linear's quantised copy when it has one, else the dense
  // tensor; norms; not the embedding table (one row is read) unless it is the tied lm_head.
  size_t decode_bytes() const;
};

// Validates every tensor (presence, shape, float dtype) before converting anything, then
// converts to `dtype` and uploads to `device`. A missing or misshaped tensor throws an Error
// naming it and the expected shape. `what` names the checkpoint in messages.
LlamaWeights load_llama_weights(const LlamaConfig& cfg, const TensorLookup& lookup, Device device,
                                DType dtype, const std::string& what);

// Seeded random weights of the shapes `cfg` describes, generated directly in `dtype` on
// `device` (no file needed; used by `omnirt bench llm --random-tinyllama` and by tests).
// Linear weights ~ U(-a, a) with a = weight_scale * sqrt(3 / fan_in) so activations stay O(1);
// norm weights ~ 1 + U(-0.1, 0.1); embeddings ~ U(-1, 1).
LlamaWeights random_llama_weights(const LlamaConfig& cfg, uint64_t seed, Device device, DType dtype,
                                  float weight_scale = 1.0f);

// RoPE tables as HF LlamaRotaryEmbedding builds them: inv_freq_i = 1 / theta^(2i/D) in float32,
// angle = float32(pos) * inv_freq_i; cos/sin of it. Returned as F32 [max_pos, D/2] each.
void llama_rope_tables(const LlamaConfig& cfg, int64_t max_pos, Tensor& cos, Tensor& sin);

// Deterministic counter-based uniform in [-1, 1): the same numbers on CPU and GPU.
#ifdef __CUDACC__
__host__ __device__
#endif
inline float hash_uniform(uint64_t seed, uint64_t i) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + i + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<float>(z >> 40) * (2.0f / 16777216.0f) - 1.0f;
}

}  // namespace omnirt::llm
