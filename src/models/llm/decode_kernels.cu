// Batch-1 decode kernels of the CUDA LLaMA engine; see decode_kernels.h.
//
// GEMV: the decode step is a chain of matrix-vector products that read 2.08 GB of fp16 weights
// per token and almost nothing else, so each GEMV must stream its weights at close to the copy
// bandwidth. Per warp: 2 rows; per lane: 16-byte loads of both rows, 8 per row issued together
// (16 loads = 256 bytes in flight per lane, 8 KB per warp); 8 warps per block by default (a
// measured sweep of block shapes and K splits is in docs/benchmarks.md; GemvArgs can override
// it), so every SM keeps ~64-128 KB of loads in flight. The
// first batch of weight loads is issued before griddepcontrol.wait (PDL), and the next kernel is
// allowed to launch right away (griddepcontrol.launch_dependents), then the input vector
// is staged once per block in shared memory as float32, with the op before the GEMV fused in.
// The staging layout splits each 16-byte chunk's x values into float4 planes so that the lanes'
// shared-memory reads are consecutive 16-byte words (no bank conflicts). (Measured on the H200,
// issue #4: double-buffered register batches and TMA bulk copies into shared memory were both
// slower than this at every TinyLlama shape.)
//
// Attention: each block scores its keys for all the query heads of its kv head (GQA: each key
// and value is read once per block) and keeps the partial (max, sum, unnormalised output) per
// head. Contexts up to kAttnClusterMaxCtx (the engine's 1024): a thread-block cluster of 16
// blocks per kv head combines its partials over distributed shared memory (7.5 us at 663 keys on
// the H200 against 13.4 us for the split kernel; a cluster of 8: 10.1 us). Longer contexts:
// grid (kv head, key split); the partials go to a global workspace and the last block of a kv
// head to finish (atomic counter) combines the splits and resets the counter, so the kernel is
// graph-replayable.
#include "models/llm/decode_kernels.h"

#include <cooperative_groups.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <type_traits>
#include <utility>

#include "core/cuda_check.h"
#include "core/error.h"
#include "ops/cuda/common.cuh"

namespace omnirt::llm::decode {
namespace {

namespace cg = cooperative_groups;

// ---------------------------------------------------------------------------------------------
// Device helpers

// Element conversions shared with the op layer (ops/cuda/common.cuh).
using ops::cuda::from_float;
using ops::cuda::to_float;

// Programmatic dependent launch (sm_90). Without the launch attribute both are no-ops. Data an
// earlier kernel of the step wrote (activations, the KV cache, the position) is read with __ldcg
// (through L2, never a possibly stale L1 line) and only after pdl_wait(); only weights, which
// nothing writes, are read before it.
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
// Sum over the block (blockDim.x <= 1024); every thread gets the result.
__device__ float block_sum(float v, float* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (blockDim.x + 31) >> 5;
  v = warp_sum(v);
  __syncthreads();  // `red` may still be read by a previous reduction
  if (lane == 0) red[warp] = v;
  __syncthreads();
  return warp_sum(lane < nwarps ? red[lane] : 0.f);
}

__device__ __forceinline__ float silu(float g) { return g / (1.0f + __expf(-g)); }

// Elements of T in one 16-byte vector.
template <typename T>
constexpr int kVec = 16 / static_cast<int>(sizeof(T));

template <typename T>
__device__ __forceinline__ void unpack(const uint4& v, float* f) {
  const T* e = reinterpret_cast<const T*>(&v);
#pragma unroll
  for (int i = 0; i < kVec<T>; ++i) f[i] = to_float(e[i]);
}

// ---------------------------------------------------------------------------------------------
// GEMV

constexpr int kGemvRowsPerWarp = 2;
constexpr int kGemvBatch = 8;  // 16-byte chunks per row per lane loaded together

struct GemvDev {
  const void* w;
  int n, k;
  const void* in;
  const float* norm_w;
  float eps;
  void* y;
  const float* cos;
  const float* sin;
  const int32_t* pos;
  void* kc;
  void* vc;
  int hq, hkv, d;
  long long max_ctx;
  int stage_vec;  // input (and norm weights) 16-byte aligned: 16-byte staging loads
};

// Shared-memory index of x[k]. Vector path: chunk c = k / E holds x[c*E .. c*E+E) as E/4
// float4 planes (plane p = (k % E) / 4 at float4 index p * chunks + c), so lane l reading chunk
// c = base + l touches consecutive float4s. For E = 4 (F32) this is the identity.
template <typename T, bool VEC>
__device__ __forceinline__ int stage_index(int k, int chunks) {
  if constexpr (VEC) {
    constexpr int E = kVec<T>;
    return ((((k % E) >> 2) * chunks) + k / E) * 4 + (k & 3);
  } else {
    return k;
  }
}

// Stages x into the float4 planes with 16-byte loads (VEC path, aligned input): each thread
// handles whole chunks, several in flight (the staging is on the critical path after the wait).
// RMSNorm weights of the first kNormPre chunks per thread are loaded before the PDL wait (they are
// weights), which takes one L2 round trip off the staging; K = 2048 needs at most 2.
constexpr int kNormPre = 2;

template <typename T>
constexpr int kPlanes = kVec<T> / 4;  // float4 planes per 16-byte chunk of T

template <typename T, GemvIn IN>
__device__ __forceinline__ void stage_vec(const GemvDev& a, float4* xs4, int chunks, float* red,
                                          const float4 (&nw)[kNormPre][kPlanes<T>]) {
  constexpr int E = kVec<T>;
  constexpr int P = kPlanes<T>;
  if constexpr (IN == GemvIn::kRmsNorm) {
    const float4* x4 = static_cast<const float4*>(a.in);  // F32: chunk c = float4s c*P .. c*P+P
    float ss = 0.f;
#pragma unroll 4
    for (int c = threadIdx.x; c < chunks; c += blockDim.x) {
#pragma unroll
      for (int p = 0; p < P; ++p) {
        const float4 v = __ldcg(x4 + c * P + p);
        ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
        xs4[p * chunks + c] = v;
      }
    }
    ss = block_sum(ss, red);
    const float inv = rsqrtf(ss / static_cast<float>(a.k) + a.eps);
    const float4* w4 = reinterpret_cast<const float4*>(a.norm_w);
    // Each thread rescales the chunks it wrote itself: no barrier needed in between.
    auto scale = [&](int c, int p, const float4& w) {
      float4 v = xs4[p * chunks + c];
      v.x = w.x * (v.x * inv);
      v.y = w.y * (v.y * inv);
      v.z = w.z * (v.z * inv);
      v.w = w.w * (v.w * inv);
      xs4[p * chunks + c] = v;
    };
#pragma unroll
    for (int i = 0; i < kNormPre; ++i) {  // weights already in registers
      const int c = threadIdx.x + i * static_cast<int>(blockDim.x);
      if (c < chunks)
#pragma unroll
        for (int p = 0; p < P; ++p) scale(c, p, nw[i][p]);
    }
#pragma unroll 4
    for (int c = threadIdx.x + kNormPre * blockDim.x; c < chunks; c += blockDim.x) {
#pragma unroll
      for (int p = 0; p < P; ++p) scale(c, p, w4[c * P + p]);
    }
  } else {
    const uint4* in4 = static_cast<const uint4*>(a.in);  // T: chunk c = one uint4
#pragma unroll 4
    for (int c = threadIdx.x; c < chunks; c += blockDim.x) {
      float f[E];
      const uint4 v = __ldcg(in4 + c);  // one 16-byte load into registers, then unpacked
      unpack<T>(v, f);
      if constexpr (IN == GemvIn::kSwiglu) {
        float u[E];
        const uint4 vu = __ldcg(in4 + chunks + c);  // the up half: K elements (chunks vectors) on
        unpack<T>(vu, u);
#pragma unroll
        for (int e = 0; e < E; ++e) f[e] = silu(f[e]) * u[e];
      }
#pragma unroll
      for (int p = 0; p < P; ++p)
        xs4[p * chunks + c] = make_float4(f[4 * p], f[4 * p + 1], f[4 * p + 2], f[4 * p + 3]);
    }
  }
}

// KS warps (consecutive in the block) share one row pair, warp `kpart` of them taking chunks
// [kpart * per, (kpart + 1) * per) of the row (KS = 1: the whole row).
template <typename T, GemvIn IN, GemvOut OUT, bool VEC, int KS>
__global__ void __launch_bounds__(256) gemv_kernel(const GemvDev a) {
  extern __shared__ float4 xs4[];  // K floats
  float* xs = reinterpret_cast<float*>(xs4);
  __shared__ float red[32];
  constexpr int E = kVec<T>;
  static_assert(KS == 1 || VEC, "the K split needs the vector path");
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int kpart = warp % KS;
  // This warp's row pair.
  const int gw = blockIdx.x * static_cast<int>(blockDim.x >> 5) / KS + warp / KS;
  const int N = a.n, K = a.k;
  int r0, r1;
  if constexpr (OUT == GemvOut::kRopeQkv) {
    // The pair (i, i + D/2) of one head, which RoPE rotates together.
    const int half = a.d >> 1;
    r0 = (gw / half) * a.d + gw % half;
    r1 = r0 + half;
  } else {
    r0 = gw * kGemvRowsPerWarp;
    r1 = r0 + 1;
  }
  const bool has0 = r0 < N, has1 = r1 < N;
  // Rows past N read row N - 1 (valid memory) and are never stored.
  const T* W = static_cast<const T*>(a.w);
  const T* w0 = W + static_cast<int64_t>(min(r0, N - 1)) * K;
  const T* w1 = W + static_cast<int64_t>(min(r1, N - 1)) * K;
  const int chunks = VEC ? K / E : 0;
  const int per = (chunks + KS - 1) / KS;
  const int kbeg = min(chunks, kpart * per), kend = min(chunks, kbeg + per);
  const uint4* v0 = reinterpret_cast<const uint4*>(w0);
  const uint4* v1 = reinterpret_cast<const uint4*>(w1);
  uint4 b0[kGemvBatch], b1[kGemvBatch];
  auto load_batch = [&](int base) {
#pragma unroll
    for (int u = 0; u < kGemvBatch; ++u) {
      const int c = base + u * 32 + lane;
      if (c < kend) {
        b0[u] = __ldg(v0 + c);
        b1[u] = __ldg(v1 + c);
      }
    }
  };
  // The weights do not depend on any earlier kernel: start streaming them before the wait.
  if constexpr (VEC) load_batch(kbeg);
  // Let the next kernel launch as soon as every block of this one has started, so that its
  // weights stream while this kernel waits for its own and computes (issue #4: triggering after
  // the staging instead left PDL worth only ~0.7 us per GEMV). Safe: the next kernel reads
  // nothing this one writes before its own griddepcontrol.wait, which waits for this grid to
  // complete; and it is launched only once all of this grid's blocks are resident.
  pdl_launch_dependents();
  float4 nw[kNormPre][kPlanes<T>];
  if constexpr (VEC && IN == GemvIn::kRmsNorm) {
    if (a.stage_vec) {
      const float4* w4 = reinterpret_cast<const float4*>(a.norm_w);
#pragma unroll
      for (int i = 0; i < kNormPre; ++i) {
        const int c = threadIdx.x + i * static_cast<int>(blockDim.x);
#pragma unroll
        for (int p = 0; p < kPlanes<T>; ++p)
          nw[i][p] = c < chunks ? __ldg(w4 + c * kPlanes<T> + p) : make_float4(0.f, 0.f, 0.f, 0.f);
      }
    }
  }
  pdl_wait();
  // What the epilogue reads besides the result (the residual, the position and its RoPE
  // factors) is loaded now, so that these round trips overlap the staging and the weight stream
  // instead of adding to the tail. Only lane 0 stores.
  float old0 = 0.f, old1 = 0.f, rc = 0.f, rs = 0.f;
  int rpos = 0;
  if (lane == 0 && has0) {
    if constexpr (OUT == GemvOut::kAddF32) {
      const float* y = static_cast<const float*>(a.y);
      old0 = __ldcg(y + r0);
      if (has1) old1 = __ldcg(y + r1);
    } else if constexpr (OUT == GemvOut::kRopeQkv) {
      const int half = a.d >> 1;
      rpos = __ldcg(a.pos);
      const int64_t t = static_cast<int64_t>(rpos) * half + (r0 % a.d);
      rc = __ldg(a.cos + t);
      rs = __ldg(a.sin + t);
    }
  }

  // Stage x (with the preceding op fused in) once per block.
  if (VEC && a.stage_vec) {  // block-uniform
    if constexpr (VEC) stage_vec<T, IN>(a, xs4, chunks, red, nw);
  } else if constexpr (IN == GemvIn::kRmsNorm) {
    const float* x = static_cast<const float*>(a.in);
    float ss = 0.f;
    for (int k = threadIdx.x; k < K; k += blockDim.x) {
      const float v = __ldcg(x + k);
      ss += v * v;
    }
    ss = block_sum(ss, red);
    const float inv = rsqrtf(ss / static_cast<float>(K) + a.eps);
    for (int k = threadIdx.x; k < K; k += blockDim.x)
      xs[stage_index<T, VEC>(k, chunks)] = a.norm_w[k] * (__ldcg(x + k) * inv);
  } else if constexpr (IN == GemvIn::kSwiglu) {
    const T* x = static_cast<const T*>(a.in);
    for (int k = threadIdx.x; k < K; k += blockDim.x)
      xs[stage_index<T, VEC>(k, chunks)] =
          silu(to_float(__ldcg(x + k))) * to_float(__ldcg(x + K + k));
  } else {
    const T* x = static_cast<const T*>(a.in);
    for (int k = threadIdx.x; k < K; k += blockDim.x)
      xs[stage_index<T, VEC>(k, chunks)] = to_float(__ldcg(x + k));
  }
  __syncthreads();
  // KS = 1: no block-wide barrier below. KS > 1: warps without rows still reach the one that
  // combines the K parts (has0 is the same for all KS warps of a pair).
  if (KS == 1 && !has0) return;

  float acc0 = 0.f, acc1 = 0.f;
  if constexpr (VEC) {
    const float4* xp = xs4;
    for (int base = kbeg; has0; base += kGemvBatch * 32) {
#pragma unroll
      for (int u = 0; u < kGemvBatch; ++u) {
        const int c = base + u * 32 + lane;
        if (c < kend) {
          float xf[E], wf[E];
#pragma unroll
          for (int p = 0; p < E / 4; ++p) {
            const float4 t = xp[p * chunks + c];
            xf[4 * p] = t.x;
            xf[4 * p + 1] = t.y;
            xf[4 * p + 2] = t.z;
            xf[4 * p + 3] = t.w;
          }
          unpack<T>(b0[u], wf);
#pragma unroll
          for (int e = 0; e < E; ++e) acc0 = fmaf(wf[e], xf[e], acc0);
          unpack<T>(b1[u], wf);
#pragma unroll
          for (int e = 0; e < E; ++e) acc1 = fmaf(wf[e], xf[e], acc1);
        }
      }
      if (base + kGemvBatch * 32 >= kend) break;  // warp-uniform
      load_batch(base + kGemvBatch * 32);
    }
  } else {
    for (int k = lane; k < K; k += 32) {
      acc0 = fmaf(to_float(w0[k]), xs[k], acc0);
      acc1 = fmaf(to_float(w1[k]), xs[k], acc1);
    }
  }
  acc0 = warp_sum(acc0);
  acc1 = warp_sum(acc1);
  if constexpr (KS > 1) {
    // The pair's first warp adds the other parts, in kpart order.
    __shared__ float2 part[8];
    if (lane == 0) part[warp] = make_float2(acc0, acc1);
    __syncthreads();
    if (kpart != 0 || !has0) return;
#pragma unroll
    for (int j = 1; j < KS; ++j) {
      acc0 += part[warp + j].x;
      acc1 += part[warp + j].y;
    }
  }
  if (lane != 0) return;
  if constexpr (OUT == GemvOut::kStore) {
    T* y = static_cast<T*>(a.y);
    y[r0] = from_float<T>(acc0);
    if (has1) y[r1] = from_float<T>(acc1);
  } else if constexpr (OUT == GemvOut::kStoreF32) {
    float* y = static_cast<float*>(a.y);
    y[r0] = acc0;
    if (has1) y[r1] = acc1;
  } else if constexpr (OUT == GemvOut::kAddF32) {
    float* y = static_cast<float*>(a.y);
    y[r0] = old0 + acc0;
    if (has1) y[r1] = old1 + acc1;
  } else {  // kRopeQkv: has1 holds (N is a whole number of heads)
    const int D = a.d, half = D >> 1, head = r0 / D, i = r0 - head * D;
    const int p = rpos;
    const float ra = acc0 * rc - acc1 * rs, rb = acc1 * rc + acc0 * rs;
    if (head < a.hq) {
      T* y = static_cast<T*>(a.y);
      y[r0] = from_float<T>(ra);
      y[r1] = from_float<T>(rb);
    } else if (head < a.hq + a.hkv) {
      T* dst = static_cast<T*>(a.kc) + (static_cast<int64_t>(head - a.hq) * a.max_ctx + p) * D;
      dst[i] = from_float<T>(ra);
      dst[i + half] = from_float<T>(rb);
    } else {
      T* dst =
          static_cast<T*>(a.vc) + (static_cast<int64_t>(head - a.hq - a.hkv) * a.max_ctx + p) * D;
      dst[i] = from_float<T>(acc0);
      dst[i + half] = from_float<T>(acc1);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Attention

constexpr int kAttnWarps = 4;
constexpr int kAttnThreads = kAttnWarps * 32;
constexpr int kAttnMaxSplits = 256;  // up to 16384 positions
constexpr int kAttnCluster = 16;     // blocks per kv head in the cluster kernel (non-portable size)

struct AttnDev {
  const void* q;
  const void* kc;
  const void* vc;
  const int32_t* pos;
  long long max_ctx;
  int hq, hkv, splits;
  float scale_log2;
  void* out;
  float* ws;
  int* counters;
};

// Key slots of one block: D / E lanes share one key (each lane one 16-byte piece of it).
template <typename T, int D>
constexpr int attn_slots() {
  return kAttnWarps * (32 / (D / kVec<T>));
}

// The attention of one block over keys j0 .. j0 + n of kv head kvh (n <= KMAX, may be 0) for the
// G query heads of its group. Leaves in shared memory: mrow / lrow, the max and the sum of the
// exp2 scores per head (-inf / 0 when n = 0), and the unnormalised output [G][D] in qs (which
// holds the scaled queries until the scores are done: the shared memory is reused).
//
// PDL: keys before `newest` (= *pos) were written by earlier steps, so they are loaded before
// griddepcontrol.wait, while the kernel before (the qkv GEMV) still runs; only the newest key and
// value (which that kernel writes) and q are loaded after it. The wait happens in here.
template <typename T, int D, int KMAX>
__device__ __forceinline__ void attn_block_partial(const AttnDev& a, int kvh, int j0, int n,
                                                   int newest, float (*qs)[D], float (*sc)[KMAX],
                                                   float* mrow, float* lrow, float* red) {
  constexpr int E = kVec<T>;
  constexpr int LPK = D / E;     // lanes per key
  constexpr int KPW = 32 / LPK;  // keys per warp
  constexpr int SLOTS = attn_slots<T, D>();
  constexpr int G8 = kAttnMaxGroup;
  static_assert(D % E == 0 && LPK >= 2 && LPK <= 32 && 32 % LPK == 0, "unsupported head_dim");
  const int G = a.hq / a.hkv;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int sub = lane % LPK, slot = warp * KPW + lane / LPK;

  // Every key and value piece of this split is loaded at once (one memory round trip), before
  // q is staged: tile `it` holds key j0 + it * SLOTS + slot.
  constexpr int kTiles = (KMAX + SLOTS - 1) / SLOTS;
  const T* kb = static_cast<const T*>(a.kc) + static_cast<int64_t>(kvh) * a.max_ctx * D;
  const T* vb = static_cast<const T*>(a.vc) + static_cast<int64_t>(kvh) * a.max_ctx * D;
  uint4 kreg[kTiles], vreg[kTiles];
#pragma unroll
  for (int it = 0; it < kTiles; ++it) {
    const int t = it * SLOTS + slot;
    if (t < n && j0 + t != newest) {
      const int64_t off = static_cast<int64_t>(j0 + t) * D + sub * E;
      kreg[it] = __ldcg(reinterpret_cast<const uint4*>(kb + off));
      vreg[it] = __ldcg(reinterpret_cast<const uint4*>(vb + off));
    } else {
      kreg[it] = make_uint4(0, 0, 0, 0);
      vreg[it] = make_uint4(0, 0, 0, 0);
    }
  }
  pdl_wait();  // q and the newest key/value come from the kernel before
#pragma unroll
  for (int it = 0; it < kTiles; ++it) {
    const int t = it * SLOTS + slot;
    if (t < n && j0 + t == newest) {
      const int64_t off = static_cast<int64_t>(j0 + t) * D + sub * E;
      kreg[it] = __ldcg(reinterpret_cast<const uint4*>(kb + off));
      vreg[it] = __ldcg(reinterpret_cast<const uint4*>(vb + off));
    }
  }

  const T* q = static_cast<const T*>(a.q) + static_cast<int64_t>(kvh) * G * D;
  for (int i = threadIdx.x; i < G * D; i += blockDim.x)
    qs[i / D][i % D] = to_float(__ldcg(q + i)) * a.scale_log2;
  __syncthreads();

  // Scores (log2 domain): the tile loop is block-uniform, so the shuffles stay converged.
#pragma unroll
  for (int it = 0; it < kTiles; ++it) {
    if (it * SLOTS >= n) break;
    const int t = it * SLOTS + slot;
    float kf[E];
    unpack<T>(kreg[it], kf);  // zeros past n
#pragma unroll
    for (int g = 0; g < G8; ++g) {
      if (g < G) {
        float dot = 0.f;
#pragma unroll
        for (int e = 0; e < E; ++e) dot = fmaf(kf[e], qs[g][sub * E + e], dot);
#pragma unroll
        for (int o = LPK / 2; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
        if (t < n && sub == 0) sc[g][t] = dot;
      }
    }
  }
  __syncthreads();

  // Softmax numerators of this split, one warp per head.
  for (int g = warp; g < G; g += kAttnWarps) {
    float m = -INFINITY;
    for (int t = lane; t < n; t += 32) m = fmaxf(m, sc[g][t]);
    m = warp_max(m);
    float l = 0.f;
    for (int t = lane; t < n; t += 32) {
      const float p = exp2f(sc[g][t] - m);
      sc[g][t] = p;
      l += p;
    }
    l = warp_sum(l);
    if (lane == 0) {
      mrow[g] = m;  // -inf when the split is empty (then l = 0)
      lrow[g] = l;
    }
  }
  __syncthreads();

  // P V over this split's keys; each lane accumulates its E dims for every head of the group.
  float acc[G8][E];
#pragma unroll
  for (int g = 0; g < G8; ++g)
#pragma unroll
    for (int e = 0; e < E; ++e) acc[g][e] = 0.f;
#pragma unroll
  for (int it = 0; it < kTiles; ++it) {
    const int t = it * SLOTS + slot;
    if (t < n) {
      float vf[E];
      unpack<T>(vreg[it], vf);
#pragma unroll
      for (int g = 0; g < G8; ++g) {
        if (g < G) {
          const float p = sc[g][t];
#pragma unroll
          for (int e = 0; e < E; ++e) acc[g][e] = fmaf(p, vf[e], acc[g][e]);
        }
      }
    }
  }
#pragma unroll
  for (int g = 0; g < G8; ++g)
    if (g < G)
#pragma unroll
      for (int e = 0; e < E; ++e) red[(slot * G + g) * D + sub * E + e] = acc[g][e];
  __syncthreads();

  // Sum over the slots: this block's unnormalised output per head, into qs (dead since the
  // scores: two barriers ago).
  for (int i = threadIdx.x; i < G * D; i += blockDim.x) {
    const int g = i / D, d = i % D;
    float o = 0.f;
    for (int sl = 0; sl < SLOTS; ++sl) o += red[(sl * G + g) * D + d];
    qs[g][d] = o;
  }
  __syncthreads();
}

// Split kernel: grid (kv head, split); partials through the global workspace.
template <typename T, int D>
__global__ void __launch_bounds__(kAttnThreads) attn_decode_kernel(const AttnDev a) {
  constexpr int G8 = kAttnMaxGroup;
  __shared__ float qs[G8][D];  // the scaled queries, then this block's partial output
  __shared__ float sc[G8][kAttnMaxKeysPerSplit];
  __shared__ float mrow[G8], lrow[G8];
  __shared__ float wts[G8][kAttnMaxSplits];
  __shared__ int is_last;
  extern __shared__ float red[];  // [SLOTS][G][D]

  const int kvh = blockIdx.x, split = blockIdx.y, G = a.hq / a.hkv;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  // Let the next kernel (the o_proj GEMV) launch now, so that its weights stream while this one
  // runs: it reads this kernel's output only after its own griddepcontrol.wait, which waits for
  // this whole grid.
  pdl_launch_dependents();
  // *pos is read before the PDL wait: the contract (decode_kernels.h) is that it was written
  // before the previous kernel launched.
  const int newest = __ldcg(a.pos);
  const int nkeys = min(newest + 1, static_cast<int>(a.max_ctx));
  const int chunk = (nkeys + a.splits - 1) / a.splits;  // <= kAttnMaxKeysPerSplit (host check)
  const int j0 = min(nkeys, split * chunk), j1 = min(nkeys, j0 + chunk);
  attn_block_partial<T, D, kAttnMaxKeysPerSplit>(a, kvh, j0, j1 - j0, newest, qs, sc, mrow, lrow,
                                                 red);

  // This split's partial result: ws[head][split] = (o[0..D), m, l).
  const int stride = D + 2;
  for (int i = threadIdx.x; i < G * D; i += blockDim.x) {
    const int g = i / D, d = i % D;
    const int h = kvh * G + g;
    a.ws[(static_cast<int64_t>(h) * a.splits + split) * stride + d] = qs[g][d];
  }
  if (threadIdx.x < G) {
    const int h = kvh * G + threadIdx.x;
    float* p = a.ws + (static_cast<int64_t>(h) * a.splits + split) * stride;
    p[D] = mrow[threadIdx.x];
    p[D + 1] = lrow[threadIdx.x];
  }
  __threadfence();  // each thread's partials visible device-wide before the block is counted
  __syncthreads();
  if (threadIdx.x == 0) is_last = atomicAdd(&a.counters[kvh], 1) == a.splits - 1;
  __syncthreads();
  if (!is_last) return;
  __threadfence();

  // The last block of this kv head combines all splits. __ldcg: read through L2 (another SM
  // wrote these; this SM's L1 may hold lines from an earlier launch).
  for (int g = warp; g < G; g += kAttnWarps) {
    const float* base = a.ws + static_cast<int64_t>(kvh * G + g) * a.splits * stride;
    float m = -INFINITY;
    for (int s = lane; s < a.splits; s += 32) m = fmaxf(m, __ldcg(base + s * stride + D));
    m = warp_max(m);  // finite: split 0 always holds key 0
    float l = 0.f;
    for (int s = lane; s < a.splits; s += 32) {
      const float f = exp2f(__ldcg(base + s * stride + D) - m);
      wts[g][s] = f;
      l += f * __ldcg(base + s * stride + D + 1);
    }
    l = warp_sum(l);
    const float inv = 1.f / l;
    for (int s = lane; s < a.splits; s += 32) wts[g][s] *= inv;
  }
  __syncthreads();
  T* out = static_cast<T*>(a.out);
  for (int i = threadIdx.x; i < G * D; i += blockDim.x) {
    const int g = i / D, d = i % D;
    const float* base = a.ws + static_cast<int64_t>(kvh * G + g) * a.splits * stride + d;
    float o = 0.f;
#pragma unroll 8  // 8 loads in flight instead of one round trip per split
    for (int s = 0; s < a.splits; ++s) o = fmaf(wts[g][s], __ldcg(base + s * stride), o);
    out[static_cast<int64_t>(kvh * G + g) * D + d] = from_float<T>(o);
  }
  if (threadIdx.x == 0) a.counters[kvh] = 0;  // every split has arrived: ready for the next launch
}

// Cluster kernel: one cluster of CL blocks per kv head (grid (CL, hkv)); block rank r takes
// the r-th 1/CL of the keys, then, after a cluster barrier, combines a 1/CL slice of the group's
// G * D outputs from the CL partials in the blocks' shared memory (distributed shared memory:
// no global workspace, no fences, no atomics, and the combine is spread over every block).
template <typename T, int D, int CL>
__global__ void __launch_bounds__(kAttnThreads) attn_decode_cluster_kernel(const AttnDev a) {
  constexpr int G8 = kAttnMaxGroup;
  constexpr int KMAX = static_cast<int>(kAttnClusterMaxCtx / CL);
  __shared__ float qs[G8][D];  // the scaled queries, then this block's partial output
  __shared__ float sc[G8][KMAX];
  __shared__ float mrow[G8], lrow[G8];
  extern __shared__ float red[];  // [SLOTS][G][D]

  cg::cluster_group cluster = cg::this_cluster();
  const int rank = static_cast<int>(cluster.block_rank());
  const int kvh = blockIdx.y, G = a.hq / a.hkv;
  pdl_launch_dependents();            // see the split kernel
  const int newest = __ldcg(a.pos);  // before the PDL wait: see the split kernel
  const int nkeys = min(newest + 1, static_cast<int>(a.max_ctx));
  const int chunk = (nkeys + CL - 1) / CL;  // <= KMAX: max_ctx <= kAttnClusterMaxCtx (host check)
  const int j0 = min(nkeys, rank * chunk), j1 = min(nkeys, j0 + chunk);
  attn_block_partial<T, D, KMAX>(a, kvh, j0, j1 - j0, newest, qs, sc, mrow, lrow, red);
  cluster.sync();  // every block's partial is complete and visible to the cluster

  const int per = (G * D + CL - 1) / CL;
  const int lo = rank * per, hi = min(G * D, lo + per);
  T* out = static_cast<T*>(a.out);
  for (int i = lo + static_cast<int>(threadIdx.x); i < hi; i += blockDim.x) {
    const int g = i / D, d = i % D;
    float mr[CL], lr[CL], orr[CL];
#pragma unroll
    for (int r = 0; r < CL; ++r) {  // all 3 * CL remote loads issued together
      mr[r] = *cluster.map_shared_rank(&mrow[g], r);
      lr[r] = *cluster.map_shared_rank(&lrow[g], r);
      orr[r] = *cluster.map_shared_rank(&qs[g][d], r);
    }
    float m = -INFINITY;
#pragma unroll
    for (int r = 0; r < CL; ++r) m = fmaxf(m, mr[r]);  // finite: rank 0 always holds key 0
    float l = 0.f, o = 0.f;
#pragma unroll
    for (int r = 0; r < CL; ++r) {
      const float w = exp2f(mr[r] - m);  // 0 for an empty block (-inf)
      l = fmaf(w, lr[r], l);
      o = fmaf(w, orr[r], o);
    }
    out[static_cast<int64_t>(kvh * G + g) * D + d] = from_float<T>(o / l);
  }
  cluster.sync();  // no block exits (freeing its shared memory) while another still reads it
}

// ---------------------------------------------------------------------------------------------
// Host side

// cluster > 0: launched as thread-block clusters of `cluster` blocks along x.
template <typename... KArgs, typename... Args>
void launch(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
            bool pdl, const char* name, int cluster, Args&&... args) {
  // Opt in above 32 KB of dynamic shared memory: the kernels' static shared memory (<= 16 KB)
  // counts against the same 48 KB default limit.
  if (smem > 32 * 1024)
    OMNIRT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(smem)));
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[2];
  unsigned n_attr = 0;
  if (pdl) {
    attr[n_attr].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[n_attr++].val.programmaticStreamSerializationAllowed = 1;
  }
  if (cluster > 0) {
    if (cluster > 8)  // beyond the portable cluster size (sm_90 allows 16 on opt-in)
      OMNIRT_CUDA_CHECK(
          cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
    attr[n_attr].id = cudaLaunchAttributeClusterDimension;
    attr[n_attr].val.clusterDim.x = static_cast<unsigned>(cluster);
    attr[n_attr].val.clusterDim.y = 1;
    attr[n_attr++].val.clusterDim.z = 1;
  }
  cfg.attrs = attr;
  cfg.numAttrs = n_attr;
  const cudaError_t err = cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
  if (err != cudaSuccess)
    OMNIRT_FAIL("CUDA kernel ", name, " failed to launch: ", cudaGetErrorName(err), " (",
                cudaGetErrorString(err), ")");
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <typename T, GemvIn IN, GemvOut OUT>
void launch_gemv(const GemvArgs& a, const GemvDev& d, int blocks, int threads, int k_split,
                 size_t smem, cudaStream_t stream, bool pdl) {
  if (!gemv_vectorized(a))
    return launch(gemv_kernel<T, IN, OUT, false, 1>, dim3(blocks), dim3(threads), smem, stream, pdl,
                  "gemv", 0, d);
  if constexpr (std::is_same_v<T, float>) {  // the split is built for half weights only
    return launch(gemv_kernel<T, IN, OUT, true, 1>, dim3(blocks), dim3(threads), smem, stream, pdl,
                  "gemv", 0, d);
  } else {
    switch (k_split) {
      case 1:
        return launch(gemv_kernel<T, IN, OUT, true, 1>, dim3(blocks), dim3(threads), smem, stream,
                      pdl, "gemv", 0, d);
      case 2:
        return launch(gemv_kernel<T, IN, OUT, true, 2>, dim3(blocks), dim3(threads), smem, stream,
                      pdl, "gemv", 0, d);
      case 3:
        return launch(gemv_kernel<T, IN, OUT, true, 3>, dim3(blocks), dim3(threads), smem, stream,
                      pdl, "gemv", 0, d);
      default:
        return launch(gemv_kernel<T, IN, OUT, true, 4>, dim3(blocks), dim3(threads), smem, stream,
                      pdl, "gemv", 0, d);
    }
  }
}

template <typename T>
void dispatch_gemv(const GemvArgs& a, const GemvDev& d, int blocks, int threads, int ks,
                   size_t smem, cudaStream_t stream, bool pdl) {
  using I = GemvIn;
  using O = GemvOut;
  if (a.in_mode == I::kPlain && a.out_mode == O::kStore)
    return launch_gemv<T, I::kPlain, O::kStore>(a, d, blocks, threads, ks, smem, stream, pdl);
  if (a.in_mode == I::kPlain && a.out_mode == O::kStoreF32)
    return launch_gemv<T, I::kPlain, O::kStoreF32>(a, d, blocks, threads, ks, smem, stream, pdl);
  if (a.in_mode == I::kPlain && a.out_mode == O::kAddF32)
    return launch_gemv<T, I::kPlain, O::kAddF32>(a, d, blocks, threads, ks, smem, stream, pdl);
  if (a.in_mode == I::kRmsNorm && a.out_mode == O::kStore)
    return launch_gemv<T, I::kRmsNorm, O::kStore>(a, d, blocks, threads, ks, smem, stream, pdl);
  if (a.in_mode == I::kRmsNorm && a.out_mode == O::kStoreF32)
    return launch_gemv<T, I::kRmsNorm, O::kStoreF32>(a, d, blocks, threads, ks, smem, stream, pdl);
  if (a.in_mode == I::kRmsNorm && a.out_mode == O::kRopeQkv)
    return launch_gemv<T, I::kRmsNorm, O::kRopeQkv>(a, d, blocks, threads, ks, smem, stream, pdl);
  if (a.in_mode == I::kSwiglu && a.out_mode == O::kAddF32)
    return launch_gemv<T, I::kSwiglu, O::kAddF32>(a, d, blocks, threads, ks, smem, stream, pdl);
  OMNIRT_FAIL("decode::gemv: unsupported input/output mode combination (",
              static_cast<int>(a.in_mode), ", ", static_cast<int>(a.out_mode), ")");
}

template <typename T, int D>
size_t attn_red_bytes(int G) {
  return static_cast<size_t>(attn_slots<T, D>()) * G * D * sizeof(float);
}

template <typename T, int D>
void launch_attn(const AttnDecodeArgs& a, const AttnDev& d, AttnVariant v, cudaStream_t stream,
                 bool pdl) {
  const int G = a.hq / a.hkv;
  const size_t smem = attn_red_bytes<T, D>(G);
  const dim3 block(kAttnThreads);
  if (v == AttnVariant::kCluster)
    return launch(attn_decode_cluster_kernel<T, D, kAttnCluster>, dim3(kAttnCluster, a.hkv), block,
                  smem, stream, pdl, "attention_decode", kAttnCluster, d);
  launch(attn_decode_kernel<T, D>, dim3(a.hkv, a.splits), block, smem, stream, pdl,
         "attention_decode", 0, d);
}

template <typename T>
void dispatch_attn(const AttnDecodeArgs& a, const AttnDev& d, AttnVariant v, cudaStream_t stream,
                   bool pdl) {
  switch (a.head_dim) {
    case 32:
      return launch_attn<T, 32>(a, d, v, stream, pdl);
    case 64:
      return launch_attn<T, 64>(a, d, v, stream, pdl);
    default:
      return launch_attn<T, 128>(a, d, v, stream, pdl);
  }
}

}  // namespace

bool gemv_vectorized(const GemvArgs& a) {
  return (a.k * static_cast<int64_t>(dtype_nbytes(a.dtype, 1))) % 16 == 0 && aligned16(a.w);
}

void gemv(const GemvArgs& a, cudaStream_t stream, bool pdl) {
  OMNIRT_CHECK(a.dtype == DType::F32 || a.dtype == DType::F16 || a.dtype == DType::BF16,
               "decode::gemv: dtype must be F32, F16 or BF16, got ", dtype_name(a.dtype));
  OMNIRT_CHECK(a.n > 0 && a.k > 0 && a.n < (int64_t{1} << 30) && a.k < (int64_t{1} << 30),
               "decode::gemv: bad shape N = ", a.n, ", K = ", a.k);
  OMNIRT_CHECK(a.w && a.in && a.y, "decode::gemv: null weight, input or output pointer");
  OMNIRT_CHECK(a.in_mode != GemvIn::kRmsNorm || a.norm_w,
               "decode::gemv: RMSNorm input needs the norm weights");
  // Shared memory holds x as float32; 227 KB is the sm_90 per-block limit.
  const size_t smem = static_cast<size_t>(a.k) * sizeof(float);
  OMNIRT_CHECK(smem <= 227 * 1024, "decode::gemv: K = ", a.k,
               " is too large for the staged input (", smem, " bytes of shared memory)");
  int64_t warps_needed = (a.n + kGemvRowsPerWarp - 1) / kGemvRowsPerWarp;
  // 16-byte staging loads need an aligned input (and norm weights); else scalar staging.
  const int stage_vec = aligned16(a.in) && (a.in_mode != GemvIn::kRmsNorm || aligned16(a.norm_w));
  GemvDev d{a.w,
            static_cast<int>(a.n),
            static_cast<int>(a.k),
            a.in,
            a.norm_w,
            a.eps,
            a.y,
            nullptr,
            nullptr,
            nullptr,
            nullptr,
            nullptr,
            0,
            0,
            0,
            0,
            stage_vec};
  if (a.out_mode == GemvOut::kRopeQkv) {
    const RopeQkv& r = a.rope;
    OMNIRT_CHECK(r.head_dim > 0 && r.head_dim % 2 == 0 && r.hq > 0 && r.hkv > 0,
                 "decode::gemv RoPE: bad heads (hq ", r.hq, ", hkv ", r.hkv, ", head_dim ",
                 r.head_dim, ")");
    OMNIRT_CHECK(a.n == static_cast<int64_t>(r.hq + 2 * r.hkv) * r.head_dim,
                 "decode::gemv RoPE: N = ", a.n,
                 " but (hq + 2 hkv) * head_dim = ", (r.hq + 2 * r.hkv) * r.head_dim);
    OMNIRT_CHECK(r.cos && r.sin && r.pos && r.k_cache && r.v_cache && r.max_ctx > 0,
                 "decode::gemv RoPE: null table, position or cache pointer");
    warps_needed = a.n / 2;
    d.cos = r.cos;
    d.sin = r.sin;
    d.pos = r.pos;
    d.kc = r.k_cache;
    d.vc = r.v_cache;
    d.hq = r.hq;
    d.hkv = r.hkv;
    d.d = r.head_dim;
    d.max_ctx = r.max_ctx;
  }
  const GemvShape auto_shape = gemv_auto_shape(a);
  const int ks = a.k_split > 0 ? a.k_split : auto_shape.k_split;
  const int warps = a.warps_per_block > 0 ? a.warps_per_block : auto_shape.warps_per_block;
  OMNIRT_CHECK(ks >= 1 && ks <= 4, "decode::gemv: k_split must be 1..4, got ", ks);
  OMNIRT_CHECK(ks == 1 || gemv_vectorized(a),
               "decode::gemv: k_split > 1 needs the 16-byte vector path (K * element size a "
               "multiple of 16, W 16-byte aligned)");
  OMNIRT_CHECK(warps >= 1 && warps <= 8 && warps % ks == 0, "decode::gemv: warps_per_block ", warps,
               " must be 1..8 and a multiple of k_split ", ks);
  OMNIRT_CHECK(ks == 1 || a.dtype != DType::F32,
               "decode::gemv: k_split > 1 is built for F16 and "
               "BF16 weights only");
  const int pairs = warps / ks;  // row pairs per block
  const int64_t blocks = (warps_needed + pairs - 1) / pairs;
  OMNIRT_CHECK(blocks < (int64_t{1} << 31), "decode::gemv: N = ", a.n, " is too large");
  switch (a.dtype) {
    case DType::F32:
      return dispatch_gemv<float>(a, d, static_cast<int>(blocks), warps * 32, ks, smem, stream,
                                  pdl);
    case DType::F16:
      return dispatch_gemv<__half>(a, d, static_cast<int>(blocks), warps * 32, ks, smem, stream,
                                   pdl);
    default:
      return dispatch_gemv<__nv_bfloat16>(a, d, static_cast<int>(blocks), warps * 32, ks, smem,
                                          stream, pdl);
  }
}

GemvShape gemv_auto_shape(const GemvArgs& a) {
  // 8 warps (16 rows) per block at every shape, no K split: measured on the H200 in the real
  // kernel chain's conditions (bench_ops decode/gemv_shape, docs/benchmarks.md): qkv 5.21 ->
  // 4.14 us and o_proj 3.53 -> 3.30 us against 4 warps; a K split lost at every K = 2048 shape.
  (void)a;
  return GemvShape{1, 8};
}

int attn_decode_default_splits(int hkv, int64_t max_ctx) {
  OMNIRT_CHECK(hkv > 0 && max_ctx > 0, "attn_decode_default_splits: bad hkv ", hkv, " / max_ctx ",
               max_ctx);
  const int64_t for_length = (max_ctx + kAttnMaxKeysPerSplit - 1) / kAttnMaxKeysPerSplit;
  const int64_t for_grid = (128 + hkv - 1) / hkv;
  return static_cast<int>(std::min<int64_t>(kAttnMaxSplits, std::max(for_length, for_grid)));
}

size_t attn_decode_workspace_floats(int hq, int head_dim, int splits) {
  return static_cast<size_t>(hq) * splits * (head_dim + 2);
}

void attention_decode(const AttnDecodeArgs& a, cudaStream_t stream, bool pdl) {
  OMNIRT_CHECK(a.dtype == DType::F32 || a.dtype == DType::F16 || a.dtype == DType::BF16,
               "decode::attention_decode: dtype must be F32, F16 or BF16, got ",
               dtype_name(a.dtype));
  OMNIRT_CHECK(a.head_dim == 32 || a.head_dim == 64 || a.head_dim == 128,
               "decode::attention_decode: head_dim must be 32, 64 or 128, got ", a.head_dim);
  OMNIRT_CHECK(a.hkv > 0 && a.hq > 0 && a.hq % a.hkv == 0 && a.hq / a.hkv <= kAttnMaxGroup,
               "decode::attention_decode: ", a.hq, " query heads over ", a.hkv,
               " kv heads (need a whole group of at most ", kAttnMaxGroup, ")");
  OMNIRT_CHECK(a.splits >= 1 && a.splits <= kAttnMaxSplits, "decode::attention_decode: splits ",
               a.splits, " outside [1, ", kAttnMaxSplits, "]");
  OMNIRT_CHECK(a.max_ctx > 0 && a.max_ctx <= static_cast<int64_t>(a.splits) * kAttnMaxKeysPerSplit,
               "decode::attention_decode: max_ctx ", a.max_ctx, " needs more than ", a.splits,
               " splits of ", kAttnMaxKeysPerSplit, " keys");
  OMNIRT_CHECK(a.q && a.k_cache && a.v_cache && a.pos && a.out && a.workspace && a.counters,
               "decode::attention_decode: null pointer argument");
  OMNIRT_CHECK(aligned16(a.q) && aligned16(a.k_cache) && aligned16(a.v_cache),
               "decode::attention_decode: q and the caches must be 16-byte aligned");
  const AttnDev d{a.q,   a.k_cache,   a.v_cache,
                  a.pos, a.max_ctx,   a.hq,
                  a.hkv, a.splits,    static_cast<float>(a.scale * 1.4426950408889634),
                  a.out, a.workspace, a.counters};
  // The cluster kernel wherever it applies (its blocks hold at most kAttnClusterMaxCtx / 16 keys).
  const bool cluster_fits = a.max_ctx <= kAttnClusterMaxCtx;
  OMNIRT_CHECK(a.variant != AttnVariant::kCluster || cluster_fits,
               "decode::attention_decode: the cluster kernel needs max_ctx <= ", kAttnClusterMaxCtx,
               ", got ", a.max_ctx);
  const AttnVariant v = a.variant == AttnVariant::kAuto
                            ? (cluster_fits ? AttnVariant::kCluster : AttnVariant::kSplit)
                            : a.variant;
  switch (a.dtype) {
    case DType::F32:
      return dispatch_attn<float>(a, d, v, stream, pdl);
    case DType::F16:
      return dispatch_attn<__half>(a, d, v, stream, pdl);
    default:
      return dispatch_attn<__nv_bfloat16>(a, d, v, stream, pdl);
  }
}

}  // namespace omnirt::llm::decode
