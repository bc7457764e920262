// The CPU LLaMA: float32, plain loops plus a BLAS GEMM — the executable spec the CUDA engine is
// tested against. Semantics follow HF transformers' LlamaForCausalLM:
//   h = x + o_proj(attn(rope(q), rope(k), v))      attn: causal, GQA, softmax in fp32
//   h = h + down(silu(gate(n)) * up(n))            n = rmsnorm(h)
//   rmsnorm(x) = w * (x * rsqrt(mean(x^2) + eps))
//   rope: half-split rotate_half, positions 0..L-1
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "models/llm/llm_engine_impl.h"
#include "ops/activation.h"
#include "ops/attention.h"
#include "ops/gemm.h"
#include "ops/norm.h"

namespace omnirt::llm::detail {
namespace {

// y[:m] = beta * y[:m] + x[:m] W^T (nn.Linear layout, no bias); beta = 1 is the residual add.
void linear_rows(const Tensor& x, const Tensor& w, Tensor& y, int64_t m, float beta) {
  Tensor ym = y.slice(0, 0, m);
  ops::gemm(x.slice(0, 0, m), w, ym, /*trans_a=*/false, /*trans_b=*/true, 1.0f, beta);
}

// HF rotate_half on one head vector: (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin), halves of D.
void rope_head(float* v, const float* cos, const float* sin, int64_t d) {
  const int64_t half = d / 2;
  for (int64_t i = 0; i < half; ++i) {
    const float a = v[i], b = v[i + half];
    v[i] = a * cos[i] - b * sin[i];
    v[i + half] = b * cos[i] + a * sin[i];
  }
}

class CpuLlama final : public LlamaImpl {
 public:
  CpuLlama(const LlamaConfig& cfg, LlamaWeights w, const LlmEngineOptions& opt, int64_t max_ctx)
      : cfg_(cfg),
        w_(std::move(w)),
        max_ctx_(max_ctx),
        chunk_(opt.max_prefill_chunk),
        cache_(cfg, max_ctx, DType::F32, Device::CPU),
        hook_(opt.linear_input_hook) {
    const int64_t H = cfg.hidden_size, I = cfg.intermediate_size, V = cfg.vocab_size;
    resid_ = Tensor::empty({chunk_, H}, DType::F32);
    xn_ = Tensor::empty({chunk_, H}, DType::F32);
    qkv_ = Tensor::empty({chunk_, cfg.qkv_dim()}, DType::F32);
    attn_ = Tensor::empty({chunk_, cfg.q_dim()}, DType::F32);
    gu_ = Tensor::empty({chunk_, 2 * I}, DType::F32);
    act_ = Tensor::empty({chunk_, I}, DType::F32);
    logits_ = Tensor::empty({opt.all_logits ? chunk_ : 1, V}, DType::F32);
    token_ = Tensor::zeros({1}, DType::I32);
    llama_rope_tables(cfg, max_ctx, cos_, sin_);
    sampler_ = [](const Tensor& logits, Tensor& tok) { tok.data<int32_t>()[0] = argmax_host(logits); };
  }

  Tensor forward(const Tensor& emb, int64_t pos, bool all_logits) override {
    const int64_t n = emb.dim(0);
    std::memcpy(resid_.raw(), emb.raw(), emb.nbytes());
    run_layers(n, pos);
    return head(n, all_logits);
  }

  Tensor decode(int32_t token, int64_t pos) override {
    const int64_t H = cfg_.hidden_size;
    std::memcpy(resid_.raw(), w_.embed.data<float>() + token * H, H * sizeof(float));
    run_layers(1, pos);
    return head(1, false);
  }

  void set_sampler(DeviceSampler s) override { sampler_ = std::move(s); }
  void sample_last() override { sampler_(last_logits_, token_); }
  void decode_next(int64_t pos) override {
    const int32_t tok = token_.data<int32_t>()[0];
    OMNIRT_CHECK(tok >= 0 && tok < cfg_.vocab_size, "decode: the sampler produced token ", tok,
                 " outside the vocabulary [0, ", cfg_.vocab_size, ")");
    decode(tok, pos);
    sample_last();
  }
  int32_t read_token() override { return token_.data<int32_t>()[0]; }
  const Tensor& embed_table() const override { return w_.embed; }
  size_t kv_cache_bytes() const override { return cache_.bytes(); }
  size_t workspace_bytes() const override {
    return resid_.nbytes() + xn_.nbytes() + qkv_.nbytes() + attn_.nbytes() + gu_.nbytes() +
           act_.nbytes() + logits_.nbytes();
  }

 private:
  void run_layers(int64_t n, int64_t pos) {
    const int64_t D = cfg_.head_dim;
    const int64_t Hq = cfg_.num_attention_heads, Hkv = cfg_.num_key_value_heads;
    const int64_t QKV = cfg_.qkv_dim(), half = D / 2;
    const float eps = static_cast<float>(cfg_.rms_norm_eps);
    float* qkv = qkv_.data<float>();
    for (int64_t l = 0; l < cfg_.num_hidden_layers; ++l) {
      const LlamaLayerWeights& lw = w_.layers[l];
      float* kc = cache_.keys(l).data<float>();    // [Hkv, max_ctx, D]
      float* vc = cache_.values(l).data<float>();  // [Hkv, max_ctx, D]
      // --- attention block ---
      Tensor resid_n = resid_.slice(0, 0, n), xn_n = xn_.slice(0, 0, n);
      ops::rmsnorm(resid_n, lw.attn_norm, eps, xn_n);
      if (hook_) hook_(l, LinearSite::kQkv, xn_n);
      linear_rows(xn_, lw.wqkv, qkv_, n, 0.f);
      for (int64_t t = 0; t < n; ++t) {
        const int64_t p = pos + t;
        float* row = qkv + t * QKV;
        const float* c = cos_.data<float>() + p * half;
        const float* s = sin_.data<float>() + p * half;
        for (int64_t h = 0; h < Hq; ++h) rope_head(row + h * D, c, s, D);
        for (int64_t h = 0; h < Hkv; ++h) {
          float* k = row + cfg_.q_dim() + h * D;
          rope_head(k, c, s, D);
          std::memcpy(kc + (h * max_ctx_ + p) * D, k, D * sizeof(float));
          std::memcpy(vc + (h * max_ctx_ + p) * D, row + cfg_.q_dim() + cfg_.kv_dim() + h * D,
                      D * sizeof(float));
        }
      }
      // Causal attention of the n new queries over the pos + n cached keys (ops::attention aligns
      // the queries to the end of the keys), on strided views: no copies.
      Tensor q = qkv_.slice(0, 0, n).reshape({n, Hq + 2 * Hkv, D}).slice(1, 0, Hq).unsqueeze(0)
                     .permute({0, 2, 1, 3});  // [1, Hq, n, D]
      Tensor k = cache_.keys(l).slice(1, 0, pos + n).unsqueeze(0);    // [1, Hkv, pos + n, D]
      Tensor v = cache_.values(l).slice(1, 0, pos + n).unsqueeze(0);  // [1, Hkv, pos + n, D]
      Tensor o = attn_.slice(0, 0, n).reshape({n, Hq, D}).unsqueeze(0).permute({0, 2, 1, 3});
      ops::AttentionOptions ao;
      ao.causal = true;
      ops::attention(q, k, v, o, ao);
      if (hook_) hook_(l, LinearSite::kO, attn_.slice(0, 0, n));
      linear_rows(attn_, lw.wo, resid_, n, 1.f);  // resid +=
      // --- MLP block ---
      ops::rmsnorm(resid_n, lw.mlp_norm, eps, xn_n);
      if (hook_) hook_(l, LinearSite::kGateUp, xn_n);
      linear_rows(xn_, lw.w_gate_up, gu_, n, 0.f);
      Tensor act_n = act_.slice(0, 0, n);
      ops::swiglu_concat(gu_.slice(0, 0, n), act_n);
      if (hook_) hook_(l, LinearSite::kDown, act_n);
      linear_rows(act_, lw.w_down, resid_, n, 1.f);  // resid +=
    }
  }

  Tensor head(int64_t n, bool all_logits) {
    const int64_t first = all_logits ? 0 : n - 1, rows = n - first;
    Tensor xn_rows = xn_.slice(0, 0, rows);
    ops::rmsnorm(resid_.slice(0, first, n), w_.final_norm, static_cast<float>(cfg_.rms_norm_eps),
                 xn_rows);
    linear_rows(xn_, w_.lm_head, logits_, rows, 0.f);
    last_logits_ = logits_.select(0, rows - 1);
    return all_logits ? logits_.slice(0, 0, rows) : last_logits_;
  }

  LlamaConfig cfg_;
  LlamaWeights w_;
  int64_t max_ctx_, chunk_;
  KvCache cache_;
  Tensor resid_, xn_, qkv_, attn_, gu_, act_, logits_, token_, cos_, sin_;
  Tensor last_logits_;
  DeviceSampler sampler_;
  LinearInputHook hook_;
};

}  // namespace

std::unique_ptr<LlamaImpl> make_cpu_llama(const LlamaConfig& cfg, LlamaWeights weights,
                                          const LlmEngineOptions& opt, int64_t max_context) {
  OMNIRT_CHECK(weights.device == Device::CPU && weights.dtype == DType::F32,
               "the CPU LLM engine runs float32 weights on the host, got ",
               dtype_name(weights.dtype), " on ", device_name(weights.device));
  return std::make_unique<CpuLlama>(cfg, std::move(weights), opt, max_context);
}

}  // namespace omnirt::llm::detail
