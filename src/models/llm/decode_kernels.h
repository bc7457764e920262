// The batch-1 decode kernels of the CUDA LLaMA engine, callable on their own (tests, bench_ops):
//
//   gemv             y = W x for W [N, K] row-major (F32/F16/BF16), the op before it fused into
//                    the input staging (RMSNorm, SwiGLU) and the op after it into the epilogue
//                    (residual add, RoPE + KV-cache write).
//   attention_decode one new query per head over the cached keys (GQA), split over the keys
//                    ("flash decoding"), the splits combined by the last block of each kv head.
//
// Both read positions from device memory (*pos), so one captured CUDA graph serves every step,
// and both can be launched with programmatic dependent launch (PDL, sm_90): a GEMV then streams
// its first weights before the kernel it depends on has finished (it reads nothing else and writes
// nothing before griddepcontrol.wait), which hides launch gaps and the previous kernel's tail.
//
// Numerics: float32 accumulation; RMSNorm, SwiGLU, RoPE and softmax in float32; one rounding to
// the output type.
//
// Alignment: the 16-byte vector path needs K * sizeof(T) % 16 == 0 and a 16-byte aligned W; other
// shapes take a scalar path (correct, slow). Its input staging also loads 16 bytes at a time when
// the input (and the RMSNorm weights) are 16-byte aligned, else element by element.
// attention_decode needs 16-byte aligned q and caches and head_dim 32, 64 or 128. Bad arguments
// throw omnirt::Error naming the field.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

#ifdef OMNIRT_WITH_CUDA
#include <cuda_runtime.h>

namespace omnirt::llm::decode {

// What the GEMV reads as its input vector x [K].
enum class GemvIn {
  kPlain,    // in: T [K]
  kRmsNorm,  // in: F32 [K] (the residual stream); x = norm_w * in * rsqrt(mean(in^2) + eps)
  kSwiglu,   // in: T [2K] ([gate | up]); x[k] = silu(in[k]) * in[K + k]
};
// What it does with the result r = W x [N].
enum class GemvOut {
  kStore,     // y: T [N] = r
  kStoreF32,  // y: F32 [N] = r
  kAddF32,    // y: F32 [N] += r (the residual add)
  kRopeQkv,   // rows are [q heads; k heads; v heads] of head_dim D: q rows rotated into y (T,
              // first Hq*D entries), k rows rotated and v rows written to the caches at *pos
};

struct RopeQkv {
  const float* cos = nullptr;    // F32 [max_pos, D/2]
  const float* sin = nullptr;    // F32 [max_pos, D/2]
  const int32_t* pos = nullptr;  // device; the position of the token
  void* k_cache = nullptr;       // T [Hkv, max_ctx, D] (one layer)
  void* v_cache = nullptr;       // T [Hkv, max_ctx, D]
  int hq = 0, hkv = 0, head_dim = 0;
  int64_t max_ctx = 0;
};

struct GemvArgs {
  DType dtype = DType::F16;  // of W, of T inputs and T outputs
  const void* w = nullptr;   // [N, K] row-major
  int64_t n = 0, k = 0;
  GemvIn in_mode = GemvIn::kPlain;
  const void* in = nullptr;
  const float* norm_w = nullptr;  // kRmsNorm: F32 [K]
  float eps = 1e-5f;
  GemvOut out_mode = GemvOut::kStore;
  void* y = nullptr;
  RopeQkv rope;  // kRopeQkv only
  // Launch shape (0 = the engine's choice, gemv_auto_shape). k_split > 1: that many warps share
  // each row pair, each taking 1/k_split of K, combined through shared memory in a fixed order
  // (deterministic), so that a long row's weights are all requested before the PDL wait instead
  // of in sequential batches. warps_per_block must be a multiple of k_split.
  int k_split = 0;          // 1..4; vectorised path only
  int warps_per_block = 0;  // 1..16
};

// True when the 16-byte path applies (else the scalar fallback runs).
bool gemv_vectorized(const GemvArgs& a);
struct GemvShape {
  int k_split = 1, warps_per_block = 4;
};
// The launch shape used when GemvArgs leaves it at 0.
GemvShape gemv_auto_shape(const GemvArgs& a);
void gemv(const GemvArgs& a, cudaStream_t stream, bool pdl);

// Which attention kernel runs. kAuto: the cluster kernel (16 blocks per kv head, the partials
// combined over distributed shared memory) when max_ctx <= kAttnClusterMaxCtx, else the split
// kernel (`splits` blocks per kv head, partials combined through the workspace by the last
// block). kSplit / kCluster force one (tests; kCluster with a longer max_ctx is an error).
enum class AttnVariant { kAuto, kSplit, kCluster };
constexpr int64_t kAttnClusterMaxCtx = 1024;

struct AttnDecodeArgs {
  DType dtype = DType::F16;
  const void* q = nullptr;        // T [Hq * D], already rotated
  const void* k_cache = nullptr;  // T [Hkv, max_ctx, D], keys rotated
  const void* v_cache = nullptr;  // T [Hkv, max_ctx, D]
  const int32_t* pos = nullptr;   // device; keys 0..*pos are attended (*pos < max_ctx).
                                  // With PDL, *pos and the cache rows before *pos are read
                                  // before griddepcontrol.wait: they must have been written
                                  // before the previous kernel was launched (the engine writes
                                  // *pos at the end of a step, the row at *pos in the qkv GEMV
                                  // just before; only that row may come from the kernel before)
  int64_t max_ctx = 0;
  int hq = 0, hkv = 0, head_dim = 0;
  float scale = 0.f;           // softmax scale (1/sqrt(D))
  void* out = nullptr;         // T [Hq * D]
  int splits = 1;              // key splits per kv head (blocks = hkv * splits)
  float* workspace = nullptr;  // F32 [attn_decode_workspace_floats(...)]
  int* counters = nullptr;     // I32 [hkv], zero before the first launch; left zero after
  AttnVariant variant = AttnVariant::kAuto;  // the cluster kernel does not use splits,
                                             // workspace and counters (still checked)
};

// Splits that give ~128+ blocks and at most kAttnMaxKeysPerSplit keys per split.
int attn_decode_default_splits(int hkv, int64_t max_ctx);
size_t attn_decode_workspace_floats(int hq, int head_dim, int splits);
void attention_decode(const AttnDecodeArgs& a, cudaStream_t stream, bool pdl);

constexpr int kAttnMaxGroup = 8;          // query heads per kv head
constexpr int kAttnMaxKeysPerSplit = 64;  // splits * 64 must cover max_ctx (<= 256 splits)

}  // namespace omnirt::llm::decode
#endif
