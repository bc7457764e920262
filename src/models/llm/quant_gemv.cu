// Dequantising decode GEMVs (INT4, NVFP4, FP8 E4M3); see quant_gemv.h.
//
// Structure (the fp16 GEMV's, decode_kernels.cu, with 4- or 8-bit weights): one warp per row
// pair, 8 warps per block; per lane, 16-byte loads of both rows (32 4-bit or 16 FP8 weights each),
// up to 4 per row issued together before the PDL wait (a 2048-column INT4 row is 64 such chunks,
// an FP8 one 128, so one batch covers it and the whole matrix is in flight at once). The input
// vector is staged once per block in shared memory as float32 with the preceding op fused in, in
// "planes": chunk c's E values (E = 32, FP8 16) are E/4 float4s at float4 index p * chunks + c
// (p = 0..E/4-1), so lanes reading consecutive chunks read consecutive float4s (no bank
// conflicts). Each chunk's dot product is accumulated in float32 and multiplied by its scale once
// (INT4: one scale per chunk since G % 32 == 0; NVFP4: one per 16-value half; FP8: the row scale,
// once per row in the epilogue).
//
// Dequantisation without conversions or tables:
//   INT4: w ^ 0x88888888 turns each two's-complement nibble q into q + 8 in [0, 15]; OR-ing it
//   into the mantissa of 2^23 gives the float 2^23 + q + 8 exactly, minus (2^23 + 8) = q.
//   NVFP4: E2M1 (s, e1 e0, m) placed at float bits 31 and 24..22 is exactly value * 2^-126 (e = 0
//   is E2M1's subnormal 0 / 0.5 and float's subnormal alike). Products of such tiny values with x
//   would underflow, so the staged x is pre-multiplied by 2^64 and the result by 2^62. E4M3 scale
//   bits placed at float bits 31 and 26..20 are the scale * 2^-120 (subnormals included).
//   FP8: the same E4M3 placement for the weights (value * 2^-120), with x pre-multiplied by 2^64
//   like NVFP4's (a subnormal weight times a small x stays a normal float), and the result by
//   2^56 * the row scale.
#include "models/llm/quant_gemv.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <limits>
#include <utility>

#include "core/cuda_check.h"
#include "core/error.h"
#include "ops/cuda/common.cuh"

namespace omnirt::llm::decode {
namespace {

using ops::cuda::from_float;
using ops::cuda::to_float;

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
__device__ float block_sum(float v, float* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (blockDim.x + 31) >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) red[warp] = v;
  __syncthreads();
  return warp_sum(lane < nwarps ? red[lane] : 0.f);
}
__device__ __forceinline__ float silu(float g) { return g / (1.0f + __expf(-g)); }

constexpr int kRowsPerWarp = 2;
constexpr int kBatch = 4;   // 16-byte chunks per row per lane in flight
constexpr int kWarps = 8;   // per block
constexpr int kChunk = 32;  // 4-bit weights per 16-byte chunk
constexpr float kNvfpXPre = 18446744073709551616.f;  // 2^64
constexpr float kNvfpYPost = 4611686018427387904.f;  // 2^62
constexpr float kE4m3Post = 1.329227995784916e36f;   // 2^120
constexpr float kFp8YPost = 72057594037927936.f;     // 2^56 (= 2^120 / 2^64)

// Weights per 16-byte chunk, and bytes per row.
template <WeightFormat F>
__host__ __device__ constexpr int chunk_elems() {
  return F == WeightFormat::kFp8 ? 16 : kChunk;
}
template <WeightFormat F>
__device__ __forceinline__ int64_t row_bytes(int k) {
  return F == WeightFormat::kFp8 ? k : (k >> 1);
}
// E4M3 bits at float bits 31 and 26..20: the E4M3 value * 2^-120 exactly (subnormals too).
__device__ __forceinline__ float e4m3_scaled(uint32_t b) {
  return __uint_as_float(((b & 0x7Fu) << 20) | ((b & 0x80u) << 24));
}

struct QDev {
  const uint8_t* codes;
  const void* scales;
  int groups;  // scale entries per row (INT4: K / G; NVFP4: K / 16)
  int g;       // INT4 group size; 16 for NVFP4
  float global_scale;
  const float* in_scale;
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
  int stage_vec;  // input, norm weights and in_scale 16-byte aligned (and K % 4 == 0)
};

// x[k] after the fused input op (scalar loads; used by the scalar path and unaligned inputs).
template <typename T, GemvIn IN>
__device__ __forceinline__ float input_at(const QDev& a, int k, float inv) {
  if constexpr (IN == GemvIn::kRmsNorm) {
    return a.norm_w[k] * (__ldcg(static_cast<const float*>(a.in) + k) * inv);
  } else if constexpr (IN == GemvIn::kSwiglu) {
    const T* x = static_cast<const T*>(a.in);
    return silu(to_float(__ldcg(x + k))) * to_float(__ldcg(x + a.k + k));
  } else {
    return to_float(__ldcg(static_cast<const T*>(a.in) + k));
  }
}

// Four consecutive x values from k0 (k0 % 4 == 0) with 8/16-byte loads (stage_vec only).
template <typename T, GemvIn IN>
__device__ __forceinline__ float4 input4_at(const QDev& a, int k0, float inv) {
  if constexpr (IN == GemvIn::kRmsNorm) {
    const float4 v = __ldcg(reinterpret_cast<const float4*>(static_cast<const float*>(a.in) + k0));
    const float4 w = __ldg(reinterpret_cast<const float4*>(a.norm_w + k0));
    return make_float4(w.x * (v.x * inv), w.y * (v.y * inv), w.z * (v.z * inv), w.w * (v.w * inv));
  } else {
    const T* x = static_cast<const T*>(a.in);
    const uint2 raw = __ldcg(reinterpret_cast<const uint2*>(x + k0));
    const T* e = reinterpret_cast<const T*>(&raw);
    float4 r = make_float4(to_float(e[0]), to_float(e[1]), to_float(e[2]), to_float(e[3]));
    if constexpr (IN == GemvIn::kSwiglu) {
      const uint2 rawu = __ldcg(reinterpret_cast<const uint2*>(x + a.k + k0));
      const T* u = reinterpret_cast<const T*>(&rawu);
      r = make_float4(silu(r.x) * to_float(u[0]), silu(r.y) * to_float(u[1]),
                      silu(r.z) * to_float(u[2]), silu(r.w) * to_float(u[3]));
    }
    return r;
  }
}

// Dot product of one 16-byte chunk with the staged x of chunk c, times its scale(s). `sbits`:
// INT4 the group scale's float bits; NVFP4 the two E4M3 block scale bytes; FP8 unused (the row
// scale is applied in the epilogue).
template <WeightFormat F>
__device__ __forceinline__ float chunk_dot(const uint4& wv, uint32_t sbits, const float4* xs4,
                                           int c, int chunks) {
  const uint32_t words[4] = {wv.x, wv.y, wv.z, wv.w};
  if constexpr (F == WeightFormat::kFp8) {
    float part = 0.f;
#pragma unroll
    for (int p = 0; p < 4; ++p) {  // plane p: elements 4p..4p+3 = bytes 0..3 of word p
      const float4 x = xs4[p * chunks + c];
      const uint32_t v = words[p];
      part = fmaf(e4m3_scaled(v), x.x, part);
      part = fmaf(e4m3_scaled(v >> 8), x.y, part);
      part = fmaf(e4m3_scaled(v >> 16), x.z, part);
      part = fmaf(e4m3_scaled(v >> 24), x.w, part);
    }
    return part;
  } else if constexpr (F == WeightFormat::kInt4) {
    float part = 0.f;
#pragma unroll
    for (int p = 0; p < 8; ++p) {  // plane p: elements 4p..4p+3 = nibbles 4(p&1).. of word p/2
      const float4 x = xs4[p * chunks + c];
      const uint32_t v = (words[p >> 1] ^ 0x88888888u) >> (16 * (p & 1));
      const float xv[4] = {x.x, x.y, x.z, x.w};
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        // Nibble j masked in place (no shift): the float 2^23 + (q + 8) * 16^j, exactly; one
        // FMA scales it by 16^-j and subtracts 2^23 / 16^j + 8, giving q exactly.
        const float f = __uint_as_float((v & (0xFu << (4 * j))) | 0x4B000000u);
        const float inv = 1.f / static_cast<float>(1 << (4 * j));
        const float q = fmaf(f, inv, -(8388608.f * inv + 8.f));
        part = fmaf(q, xv[j], part);
      }
    }
    return part * __uint_as_float(sbits);
  } else {
    float half_part[2] = {0.f, 0.f};
#pragma unroll
    for (int p = 0; p < 8; ++p) {
      const float4 x = xs4[p * chunks + c];
      const uint32_t v = words[p >> 1] >> (16 * (p & 1));
      const float xv[4] = {x.x, x.y, x.z, x.w};
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const uint32_t nib = v >> (4 * j);
        const float q = __uint_as_float(((nib & 7u) << 22) | ((nib & 8u) << 28));
        half_part[p >> 2] = fmaf(q, xv[j], half_part[p >> 2]);
      }
    }
    const uint32_t s0 = sbits & 0xFF, s1 = (sbits >> 8) & 0xFF;
    const float f0 = __uint_as_float(((s0 & 0x7Fu) << 20) | ((s0 & 0x80u) << 24)) * kE4m3Post;
    const float f1 = __uint_as_float(((s1 & 0x7Fu) << 20) | ((s1 & 0x80u) << 24)) * kE4m3Post;
    return fmaf(half_part[0], f0, half_part[1] * f1);
  }
}

// Scalar path: weight (row, k) as a float (scales and the NVFP4 global scale applied; FP8: without
// the row scale, which the epilogue applies).
template <WeightFormat F>
__device__ __forceinline__ float weight_at(const QDev& a, int row, int k) {
  if constexpr (F == WeightFormat::kFp8)
    return e4m3_scaled(a.codes[static_cast<int64_t>(row) * a.k + k]) * kE4m3Post;
  const uint8_t byte = a.codes[static_cast<int64_t>(row) * (a.k >> 1) + (k >> 1)];
  const uint32_t nib = (k & 1) ? (byte >> 4) : (byte & 0xF);
  if constexpr (F == WeightFormat::kInt4) {
    const int q = nib >= 8 ? static_cast<int>(nib) - 16 : static_cast<int>(nib);
    return static_cast<float>(q) *
           static_cast<const float*>(a.scales)[static_cast<int64_t>(row) * a.groups + k / a.g];
  } else {
    const float q = __uint_as_float(((nib & 7u) << 22) | ((nib & 8u) << 28)) * 8.507059e37f;  // 2^126
    const uint32_t s = static_cast<const uint8_t*>(a.scales)[static_cast<int64_t>(row) * a.groups + k / 16];
    const float sf = __uint_as_float(((s & 0x7Fu) << 20) | ((s & 0x80u) << 24)) * kE4m3Post;
    return q * (sf * a.global_scale);
  }
}

// The epilogue for one row pair (r0, r1), results acc0 * post0, acc1 * post1 (lane 0 only).
template <typename T, GemvOut OUT>
__device__ __forceinline__ void store_pair(const QDev& a, int r0, int r1, bool has1, float acc0,
                                           float acc1, float post0, float post1) {
  acc0 *= post0;
  acc1 *= post1;
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
    y[r0] = __ldcg(y + r0) + acc0;
    if (has1) y[r1] = __ldcg(y + r1) + acc1;
  } else {  // kRopeQkv: has1 holds (N is a whole number of heads)
    const int D = a.d, half = D >> 1, head = r0 / D, i = r0 - head * D;
    const int p = __ldcg(a.pos);
    const float c = a.cos[static_cast<int64_t>(p) * half + i];
    const float s = a.sin[static_cast<int64_t>(p) * half + i];
    const float ra = acc0 * c - acc1 * s, rb = acc1 * c + acc0 * s;
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

template <typename T, WeightFormat F, GemvIn IN, GemvOut OUT, bool VEC>
__global__ void __launch_bounds__(kWarps * 32, 2) quant_gemv_kernel(const QDev a) {
  extern __shared__ float4 xs4[];  // K floats
  float* xs = reinterpret_cast<float*>(xs4);
  __shared__ float red[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int N = a.n, K = a.k;
  // Row pairs: RoPE pairs (i, i + D/2) of one head (rotated together), else (2p, 2p + 1). The
  // grid may be smaller than the number of pairs (capped at what is resident at once, so that
  // fewer blocks redo the input staging): each warp then takes pairs gw, gw + stride, ...
  const int pairs = OUT == GemvOut::kRopeQkv ? N / 2 : (N + 1) / 2;
  const int stride = gridDim.x * kWarps;
  int pair = blockIdx.x * kWarps + warp;
  int r0 = 0, r1 = 0;
  auto set_rows = [&](int pr) {
    if constexpr (OUT == GemvOut::kRopeQkv) {
      const int half = a.d >> 1;
      r0 = (pr / half) * a.d + pr % half;
      r1 = r0 + half;
    } else {
      r0 = pr * kRowsPerWarp;
      r1 = r0 + 1;
    }
  };
  constexpr int CE = chunk_elems<F>();
  const int chunks = VEC ? K / CE : 0;
  uint4 b0[kBatch], b1[kBatch];
  uint32_t s0[kBatch], s1[kBatch];
  // FP8 row scales of the current pair (loaded with its first weights; lane 0 uses them).
  float rs0 = 1.f, rs1 = 1.f;
  // Loads chunks base + u * 32 + lane of rows r0, r1 (rows past N read row N - 1: valid memory,
  // never stored).
  auto load_batch = [&](int base) {
    const int rr0 = min(r0, N - 1), rr1 = min(r1, N - 1);
    const uint4* v0 = reinterpret_cast<const uint4*>(a.codes + rr0 * row_bytes<F>(K));
    const uint4* v1 = reinterpret_cast<const uint4*>(a.codes + rr1 * row_bytes<F>(K));
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const int c = base + u * 32 + lane;
      if (c < chunks) {
        b0[u] = __ldg(v0 + c);
        b1[u] = __ldg(v1 + c);
        if constexpr (F == WeightFormat::kFp8) {
          // no per-chunk scale
        } else if constexpr (F == WeightFormat::kInt4) {
          const float* sc = static_cast<const float*>(a.scales);
          const int gi = (c * kChunk) / a.g;
          s0[u] = __float_as_uint(__ldg(sc + static_cast<int64_t>(rr0) * a.groups + gi));
          s1[u] = __float_as_uint(__ldg(sc + static_cast<int64_t>(rr1) * a.groups + gi));
        } else {  // two E4M3 bytes (blocks 2c, 2c + 1), 2-byte aligned
          const uint16_t* sc = static_cast<const uint16_t*>(a.scales);
          s0[u] = __ldg(sc + static_cast<int64_t>(rr0) * (a.groups >> 1) + c);
          s1[u] = __ldg(sc + static_cast<int64_t>(rr1) * (a.groups >> 1) + c);
        }
      }
    }
  };
  auto load_row_scales = [&] {
    if constexpr (F == WeightFormat::kFp8) {
      const float* sc = static_cast<const float*>(a.scales);
      rs0 = __ldg(sc + min(r0, N - 1));
      rs1 = __ldg(sc + min(r1, N - 1));
    }
  };
  set_rows(min(pair, pairs - 1));
  if constexpr (VEC) load_batch(0);  // weights depend on no earlier kernel
  load_row_scales();
  // Let the next kernel launch now, so that its weights stream while this one waits and
  // computes (the dense GEMV does the same: decode_kernels.cu). Safe: the next kernel reads what
  // this one writes, and writes what this one reads (the residual), only after its own
  // griddepcontrol.wait, which waits for this whole grid; and the next kernel launches only
  // once every block of this grid has passed this point (is resident), so it cannot starve it.
  // (Measured: no gain with the default capped grid, which leaves no room to overlap; neutral.)
  pdl_launch_dependents();
  pdl_wait();

  // Stage x once per block.
  float inv = 0.f;
  if constexpr (IN == GemvIn::kRmsNorm) {
    const float* x = static_cast<const float*>(a.in);
    float ss = 0.f;
    if (a.stage_vec) {
      for (int i = threadIdx.x; i < (K >> 2); i += blockDim.x) {
        const float4 v = __ldcg(reinterpret_cast<const float4*>(x) + i);
        ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
      }
    } else {
      for (int k = threadIdx.x; k < K; k += blockDim.x) {
        const float v = __ldcg(x + k);
        ss += v * v;
      }
    }
    ss = block_sum(ss, red);
    inv = rsqrtf(ss / static_cast<float>(K) + a.eps);
  }
  const float pre = (VEC && F != WeightFormat::kInt4) ? kNvfpXPre : 1.f;
  if constexpr (VEC) {
    for (int i = threadIdx.x; i < (K >> 2); i += blockDim.x) {
      const int k0 = i * 4;
      float4 v;
      if (a.stage_vec) {
        v = input4_at<T, IN>(a, k0, inv);
        if (a.in_scale) {
          const float4 s = __ldg(reinterpret_cast<const float4*>(a.in_scale + k0));
          v = make_float4(v.x * s.x, v.y * s.y, v.z * s.z, v.w * s.w);
        }
      } else {
        float e[4];
#pragma unroll
        for (int j = 0; j < 4; ++j)
          e[j] = input_at<T, IN>(a, k0 + j, inv) * (a.in_scale ? a.in_scale[k0 + j] : 1.f);
        v = make_float4(e[0], e[1], e[2], e[3]);
      }
      const int c = k0 / CE, p = (k0 % CE) >> 2;
      xs4[p * chunks + c] = make_float4(v.x * pre, v.y * pre, v.z * pre, v.w * pre);
    }
  } else {
    for (int k = threadIdx.x; k < K; k += blockDim.x)
      xs[k] = input_at<T, IN>(a, k, inv) * (a.in_scale ? a.in_scale[k] : 1.f);
  }
  __syncthreads();
  // No block-wide barrier below: warps run their pairs independently (the loop is warp-uniform).

  for (; pair < pairs; pair += stride) {
    const bool has1 = r1 < N;  // r0 < N always (pair < pairs)
    float acc0 = 0.f, acc1 = 0.f;
    if constexpr (VEC) {
      for (int base = 0;; base += kBatch * 32) {
#pragma unroll
        for (int u = 0; u < kBatch; ++u) {
          const int c = base + u * 32 + lane;
          if (c < chunks) {
            acc0 += chunk_dot<F>(b0[u], s0[u], xs4, c, chunks);
            acc1 += chunk_dot<F>(b1[u], s1[u], xs4, c, chunks);
          }
        }
        if (base + kBatch * 32 >= chunks) break;  // warp-uniform
        load_batch(base + kBatch * 32);
      }
    } else {
      const int rr1 = min(r1, N - 1);
      for (int k = lane; k < K; k += 32) {
        acc0 = fmaf(weight_at<F>(a, r0, k), xs[k], acc0);
        acc1 = fmaf(weight_at<F>(a, rr1, k), xs[k], acc1);
      }
    }
    const int out0 = r0, out1 = r1;
    // Scale of the results: NVFP4 (16-byte path) undoes the 2^64 pre-scaling of x and the 2^-126
    // of the E2M1 bits and applies the global scale; FP8 applies the row scales (and, 16-byte
    // path, undoes 2^64 and the 2^-120 of the E4M3 bits).
    float post0 = 1.f, post1 = 1.f;
    if constexpr (F == WeightFormat::kNvfp4 && VEC) {
      post0 = post1 = a.global_scale * kNvfpYPost;
    } else if constexpr (F == WeightFormat::kFp8) {
      post0 = rs0 * (VEC ? kFp8YPost : 1.f);
      post1 = rs1 * (VEC ? kFp8YPost : 1.f);
    }
    // The next pair's first loads go out before this pair's reduction and stores.
    if (pair + stride < pairs) {
      set_rows(pair + stride);
      if constexpr (VEC) load_batch(0);
      load_row_scales();
    }
    acc0 = warp_sum(acc0);
    acc1 = warp_sum(acc1);
    if (lane == 0) store_pair<T, OUT>(a, out0, out1, has1, acc0, acc1, post0, post1);
  }
}

// ---------------------------------------------------------------------------------------------
// Host side

template <typename Kernel>
void launch(Kernel kernel, int blocks, size_t smem, cudaStream_t stream, bool pdl, const QDev& d) {
  if (smem > 32 * 1024)
    OMNIRT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(smem)));
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(static_cast<unsigned>(blocks));
  cfg.blockDim = dim3(kWarps * 32);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = pdl ? 1 : 0;
  const cudaError_t err = cudaLaunchKernelEx(&cfg, kernel, d);
  if (err != cudaSuccess)
    OMNIRT_FAIL("CUDA kernel quant_gemv failed to launch: ", cudaGetErrorName(err), " (",
                cudaGetErrorString(err), ")");
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <typename T, WeightFormat F, GemvIn IN, GemvOut OUT>
void launch_mode(const QuantGemvArgs& a, const QDev& d, int blocks, size_t smem,
                 cudaStream_t stream, bool pdl) {
  if (quant_gemv_vectorized(a))
    launch(quant_gemv_kernel<T, F, IN, OUT, true>, blocks, smem, stream, pdl, d);
  else
    launch(quant_gemv_kernel<T, F, IN, OUT, false>, blocks, smem, stream, pdl, d);
}

template <typename T, WeightFormat F>
void dispatch_mode(const QuantGemvArgs& a, const QDev& d, int blocks, size_t smem,
                   cudaStream_t stream, bool pdl) {
  using I = GemvIn;
  using O = GemvOut;
  if (a.in_mode == I::kPlain && a.out_mode == O::kStore)
    return launch_mode<T, F, I::kPlain, O::kStore>(a, d, blocks, smem, stream, pdl);
  if (a.in_mode == I::kPlain && a.out_mode == O::kStoreF32)
    return launch_mode<T, F, I::kPlain, O::kStoreF32>(a, d, blocks, smem, stream, pdl);
  if (a.in_mode == I::kPlain && a.out_mode == O::kAddF32)
    return launch_mode<T, F, I::kPlain, O::kAddF32>(a, d, blocks, smem, stream, pdl);
  if (a.in_mode == I::kRmsNorm && a.out_mode == O::kStore)
    return launch_mode<T, F, I::kRmsNorm, O::kStore>(a, d, blocks, smem, stream, pdl);
  if (a.in_mode == I::kRmsNorm && a.out_mode == O::kStoreF32)
    return launch_mode<T, F, I::kRmsNorm, O::kStoreF32>(a, d, blocks, smem, stream, pdl);
  if (a.in_mode == I::kRmsNorm && a.out_mode == O::kRopeQkv)
    return launch_mode<T, F, I::kRmsNorm, O::kRopeQkv>(a, d, blocks, smem, stream, pdl);
  if (a.in_mode == I::kSwiglu && a.out_mode == O::kAddF32)
    return launch_mode<T, F, I::kSwiglu, O::kAddF32>(a, d, blocks, smem, stream, pdl);
  OMNIRT_FAIL("decode::quant_gemv: unsupported input/output mode combination (",
              static_cast<int>(a.in_mode), ", ", static_cast<int>(a.out_mode), ")");
}

template <typename T>
void dispatch_format(const QuantGemvArgs& a, const QDev& d, int blocks, size_t smem,
                     cudaStream_t stream, bool pdl) {
  if (a.format == WeightFormat::kInt4)
    dispatch_mode<T, WeightFormat::kInt4>(a, d, blocks, smem, stream, pdl);
  else if (a.format == WeightFormat::kNvfp4)
    dispatch_mode<T, WeightFormat::kNvfp4>(a, d, blocks, smem, stream, pdl);
  else
    dispatch_mode<T, WeightFormat::kFp8>(a, d, blocks, smem, stream, pdl);
}

// Weights per scale: INT4 G, NVFP4 16, FP8 K (one per row).
int64_t effective_group(const QuantGemvArgs& a) {
  if (a.format == WeightFormat::kNvfp4) return 16;
  if (a.format == WeightFormat::kFp8) return a.k;
  return a.group_size;
}

}  // namespace

const char* weight_format_name(WeightFormat f) {
  switch (f) {
    case WeightFormat::kInt4: return "int4";
    case WeightFormat::kNvfp4: return "nvfp4";
    case WeightFormat::kFp8: return "fp8";
  }
  return "?";
}

bool quant_gemv_vectorized(const QuantGemvArgs& a) {
  if (a.format == WeightFormat::kFp8)
    return a.k % chunk_elems<WeightFormat::kFp8>() == 0 && aligned16(a.codes);
  if (a.k % kChunk != 0 || !aligned16(a.codes)) return false;
  if (a.format == WeightFormat::kNvfp4)  // a chunk's two E4M3 scales are read as one uint16
    return reinterpret_cast<uintptr_t>(a.scales) % 2 == 0;
  return a.group_size % kChunk == 0 && reinterpret_cast<uintptr_t>(a.scales) % 4 == 0;
}

size_t quant_gemv_weight_bytes(const QuantGemvArgs& a) {
  const int64_t g = effective_group(a);
  const size_t scale_bytes = a.format == WeightFormat::kNvfp4 ? 1 : 4;
  const int64_t code_bytes = a.format == WeightFormat::kFp8 ? a.k : a.k / 2;
  return static_cast<size_t>(a.n * code_bytes) +
         (g > 0 ? static_cast<size_t>(a.n * (a.k / g)) * scale_bytes : 0);
}

void quant_gemv(const QuantGemvArgs& a, cudaStream_t stream, bool pdl) {
  const char* fmt = weight_format_name(a.format);
  OMNIRT_CHECK(a.dtype == DType::F16 || a.dtype == DType::BF16, "decode::quant_gemv (", fmt,
               "): activation dtype must be F16 or BF16, got ", dtype_name(a.dtype));
  OMNIRT_CHECK(a.n > 0 && a.k > 0 && a.n < (int64_t{1} << 30) && a.k < (int64_t{1} << 30),
               "decode::quant_gemv (", fmt, "): bad shape N = ", a.n, ", K = ", a.k);
  OMNIRT_CHECK(a.format == WeightFormat::kFp8 || a.k % 2 == 0, "decode::quant_gemv (", fmt,
               "): K = ", a.k, " must be even (two 4-bit values per byte)");
  const int64_t g = effective_group(a);
  if (a.format == WeightFormat::kFp8)
    OMNIRT_CHECK(reinterpret_cast<uintptr_t>(a.scales) % 4 == 0,
                 "decode::quant_gemv (fp8): the F32 row scales must be 4-byte aligned");
  else if (a.format == WeightFormat::kInt4)
    OMNIRT_CHECK(g > 0 && g % 2 == 0 && a.k % g == 0, "decode::quant_gemv (int4): group size ",
                 a.group_size, " must be even and divide K = ", a.k);
  else
    OMNIRT_CHECK(a.k % 16 == 0, "decode::quant_gemv (nvfp4): K = ", a.k,
                 " must be a multiple of 16 (the E4M3 scale block)");
  OMNIRT_CHECK(a.codes && a.scales && a.in && a.y, "decode::quant_gemv (", fmt,
               "): null codes, scales, input or output pointer");
  OMNIRT_CHECK(a.in_mode != GemvIn::kRmsNorm || a.norm_w, "decode::quant_gemv (", fmt,
               "): RMSNorm input needs the norm weights");
  const size_t smem = static_cast<size_t>(a.k) * sizeof(float);
  OMNIRT_CHECK(smem <= 227 * 1024, "decode::quant_gemv (", fmt, "): K = ", a.k,
               " is too large for the staged input (", smem, " bytes of shared memory)");
  int64_t warps_needed = (a.n + kRowsPerWarp - 1) / kRowsPerWarp;
  const int stage_vec = a.k % 4 == 0 && aligned16(a.in) &&
                        (a.in_mode != GemvIn::kRmsNorm || aligned16(a.norm_w)) &&
                        (!a.in_scale || aligned16(a.in_scale));
  QDev d{};
  d.codes = a.codes;
  d.scales = a.scales;
  d.g = static_cast<int>(g);
  d.groups = static_cast<int>(a.k / g);
  d.global_scale = a.global_scale;
  d.in_scale = a.in_scale;
  d.n = static_cast<int>(a.n);
  d.k = static_cast<int>(a.k);
  d.in = a.in;
  d.norm_w = a.norm_w;
  d.eps = a.eps;
  d.y = a.y;
  d.stage_vec = stage_vec;
  if (a.out_mode == GemvOut::kRopeQkv) {
    const RopeQkv& r = a.rope;
    OMNIRT_CHECK(r.head_dim > 0 && r.head_dim % 2 == 0 && r.hq > 0 && r.hkv > 0,
                 "decode::quant_gemv RoPE: bad heads (hq ", r.hq, ", hkv ", r.hkv, ", head_dim ",
                 r.head_dim, ")");
    OMNIRT_CHECK(a.n == static_cast<int64_t>(r.hq + 2 * r.hkv) * r.head_dim,
                 "decode::quant_gemv RoPE: N = ", a.n, " but (hq + 2 hkv) * head_dim = ",
                 (r.hq + 2 * r.hkv) * r.head_dim);
    OMNIRT_CHECK(r.cos && r.sin && r.pos && r.k_cache && r.v_cache && r.max_ctx > 0,
                 "decode::quant_gemv RoPE: null table, position or cache pointer");
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
  // At most the blocks resident at once (2 per SM by the launch bounds) by default: a bigger
  // matrix is covered by warps looping over row pairs, so fewer blocks repeat the input staging.
  // Measured on the H200 against one row pair per warp (the dense GEMV's grid, max_blocks = a
  // huge cap; bench_ops .../graph_uncapped): gate_up INT4 10.3 vs 12.4 us, FP8 9.95 vs 13.6 us,
  // qkv and down equal; INT4 TPOT 0.970 vs 1.025 ms (docs/benchmarks.md).
  static const int resident = [] {
    int dev = 0, sms = 0;
    OMNIRT_CUDA_CHECK(cudaGetDevice(&dev));
    OMNIRT_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    return 2 * sms;
  }();
  OMNIRT_CHECK(a.max_blocks >= 0, "decode::quant_gemv: max_blocks must be >= 0, got ", a.max_blocks);
  const int64_t cap = a.max_blocks > 0 ? a.max_blocks : resident;
  const int64_t blocks = std::min<int64_t>((warps_needed + kWarps - 1) / kWarps, cap);
  if (a.dtype == DType::F16)
    dispatch_format<__half>(a, d, static_cast<int>(blocks), smem, stream, pdl);
  else
    dispatch_format<__nv_bfloat16>(a, d, static_cast<int>(blocks), smem, stream, pdl);
}

}  // namespace omnirt::llm::decode
