// Fused attention kernel (flash-attention style, SIMT, fp32 math).
//
// Work split. GQA lets several query heads share one kv head, so a thread block owns one
// (batch, kv head) pair and a tile of kRowsPerBlock "query rows" taken from the flattened
// list of (query head in the group, query position) pairs: row r -> head = kv_head * group +
// r / Sq, position = r % Sq. All of a block's rows read the same K/V, so each K/V tile loaded
// into shared memory serves up to kRowsPerBlock rows (for decode with 8 query heads per kv
// head, the 8 heads share one pass over the cache).
//
// Per K/V tile of kKeyTile = 32 keys (one key per lane):
//   1. the block loads K and V (converted to float) into shared memory;
//   2. each warp takes its kRowsPerWarp rows; lane j computes the score of key j against the
//      row's query (q is pre-scaled by scale * log2(e) so exp2 gives the softmax exponent),
//      blocked keys (past the end, causal, mask) get -inf;
//   3. online softmax: new running max m' = max(m, max_j s_j); the old accumulator and
//      denominator are rescaled by 2^(m - m'); p_j = 2^(s_j - m'); l += sum p_j;
//   4. acc[d] += sum_j p_j V[j][d], lane owning dims d = lane + 32 c (p_j broadcast by shuffle).
// At the end out = acc / l. l == 0 means every key was blocked: NaN is written on purpose
// (documented, PyTorch's behaviour). The Sq x Sk score matrix never exists.
//
// Split keys (flash-decoding). When the grid is too small to fill the GPU (decode: one block
// per kv head), the keys are cut into `num_splits` chunks of `keys_per_split` (a multiple of
// the tile, so tiles never straddle chunks) handled by separate blocks. Each block then writes
// its unnormalised (m, l, acc) per row to a float workspace and a second kernel merges them:
// M = max_s m_s, l = sum_s l_s 2^(m_s - M), out = sum_s acc_s 2^(m_s - M) / l.
//
// Shared memory rows are padded to D + 1 floats so that lane j reading row j (step 2) hits
// 32 different banks.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <type_traits>
#include <utility>

#include "core/cuda_check.h"
#include "core/error.h"
#include "ops/cuda/attention.h"

namespace omnirt::ops::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kRowsPerWarp = 4;
constexpr int kRowsPerBlock = kWarps * kRowsPerWarp;
constexpr int kKeyTile = 32;

template <typename T>
__device__ __forceinline__ float to_float(T x);
template <>
__device__ __forceinline__ float to_float<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ float to_float<__half>(__half x) {
  return __half2float(x);
}
template <>
__device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 x) {
  return __bfloat162float(x);
}

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float x) {
  return __float2half_rn(x);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

__device__ __forceinline__ float warp_max(float x) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, offset));
  }
  return x;
}
__device__ __forceinline__ float warp_sum(float x) {
  for (int offset = 16; offset > 0; offset >>= 1) x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}

template <typename T>
struct Params {
  const T* q;
  const T* k;
  const T* v;
  T* out;
  const uint8_t* mask;  // [Sq, Sk] or nullptr
  // Element strides of the batch, head and sequence dims (head_dim is contiguous).
  int64_t q_stride[3], k_stride[3], v_stride[3], o_stride[3];
  int group;  // query heads per kv head
  int seq_q, seq_k;
  int64_t rows;      // group * seq_q: rows per (batch, kv head)
  float scale_log2;  // scale * log2(e)
  bool causal;
  int num_splits;      // 1: no split, out written directly
  int keys_per_split;  // multiple of kKeyTile
  float* partial_acc;  // [B * Hkv * rows, num_splits, D] when num_splits > 1
  float* partial_ml;   // [B * Hkv * rows, num_splits, 2] (running max in log2 units, sum)
};

template <typename T, int D>
__global__ void __launch_bounds__(kThreads) attention_kernel(const Params<T> p) {
  static_assert(D % 32 == 0, "head_dim must be a multiple of 32");
  constexpr int kDimsPerLane = D / 32;
  __shared__ float q_s[kRowsPerBlock][D];
  __shared__ float k_s[kKeyTile][D + 1];
  __shared__ float v_s[kKeyTile][D + 1];

  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int kv_head = blockIdx.y;
  const int64_t batch = blockIdx.z;
  const int split = blockIdx.x % p.num_splits;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x / p.num_splits) * kRowsPerBlock;

  // Load (and pre-scale) this block's query rows.
  for (int idx = threadIdx.x; idx < kRowsPerBlock * D; idx += kThreads) {
    const int r = idx / D, e = idx % D;
    const int64_t row = row0 + r;
    float val = 0.f;
    if (row < p.rows) {
      const int64_t head = static_cast<int64_t>(kv_head) * p.group + row / p.seq_q;
      const int64_t pos = row % p.seq_q;
      val = to_float(p.q[batch * p.q_stride[0] + head * p.q_stride[1] + pos * p.q_stride[2] + e]) *
            p.scale_log2;
    }
    q_s[r][e] = val;
  }

  // Keys this block needs: with causality, up to the last visible key of its latest row.
  int kv_end = p.seq_k;
  if (p.causal) {
    const int64_t last_row = (row0 + kRowsPerBlock < p.rows ? row0 + kRowsPerBlock : p.rows) - 1;
    const bool spans_heads = row0 / p.seq_q != last_row / p.seq_q;
    const int64_t max_pos = spans_heads ? p.seq_q - 1 : last_row % p.seq_q;
    const int64_t end = max_pos + 1 + p.seq_k - p.seq_q;
    kv_end = static_cast<int>(end < p.seq_k ? end : p.seq_k);
  }

  // Per-row state for this warp's rows.
  int64_t pos[kRowsPerWarp];
  int visible_end[kRowsPerWarp];  // keys >= this are causally hidden
  bool valid[kRowsPerWarp];
  float m[kRowsPerWarp], l[kRowsPerWarp], acc[kRowsPerWarp][kDimsPerLane];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int64_t row = row0 + warp * kRowsPerWarp + r;
    valid[r] = row < p.rows;
    pos[r] = valid[r] ? row % p.seq_q : 0;
    visible_end[r] = p.causal ? static_cast<int>(pos[r] + 1 + p.seq_k - p.seq_q) : p.seq_k;
    m[r] = -INFINITY;
    l[r] = 0.f;
#pragma unroll
    for (int c = 0; c < kDimsPerLane; ++c) acc[r][c] = 0.f;
  }

  const T* k_base = p.k + batch * p.k_stride[0] + kv_head * p.k_stride[1];
  const T* v_base = p.v + batch * p.v_stride[0] + kv_head * p.v_stride[1];

  // This block's chunk of keys (all of them without a split).
  const int key_begin = split * p.keys_per_split;
  const int key_end = min(kv_end, key_begin + p.keys_per_split);
  for (int tile = key_begin; tile < key_end; tile += kKeyTile) {
    __syncthreads();  // everyone is done with the previous tile (and q_s is written)
    for (int idx = threadIdx.x; idx < kKeyTile * D; idx += kThreads) {
      const int j = idx / D, e = idx % D;
      const int key = tile + j;
      float kv = 0.f, vv = 0.f;
      if (key < p.seq_k) {
        kv = to_float(k_base[key * p.k_stride[2] + e]);
        vv = to_float(v_base[key * p.v_stride[2] + e]);
      }
      k_s[j][e] = kv;
      v_s[j][e] = vv;
    }
    __syncthreads();

    const int key = tile + lane;  // this lane's key for the score step
    float k_reg[D];
#pragma unroll
    for (int e = 0; e < D; ++e) k_reg[e] = k_s[lane][e];

#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      if (!valid[r]) continue;  // warp-uniform
      const float* q_row = q_s[warp * kRowsPerWarp + r];
      float s = 0.f;
#pragma unroll
      for (int e = 0; e < D; ++e) s = fmaf(q_row[e], k_reg[e], s);
      bool blocked = key >= visible_end[r] || key >= p.seq_k;
      if (!blocked && p.mask != nullptr) blocked = p.mask[pos[r] * p.seq_k + key] != 0;
      if (blocked) s = -INFINITY;

      const float m_new = fmaxf(m[r], warp_max(s));
      if (m_new == -INFINITY) continue;           // nothing visible yet for this row (warp-uniform)
      const float rescale = exp2f(m[r] - m_new);  // 0 when m[r] was -inf
      const float prob = exp2f(s - m_new);        // 0 for blocked keys
      l[r] = l[r] * rescale + warp_sum(prob);
      m[r] = m_new;
#pragma unroll
      for (int c = 0; c < kDimsPerLane; ++c) acc[r][c] *= rescale;
#pragma unroll 8
      for (int j = 0; j < kKeyTile; ++j) {
        const float pj = __shfl_sync(0xffffffffu, prob, j);
#pragma unroll
        for (int c = 0; c < kDimsPerLane; ++c)
          acc[r][c] = fmaf(pj, v_s[j][lane + 32 * c], acc[r][c]);
      }
    }
  }

#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    if (!valid[r]) continue;
    const int64_t row = row0 + warp * kRowsPerWarp + r;
    if (p.num_splits > 1) {
      // Unnormalised partial result of this chunk; merged by attention_merge_kernel.
      const int64_t slot = ((batch * gridDim.y + kv_head) * p.rows + row) * p.num_splits + split;
#pragma unroll
      for (int c = 0; c < kDimsPerLane; ++c) p.partial_acc[slot * D + lane + 32 * c] = acc[r][c];
      if (lane == 0) {
        p.partial_ml[slot * 2] = m[r];
        p.partial_ml[slot * 2 + 1] = l[r];
      }
      continue;
    }
    const int64_t head = static_cast<int64_t>(kv_head) * p.group + row / p.seq_q;
    T* o_row = p.out + batch * p.o_stride[0] + head * p.o_stride[1] + pos[r] * p.o_stride[2];
    // l == 0: every key blocked -> NaN, documented (PyTorch's behaviour).
    const float inv_l = l[r] > 0.f ? 1.f / l[r] : NAN;
#pragma unroll
    for (int c = 0; c < kDimsPerLane; ++c) o_row[lane + 32 * c] = from_float<T>(acc[r][c] * inv_l);
  }
}

// One warp per (batch, kv head, row): merges the num_splits partial results.
template <typename T, int D>
__global__ void __launch_bounds__(kThreads)
    attention_merge_kernel(const Params<T> p, int heads_kv, int64_t total_rows) {
  constexpr int kDimsPerLane = D / 32;
  const int64_t rid = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (rid >= total_rows) return;  // whole warp
  const float* ml = p.partial_ml + rid * p.num_splits * 2;
  const float* acc = p.partial_acc + rid * p.num_splits * D;
  float m_max = -INFINITY;
  for (int s = 0; s < p.num_splits; ++s) m_max = fmaxf(m_max, ml[s * 2]);
  float l = 0.f, out[kDimsPerLane];
#pragma unroll
  for (int c = 0; c < kDimsPerLane; ++c) out[c] = 0.f;
  if (m_max != -INFINITY) {
    for (int s = 0; s < p.num_splits; ++s) {
      const float w = exp2f(ml[s * 2] - m_max);  // 0 for chunks that saw no visible key
      l += ml[s * 2 + 1] * w;
#pragma unroll
      for (int c = 0; c < kDimsPerLane; ++c) out[c] += acc[s * D + lane + 32 * c] * w;
    }
  }
  const int64_t row = rid % p.rows;
  const int64_t kv_head = (rid / p.rows) % heads_kv;
  const int64_t batch = rid / (p.rows * heads_kv);
  const int64_t head = kv_head * p.group + row / p.seq_q;
  const int64_t pos = row % p.seq_q;
  T* o_row = p.out + batch * p.o_stride[0] + head * p.o_stride[1] + pos * p.o_stride[2];
  const float inv_l = l > 0.f ? 1.f / l : NAN;  // every key blocked -> NaN (documented)
#pragma unroll
  for (int c = 0; c < kDimsPerLane; ++c) o_row[lane + 32 * c] = from_float<T>(out[c] * inv_l);
}

// ---------------------------------------------------------------------------------------------
// Tensor-core variant for F16/BF16 (WMMA 16x16x16, fp32 accumulation).
//
// Same row mapping, causal/mask rules, split-key scheme and partial format as attention_kernel,
// with bigger tiles: a block owns kTcRows = 64 query rows (16 per warp) and walks the keys in
// tiles of kTcKeys = 64. Per tile and warp:
//   S[16, 64] = Q_w K^T on tensor cores, stored to shared memory as float;
//   softmax step in plain code: lanes 2r and 2r+1 own row r (32 columns each), apply scale,
//     causal and mask, update the running max m and sum l, write P = 2^(S - m) in T, and
//     rescale the row of the float accumulator O (kept in shared memory, because WMMA's
//     accumulator layout is opaque and the per-row rescale needs to know rows);
//   O[16, D] += P V on tensor cores (O loaded from and stored back to shared memory).
// P is rounded to T before the second product (as FlashAttention does); l uses fp32 P.
constexpr int kTcRows = 64;
constexpr int kTcKeys = 64;

template <int D>
struct TcLayout {
  static constexpr int kLdh = D + 8;        // T elements per Q/K/V row in shared memory
  static constexpr int kLdS = kTcKeys + 4;  // floats per S row
  static constexpr int kLdP = kTcKeys + 8;  // T elements per P row
  static constexpr int kLdO = D + 4;        // floats per O row
  // Byte offsets; every section size is a multiple of 128 bytes, keeping WMMA's 32-byte
  // pointer alignment for each 16-row/16-column fragment.
  static constexpr size_t kQ = 0;
  static constexpr size_t kK = kQ + size_t{kTcRows} * kLdh * 2;
  static constexpr size_t kV = kK + size_t{kTcKeys} * kLdh * 2;
  static constexpr size_t kS = kV + size_t{kTcKeys} * kLdh * 2;
  static constexpr size_t kP = kS + size_t{kWarps} * 16 * kLdS * 4;
  static constexpr size_t kO = kP + size_t{kWarps} * 16 * kLdP * 2;
  static constexpr size_t kBytes = kO + size_t{kWarps} * 16 * kLdO * 4;
};

template <typename T, int D>
__global__ void __launch_bounds__(kThreads) attention_tc_kernel(const Params<T> p) {
  using namespace nvcuda;
  using L = TcLayout<D>;
  extern __shared__ __align__(128) unsigned char smem[];
  T* q_s = reinterpret_cast<T*>(smem + L::kQ);
  T* k_s = reinterpret_cast<T*>(smem + L::kK);
  T* v_s = reinterpret_cast<T*>(smem + L::kV);
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  float* s_w = reinterpret_cast<float*>(smem + L::kS) + warp * 16 * L::kLdS;
  T* p_w = reinterpret_cast<T*>(smem + L::kP) + warp * 16 * L::kLdP;
  float* o_w = reinterpret_cast<float*>(smem + L::kO) + warp * 16 * L::kLdO;

  const int kv_head = blockIdx.y;
  const int64_t batch = blockIdx.z;
  const int split = blockIdx.x % p.num_splits;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x / p.num_splits) * kTcRows;

  // Query rows (unscaled, in T); rows past the end are zero.
  for (int idx = threadIdx.x; idx < kTcRows * D; idx += kThreads) {
    const int r = idx / D, e = idx % D;
    const int64_t row = row0 + r;
    T val = from_float<T>(0.f);
    if (row < p.rows) {
      const int64_t head = static_cast<int64_t>(kv_head) * p.group + row / p.seq_q;
      const int64_t pos = row % p.seq_q;
      val = p.q[batch * p.q_stride[0] + head * p.q_stride[1] + pos * p.q_stride[2] + e];
    }
    q_s[r * L::kLdh + e] = val;
  }
  for (int idx = lane; idx < 16 * L::kLdO; idx += 32) o_w[idx] = 0.f;

  int kv_end = p.seq_k;
  if (p.causal) {
    const int64_t last_row = (row0 + kTcRows < p.rows ? row0 + kTcRows : p.rows) - 1;
    const bool spans_heads = row0 / p.seq_q != last_row / p.seq_q;
    const int64_t max_pos = spans_heads ? p.seq_q - 1 : last_row % p.seq_q;
    const int64_t end = max_pos + 1 + p.seq_k - p.seq_q;
    kv_end = static_cast<int>(end < p.seq_k ? end : p.seq_k);
  }

  // Softmax ownership: lanes 2r, 2r+1 hold row r of this warp's 16; `half` picks 32 columns.
  const int my_r = lane / 2;
  const int half = lane % 2;
  const int64_t my_row = row0 + warp * 16 + my_r;
  const bool my_valid = my_row < p.rows;
  const int64_t my_pos = my_valid ? my_row % p.seq_q : 0;
  const int my_visible_end = p.causal ? static_cast<int>(my_pos + 1 + p.seq_k - p.seq_q) : p.seq_k;
  float m = -INFINITY, l = 0.f;

  const T* k_base = p.k + batch * p.k_stride[0] + kv_head * p.k_stride[1];
  const T* v_base = p.v + batch * p.v_stride[0] + kv_head * p.v_stride[1];
  const int key_begin = split * p.keys_per_split;
  const int key_end = min(kv_end, key_begin + p.keys_per_split);
  for (int tile = key_begin; tile < key_end; tile += kTcKeys) {
    __syncthreads();  // previous tile fully consumed; q_s written on the first pass
    for (int idx = threadIdx.x; idx < kTcKeys * D; idx += kThreads) {
      const int j = idx / D, e = idx % D;
      const int key = tile + j;
      T kv = from_float<T>(0.f), vv = from_float<T>(0.f);
      if (key < p.seq_k) {
        kv = k_base[key * p.k_stride[2] + e];
        vv = v_base[key * p.v_stride[2] + e];
      }
      k_s[j * L::kLdh + e] = kv;
      v_s[j * L::kLdh + e] = vv;
    }
    __syncthreads();

    // S = Q_w K^T. K is stored [key][d], i.e. K^T column-major with leading dimension kLdh.
#pragma unroll
    for (int n = 0; n < kTcKeys / 16; ++n) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> s_frag;
      wmma::fill_fragment(s_frag, 0.f);
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> q_frag;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> k_frag;
        wmma::load_matrix_sync(q_frag, q_s + (warp * 16) * L::kLdh + kk * 16, L::kLdh);
        wmma::load_matrix_sync(k_frag, k_s + (n * 16) * L::kLdh + kk * 16, L::kLdh);
        wmma::mma_sync(s_frag, q_frag, k_frag, s_frag);
      }
      wmma::store_matrix_sync(s_w + n * 16, s_frag, L::kLdS, wmma::mem_row_major);
    }
    __syncwarp();

    // Online softmax for row my_r, columns [32 * half, 32 * half + 32).
    float s[32];
    float tile_max = -INFINITY;
#pragma unroll
    for (int c = 0; c < 32; ++c) {
      const int col = half * 32 + c;
      const int key = tile + col;
      bool blocked = !my_valid || key >= my_visible_end || key >= p.seq_k;
      if (!blocked && p.mask != nullptr) blocked = p.mask[my_pos * p.seq_k + key] != 0;
      s[c] = blocked ? -INFINITY : s_w[my_r * L::kLdS + col] * p.scale_log2;
      tile_max = fmaxf(tile_max, s[c]);
    }
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
    const float m_new = fmaxf(m, tile_max);
    // A row with nothing visible so far keeps O = 0, l = 0 (rescale 1, P = 0).
    const float rescale = m_new == -INFINITY ? 1.f : exp2f(m - m_new);
    float row_sum = 0.f;
#pragma unroll
    for (int c = 0; c < 32; ++c) {
      const float prob = m_new == -INFINITY ? 0.f : exp2f(s[c] - m_new);
      row_sum += prob;
      p_w[my_r * L::kLdP + half * 32 + c] = from_float<T>(prob);
    }
    row_sum += __shfl_xor_sync(0xffffffffu, row_sum, 1);
    l = l * rescale + row_sum;
    m = m_new;
#pragma unroll
    for (int d = 0; d < D / 2; ++d) o_w[my_r * L::kLdO + half * (D / 2) + d] *= rescale;
    __syncwarp();

    // O_w += P V. V is stored [key][d]: row-major with leading dimension kLdh.
#pragma unroll
    for (int dn = 0; dn < D / 16; ++dn) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> o_frag;
      wmma::load_matrix_sync(o_frag, o_w + dn * 16, L::kLdO, wmma::mem_row_major);
#pragma unroll
      for (int kk = 0; kk < kTcKeys / 16; ++kk) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> p_frag;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> v_frag;
        wmma::load_matrix_sync(p_frag, p_w + kk * 16, L::kLdP);
        wmma::load_matrix_sync(v_frag, v_s + (kk * 16) * L::kLdh + dn * 16, L::kLdh);
        wmma::mma_sync(o_frag, p_frag, v_frag, o_frag);
      }
      wmma::store_matrix_sync(o_w + dn * 16, o_frag, L::kLdO, wmma::mem_row_major);
    }
    __syncwarp();
  }
  __syncwarp();

  if (!my_valid) return;
  const float* o_row = o_w + my_r * L::kLdO + half * (D / 2);
  if (p.num_splits > 1) {
    const int64_t slot = ((batch * gridDim.y + kv_head) * p.rows + my_row) * p.num_splits + split;
    for (int d = 0; d < D / 2; ++d) p.partial_acc[slot * D + half * (D / 2) + d] = o_row[d];
    if (half == 0) {
      p.partial_ml[slot * 2] = m;
      p.partial_ml[slot * 2 + 1] = l;
    }
    return;
  }
  const int64_t head = static_cast<int64_t>(kv_head) * p.group + my_row / p.seq_q;
  T* out = p.out + batch * p.o_stride[0] + head * p.o_stride[1] + my_pos * p.o_stride[2] +
           half * (D / 2);
  const float inv_l = l > 0.f ? 1.f / l : NAN;  // every key blocked -> NaN (documented)
  for (int d = 0; d < D / 2; ++d) out[d] = from_float<T>(o_row[d] * inv_l);
}

// Scratch for split partials: one growing buffer per (thread, device, stream), so work queued
// on different streams never shares it. Freed at thread exit (errors ignored then).
struct SplitWorkspace {
  std::map<std::pair<int, cudaStream_t>, std::pair<void*, size_t>> buffers;
  ~SplitWorkspace() {
    for (auto& [key, buf] : buffers) cudaFree(buf.first);
  }
};
thread_local SplitWorkspace t_split_ws;

void* split_workspace(size_t bytes) {
  int device = 0;
  OMNIRT_CUDA_CHECK(cudaGetDevice(&device));
  cudaStream_t stream = omnirt::cuda::current_stream();
  auto& buf = t_split_ws.buffers[{device, stream}];
  if (buf.second < bytes) {
    if (buf.first != nullptr) {
      // The old buffer may still be in use by queued kernels on this stream.
      OMNIRT_CUDA_CHECK(cudaStreamSynchronize(stream));
      OMNIRT_CUDA_CHECK(cudaFree(buf.first));
      buf = {nullptr, 0};
    }
    OMNIRT_CUDA_CHECK(cudaMalloc(&buf.first, bytes));
    buf.second = bytes;
  }
  return buf.first;
}

int sm_count() {
  thread_local int cached = 0;
  if (cached == 0) {
    int device = 0;
    OMNIRT_CUDA_CHECK(cudaGetDevice(&device));
    OMNIRT_CUDA_CHECK(cudaDeviceGetAttribute(&cached, cudaDevAttrMultiProcessorCount, device));
  }
  return cached;
}

// How many key chunks: forced by the caller, or enough to give the GPU ~2 blocks per SM when
// the plain grid is smaller than that, with chunks of at least 64 keys.
int choose_splits(const AttentionDims& dims, int64_t base_blocks) {
  if (dims.kv_splits > 0) return dims.kv_splits;
  const int64_t want_blocks = 2 * static_cast<int64_t>(sm_count());
  if (base_blocks >= want_blocks / 2 || dims.seq_k < 256) return 1;
  const int64_t by_grid = (want_blocks + base_blocks - 1) / base_blocks;
  const int64_t by_keys = dims.seq_k / 64;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>({by_grid, by_keys, 64})));
}

template <typename T>
void launch(const AttentionDims& dims, const Tensor& q, const Tensor& k, const Tensor& v,
            Tensor& out, const Tensor& mask) {
  Params<T> p{};
  p.q = static_cast<const T*>(q.raw());
  p.k = static_cast<const T*>(k.raw());
  p.v = static_cast<const T*>(v.raw());
  p.out = static_cast<T*>(out.raw());
  p.mask = mask.defined() ? static_cast<const uint8_t*>(mask.raw()) : nullptr;
  for (int i = 0; i < 3; ++i) {
    p.q_stride[i] = q.strides()[i];
    p.k_stride[i] = k.strides()[i];
    p.v_stride[i] = v.strides()[i];
    p.o_stride[i] = out.strides()[i];
  }
  p.group = static_cast<int>(dims.heads_q / dims.heads_kv);
  p.seq_q = static_cast<int>(dims.seq_q);
  p.seq_k = static_cast<int>(dims.seq_k);
  p.rows = dims.seq_q * p.group;
  p.scale_log2 = dims.scale * 1.4426950408889634f;
  p.causal = dims.causal;

  // Tensor cores for F16/BF16 when there are enough rows to fill their 64-row blocks.
  bool use_tc = false;
  if constexpr (!std::is_same_v<T, float>) {
    use_tc = dims.kernel == AttentionKernel::TensorCore ||
             (dims.kernel == AttentionKernel::Auto && p.rows >= 32);
  } else {
    OMNIRT_CHECK(dims.kernel != AttentionKernel::TensorCore,
                 "attention (CUDA): the tensor-core kernel needs F16 or BF16 inputs, got F32");
  }
  const int rows_per_block = use_tc ? kTcRows : kRowsPerBlock;
  const int key_tile = use_tc ? kTcKeys : kKeyTile;

  const int64_t row_blocks = (p.rows + rows_per_block - 1) / rows_per_block;
  const int64_t base_blocks = row_blocks * dims.heads_kv * dims.batch;
  int splits = choose_splits(dims, base_blocks);
  // Chunks are whole tiles (so tiles never straddle chunks); recompute the count so that no
  // chunk starts past the last key.
  const int64_t per_split_tiles =
      (dims.seq_k + int64_t{key_tile} * splits - 1) / (int64_t{key_tile} * splits);
  p.keys_per_split = static_cast<int>(per_split_tiles * key_tile);
  splits = static_cast<int>((dims.seq_k + p.keys_per_split - 1) / p.keys_per_split);
  p.num_splits = splits;
  OMNIRT_CHECK(row_blocks * splits <= std::numeric_limits<int32_t>::max() &&
                   dims.heads_kv <= 65535 && dims.batch <= 65535,
               "attention (CUDA): grid too large (", row_blocks, " row blocks x ", splits,
               " key splits, ", dims.heads_kv, " kv heads, batch ", dims.batch, ")");
  const int64_t total_rows = dims.batch * dims.heads_kv * p.rows;
  if (splits > 1) {
    const size_t acc_floats = static_cast<size_t>(total_rows) * splits * dims.head_dim;
    const size_t ml_floats = static_cast<size_t>(total_rows) * splits * 2;
    float* ws = static_cast<float*>(split_workspace((acc_floats + ml_floats) * sizeof(float)));
    p.partial_acc = ws;
    p.partial_ml = ws + acc_floats;
  }
  const dim3 grid(static_cast<unsigned>(row_blocks * splits), static_cast<unsigned>(dims.heads_kv),
                  static_cast<unsigned>(dims.batch));
  const unsigned merge_blocks = static_cast<unsigned>((total_rows + kWarps - 1) / kWarps);
  cudaStream_t stream = omnirt::cuda::current_stream();
  const int heads_kv = static_cast<int>(dims.heads_kv);

  auto run = [&](auto head_dim) {
    constexpr int D = decltype(head_dim)::value;
    if (use_tc) {
      if constexpr (!std::is_same_v<T, float>) {
        constexpr size_t smem = TcLayout<D>::kBytes;
        // Opt in to more than 48 KiB of dynamic shared memory (per device and thread; cheap).
        OMNIRT_CUDA_CHECK(cudaFuncSetAttribute(attention_tc_kernel<T, D>,
                                               cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               static_cast<int>(smem)));
        attention_tc_kernel<T, D><<<grid, kThreads, smem, stream>>>(p);
        OMNIRT_CUDA_CHECK_LAUNCH("attention_tc_kernel");
      }
    } else {
      attention_kernel<T, D><<<grid, kThreads, 0, stream>>>(p);
      OMNIRT_CUDA_CHECK_LAUNCH("attention_kernel");
    }
    if (splits > 1) {
      attention_merge_kernel<T, D><<<merge_blocks, kThreads, 0, stream>>>(p, heads_kv, total_rows);
      OMNIRT_CUDA_CHECK_LAUNCH("attention_merge_kernel");
    }
  };
  switch (dims.head_dim) {
    case 32:
      run(std::integral_constant<int, 32>{});
      break;
    case 64:
      run(std::integral_constant<int, 64>{});
      break;
    case 128:
      run(std::integral_constant<int, 128>{});
      break;
    default:
      OMNIRT_FAIL("attention (CUDA): unsupported head_dim ", dims.head_dim);
  }
}

}  // namespace

void attention(const AttentionDims& dims, const Tensor& q, const Tensor& k, const Tensor& v,
               Tensor& out, const Tensor& mask) {
  OMNIRT_CHECK(dims.seq_q <= std::numeric_limits<int32_t>::max() &&
                   dims.seq_k <= std::numeric_limits<int32_t>::max(),
               "attention (CUDA): sequence lengths must fit in 32 bits");
  switch (q.dtype()) {
    case DType::F32:
      launch<float>(dims, q, k, v, out, mask);
      break;
    case DType::F16:
      launch<__half>(dims, q, k, v, out, mask);
      break;
    case DType::BF16:
      launch<__nv_bfloat16>(dims, q, k, v, out, mask);
      break;
    default:
      OMNIRT_FAIL("attention (CUDA): unsupported dtype ", dtype_name(q.dtype()));
  }
}

}  // namespace omnirt::ops::cuda
