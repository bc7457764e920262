// GPU benchmarks of the GEMM and attention ops at OmniDrive's shapes.
//
// Times are GPU times from cudaEvents around a batch of launches (manual time); counters:
// TFLOP/s (2MNK for GEMM, 4 * visible (query, key) pairs * D for attention) and GB/s (bytes of
// the operands read + output written once, i.e. a lower bound on traffic). Without a CUDA device
// (or a CUDA build) nothing is registered and the program says so.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/tensor.h"
#include "models/llm/decode_kernels.h"
#include "models/llm/quant_gemv.h"
#include "ops/activation.h"
#include "ops/attention.h"
#include "ops/fp8.h"
#include "ops/fused.h"
#include "ops/gemm.h"
#include "ops/norm.h"
#include "ops/permute.h"
#include "ops/rope.h"

#ifdef OMNIRT_WITH_CUDA
#include <cuda_runtime.h>

#include "core/cuda_check.h"

namespace {

using omnirt::Device;
using omnirt::DType;
using omnirt::Shape;
using omnirt::Tensor;

Tensor random_gpu(const Shape& shape, DType dtype, std::mt19937_64& rng, float lo = -1.f,
                  float hi = 1.f) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(omnirt::shape_numel(shape));
  for (float& x : v) x = dist(rng);
  return Tensor::from_vector(v, shape).to_dtype(dtype).to(Device::CUDA);
}

// Runs `fn` `inner` times between two events per benchmark iteration; reports GPU time.
template <typename Fn>
void time_gpu(benchmark::State& state, double flops, double bytes, Fn&& fn) {
  cudaStream_t stream = omnirt::cuda::current_stream();
  cudaEvent_t start, stop;
  OMNIRT_CUDA_CHECK(cudaEventCreate(&start));
  OMNIRT_CUDA_CHECK(cudaEventCreate(&stop));
  for (int i = 0; i < 3; ++i) fn();  // warm-up (also builds cuBLASLt plans)
  OMNIRT_CUDA_CHECK(cudaStreamSynchronize(stream));
  constexpr int inner = 10;
  double total_s = 0;
  int64_t calls = 0;
  for (auto _ : state) {
    OMNIRT_CUDA_CHECK(cudaEventRecord(start, stream));
    for (int i = 0; i < inner; ++i) fn();
    OMNIRT_CUDA_CHECK(cudaEventRecord(stop, stream));
    OMNIRT_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    OMNIRT_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    const double per_call = ms * 1e-3 / inner;
    state.SetIterationTime(per_call);
    total_s += per_call * inner;
    calls += inner;
  }
  OMNIRT_CUDA_CHECK(cudaEventDestroy(start));
  OMNIRT_CUDA_CHECK(cudaEventDestroy(stop));
  const double avg_s = total_s / static_cast<double>(calls);
  state.counters["TFLOP/s"] = flops / avg_s * 1e-12;
  state.counters["GB/s"] = bytes / avg_s * 1e-9;
  state.counters["us"] = avg_s * 1e6;
}

// As time_gpu, but `fn` is captured `calls` times into one CUDA graph on a fresh stream, and each
// iteration replays the graph: how the LLM engine runs its decode step (no CPU launch cost between
// the kernels; PDL edges kept), so per-call times are the kernels' own, back to back.
template <typename Fn>
void time_graph(benchmark::State& state, double flops, double bytes, int calls, Fn&& fn) {
  cudaStream_t stream = nullptr;
  OMNIRT_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  omnirt::cuda::StreamGuard guard(stream);
  for (int i = 0; i < 3; ++i) fn();  // warm-up outside the capture (attributes, first-use costs)
  OMNIRT_CUDA_CHECK(cudaStreamSynchronize(stream));
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  OMNIRT_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < calls; ++i) fn();
  OMNIRT_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  OMNIRT_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  OMNIRT_CUDA_CHECK(cudaGraphLaunch(exec, stream));  // warm-up replay
  OMNIRT_CUDA_CHECK(cudaStreamSynchronize(stream));
  cudaEvent_t start, stop;
  OMNIRT_CUDA_CHECK(cudaEventCreate(&start));
  OMNIRT_CUDA_CHECK(cudaEventCreate(&stop));
  double total_s = 0;
  int64_t n = 0;
  for (auto _ : state) {
    OMNIRT_CUDA_CHECK(cudaEventRecord(start, stream));
    OMNIRT_CUDA_CHECK(cudaGraphLaunch(exec, stream));
    OMNIRT_CUDA_CHECK(cudaEventRecord(stop, stream));
    OMNIRT_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    OMNIRT_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    const double per_call = ms * 1e-3 / calls;
    state.SetIterationTime(per_call);
    total_s += per_call * calls;
    n += calls;
  }
  OMNIRT_CUDA_CHECK(cudaEventDestroy(start));
  OMNIRT_CUDA_CHECK(cudaEventDestroy(stop));
  OMNIRT_CUDA_CHECK(cudaGraphExecDestroy(exec));
  OMNIRT_CUDA_CHECK(cudaGraphDestroy(graph));
  OMNIRT_CUDA_CHECK(cudaStreamDestroy(stream));
  const double avg_s = total_s / static_cast<double>(n);
  state.counters["TFLOP/s"] = flops / avg_s * 1e-12;
  state.counters["GB/s"] = bytes / avg_s * 1e-9;
  state.counters["us"] = avg_s * 1e6;
}

struct GemmShape {
  const char* name;
  int64_t m, n, k;
};
const GemmShape kGemmShapes[] = {{"eva_qkv_like", 9600, 768, 768},
                                 {"eva_mlp", 9600, 2048, 768},
                                 {"llama_prefill_attn", 577, 2048, 2048},
                                 {"llama_prefill_mlp", 577, 5632, 2048},
                                 {"llama_decode", 1, 2048, 2048}};

struct GemmMode {
  const char* name;
  DType dtype;
  omnirt::ops::Fp32Compute compute;
};
const GemmMode kGemmModes[] = {{"fp16", DType::F16, omnirt::ops::Fp32Compute::Exact},
                               {"bf16", DType::BF16, omnirt::ops::Fp32Compute::Exact},
                               {"tf32", DType::F32, omnirt::ops::Fp32Compute::TF32},
                               {"fp32", DType::F32, omnirt::ops::Fp32Compute::Exact}};

void bench_linear(benchmark::State& state, GemmShape s, GemmMode mode, bool bias) {
  std::mt19937_64 rng(1);
  Tensor x = random_gpu({s.m, s.k}, mode.dtype, rng);
  Tensor w = random_gpu({s.n, s.k}, mode.dtype, rng);
  Tensor b = bias ? random_gpu({s.n}, mode.dtype, rng) : Tensor();
  Tensor y = Tensor::empty({s.m, s.n}, mode.dtype, Device::CUDA);
  const double elem = omnirt::dtype_bits(mode.dtype) / 8.0;
  const double flops = 2.0 * s.m * s.n * s.k;
  const double bytes = elem * (s.m * s.k + s.n * s.k + s.m * s.n);
  const omnirt::ops::GemmOptions opts{.fp32_compute = mode.compute};
  time_gpu(state, flops, bytes, [&] { omnirt::ops::linear(x, w, b, y, opts); });
}

// The EVA-02-B backbone's four GEMMs per block at full size (9600 real tokens), bias always on;
// proj and w3 also as the engine runs them: residual update in place (beta = 1, C = x), which may
// make cuBLASLt pick another kernel. eva_qkv_padded: the qkv GEMM on the 13824 padded window
// tokens, as the engine ran it before the window layout moved into qkv_rope_heads.
struct EvaGemm {
  const char* name;
  int64_t m, n, k;
  bool residual;
};
const EvaGemm kEvaGemms[] = {
    {"eva_qkv", 9600, 2304, 768, false},       {"eva_qkv_padded", 13824, 2304, 768, false},
    {"eva_proj", 9600, 768, 768, false},       {"eva_proj_residual", 9600, 768, 768, true},
    {"eva_w12", 9600, 4096, 768, false},       {"eva_w3", 9600, 768, 2048, false},
    {"eva_w3_residual", 9600, 768, 2048, true}};

void bench_eva_gemm(benchmark::State& state, EvaGemm s, GemmMode mode, bool autotune) {
  std::mt19937_64 rng(5);
  Tensor x = random_gpu({s.m, s.k}, mode.dtype, rng);
  Tensor w = random_gpu({s.n, s.k}, mode.dtype, rng, -0.01f, 0.01f);
  Tensor b = random_gpu({s.n}, mode.dtype, rng, -0.01f, 0.01f);
  Tensor y = random_gpu({s.m, s.n}, mode.dtype, rng);
  const double elem = omnirt::dtype_bits(mode.dtype) / 8.0;
  const double flops = 2.0 * s.m * s.n * s.k;
  const double bytes = elem * (s.m * s.k + s.n * s.k + (s.residual ? 2 : 1) * s.m * s.n);
  const omnirt::ops::GemmOptions opts{.fp32_compute = mode.compute, .autotune = autotune};
  time_gpu(state, flops, bytes, [&] {
    if (s.residual) {
      omnirt::ops::gemm(x, w, y, false, true, 1.0f, 1.0f, b, opts);
    } else {
      omnirt::ops::linear(x, w, b, y, opts);
    }
  });
}

// The same EVA GEMMs in FP8 (issue #8): E4M3 x and W with per-tensor scales, F16 out, bias,
// autotuned as the engine runs them; `fast_accum` = CUBLASLT_MATMUL_DESC_FAST_ACCUM. Compare
// with vit/gemm/<shape>/fp16/autotuned. The activation quantisation the engine adds per GEMM is
// timed separately (vit/quantize_fp8/...).
void bench_eva_gemm_fp8(benchmark::State& state, EvaGemm s, bool fast_accum) {
  std::mt19937_64 rng(5);
  auto quantised = [&](const Shape& shape, float lo, float hi) {
    Tensor t = random_gpu(shape, DType::F16, rng, lo, hi);
    Tensor scale = Tensor::from_vector({hi / omnirt::ops::kFp8E4M3Max}, {1}).to(Device::CUDA);
    Tensor q = Tensor::empty(shape, DType::F8E4M3, Device::CUDA);
    omnirt::ops::quantize_fp8(t, scale, q);
    return std::pair{q, scale};
  };
  auto [xq, xs] = quantised({s.m, s.k}, -1.f, 1.f);
  auto [wq, ws] = quantised({s.n, s.k}, -0.01f, 0.01f);
  Tensor b = random_gpu({s.n}, DType::F16, rng, -0.01f, 0.01f);
  Tensor y = random_gpu({s.m, s.n}, DType::F16, rng);
  const double flops = 2.0 * s.m * s.n * s.k;
  const double bytes = 1.0 * (s.m * s.k + s.n * s.k) + 2.0 * (s.residual ? 2 : 1) * s.m * s.n;
  omnirt::ops::Fp8GemmOptions opts;
  opts.autotune = true;
  opts.fast_accum = fast_accum;
  time_gpu(state, flops, bytes, [&] {
    omnirt::ops::linear_fp8(xq, xs, wq, ws, b, y, s.residual ? 1.0f : 0.0f, opts);
  });
}

// F16 activation [M, K] -> E4M3 with a per-tensor scale: the per-GEMM cost FP8 adds.
void bench_quantize_fp8(benchmark::State& state, int64_t m, int64_t k) {
  std::mt19937_64 rng(6);
  Tensor x = random_gpu({m, k}, DType::F16, rng);
  Tensor scale = Tensor::from_vector({1.f / 448.f}, {1}).to(Device::CUDA);
  Tensor q = Tensor::empty({m, k}, DType::F8E4M3, Device::CUDA);
  time_gpu(state, 0.0, 3.0 * m * k, [&] { omnirt::ops::quantize_fp8(x, scale, q); });
}

struct AttnShape {
  const char* name;
  int64_t batch, heads_q, heads_kv, seq_q, seq_k, head_dim;
  bool causal, mask;
};
const AttnShape kAttnShapes[] = {{"eva_window", 54, 12, 12, 256, 256, 64, false, false},
                                 {"eva_global", 6, 12, 12, 1600, 1600, 64, false, false},
                                 {"petr_self_masked", 1, 8, 8, 1156, 1456, 32, false, true},
                                 {"petr_cross", 1, 8, 8, 1156, 9600, 32, false, false},
                                 {"llm_prefill_causal", 1, 32, 4, 577, 577, 64, true, false},
                                 {"llm_decode_2048", 1, 32, 4, 1, 2048, 64, true, false}};

void bench_attention(benchmark::State& state, AttnShape s, DType dtype) {
  std::mt19937_64 rng(2);
  Tensor q = random_gpu({s.batch, s.heads_q, s.seq_q, s.head_dim}, dtype, rng);
  Tensor k = random_gpu({s.batch, s.heads_kv, s.seq_k, s.head_dim}, dtype, rng);
  Tensor v = random_gpu({s.batch, s.heads_kv, s.seq_k, s.head_dim}, dtype, rng);
  Tensor out = Tensor::empty(q.shape(), dtype, Device::CUDA);
  omnirt::ops::AttentionOptions opts{.causal = s.causal};
  if (s.mask) {
    std::vector<float> m(s.seq_q * s.seq_k);
    std::bernoulli_distribution blocked(0.2);
    for (int64_t i = 0; i < s.seq_q; ++i) {
      for (int64_t j = 0; j < s.seq_k; ++j)
        m[i * s.seq_k + j] = (j != i && blocked(rng)) ? 1.f : 0.f;
    }
    opts.mask = Tensor::from_vector(m, {s.seq_q, s.seq_k}).to_dtype(DType::U8).to(Device::CUDA);
  }
  // Visible (query, key) pairs per head: all of them, or the causal band aligned to the end.
  double pairs = 0;
  for (int64_t i = 0; i < s.seq_q; ++i) {
    pairs += s.causal ? std::min<int64_t>(s.seq_k, i + 1 + s.seq_k - s.seq_q) : s.seq_k;
  }
  const double flops = 4.0 * s.batch * s.heads_q * pairs * s.head_dim;
  const double elem = omnirt::dtype_bits(dtype) / 8.0;
  const double bytes = elem * (2.0 * q.numel() + k.numel() + v.numel());
  time_gpu(state, flops, bytes, [&] { omnirt::ops::attention(q, k, v, out, opts); });
}

// Decode GEMV (models/llm/decode_kernels.h) at TinyLlama's shapes, batch 1. The weights rotate
// through enough copies (>= 256 MB in all) that every call reads them from HBM, not from the
// 50 MB L2, as in the real decode step. GB/s counts the weight bytes only (inputs are KBs).
struct GemvShape {
  const char* name;
  int64_t n, k;
  omnirt::llm::decode::GemvIn in;
  omnirt::llm::decode::GemvOut out;
};
using omnirt::llm::decode::GemvIn;
using omnirt::llm::decode::GemvOut;
const GemvShape kGemvShapes[] = {
    {"qkv_norm", 2560, 2048, GemvIn::kRmsNorm, GemvOut::kStore},
    {"o_proj_add", 2048, 2048, GemvIn::kPlain, GemvOut::kAddF32},
    {"gate_up_norm", 11264, 2048, GemvIn::kRmsNorm, GemvOut::kStore},
    {"down_swiglu_add", 2048, 5632, GemvIn::kSwiglu, GemvOut::kAddF32},
    {"lm_head_norm", 32000, 2048, GemvIn::kRmsNorm, GemvOut::kStoreF32}};

void bench_gemv(benchmark::State& state, GemvShape s, DType dtype, bool pdl) {
  std::mt19937_64 rng(3);
  const size_t elem = omnirt::dtype_nbytes(dtype, 1);
  const size_t wbytes = static_cast<size_t>(s.n * s.k) * elem;
  const int copies = static_cast<int>(std::max<size_t>(2, (size_t{256} << 20) / wbytes + 1));
  Tensor w0 = random_gpu({s.n, s.k}, dtype, rng, -0.02f, 0.02f);
  Tensor w = Tensor::empty({copies, s.n, s.k}, dtype, Device::CUDA);
  for (int c = 0; c < copies; ++c)
    OMNIRT_CUDA_CHECK(cudaMemcpy(static_cast<char*>(w.raw()) + c * wbytes, w0.raw(), wbytes,
                                 cudaMemcpyDeviceToDevice));
  const bool f32_in = s.in == GemvIn::kRmsNorm;
  Tensor in =
      random_gpu({s.in == GemvIn::kSwiglu ? 2 * s.k : s.k}, f32_in ? DType::F32 : dtype, rng);
  Tensor norm = random_gpu({s.k}, DType::F32, rng, 0.9f, 1.1f);
  Tensor y = Tensor::zeros({s.n}, s.out == GemvOut::kStore ? dtype : DType::F32, Device::CUDA);
  omnirt::llm::decode::GemvArgs a;
  a.dtype = dtype;
  a.n = s.n;
  a.k = s.k;
  a.in_mode = s.in;
  a.in = in.raw();
  a.norm_w = norm.data<float>();
  a.out_mode = s.out;
  a.y = y.raw();
  int next = 0;
  time_gpu(state, 2.0 * s.n * s.k, static_cast<double>(wbytes), [&] {
    a.w = static_cast<const char*>(w.raw()) + (next++ % copies) * wbytes;
    omnirt::llm::decode::gemv(a, omnirt::cuda::current_stream(), pdl);
  });
}

// The decode GEMVs at TinyLlama's shapes in the modes the engine launches them (qkv: RMSNorm in,
// RoPE + KV-cache out), timed inside a CUDA graph, with and without PDL. The weights rotate
// through >= 256 MB of copies (from HBM, as in the decode step).
struct DecodeGemvShape {
  const char* name;
  int64_t n, k;
  GemvIn in;
  GemvOut out;
};
const DecodeGemvShape kDecodeGemvShapes[] = {
    {"qkv_rope", 2560, 2048, GemvIn::kRmsNorm, GemvOut::kRopeQkv},
    {"o_proj_add", 2048, 2048, GemvIn::kPlain, GemvOut::kAddF32},
    {"gate_up_norm", 11264, 2048, GemvIn::kRmsNorm, GemvOut::kStore},
    {"down_swiglu_add", 2048, 5632, GemvIn::kSwiglu, GemvOut::kAddF32},
    {"lm_head_norm", 32000, 2048, GemvIn::kRmsNorm, GemvOut::kStoreF32}};

void bench_decode_gemv(benchmark::State& state, DecodeGemvShape s, bool pdl, int k_split = 0,
                       int warps_per_block = 0) {
  std::mt19937_64 rng(5);
  const DType dtype = DType::F16;
  const size_t wbytes = static_cast<size_t>(s.n * s.k) * 2;
  const int copies = static_cast<int>(std::max<size_t>(2, (size_t{256} << 20) / wbytes + 1));
  Tensor w0 = random_gpu({s.n, s.k}, dtype, rng, -0.02f, 0.02f);
  Tensor w = Tensor::empty({copies, s.n, s.k}, dtype, Device::CUDA);
  for (int c = 0; c < copies; ++c)
    OMNIRT_CUDA_CHECK(cudaMemcpy(static_cast<char*>(w.raw()) + c * wbytes, w0.raw(), wbytes,
                                 cudaMemcpyDeviceToDevice));
  const bool f32_in = s.in == GemvIn::kRmsNorm;
  Tensor in =
      random_gpu({s.in == GemvIn::kSwiglu ? 2 * s.k : s.k}, f32_in ? DType::F32 : dtype, rng);
  Tensor norm = random_gpu({s.k}, DType::F32, rng, 0.9f, 1.1f);
  Tensor y = Tensor::zeros(
      {s.n}, s.out == GemvOut::kStore || s.out == GemvOut::kRopeQkv ? dtype : DType::F32,
      Device::CUDA);
  // RoPE + KV cache (TinyLlama: 32 q heads, 4 kv heads, head_dim 64, 1024 positions).
  const int hq = 32, hkv = 4, D = 64, pos = 600;
  const int64_t max_ctx = 1024;
  Tensor cos_t = random_gpu({max_ctx, D / 2}, DType::F32, rng);
  Tensor sin_t = random_gpu({max_ctx, D / 2}, DType::F32, rng);
  Tensor kc = Tensor::zeros({hkv, max_ctx, D}, dtype, Device::CUDA);
  Tensor vc = Tensor::zeros({hkv, max_ctx, D}, dtype, Device::CUDA);
  Tensor pos_t = Tensor::empty({1}, DType::I32, Device::CUDA);
  OMNIRT_CUDA_CHECK(cudaMemcpy(pos_t.raw(), &pos, 4, cudaMemcpyHostToDevice));
  omnirt::llm::decode::GemvArgs a;
  a.dtype = dtype;
  a.n = s.n;
  a.k = s.k;
  a.in_mode = s.in;
  a.in = in.raw();
  a.norm_w = norm.data<float>();
  a.out_mode = s.out;
  a.y = y.raw();
  a.k_split = k_split;
  a.warps_per_block = warps_per_block;
  if (s.out == GemvOut::kRopeQkv) {
    a.rope.cos = cos_t.data<float>();
    a.rope.sin = sin_t.data<float>();
    a.rope.pos = pos_t.data<int32_t>();
    a.rope.k_cache = kc.raw();
    a.rope.v_cache = vc.raw();
    a.rope.hq = hq;
    a.rope.hkv = hkv;
    a.rope.head_dim = D;
    a.rope.max_ctx = max_ctx;
  }
  int next = 0;
  time_graph(state, 2.0 * s.n * s.k, static_cast<double>(wbytes), std::max(copies, 20), [&] {
    a.w = static_cast<const char*>(w.raw()) + (next++ % copies) * wbytes;
    omnirt::llm::decode::gemv(a, omnirt::cuda::current_stream(), pdl);
  });
}

// Decode attention (the cluster and the split kernel) at TinyLlama's shape over 663 keys of a
// 1024-position cache, timed inside a CUDA graph; the calls rotate through 64 caches (64 MB > L2),
// so the keys and values come from HBM as in the decode step (each layer's cache was last touched a
// token ago).
void bench_decode_attn(benchmark::State& state, omnirt::llm::decode::AttnVariant variant) {
  std::mt19937_64 rng(6);
  const DType dtype = DType::F16;
  const int hq = 32, hkv = 4, D = 64, pos = 662, copies = 64;
  const int64_t max_ctx = 1024;
  const int64_t cache_elems = hkv * max_ctx * D;
  Tensor q = random_gpu({hq * D}, dtype, rng);
  Tensor kv0 = random_gpu({2, cache_elems}, dtype, rng);
  Tensor kv = Tensor::empty({copies, 2, cache_elems}, dtype, Device::CUDA);
  const size_t kv_bytes = static_cast<size_t>(2 * cache_elems) * 2;
  for (int c = 0; c < copies; ++c)
    OMNIRT_CUDA_CHECK(cudaMemcpy(static_cast<char*>(kv.raw()) + c * kv_bytes, kv0.raw(), kv_bytes,
                                 cudaMemcpyDeviceToDevice));
  Tensor out = Tensor::empty({hq * D}, dtype, Device::CUDA);
  const int splits = omnirt::llm::decode::attn_decode_default_splits(hkv, max_ctx);
  Tensor ws = Tensor::empty(
      {static_cast<int64_t>(omnirt::llm::decode::attn_decode_workspace_floats(hq, D, splits))},
      DType::F32, Device::CUDA);
  Tensor counters = Tensor::zeros({hkv}, DType::I32, Device::CUDA);
  Tensor pos_t = Tensor::empty({1}, DType::I32, Device::CUDA);
  OMNIRT_CUDA_CHECK(cudaMemcpy(pos_t.raw(), &pos, 4, cudaMemcpyHostToDevice));
  omnirt::llm::decode::AttnDecodeArgs a;
  a.dtype = dtype;
  a.q = q.raw();
  a.pos = pos_t.data<int32_t>();
  a.max_ctx = max_ctx;
  a.hq = hq;
  a.hkv = hkv;
  a.head_dim = D;
  a.scale = 0.125f;
  a.out = out.raw();
  a.splits = splits;
  a.workspace = ws.data<float>();
  a.counters = counters.data<int32_t>();
  a.variant = variant;
  const double bytes = 2.0 * hkv * (pos + 1) * D * 2;
  int next = 0;
  time_graph(state, 4.0 * hq * (pos + 1) * D, bytes, copies, [&] {
    const char* base = static_cast<const char*>(kv.raw()) + (next++ % copies) * kv_bytes;
    a.k_cache = base;
    a.v_cache = base + kv_bytes / 2;
    omnirt::llm::decode::attention_decode(a, omnirt::cuda::current_stream(), /*pdl=*/true);
  });
}

// Decode attention at TinyLlama's shape (32 q / 4 kv heads, D 64) over the last planning-answer
// position (663 keys) of a 1024-position cache. GB/s: the K and V bytes read.
void bench_attn_decode(benchmark::State& state, DType dtype, bool pdl) {
  std::mt19937_64 rng(4);
  const int hq = 32, hkv = 4, D = 64, pos = 662;
  const int64_t max_ctx = 1024;
  Tensor q = random_gpu({hq * D}, dtype, rng);
  Tensor kc = random_gpu({hkv, max_ctx, D}, dtype, rng);
  Tensor vc = random_gpu({hkv, max_ctx, D}, dtype, rng);
  Tensor out = Tensor::empty({hq * D}, dtype, Device::CUDA);
  const int splits = omnirt::llm::decode::attn_decode_default_splits(hkv, max_ctx);
  Tensor ws = Tensor::empty(
      {static_cast<int64_t>(omnirt::llm::decode::attn_decode_workspace_floats(hq, D, splits))},
      DType::F32, Device::CUDA);
  Tensor counters = Tensor::zeros({hkv}, DType::I32, Device::CUDA);
  Tensor pos_t = Tensor::empty({1}, DType::I32, Device::CUDA);
  OMNIRT_CUDA_CHECK(cudaMemcpy(pos_t.raw(), &pos, 4, cudaMemcpyHostToDevice));
  omnirt::llm::decode::AttnDecodeArgs a;
  a.dtype = dtype;
  a.q = q.raw();
  a.k_cache = kc.raw();
  a.v_cache = vc.raw();
  a.pos = pos_t.data<int32_t>();
  a.max_ctx = max_ctx;
  a.hq = hq;
  a.hkv = hkv;
  a.head_dim = D;
  a.scale = 0.125f;
  a.out = out.raw();
  a.splits = splits;
  a.workspace = ws.data<float>();
  a.counters = counters.data<int32_t>();
  const double bytes = 2.0 * hkv * (pos + 1) * D * omnirt::dtype_nbytes(dtype, 1);
  time_gpu(state, 4.0 * hq * (pos + 1) * D, bytes,
           [&] { omnirt::llm::decode::attention_decode(a, omnirt::cuda::current_stream(), pdl); });
}

// EVA MLP middle at full size (9600 tokens, hidden 2048): the fused swiglu_layernorm against
// swiglu_concat + layernorm. GB/s counts the fused kernel's minimum traffic (gate_up read once,
// hidden written once) for both, so the unfused line shows its time at the same nominal bytes.
void bench_swiglu_ln(benchmark::State& state, DType dtype, bool fused) {
  std::mt19937_64 rng(3);
  const int64_t t = 9600, h = 2048;
  Tensor gu = random_gpu({t, 2 * h}, dtype, rng);
  Tensor w = random_gpu({h}, dtype, rng), b = random_gpu({h}, dtype, rng);
  Tensor out = Tensor::empty({t, h}, dtype, Device::CUDA);
  const double bytes = omnirt::dtype_bits(dtype) / 8.0 * (3.0 * t * h);
  time_gpu(state, 0, bytes, [&] {
    if (fused) {
      omnirt::ops::swiglu_layernorm(gu, w, b, 1e-6f, out);
    } else {
      omnirt::ops::swiglu_concat(gu, out);
      omnirt::ops::layernorm(out, w, b, 1e-6f, out);
    }
  });
}

// EVA attention input for 6 cameras (40x40 grid, 12 heads of 64): the fused qkv_rope_heads
// (real-token qkv [6, 40, 40, 2304] -> padded window / global heads) against what the unfused
// path ran after its (padded) qkv GEMM: permute [B, S, 3, 12, 64] -> [3, B, 12, S, 64] and two
// rope_eva2d. GB/s: the fused kernel's bytes (real-token qkv read once, heads written once).
void bench_qkv_heads(benchmark::State& state, DType dtype, int window, bool fused) {
  std::mt19937_64 rng(4);
  const int64_t n = 6, g = 40, c = 768, nh = 12, hd = 64;
  const int64_t b = window ? n * 9 : n, s = window ? int64_t(window) * window : g * g;
  Tensor qkv = random_gpu({n, g, g, 3 * c}, dtype, rng);
  Tensor padded = random_gpu({b, s, 3 * c}, dtype, rng);  // the unfused path's padded qkv
  Tensor bias = random_gpu({3 * c}, dtype, rng);
  omnirt::ops::RopeTables t = omnirt::ops::eva_rope_tables(window ? window : g, 16, hd / 2);
  Tensor cos = t.cos.to(Device::CUDA), sin = t.sin.to(Device::CUDA);
  Tensor heads = Tensor::empty({3, b, nh, s, hd}, dtype, Device::CUDA);
  Tensor rot = Tensor::empty({2, b, nh, s, hd}, dtype, Device::CUDA);
  const double bytes = omnirt::dtype_bits(dtype) / 8.0 * (qkv.numel() + heads.numel());
  time_gpu(state, 0, bytes, [&] {
    if (fused) {
      omnirt::ops::qkv_rope_heads(qkv, bias, cos, sin, window, heads);
    } else {
      omnirt::ops::permute(padded.reshape({b, s, 3, nh, hd}), {2, 0, 3, 1, 4}, heads);
      for (int i = 0; i < 2; ++i) {
        Tensor r = rot.select(0, i);
        omnirt::ops::rope_eva2d(heads.select(0, i), cos, sin, r);
      }
    }
  });
}

// Dequantising decode GEMV (models/llm/quant_gemv.h) at the same shapes, fp16 activations,
// graph-timed like the decode/gemv_f16 entries (the kernels' own back-to-back times, PDL edges).
// Codes are random bytes (every nibble value occurs), scales random but sane; the weights rotate
// through >= 256 MB of copies like bench_gemv. GB/s counts codes + scales.
void bench_quant_gemv(benchmark::State& state, GemvShape s, omnirt::llm::decode::WeightFormat fmt,
                      int64_t group, bool pdl, int max_blocks = 0) {
  using omnirt::llm::decode::WeightFormat;
  std::mt19937_64 rng(5);
  const bool fp8 = fmt == WeightFormat::kFp8;  // E4M3 bytes [N, K], F32 row scales [N]
  const size_t code_bytes = static_cast<size_t>(fp8 ? s.n * s.k : s.n * s.k / 2);
  const int64_t g = fmt == WeightFormat::kNvfp4 ? 16 : (group == 0 || fp8 ? s.k : group);
  const size_t scale_bytes =
      static_cast<size_t>(s.n * (s.k / g)) * (fmt == WeightFormat::kNvfp4 ? 1 : 4);
  const size_t stride = (code_bytes + 255) / 256 * 256, sstride = (scale_bytes + 255) / 256 * 256;
  const int copies =
      static_cast<int>(std::max<size_t>(2, (size_t{256} << 20) / (code_bytes + scale_bytes) + 1));
  std::vector<uint8_t> codes_h(code_bytes), scales_h(scale_bytes);
  for (auto& b : codes_h) b = static_cast<uint8_t>(rng());
  if (fp8)  // no E4M3 NaNs (0x7F / 0xFF)
    for (auto& b : codes_h) b = (b & 0x7F) == 0x7F ? 0 : b;
  if (fmt == WeightFormat::kNvfp4) {
    for (auto& b : scales_h) b = static_cast<uint8_t>(0x28 + rng() % 24);  // E4M3 0.25 .. 3.75
  } else {
    std::uniform_real_distribution<float> d(0.001f, 0.01f);
    for (size_t i = 0; i < scale_bytes / 4; ++i)
      reinterpret_cast<float*>(scales_h.data())[i] = d(rng);
  }
  Tensor codes = Tensor::empty({static_cast<int64_t>(stride * copies)}, DType::U8, Device::CUDA);
  Tensor scales = Tensor::empty({static_cast<int64_t>(sstride * copies)}, DType::U8, Device::CUDA);
  for (int c = 0; c < copies; ++c) {
    OMNIRT_CUDA_CHECK(cudaMemcpy(static_cast<char*>(codes.raw()) + c * stride, codes_h.data(),
                                 code_bytes, cudaMemcpyHostToDevice));
    OMNIRT_CUDA_CHECK(cudaMemcpy(static_cast<char*>(scales.raw()) + c * sstride, scales_h.data(),
                                 scale_bytes, cudaMemcpyHostToDevice));
  }
  const bool f32_in = s.in == GemvIn::kRmsNorm;
  Tensor in =
      random_gpu({s.in == GemvIn::kSwiglu ? 2 * s.k : s.k}, f32_in ? DType::F32 : DType::F16, rng);
  Tensor norm = random_gpu({s.k}, DType::F32, rng, 0.9f, 1.1f);
  Tensor y = Tensor::zeros({s.n}, s.out == GemvOut::kStore ? DType::F16 : DType::F32, Device::CUDA);
  omnirt::llm::decode::QuantGemvArgs a;
  a.format = fmt;
  a.dtype = DType::F16;
  a.group_size = g;
  a.global_scale = 1e-3f;
  a.n = s.n;
  a.k = s.k;
  a.in_mode = s.in;
  a.in = in.raw();
  a.norm_w = norm.data<float>();
  a.out_mode = s.out;
  a.y = y.raw();
  a.codes = codes.data<uint8_t>();
  a.scales = scales.raw();
  a.max_blocks = max_blocks;
  if (!omnirt::llm::decode::quant_gemv_vectorized(a)) {
    state.SkipWithError("quant_gemv would take the scalar path");
    return;
  }
  int next = 0;
  time_graph(state, 2.0 * s.n * s.k, static_cast<double>(code_bytes + scale_bytes),
             std::max(copies, 20), [&] {
               const int c = next++ % copies;
               a.codes = codes.data<uint8_t>() + c * stride;
               a.scales = static_cast<const char*>(scales.raw()) + c * sstride;
               omnirt::llm::decode::quant_gemv(a, omnirt::cuda::current_stream(), pdl);
             });
}

void register_all() {
  // Decode kernels inside a CUDA graph (issue #4): decode/<kernel>/<shape>/...
  using omnirt::llm::decode::AttnVariant;
  for (const DecodeGemvShape& s : kDecodeGemvShapes)
    for (bool pdl : {true, false}) {
      // PDL: kernel i + 1 streams its weights during kernel i's tail.
      const std::string name =
          std::string("decode/gemv_f16/") + s.name + (pdl ? "/graph" : "/graph_nopdl");
      benchmark::RegisterBenchmark(name.c_str(), bench_decode_gemv, s, pdl, 0, 0)
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond);
    }
  // Launch-shape sweep (K split x warps per block), PDL on: which shape the engine should use.
  for (const DecodeGemvShape& s : kDecodeGemvShapes)
    for (const auto& [ks, warps] :
         {std::pair{1, 2}, std::pair{1, 4}, std::pair{1, 8}, std::pair{2, 4}, std::pair{2, 8},
          std::pair{3, 3}, std::pair{3, 6}, std::pair{4, 4}, std::pair{4, 8}}) {
      const std::string name = std::string("decode/gemv_shape/") + s.name + "/ks" +
                               std::to_string(ks) + "_w" + std::to_string(warps) + "/graph";
      benchmark::RegisterBenchmark(name.c_str(), bench_decode_gemv, s, true, ks, warps)
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond);
    }
  for (const auto& [vname, v] :
       {std::pair{"split", AttnVariant::kSplit}, std::pair{"cluster", AttnVariant::kCluster}}) {
    const std::string name = std::string("decode/attn_f16/tinyllama_663keys/") + vname + "/graph";
    benchmark::RegisterBenchmark(name.c_str(), bench_decode_attn, v)
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
  }
  for (const GemvShape& s : kGemvShapes) {
    for (const auto& [dname, dtype] :
         {std::pair{"fp16", DType::F16}, std::pair{"bf16", DType::BF16}}) {
      for (bool pdl : {true, false}) {
        const std::string name = std::string("gemv/") + s.name + "/" + std::to_string(s.n) + "x" +
                                 std::to_string(s.k) + "/" + dname + (pdl ? "/pdl" : "/nopdl");
        benchmark::RegisterBenchmark(name.c_str(), bench_gemv, s, dtype, pdl)
            ->UseManualTime()
            ->Unit(benchmark::kMicrosecond);
      }
    }
  }
  for (const GemvShape& s : kGemvShapes) {
    using omnirt::llm::decode::WeightFormat;
    const struct {
      const char* name;
      WeightFormat fmt;
      int64_t group;
    } formats[] = {{"int4", WeightFormat::kInt4, 0},
                   {"int4-g128", WeightFormat::kInt4, 128},
                   {"nvfp4", WeightFormat::kNvfp4, 16},
                   {"fp8", WeightFormat::kFp8, 0}};
    for (const auto& f : formats) {
      const std::string name = std::string("quant_gemv/") + s.name + "/" + std::to_string(s.n) +
                               "x" + std::to_string(s.k) + "/" + f.name + "/pdl/graph";
      benchmark::RegisterBenchmark(name.c_str(), bench_quant_gemv, s, f.fmt, f.group, true, 0)
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond);
      // One row pair per warp (the dense GEMV's grid) against the default cap at the resident
      // blocks: measured slower (docs/benchmarks.md), kept to show it.
      benchmark::RegisterBenchmark((name + "_uncapped").c_str(), bench_quant_gemv, s, f.fmt,
                                   f.group, true, 1 << 30)
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond);
    }
  }
  for (bool pdl : {true, false}) {
    const std::string name =
        std::string("attn_decode/tinyllama_663keys/fp16") + (pdl ? "/pdl" : "/nopdl");
    benchmark::RegisterBenchmark(name.c_str(), bench_attn_decode, DType::F16, pdl)
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
  }
  for (const auto& [dname, dtype] :
       {std::pair{"fp16", DType::F16}, std::pair{"fp32", DType::F32}}) {
    for (bool fused : {true, false}) {
      const std::string name =
          std::string("vit/swiglu_layernorm/9600x2048/") + dname + (fused ? "/fused" : "/unfused");
      benchmark::RegisterBenchmark(name.c_str(), bench_swiglu_ln, dtype, fused)
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond);
      for (int window : {16, 0}) {
        const std::string qname = std::string("vit/qkv_rope_heads/") +
                                  (window ? "window16" : "global") + "/" + dname +
                                  (fused ? "/fused" : "/unfused");
        benchmark::RegisterBenchmark(qname.c_str(), bench_qkv_heads, dtype, window, fused)
            ->UseManualTime()
            ->Unit(benchmark::kMicrosecond);
      }
    }
  }
  for (const EvaGemm& s : kEvaGemms) {
    for (const GemmMode& mode : kGemmModes) {
      if (mode.dtype == DType::F32 && mode.compute == omnirt::ops::Fp32Compute::Exact) continue;
      for (bool autotune : {false, true}) {
        const std::string name = std::string("vit/gemm/") + s.name + "/" + std::to_string(s.m) +
                                 "x" + std::to_string(s.n) + "x" + std::to_string(s.k) + "/" +
                                 mode.name + (autotune ? "/autotuned" : "/heuristic");
        benchmark::RegisterBenchmark(name.c_str(), bench_eva_gemm, s, mode, autotune)
            ->UseManualTime()
            ->Unit(benchmark::kMicrosecond);
      }
    }
  }
  for (const EvaGemm& s : kEvaGemms) {
    if (std::string(s.name) == "eva_qkv_padded") continue;
    for (bool fast_accum : {false, true}) {
      const std::string name = std::string("vit/gemm/") + s.name + "/" + std::to_string(s.m) +
                               "x" + std::to_string(s.n) + "x" + std::to_string(s.k) + "/fp8" +
                               (fast_accum ? "_fastaccum" : "") + "/autotuned";
      benchmark::RegisterBenchmark(name.c_str(), bench_eva_gemm_fp8, s, fast_accum)
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond);
    }
  }
  for (int64_t k : {768, 2048}) {
    const std::string name = "vit/quantize_fp8/9600x" + std::to_string(k) + "/fp16";
    benchmark::RegisterBenchmark(name.c_str(), bench_quantize_fp8, int64_t{9600}, k)
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
  }
  for (const GemmShape& s : kGemmShapes) {
    for (const GemmMode& mode : kGemmModes) {
      for (bool bias : {false, true}) {
        const std::string name = std::string("linear/") + s.name + "/" + std::to_string(s.m) + "x" +
                                 std::to_string(s.n) + "x" + std::to_string(s.k) + "/" + mode.name +
                                 (bias ? "/bias" : "");
        benchmark::RegisterBenchmark(name.c_str(), bench_linear, s, mode, bias)
            ->UseManualTime()
            ->Unit(benchmark::kMicrosecond);
      }
    }
  }
  const std::pair<const char*, DType> attn_dtypes[] = {
      {"fp16", DType::F16}, {"bf16", DType::BF16}, {"fp32", DType::F32}};
  for (const AttnShape& s : kAttnShapes) {
    for (const auto& [dname, dtype] : attn_dtypes) {
      const std::string name = std::string("attention/") + s.name + "/" + dname;
      benchmark::RegisterBenchmark(name.c_str(), bench_attention, s, dtype)
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond);
    }
  }
}

}  // namespace
#endif  // OMNIRT_WITH_CUDA

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
#ifdef OMNIRT_WITH_CUDA
  if (omnirt::cuda_available()) {
    std::printf("device: %s\n", omnirt::cuda_device_description().c_str());
    register_all();
  } else {
    std::printf("bench_ops: skipped: no CUDA device (the benchmarks are GPU-only)\n");
  }
#else
  std::printf("bench_ops: skipped: omnirt was built without CUDA (the benchmarks are GPU-only)\n");
#endif
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
