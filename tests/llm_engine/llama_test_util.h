// Shared pieces of the LLM engine tests: tiny random LLaMA checkpoints (HF names) and an
// independent float64 reference forward written from the HF LlamaForCausalLM definition.
#pragma once

#include <cmath>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "models/llm/llama.h"
#include "models/llm/llm_engine.h"

namespace omnirt::llm::testing {

using Checkpoint = std::map<std::string, Tensor>;

// A small config with GQA (3 query heads per kv head, 2 kv heads, so a wrong head mapping such as
// h % kv_heads shows); every size is a non-multiple of 32/128 where the kernels allow it.
inline LlamaConfig tiny_config() {
  LlamaConfig c;
  c.hidden_size = 160;
  c.intermediate_size = 328;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 6;
  c.num_key_value_heads = 2;  // GQA group of 3
  c.head_dim = 32;
  c.vocab_size = 301;
  c.max_position_embeddings = 96;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000.0;
  return c;
}

// Sizes whose rows are not 16-byte multiples in any dtype (the GEMV's scalar path), head_dim 64.
inline LlamaConfig awkward_config() {
  LlamaConfig c;
  c.hidden_size = 131 * 1;  // odd hidden size: no vector loads anywhere
  c.intermediate_size = 203;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 2;
  c.head_dim = 64;
  c.vocab_size = 157;
  c.max_position_embeddings = 80;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 500.0;
  return c;
}

// Random HF-named weights. Linear weights U(-a, a), a = 1.5 sqrt(3 / fan_in) (q/k scaled up so
// attention is far from uniform); norms 1 + U(-0.3, 0.3); embeddings U(-1, 1).
inline Checkpoint random_checkpoint(const LlamaConfig& c, std::mt19937_64& rng) {
  Checkpoint ck;
  for (const auto& e : expected_llama_tensors(c)) {
    const bool norm = e.shape.size() == 1;
    const bool embed = e.name.find("embed_tokens") != std::string::npos;
    float a = 1.0f;
    if (norm) a = 0.3f;
    else if (!embed) a = 1.5f * std::sqrt(3.0f / static_cast<float>(e.shape[1]));
    if (e.name.find("q_proj") != std::string::npos || e.name.find("k_proj") != std::string::npos)
      a *= 2.0f;
    Tensor t = omnirt::testing::random_tensor(e.shape, rng, -a, a);
    if (norm)
      for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] += 1.0f;
    ck[e.name] = t;
  }
  return ck;
}

inline TensorLookup lookup_of(const Checkpoint& ck) {
  return [&ck](const std::string& name) {
    auto it = ck.find(name);
    return it == ck.end() ? Tensor() : it->second;
  };
}

// HF LlamaForCausalLM in float64, all positions: logits [L, V] for input embeddings [L, H].
inline std::vector<double> reference_logits(const LlamaConfig& c, const Checkpoint& ck,
                                            const std::vector<float>& emb, int64_t L) {
  const int64_t H = c.hidden_size, I = c.intermediate_size, D = c.head_dim, V = c.vocab_size;
  const int64_t Hq = c.num_attention_heads, Hkv = c.num_key_value_heads;
  auto W = [&](const std::string& n) { return ck.at(n).data<float>(); };
  std::vector<double> h(emb.begin(), emb.end());
  auto rmsnorm = [&](const std::vector<double>& x, const float* w) {
    std::vector<double> out(x.size());
    for (int64_t t = 0; t < L; ++t) {
      double ss = 0;
      for (int64_t i = 0; i < H; ++i) ss += x[t * H + i] * x[t * H + i];
      const double inv = 1.0 / std::sqrt(ss / H + c.rms_norm_eps);
      for (int64_t i = 0; i < H; ++i) out[t * H + i] = w[i] * x[t * H + i] * inv;
    }
    return out;
  };
  auto linear = [&](const std::vector<double>& x, const float* w, int64_t n, int64_t k) {
    std::vector<double> y(L * n, 0.0);
    for (int64_t t = 0; t < L; ++t)
      for (int64_t o = 0; o < n; ++o) {
        double s = 0;
        for (int64_t i = 0; i < k; ++i) s += x[t * k + i] * w[o * k + i];
        y[t * n + o] = s;
      }
    return y;
  };
  auto rope = [&](std::vector<double>& x, int64_t heads) {  // x [L, heads * D]
    for (int64_t t = 0; t < L; ++t)
      for (int64_t hh = 0; hh < heads; ++hh)
        for (int64_t i = 0; i < D / 2; ++i) {
          const double inv_freq = 1.0 / std::pow(c.rope_theta, 2.0 * i / D);
          const double ang = t * inv_freq, co = std::cos(ang), si = std::sin(ang);
          double* v = &x[t * heads * D + hh * D];
          const double a = v[i], b = v[i + D / 2];
          v[i] = a * co - b * si;
          v[i + D / 2] = b * co + a * si;
        }
  };
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    auto xn = rmsnorm(h, W(p + "input_layernorm.weight"));
    auto q = linear(xn, W(p + "self_attn.q_proj.weight"), Hq * D, H);
    auto k = linear(xn, W(p + "self_attn.k_proj.weight"), Hkv * D, H);
    auto v = linear(xn, W(p + "self_attn.v_proj.weight"), Hkv * D, H);
    rope(q, Hq);
    rope(k, Hkv);
    std::vector<double> att(L * Hq * D, 0.0);
    for (int64_t hh = 0; hh < Hq; ++hh) {
      const int64_t kh = hh / (Hq / Hkv);
      for (int64_t t = 0; t < L; ++t) {
        std::vector<double> s(t + 1);
        double mx = -1e300;
        for (int64_t j = 0; j <= t; ++j) {
          double dot = 0;
          for (int64_t d = 0; d < D; ++d) dot += q[t * Hq * D + hh * D + d] * k[j * Hkv * D + kh * D + d];
          s[j] = dot / std::sqrt(static_cast<double>(D));
          mx = std::max(mx, s[j]);
        }
        double sum = 0;
        for (auto& x : s) sum += (x = std::exp(x - mx));
        for (int64_t j = 0; j <= t; ++j)
          for (int64_t d = 0; d < D; ++d)
            att[t * Hq * D + hh * D + d] += s[j] / sum * v[j * Hkv * D + kh * D + d];
      }
    }
    auto o = linear(att, W(p + "self_attn.o_proj.weight"), H, Hq * D);
    for (size_t i = 0; i < h.size(); ++i) h[i] += o[i];
    xn = rmsnorm(h, W(p + "post_attention_layernorm.weight"));
    auto g = linear(xn, W(p + "mlp.gate_proj.weight"), I, H);
    auto u = linear(xn, W(p + "mlp.up_proj.weight"), I, H);
    std::vector<double> a(L * I);
    for (size_t i = 0; i < a.size(); ++i) a[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
    auto dn = linear(a, W(p + "mlp.down_proj.weight"), H, I);
    for (size_t i = 0; i < h.size(); ++i) h[i] += dn[i];
  }
  auto xn = rmsnorm(h, W("model.norm.weight"));
  return linear(xn, c.tie_word_embeddings ? W("model.embed_tokens.weight") : W("lm_head.weight"), V, H);
}

inline double rel_error_d(const std::vector<float>& a, const std::vector<double>& ref,
                          size_t offset = 0) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    const double d = a[i] - ref[offset + i];
    num += d * d;
    den += ref[offset + i] * ref[offset + i];
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
}

inline std::unique_ptr<LlmEngine> make_engine(const LlamaConfig& c, const Checkpoint& ck,
                                              LlmEngineOptions opt) {
  LlamaWeights w = load_llama_weights(c, lookup_of(ck), opt.device, opt.dtype, "test checkpoint");
  return std::make_unique<LlmEngine>(c, std::move(w), opt);
}

// Rows of the embedding table, as the engine's decode would look them up.
inline std::vector<float> embedding_rows(const Checkpoint& ck, const LlamaConfig& c,
                                         const std::vector<int32_t>& ids) {
  std::vector<float> out;
  const float* e = ck.at("model.embed_tokens.weight").data<float>();
  for (int32_t id : ids) out.insert(out.end(), e + id * c.hidden_size, e + (id + 1) * c.hidden_size);
  return out;
}

}  // namespace omnirt::llm::testing
