// The CUDA LLaMA engine: prefill with cuBLAS GEMMs + ops::attention (fused, causal), RoPE fused
// with the KV-cache write; decode with the kernels of decode_kernels.cu: per layer 5 kernels
// (RMSNorm+QKV GEMV with RoPE and the KV-cache write in its epilogue, split-K attention, o_proj
// GEMV + residual add, RMSNorm+gate/up GEMV, SwiGLU+down GEMV + residual add), chained with
// programmatic dependent launch, and the whole step captured in one CUDA graph.
//
// Numerics (all dtypes): the residual stream is float32; matmul inputs/outputs, the KV cache and
// the weights are in the engine dtype T; every dot product accumulates in float32; RMSNorm,
// softmax and SwiGLU are computed in float32 and rounded to T once.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_map>

#include "core/cuda_check.h"
#include "core/error.h"
#include "core/log.h"
#include "models/llm/decode_kernels.h"
#include "models/llm/llama_cuda.h"
#include "models/llm/llm_engine_impl.h"
#include "models/llm/quant_gemv.h"
#include "ops/activation.h"
#include "ops/attention.h"
#include "ops/cuda/common.cuh"

#define OMNIRT_CUBLAS_CHECK(call)                                                      \
  do {                                                                                 \
    cublasStatus_t omnirt_st_ = (call);                                                \
    if (omnirt_st_ != CUBLAS_STATUS_SUCCESS)                                           \
      OMNIRT_FAIL("cuBLAS error in ", #call, ": ", cublasGetStatusString(omnirt_st_)); \
  } while (0)

namespace omnirt::llm {
namespace {

// ---------------------------------------------------------------------------------------------
// Scalar conversions
// Element conversions shared with the op layer (ops/cuda/common.cuh).
using ops::cuda::from_float;
using ops::cuda::to_float;

template <typename T>
cudaDataType_t cuda_type();
template <>
cudaDataType_t cuda_type<float>() {
  return CUDA_R_32F;
}
template <>
cudaDataType_t cuda_type<__half>() {
  return CUDA_R_16F;
}
template <>
cudaDataType_t cuda_type<__nv_bfloat16>() {
  return CUDA_R_16BF;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
// Sum over the block; every thread gets the result. `red` holds >= 32 floats.
__device__ float block_sum(float v, float* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (blockDim.x + 31) >> 5;
  v = warp_sum(v);
  __syncthreads();  // `red` may still be read by a previous reduction
  if (lane == 0) red[warp] = v;
  __syncthreads();
  float t = lane < nwarps ? red[lane] : 0.f;
  return warp_sum(t);
}

// ---------------------------------------------------------------------------------------------
// Small kernels

template <typename T>
__global__ void fill_hash_kernel(T* dst, int64_t n, uint64_t seed, float scale, float offset) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    // Explicit round-to-nearest ops (no FMA contraction) so the host fill gives the same bits.
    dst[i] = from_float<T>(
        __fadd_rn(offset, __fmul_rn(scale, hash_uniform(seed, static_cast<uint64_t>(i)))));
}

// resid[0, :] = table[*token, :] (float32 residual stream). A token outside the vocabulary (the
// sampler writes -1 after non-finite logits) yields NaN rows instead of reading out of bounds;
// the host loop sees the -1 and stops with an error.
template <typename T>
__global__ void embed_kernel(const T* table, const int32_t* token, float* resid, int H, int V) {
  const int32_t tok = *token;
  const bool ok = tok >= 0 && tok < V;
  const int64_t row = static_cast<int64_t>(ok ? tok : 0) * H;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < H; i += gridDim.x * blockDim.x)
    resid[i] = ok ? to_float(table[row + i]) : __int_as_float(0x7fc00000);
}

__global__ void advance_pos_kernel(int32_t* pos, int n) { *pos += n; }
__global__ void set_pos_kernel(int32_t* pos, int value) { *pos = value; }

// out[r, :] = w * x[r, :] * rsqrt(mean(x[r, :]^2) + eps); one block per row.
template <typename T>
__global__ void rmsnorm_kernel(const float* x, const float* w, T* out, int H, float eps) {
  __shared__ float red[32];
  const float* xr = x + static_cast<int64_t>(blockIdx.x) * H;
  float ss = 0.f;
  for (int i = threadIdx.x; i < H; i += blockDim.x) ss += xr[i] * xr[i];
  ss = block_sum(ss, red);
  const float inv = rsqrtf(ss / static_cast<float>(H) + eps);
  T* o = out + static_cast<int64_t>(blockIdx.x) * H;
  for (int i = threadIdx.x; i < H; i += blockDim.x) o[i] = from_float<T>(w[i] * (xr[i] * inv));
}

// RoPE (HF half-split) on the q and k heads of `rows` rows of qkv [rows, stride] at positions
// *pos0 + r, rotating q in place and writing rotated k and plain v into the layer's cache
// [Hkv, max_ctx, D]. One block per row.
template <typename T>
__global__ void rope_kv_kernel(T* qkv, int stride, const float* cos_tab, const float* sin_tab,
                               const int32_t* pos0, T* kc, T* vc, int Hq, int Hkv, int D,
                               int max_ctx) {
  const int r = blockIdx.x;
  const int p = *pos0 + r;
  const int half = D / 2;
  T* row = qkv + static_cast<int64_t>(r) * stride;
  const float* c = cos_tab + static_cast<int64_t>(p) * half;
  const float* s = sin_tab + static_cast<int64_t>(p) * half;
  for (int idx = threadIdx.x; idx < (Hq + Hkv) * half; idx += blockDim.x) {
    const int head = idx / half, i = idx % half;
    T* v = row + head * D;  // q heads then k heads are contiguous in the row
    const float a = to_float(v[i]), b = to_float(v[i + half]);
    const float ra = a * c[i] - b * s[i], rb = b * c[i] + a * s[i];
    if (head < Hq) {
      v[i] = from_float<T>(ra);
      v[i + half] = from_float<T>(rb);
    } else {
      T* dst = kc + (static_cast<int64_t>(head - Hq) * max_ctx + p) * D;
      dst[i] = from_float<T>(ra);
      dst[i + half] = from_float<T>(rb);
    }
  }
  const T* vsrc = row + (Hq + Hkv) * D;
  for (int idx = threadIdx.x; idx < Hkv * D; idx += blockDim.x) {
    const int h = idx / D, d = idx % D;
    vc[(static_cast<int64_t>(h) * max_ctx + p) * D + d] = vsrc[idx];
  }
}

// Greedy sampler: token = argmax(logits) (lowest id on ties). One block.
__global__ void argmax_kernel(const float* logits, int n, int32_t* token) {
  __shared__ float bv[32];
  __shared__ int bi[32];
  float best = -INFINITY;
  int idx = n;  // NaN logits never win; if all are NaN the result is 0
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const float v = logits[i];
    if (v > best || (v == best && i < idx)) {
      best = v;
      idx = i;
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, best, o);
    const int oi = __shfl_xor_sync(0xffffffffu, idx, o);
    if (ov > best || (ov == best && oi < idx)) {
      best = ov;
      idx = oi;
    }
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    bv[warp] = best;
    bi[warp] = idx;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < static_cast<int>(blockDim.x >> 5); ++w)
      if (bv[w] > best || (bv[w] == best && bi[w] < idx)) {
        best = bv[w];
        idx = bi[w];
      }
    *token = idx < n ? idx : 0;
  }
}

// ---------------------------------------------------------------------------------------------
// The engine

int grid_for(int64_t n, int threads) {
  return static_cast<int>(std::min<int64_t>((n + threads - 1) / threads, 65535));
}

template <typename T>
class CudaLlama final : public detail::LlamaImpl {
 public:
  CudaLlama(const LlamaConfig& cfg, LlamaWeights w, const LlmEngineOptions& opt, int64_t max_ctx)
      : cfg_(cfg), w_(std::move(w)), opt_(opt), max_ctx_(max_ctx), chunk_(opt.max_prefill_chunk) {
    const int64_t D = cfg.head_dim;
    OMNIRT_CHECK(D == 32 || D == 64 || D == 128, "CUDA LLM engine: head_dim ", D,
                 " is not supported (32, 64 or 128)");
    OMNIRT_CHECK(std::max(cfg.hidden_size, cfg.intermediate_size) * sizeof(float) <= 160 * 1024,
                 "CUDA LLM engine: hidden/intermediate size too large for the decode GEMV");
    OMNIRT_CHECK(cfg.num_attention_heads / cfg.num_key_value_heads <= decode::kAttnMaxGroup,
                 "CUDA LLM engine: ", cfg.num_attention_heads / cfg.num_key_value_heads,
                 " query heads per kv head; the decode attention handles up to ",
                 decode::kAttnMaxGroup);
    attn_splits_ =
        decode::attn_decode_default_splits(static_cast<int>(cfg.num_key_value_heads), max_ctx);
    OMNIRT_CHECK(max_ctx <= static_cast<int64_t>(attn_splits_) * decode::kAttnMaxKeysPerSplit,
                 "CUDA LLM engine: max_context ", max_ctx,
                 " is too long for the decode attention kernel");
    // Programmatic dependent launch between the decode kernels (on by default; OMNIRT_LLM_PDL=0
    // turns it off, e.g. to measure what it gains).
    const char* pdl_env = std::getenv("OMNIRT_LLM_PDL");
    pdl_ = !(pdl_env && std::string(pdl_env) == "0");
    parse_ablation();
    register_quantized();
    OMNIRT_CUDA_CHECK(cudaStreamCreate(&stream_));  // blocking: the legacy stream syncs with it
    OMNIRT_CUBLAS_CHECK(cublasCreate(&cublas_));
    OMNIRT_CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
    OMNIRT_CUBLAS_CHECK(cublasSetMathMode(cublas_, CUBLAS_DEFAULT_MATH));  // exact fp32, no TF32

    const int64_t H = cfg.hidden_size, I = cfg.intermediate_size, V = cfg.vocab_size;
    const DType dt = opt.dtype;
    cache_ = KvCache(cfg, max_ctx, dt, Device::CUDA);
    // Every activation buffer is planned here, in one arena.
    const size_t elem = dtype_nbytes(dt, 1);
    const int64_t logit_rows = opt.all_logits ? chunk_ : 1;
    const size_t need =
        chunk_ * H * 4 + chunk_ * H * elem + chunk_ * cfg.qkv_dim() * elem +
        chunk_ * cfg.q_dim() * elem + chunk_ * 2 * I * elem + chunk_ * I * elem +
        logit_rows * V * 4 + 2 * max_ctx * (D / 2) * 4 +
        decode::attn_decode_workspace_floats(static_cast<int>(cfg.num_attention_heads),
                                             static_cast<int>(D), attn_splits_) *
            4 +
        cfg.num_key_value_heads * 4 + 20 * 256;
    arena_ = std::make_unique<Arena>(Device::CUDA, need);
    resid_ = arena_->alloc({chunk_, H}, DType::F32);
    xn_ = arena_->alloc({chunk_, H}, dt);
    qkv_ = arena_->alloc({chunk_, cfg.qkv_dim()}, dt);
    attn_ = arena_->alloc({chunk_, cfg.q_dim()}, dt);
    gu_ = arena_->alloc({chunk_, 2 * I}, dt);
    act_ = arena_->alloc({chunk_, I}, dt);
    logits_ = arena_->alloc({logit_rows, V}, DType::F32);
    Tensor cos_h, sin_h;
    llama_rope_tables(cfg, max_ctx, cos_h, sin_h);
    cos_ = arena_->alloc(cos_h.shape(), DType::F32);
    sin_ = arena_->alloc(sin_h.shape(), DType::F32);
    cos_.copy_from(cos_h);
    sin_.copy_from(sin_h);
    pos_ = arena_->alloc({1}, DType::I32);
    token_ = arena_->alloc({1}, DType::I32);
    attn_ws_ = arena_->alloc(
        {static_cast<int64_t>(decode::attn_decode_workspace_floats(
            static_cast<int>(cfg.num_attention_heads), static_cast<int>(D), attn_splits_))},
        DType::F32);
    attn_counters_ = arena_->alloc({cfg.num_key_value_heads}, DType::I32);
    OMNIRT_CUDA_CHECK(cudaMemsetAsync(attn_counters_.raw(), 0, attn_counters_.nbytes(), stream_));
    // Pinned staging for the prompt embeddings: the upload is then a real async DMA.
    OMNIRT_CUDA_CHECK(
        cudaMallocHost(&host_stage_, static_cast<size_t>(chunk_ * H) * sizeof(float)));
    OMNIRT_CUDA_CHECK(cudaMallocHost(&host_token_, sizeof(int32_t)));
    OMNIRT_CUDA_CHECK(cudaMemsetAsync(pos_.raw(), 0, 4, stream_));
    OMNIRT_CUDA_CHECK(cudaMemsetAsync(token_.raw(), 0, 4, stream_));
    last_logits_ = logits_.select(0, 0);
    sampler_ = [](const Tensor& logits, Tensor& tok) {
      argmax_kernel<<<1, 1024, 0, cuda::current_stream()>>>(
          logits.data<float>(), static_cast<int>(logits.numel()), tok.data<int32_t>());
      OMNIRT_CUDA_CHECK_LAUNCH("argmax");
    };
    OMNIRT_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  ~CudaLlama() override {
    if (graph_exec_) cudaGraphExecDestroy(graph_exec_);
    if (cublas_) cublasDestroy(cublas_);
    if (stream_) cudaStreamDestroy(stream_);
    if (host_stage_) cudaFreeHost(host_stage_);
    if (host_token_) cudaFreeHost(host_token_);
  }

  Tensor forward(const Tensor& emb, int64_t pos, bool all_logits) override {
    const int64_t n = emb.dim(0), H = cfg_.hidden_size;
    upload_embeddings(emb);
    set_pos_kernel<<<1, 1, 0, stream_>>>(pos_.data<int32_t>(), static_cast<int>(pos));
    OMNIRT_CUDA_CHECK_LAUNCH("set_pos");
    for (int64_t l = 0; l < cfg_.num_hidden_layers; ++l) prefill_layer(l, n, pos);
    Tensor out;
    if (all_logits) {
      rmsnorm_kernel<T><<<static_cast<int>(n), 256, 0, stream_>>>(
          resid_.data<float>(), w_.final_norm.data<float>(), xn_.data<T>(), static_cast<int>(H),
          eps());
      OMNIRT_CUDA_CHECK_LAUNCH("rmsnorm");
      Tensor lg = logits_.slice(0, 0, n);
      gemm(xn_, w_.lm_head, lg, n, 0.f);
      last_logits_ = logits_.select(0, n - 1);
      out = lg;
    } else {
      gemv(w_.lm_head, decode::GemvIn::kRmsNorm, resid_.data<float>() + (n - 1) * H,
           w_.final_norm.data<float>(), decode::GemvOut::kStoreF32, logits_.raw());
      last_logits_ = logits_.select(0, 0);
      out = last_logits_;
    }
    advance_pos_kernel<<<1, 1, 0, stream_>>>(pos_.data<int32_t>(), static_cast<int>(n));
    OMNIRT_CUDA_CHECK_LAUNCH("advance_pos");
    OMNIRT_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return out;
  }

  Tensor decode(int32_t token, int64_t pos) override {
    OMNIRT_CUDA_CHECK(cudaMemcpyAsync(token_.raw(), &token, 4, cudaMemcpyHostToDevice, stream_));
    set_pos_kernel<<<1, 1, 0, stream_>>>(pos_.data<int32_t>(), static_cast<int>(pos));
    OMNIRT_CUDA_CHECK_LAUNCH("set_pos");
    run_step();
    OMNIRT_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return last_logits_;
  }

  void set_sampler(DeviceSampler s) override {
    sampler_ = std::move(s);
    drop_graph();  // the captured step contains the old sampler
  }
  void reset() override {
    set_pos_kernel<<<1, 1, 0, stream_>>>(pos_.data<int32_t>(), 0);
    OMNIRT_CUDA_CHECK_LAUNCH("set_pos");
    OMNIRT_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  void sample_last() override {
    cuda::StreamGuard g(stream_);
    sampler_(last_logits_, token_);
  }
  void decode_next(int64_t pos) override {
    (void)pos;  // the device-side position is advanced by the step itself
    run_step();
  }
  int32_t read_token() override {
    // Into pinned memory: a real async 4-byte DMA, not a driver-staged pageable copy (this runs
    // once per streamed token).
    OMNIRT_CUDA_CHECK(
        cudaMemcpyAsync(host_token_, token_.raw(), 4, cudaMemcpyDeviceToHost, stream_));
    OMNIRT_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return *host_token_;
  }
  bool checks_finite_input() const override { return true; }
  const Tensor& embed_table() const override { return w_.embed; }
  size_t kv_cache_bytes() const override { return cache_.bytes(); }
  size_t workspace_bytes() const override { return arena_->capacity(); }

 private:
  float eps() const { return static_cast<float>(cfg_.rms_norm_eps); }
  float scale_log2() const {
    return static_cast<float>(1.4426950408889634 / std::sqrt(static_cast<double>(cfg_.head_dim)));
  }

  // Weight-only quantised linears (quant/llm_quant.h): the decode GEMV of a dense tensor that has
  // a quantised copy reads the copy (quant_gemv.h); prefill keeps using the dense tensor, which
  // holds the dequantised weights. Keyed by the dense tensor's device pointer.
  void register_quantized() {
    auto add = [&](const Tensor& dense, const QuantLinear& q) {
      if (!q.defined()) return;
      OMNIRT_CHECK(opt_.dtype == DType::F16 || opt_.dtype == DType::BF16,
                   "CUDA LLM engine: quantised weights (", w_.quant_name,
                   ") need an F16 or BF16 engine, got ", dtype_name(opt_.dtype));
      OMNIRT_CHECK(q.codes.is_cuda() && q.scales.is_cuda(),
                   "CUDA LLM engine: quantised weights must be on the GPU");
      // AWQ: the GEMV multiplies x by in_scale (F32 [K]) before the dequantised dot product.
      OMNIRT_CHECK(
          !q.in_scale.defined() || (q.in_scale.is_cuda() && q.in_scale.dtype() == DType::F32 &&
                                    q.in_scale.numel() == dense.dim(1)),
          "CUDA LLM engine: an AWQ input scale must be an F32 [", dense.dim(1),
          "] GPU tensor, got ", q.in_scale.describe());
      quant_[dense.raw()] = &q;
    };
    for (const LlamaLayerWeights& lw : w_.layers) {
      add(lw.wqkv, lw.q_wqkv);
      add(lw.wo, lw.q_wo);
      add(lw.w_gate_up, lw.q_gate_up);
      add(lw.w_down, lw.q_down);
    }
    add(w_.lm_head, w_.q_lm_head);
  }

  void quant_gemv(const QuantLinear& q, int64_t n, int64_t k, decode::GemvIn in_mode,
                  const void* in, const float* norm_w, decode::GemvOut out_mode, void* y,
                  const decode::RopeQkv* rope) {
    decode::QuantGemvArgs a;
    a.format = q.format == QuantFormat::kNvfp4 ? decode::WeightFormat::kNvfp4
               : q.format == QuantFormat::kFp8 ? decode::WeightFormat::kFp8
                                               : decode::WeightFormat::kInt4;
    a.dtype = opt_.dtype;
    a.codes = q.codes.data<uint8_t>();
    a.scales = q.scales.raw();
    a.group_size = q.group_size;
    a.global_scale = q.global_scale;
    a.in_scale = q.in_scale.defined() ? q.in_scale.data<float>() : nullptr;
    a.n = n;
    a.k = k;
    a.in_mode = in_mode;
    a.in = in;
    a.norm_w = norm_w;
    a.eps = eps();
    a.out_mode = out_mode;
    a.y = y;
    if (rope) a.rope = *rope;
    decode::quant_gemv(a, stream_, pdl_);
  }

  // y = W x for one row (the decode GEMV of decode_kernels.cu, or quant_gemv.h for a quantised
  // W); PDL as configured.
  void gemv(const Tensor& W, decode::GemvIn in_mode, const void* in, const float* norm_w,
            decode::GemvOut out_mode, void* y, const decode::RopeQkv* rope = nullptr) {
    if (const auto it = quant_.find(W.raw()); it != quant_.end())
      return quant_gemv(*it->second, W.dim(0), W.dim(1), in_mode, in, norm_w, out_mode, y, rope);
    decode::GemvArgs a;
    a.dtype = opt_.dtype;
    a.w = W.raw();
    a.n = W.dim(0);
    a.k = W.dim(1);
    a.in_mode = in_mode;
    a.in = in;
    a.norm_w = norm_w;
    a.eps = eps();
    a.out_mode = out_mode;
    a.y = y;
    if (rope) a.rope = *rope;
    decode::gemv(a, stream_, pdl_);
  }

  // out[M, N] = beta * out + x[M, K] W[N, K]^T, out in T or F32 (row-major).
  void gemm(const Tensor& x, const Tensor& W, Tensor& out, int64_t m, float beta) {
    const int N = static_cast<int>(W.dim(0)), K = static_cast<int>(W.dim(1));
    const float alpha = 1.f;
    const cudaDataType_t ct = out.dtype() == DType::F32 ? CUDA_R_32F : cuda_type<T>();
    OMNIRT_CUBLAS_CHECK(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, N, static_cast<int>(m), K,
                                     &alpha, W.raw(), cuda_type<T>(), K, x.raw(), cuda_type<T>(), K,
                                     &beta, out.raw(), ct, N, CUBLAS_COMPUTE_32F,
                                     CUBLAS_GEMM_DEFAULT));
  }

  // Causal attention of the n new queries (rotated in qkv_) over the pos + n cached keys with
  // ops::attention (tensor cores for F16/BF16), on strided views of qkv_, the cache and attn_.
  // kv_splits = 1: no split workspace, so nothing is allocated after load.
  void attn_prefill(int64_t l, int64_t n, int64_t pos) {
    const int64_t Hq = cfg_.num_attention_heads, Hkv = cfg_.num_key_value_heads, D = cfg_.head_dim;
    Tensor q = qkv_.slice(0, 0, n)
                   .reshape({n, Hq + 2 * Hkv, D})
                   .slice(1, 0, Hq)
                   .unsqueeze(0)
                   .permute({0, 2, 1, 3});
    Tensor k = cache_.keys(l).slice(1, 0, pos + n).unsqueeze(0);
    Tensor v = cache_.values(l).slice(1, 0, pos + n).unsqueeze(0);
    Tensor o = attn_.slice(0, 0, n).reshape({n, Hq, D}).unsqueeze(0).permute({0, 2, 1, 3});
    ops::AttentionOptions ao;
    ao.causal = true;
    ao.cuda_kv_splits = 1;
    cuda::StreamGuard g(stream_);
    ops::attention(q, k, v, o, ao);
  }
  // emb (host F32 [n, H], contiguous) -> resid_, through the pinned stage in 1 MB slices: the
  // host copy of one slice (which also checks that every value is finite: one pass over the
  // prompt instead of two) overlaps the DMA of the previous one. Throws the engine's message
  // before any other GPU work when a value is not finite (resid_ is scratch). The stage is free
  // on entry: forward() ends with a stream sync.
  void upload_embeddings(const Tensor& emb) {
    const int64_t total = emb.numel(), slice = int64_t{1} << 18;  // floats
    const float* src = emb.data<float>();
    float* dst = resid_.data<float>();
    for (int64_t off = 0; off < total; off += slice) {
      const int64_t len = std::min(slice, total - off);
      uint32_t bad = 0;
      for (int64_t i = off; i < off + len; ++i) {  // branch-free: vectorises
        uint32_t u;
        std::memcpy(&u, src + i, sizeof u);
        bad |= static_cast<uint32_t>((u & 0x7f800000u) == 0x7f800000u);
        std::memcpy(host_stage_ + i, &u, sizeof u);
      }
      if (bad) {
        OMNIRT_CUDA_CHECK(cudaStreamSynchronize(stream_));  // earlier slices' DMAs read the stage
        detail::check_finite_embeddings(src, total, cfg_.hidden_size);  // throws
      }
      OMNIRT_CUDA_CHECK(cudaMemcpyAsync(dst + off, host_stage_ + off, len * sizeof(float),
                                        cudaMemcpyHostToDevice, stream_));
    }
  }

  void attn_decode(int64_t l) {
    decode::AttnDecodeArgs a;
    a.dtype = opt_.dtype;
    a.q = qkv_.raw();  // the QKV GEMV wrote the rotated q heads first
    a.k_cache = cache_.keys(l).raw();
    a.v_cache = cache_.values(l).raw();
    a.pos = pos_.data<int32_t>();
    a.max_ctx = max_ctx_;
    a.hq = static_cast<int>(cfg_.num_attention_heads);
    a.hkv = static_cast<int>(cfg_.num_key_value_heads);
    a.head_dim = static_cast<int>(cfg_.head_dim);
    a.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(cfg_.head_dim)));
    a.out = attn_.raw();
    a.splits = attn_splits_;
    a.workspace = attn_ws_.data<float>();
    a.counters = attn_counters_.data<int32_t>();
    decode::attention_decode(a, stream_, pdl_);
  }

  void rope_kv(int64_t l, int64_t n) {
    rope_kv_kernel<T><<<static_cast<unsigned>(n), 128, 0, stream_>>>(
        qkv_.data<T>(), static_cast<int>(cfg_.qkv_dim()), cos_.data<float>(), sin_.data<float>(),
        pos_.data<int32_t>(), cache_.keys(l).template data<T>(),
        cache_.values(l).template data<T>(), static_cast<int>(cfg_.num_attention_heads),
        static_cast<int>(cfg_.num_key_value_heads), static_cast<int>(cfg_.head_dim),
        static_cast<int>(max_ctx_));
    OMNIRT_CUDA_CHECK_LAUNCH("rope_kv");
  }

  void prefill_layer(int64_t l, int64_t n, int64_t pos) {
    const LlamaLayerWeights& lw = w_.layers[l];
    const int H = static_cast<int>(cfg_.hidden_size);
    Tensor resid = resid_.slice(0, 0, n), xn = xn_.slice(0, 0, n), qkv = qkv_.slice(0, 0, n);
    Tensor attn = attn_.slice(0, 0, n), gu = gu_.slice(0, 0, n), act = act_.slice(0, 0, n);
    rmsnorm_kernel<T><<<static_cast<unsigned>(n), 256, 0, stream_>>>(
        resid_.data<float>(), lw.attn_norm.data<float>(), xn_.data<T>(), H, eps());
    OMNIRT_CUDA_CHECK_LAUNCH("rmsnorm");
    gemm(xn, lw.wqkv, qkv, n, 0.f);
    rope_kv(l, n);
    attn_prefill(l, n, pos);
    gemm(attn, lw.wo, resid, n, 1.f);  // resid += o_proj(attn)
    rmsnorm_kernel<T><<<static_cast<unsigned>(n), 256, 0, stream_>>>(
        resid_.data<float>(), lw.mlp_norm.data<float>(), xn_.data<T>(), H, eps());
    OMNIRT_CUDA_CHECK_LAUNCH("rmsnorm");
    gemm(xn, lw.w_gate_up, gu, n, 0.f);
    {
      cuda::StreamGuard g(stream_);
      ops::swiglu_concat(gu, act);
    }
    gemm(act, lw.w_down, resid, n, 1.f);  // resid += down(act)
  }

  // One decode step for the token in token_ at position *pos_: logits into logits_[0], the
  // sampler's next token into token_, position advanced. Only kernel launches: capturable.
  void enqueue_step() {
    const int H = static_cast<int>(cfg_.hidden_size);
    if (!ablate_.embed) {
      embed_kernel<T><<<grid_for(H, 256), 256, 0, stream_>>>(
          w_.embed.data<T>(), token_.data<int32_t>(), resid_.data<float>(), H,
          static_cast<int>(cfg_.vocab_size));
      OMNIRT_CUDA_CHECK_LAUNCH("embed");
    }
    float* resid = resid_.data<float>();
    using decode::GemvIn;
    using decode::GemvOut;
    for (int64_t l = 0; l < cfg_.num_hidden_layers; ++l) {
      const LlamaLayerWeights& lw = w_.layers[l];
      // qkv = Wqkv rmsnorm(resid); RoPE on q and k; k and v into the cache at *pos.
      decode::RopeQkv rope;
      rope.cos = cos_.data<float>();
      rope.sin = sin_.data<float>();
      rope.pos = pos_.data<int32_t>();
      rope.k_cache = cache_.keys(l).raw();
      rope.v_cache = cache_.values(l).raw();
      rope.hq = static_cast<int>(cfg_.num_attention_heads);
      rope.hkv = static_cast<int>(cfg_.num_key_value_heads);
      rope.head_dim = static_cast<int>(cfg_.head_dim);
      rope.max_ctx = max_ctx_;
      if (!ablate_.qkv)
        gemv(lw.wqkv, GemvIn::kRmsNorm, resid, lw.attn_norm.data<float>(), GemvOut::kRopeQkv,
             qkv_.raw(), &rope);
      if (!ablate_.attn) attn_decode(l);
      if (!ablate_.o) gemv(lw.wo, GemvIn::kPlain, attn_.raw(), nullptr, GemvOut::kAddF32, resid);
      if (!ablate_.gate_up)
        gemv(lw.w_gate_up, GemvIn::kRmsNorm, resid, lw.mlp_norm.data<float>(), GemvOut::kStore,
             gu_.raw());
      if (!ablate_.down)
        gemv(lw.w_down, GemvIn::kSwiglu, gu_.raw(), nullptr, GemvOut::kAddF32, resid);
    }
    if (!ablate_.lm_head)
      gemv(w_.lm_head, GemvIn::kRmsNorm, resid, w_.final_norm.data<float>(), GemvOut::kStoreF32,
           logits_.raw());
    if (!ablate_.sampler) {
      cuda::StreamGuard g(stream_);
      Tensor lg = logits_.select(0, 0);
      sampler_(lg, token_);
    }
    if (!ablate_.pos) {
      advance_pos_kernel<<<1, 1, 0, stream_>>>(pos_.data<int32_t>(), 1);
      OMNIRT_CUDA_CHECK_LAUNCH("advance_pos");
    }
  }

  // Profiling only: OMNIRT_DECODE_ABLATE=attn,down,... leaves those kernels out of the decode
  // step (embed, qkv, attn, o, gate_up, down, lm_head, sampler, pos), so that `omnirt bench llm`
  // measures what each costs inside the real kernel chain. The tokens are then garbage; a warning
  // says so.
  struct Ablation {
    bool embed = false, qkv = false, attn = false, o = false, gate_up = false, down = false,
         lm_head = false, sampler = false, pos = false;
  } ablate_;
  void parse_ablation() {
    const char* env = std::getenv("OMNIRT_DECODE_ABLATE");
    if (!env || !*env) return;
    std::string list(env);
    size_t start = 0;
    while (start <= list.size()) {
      const size_t end = std::min(list.find(',', start), list.size());
      const std::string k = list.substr(start, end - start);
      bool* flag = k == "embed"     ? &ablate_.embed
                   : k == "qkv"     ? &ablate_.qkv
                   : k == "attn"    ? &ablate_.attn
                   : k == "o"       ? &ablate_.o
                   : k == "gate_up" ? &ablate_.gate_up
                   : k == "down"    ? &ablate_.down
                   : k == "lm_head" ? &ablate_.lm_head
                   : k == "sampler" ? &ablate_.sampler
                   : k == "pos"     ? &ablate_.pos
                                    : nullptr;
      OMNIRT_CHECK(flag, "OMNIRT_DECODE_ABLATE: unknown kernel \"", k,
                   "\" (expected a comma list of embed, qkv, attn, o, gate_up, down, lm_head, "
                   "sampler, pos)");
      *flag = true;
      start = end + 1;
    }
    LOG_WARN("OMNIRT_DECODE_ABLATE=", list,
             ": decode steps leave those kernels out (profiling only; the tokens are garbage)");
  }

  void run_step() {
    last_logits_ = logits_.select(0, 0);
    if (!opt_.cuda_graph) {
      enqueue_step();
      return;
    }
    if (!graph_exec_) {
      cudaGraph_t graph = nullptr;
      OMNIRT_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
      try {
        enqueue_step();
      } catch (...) {
        cudaStreamEndCapture(stream_, &graph);
        if (graph) cudaGraphDestroy(graph);
        throw;
      }
      OMNIRT_CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
      const cudaError_t err = cudaGraphInstantiate(&graph_exec_, graph, 0);
      cudaGraphDestroy(graph);
      OMNIRT_CUDA_CHECK(err);
    }
    OMNIRT_CUDA_CHECK(cudaGraphLaunch(graph_exec_, stream_));
  }

  void drop_graph() {
    if (graph_exec_) cudaGraphExecDestroy(graph_exec_);
    graph_exec_ = nullptr;
  }

  LlamaConfig cfg_;
  LlamaWeights w_;
  LlmEngineOptions opt_;
  std::unordered_map<const void*, const QuantLinear*> quant_;  // dense W -> its quantised copy
  int64_t max_ctx_, chunk_;
  KvCache cache_;
  std::unique_ptr<Arena> arena_;
  Tensor resid_, xn_, qkv_, attn_, gu_, act_, logits_, cos_, sin_, pos_, token_, last_logits_;
  Tensor attn_ws_, attn_counters_;
  int attn_splits_ = 1;
  bool pdl_ = true;
  float* host_stage_ = nullptr;    // pinned [chunk, H]
  int32_t* host_token_ = nullptr;  // pinned [1]
  DeviceSampler sampler_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  cudaGraphExec_t graph_exec_ = nullptr;
};

}  // namespace

void cuda_fill_hash_uniform(void* dst, DType dtype, int64_t n, uint64_t seed, float scale,
                            float offset) {
  const int blocks = grid_for(n, 256);
  cudaStream_t s = cuda::current_stream();
  switch (dtype) {
    case DType::F32:
      fill_hash_kernel<float>
          <<<blocks, 256, 0, s>>>(static_cast<float*>(dst), n, seed, scale, offset);
      break;
    case DType::F16:
      fill_hash_kernel<__half>
          <<<blocks, 256, 0, s>>>(static_cast<__half*>(dst), n, seed, scale, offset);
      break;
    case DType::BF16:
      fill_hash_kernel<__nv_bfloat16>
          <<<blocks, 256, 0, s>>>(static_cast<__nv_bfloat16*>(dst), n, seed, scale, offset);
      break;
    default:
      OMNIRT_FAIL("cuda_fill_hash_uniform: unsupported dtype ", dtype_name(dtype));
  }
  OMNIRT_CUDA_CHECK_LAUNCH("fill_hash");
}

namespace detail {
std::unique_ptr<LlamaImpl> make_cuda_llama(const LlamaConfig& cfg, LlamaWeights weights,
                                           const LlmEngineOptions& opt, int64_t max_context) {
  OMNIRT_CHECK(cuda_available(), "the CUDA LLM engine was requested but no CUDA device is usable");
  OMNIRT_CHECK(weights.device == Device::CUDA, "CUDA LLM engine: weights must be on the GPU");
  switch (opt.dtype) {
    case DType::F32:
      return std::make_unique<CudaLlama<float>>(cfg, std::move(weights), opt, max_context);
    case DType::F16:
      return std::make_unique<CudaLlama<__half>>(cfg, std::move(weights), opt, max_context);
    case DType::BF16:
      return std::make_unique<CudaLlama<__nv_bfloat16>>(cfg, std::move(weights), opt, max_context);
    default:
      OMNIRT_FAIL("CUDA LLM engine: dtype must be F32, F16 or BF16, got ", dtype_name(opt.dtype));
  }
}
}  // namespace detail

}  // namespace omnirt::llm
