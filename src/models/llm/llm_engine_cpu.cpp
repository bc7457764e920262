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
#include "ops/gemm.h"

namespace omnirt::llm::detail {
namespace {

// out[r, :] = w * x[r, :] * rsqrt(mean(x[r, :]^2) + eps)
void rmsnorm_rows(const float* x, const float* w, float* out, int64_t rows, int64_t n, double eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * n;
    float ss = 0.f;
    for (int64_t i = 0; i < n; ++i) ss += xr[i] * xr[i];
    const float inv = 1.0f / std::sqrt(ss / static_cast<float>(n) + static_cast<float>(eps));
    for (int64_t i = 0; i < n; ++i) out[r * n + i] = w[i] * (xr[i] * inv);
  }
}

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
      : cfg_(cfg), w_(std::move(w)), max_ctx_(max_ctx), chunk_(opt.max_prefill_chunk),
        cache_(cfg, max_ctx, DType::F32, Device::CPU) {
    const int64_t H = cfg.hidden_size, I = cfg.intermediate_size, V = cfg.vocab_size;
    resid_ = Tensor::empty({chunk_, H}, DType::F32);
    xn_ = Tensor::empty({chunk_, H}, DType::F32);
    qkv_ = Tensor::empty({chunk_, cfg.qkv_dim()}, DType::F32);
    attn_ = Tensor::empty({chunk_, cfg.q_dim()}, DType::F32);
    gu_ = Tensor::empty({chunk_, 2 * I}, DType::F32);
    act_ = Tensor::empty({chunk_, I}, DType::F32);
    logits_ = Tensor::empty({opt.all_logits ? chunk_ : 1, V}, DType::F32);
    scores_ = Tensor::empty({max_ctx}, DType::F32);
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
           act_.nbytes() + logits_.nbytes() + scores_.nbytes();
  }

 private:
  void run_layers(int64_t n, int64_t pos) {
    const int64_t H = cfg_.hidden_size, I = cfg_.intermediate_size, D = cfg_.head_dim;
    const int64_t Hq = cfg_.num_attention_heads, Hkv = cfg_.num_key_value_heads;
    const int64_t QKV = cfg_.qkv_dim(), group = Hq / Hkv, half = D / 2;
    const float scale = 1.0f / std::sqrt(static_cast<float>(D));
    float* resid = resid_.data<float>();
    float* xn = xn_.data<float>();
    float* qkv = qkv_.data<float>();
    float* attn = attn_.data<float>();
    float* gu = gu_.data<float>();
    float* act = act_.data<float>();
    float* scores = scores_.data<float>();
    for (int64_t l = 0; l < cfg_.num_hidden_layers; ++l) {
      const LlamaLayerWeights& lw = w_.layers[l];
      float* kc = cache_.keys(l).data<float>();    // [Hkv, max_ctx, D]
      float* vc = cache_.values(l).data<float>();  // [Hkv, max_ctx, D]
      // --- attention block ---
      rmsnorm_rows(resid, lw.attn_norm.data<float>(), xn, n, H, cfg_.rms_norm_eps);
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
      for (int64_t t = 0; t < n; ++t) {
        const int64_t keys = pos + t + 1;  // causal: attends to positions 0..pos+t
        for (int64_t h = 0; h < Hq; ++h) {
          const float* q = qkv + t * QKV + h * D;
          const float* kh = kc + (h / group) * max_ctx_ * D;
          const float* vh = vc + (h / group) * max_ctx_ * D;
          float mx = -INFINITY;
          for (int64_t j = 0; j < keys; ++j) {
            float dot = 0.f;
            for (int64_t d = 0; d < D; ++d) dot += q[d] * kh[j * D + d];
            scores[j] = dot * scale;
            mx = std::max(mx, scores[j]);
          }
          float sum = 0.f;
          for (int64_t j = 0; j < keys; ++j) {
            scores[j] = std::exp(scores[j] - mx);
            sum += scores[j];
          }
          float* o = attn + t * cfg_.q_dim() + h * D;
          std::fill(o, o + D, 0.f);
          for (int64_t j = 0; j < keys; ++j) {
            const float pj = scores[j] / sum;
            for (int64_t d = 0; d < D; ++d) o[d] += pj * vh[j * D + d];
          }
        }
      }
      linear_rows(attn_, lw.wo, resid_, n, 1.f);  // resid +=
      // --- MLP block ---
      rmsnorm_rows(resid, lw.mlp_norm.data<float>(), xn, n, H, cfg_.rms_norm_eps);
      linear_rows(xn_, lw.w_gate_up, gu_, n, 0.f);
      for (int64_t t = 0; t < n; ++t)
        for (int64_t i = 0; i < I; ++i) {
          const float g = gu[t * 2 * I + i], u = gu[t * 2 * I + I + i];
          act[t * I + i] = g / (1.0f + std::exp(-g)) * u;
        }
      linear_rows(act_, lw.w_down, resid_, n, 1.f);  // resid +=
    }
  }

  Tensor head(int64_t n, bool all_logits) {
    const int64_t H = cfg_.hidden_size;
    const int64_t first = all_logits ? 0 : n - 1, rows = n - first;
    rmsnorm_rows(resid_.data<float>() + first * H, w_.final_norm.data<float>(), xn_.data<float>(),
                 rows, H, cfg_.rms_norm_eps);
    linear_rows(xn_, w_.lm_head, logits_, rows, 0.f);
    last_logits_ = logits_.select(0, rows - 1);
    return all_logits ? logits_.slice(0, 0, rows) : last_logits_;
  }

  LlamaConfig cfg_;
  LlamaWeights w_;
  int64_t max_ctx_, chunk_;
  KvCache cache_;
  Tensor resid_, xn_, qkv_, attn_, gu_, act_, logits_, scores_, token_, cos_, sin_;
  Tensor last_logits_;
  DeviceSampler sampler_;
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
