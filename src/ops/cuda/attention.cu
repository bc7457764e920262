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

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <type_traits>
#include <utility>

#include "core/cuda_check.h"
#include "core/error.h"
#include "ops/cuda/attention.h"
#include "ops/cuda/common.cuh"

namespace omnirt::ops::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kRowsPerWarp = 4;
constexpr int kRowsPerBlock = kWarps * kRowsPerWarp;
constexpr int kKeyTile = 32;

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

// Keys a block of kBlockRows rows starting at row0 visits in its split: [begin, end) (with
// causality, up to the last visible key of its latest row), and the first key that some row of
// the block cannot see (keys below it need no causal masking).
struct KeyRange {
  int begin, end, min_visible;
};
template <int kBlockRows, typename T>
__device__ __forceinline__ KeyRange block_key_range(const Params<T>& p, int64_t row0, int split) {
  int kv_end = p.seq_k;
  int min_visible = p.seq_k;
  if (p.causal) {
    const int64_t last_row = (row0 + kBlockRows < p.rows ? row0 + kBlockRows : p.rows) - 1;
    const bool spans_heads = row0 / p.seq_q != last_row / p.seq_q;
    const int64_t max_pos = spans_heads ? p.seq_q - 1 : last_row % p.seq_q;
    const int64_t min_pos = spans_heads ? 0 : row0 % p.seq_q;
    const int64_t end = max_pos + 1 + p.seq_k - p.seq_q;
    kv_end = static_cast<int>(end < p.seq_k ? end : p.seq_k);
    min_visible = static_cast<int>(min_pos + 1 + p.seq_k - p.seq_q);
  }
  const int begin = split * p.keys_per_split;
  return {begin, min(kv_end, begin + p.keys_per_split), min_visible};
}

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
  const KeyRange keys = block_key_range<kRowsPerBlock>(p, row0, split);
  for (int tile = keys.begin; tile < keys.end; tile += kKeyTile) {
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
// Tensor-core variant for F16/BF16 (FlashAttention-2 style, mma.sync m16n8k16, fp32 accumulate).
//
// Same row mapping, causal/mask rules, split-key scheme and partial format as attention_kernel.
// A block of 4 warps owns kTcRows = 64 query rows (16 per warp) and walks the keys in tiles of
// kTcKeys = 64. Everything a warp computes stays in registers:
//   - Q: the warp's 16 x D slice is loaded once into mma A fragments (ldmatrix);
//   - S = Q K^T: 16 x 64 fp32 accumulators (8 n-blocks of 8 keys), K read from shared memory
//     with ldmatrix (K stored [key][d] is exactly the "col" B operand);
//   - online softmax on the accumulators: each thread holds 2 rows (g = lane / 4 and g + 8), 16
//     columns each; row max and sum are reduced over the 4 threads of a quad by shuffles;
//   - P is rounded to T and repacked in registers as the A operand of the second product (the
//     accumulator layout of two adjacent n-blocks is the A layout of one k-step);
//   - O += P V: V stored [key][d] is the "row" B operand, read with ldmatrix.trans.
// K/V tiles are double-buffered in shared memory and filled with cp.async (16-byte chunks,
// zero-filled past the last key), so the next tile's loads overlap this tile's math. Shared
// rows are padded by 16 bytes, which makes every ldmatrix phase hit 32 distinct banks.
// Requirements (checked by the host, else the SIMT kernel runs): every row start 16-byte
// aligned, i.e. base pointers 16-byte aligned and batch/head/sequence strides multiples of 8.
// P is rounded to T before the second product (as FlashAttention does); l sums the fp32 P.
constexpr int kTcRows = 64;
constexpr int kTcKeys = 64;

template <int D>
struct TcLayout {
  static constexpr int kLd = D + 8;  // T elements per shared row (16-byte pad)
  static constexpr size_t kTileBytes = size_t{kTcKeys} * kLd * 2;
  static constexpr size_t kQ = 0;                                 // [kTcRows][kLd]
  static constexpr size_t kK = size_t{kTcRows} * kLd * 2;         // 2 stages of [kTcKeys][kLd]
  static constexpr size_t kV = kK + 2 * kTileBytes;               // 2 stages of [kTcKeys][kLd]
  static constexpr size_t kBytes = kV + 2 * kTileBytes;
};

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte global -> shared copy; src_bytes = 0 zero-fills without reading.
__device__ __forceinline__ void cp_async_16(void* dst, const void* src, bool valid) {
  const int src_bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
               "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

// c += a * b for one 16x8x16 tile; T selects the f16 or bf16 instruction.
template <typename T>
__device__ __forceinline__ void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                          uint32_t b1) {
  if constexpr (std::is_same_v<T, __half>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

// Two floats rounded to T and packed into one 32-bit register (lower address = x).
template <typename T>
__device__ __forceinline__ uint32_t pack2(float x, float y) {
  if constexpr (std::is_same_v<T, __half>) {
    const __half2 h = __floats2half2_rn(x, y);
    return *reinterpret_cast<const uint32_t*>(&h);
  } else {
    const __nv_bfloat162 h = __floats2bfloat162_rn(x, y);
    return *reinterpret_cast<const uint32_t*>(&h);
  }
}

// ---- pieces shared by the two tensor-core kernels ---------------------------------------------

// A thread's two accumulator rows: `first_row` (g of its warp's 16) and first_row + 8.
struct TcRows {
  int64_t first, pos[2];
  int visible_end[2];
  bool valid[2];
};
template <typename T>
__device__ __forceinline__ TcRows tc_rows(const Params<T>& p, int64_t first_row) {
  TcRows r;
  r.first = first_row;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int64_t row = first_row + 8 * h;
    r.valid[h] = row < p.rows;
    r.pos[h] = r.valid[h] ? row % p.seq_q : 0;
    r.visible_end[h] = p.causal ? static_cast<int>(r.pos[h] + 1 + p.seq_k - p.seq_q) : p.seq_k;
  }
  return r;
}

// One key tile's softmax step on the S accumulators (kSBlocks n-blocks of 8 keys; this thread
// holds keys 2t and 2t + 1 of rows g and g + 8): scale into log2 units, block keys past the end,
// causally hidden or masked, update the running max m and sum l, turn S into P = 2^(S - m) in
// place and rescale the O accumulators. A row with nothing visible so far keeps O = 0, l = 0.
template <typename T, int kSBlocks, int kOBlocks>
__device__ __forceinline__ void tc_softmax_tile(const Params<T>& p, int tile, int t,
                                                int min_visible, const TcRows& r,
                                                float (&s)[kSBlocks][4], float (&o)[kOBlocks][4],
                                                float (&m)[2], float (&l)[2]) {
  const bool need_mask =
      tile + kTcKeys > p.seq_k || tile + kTcKeys > min_visible || p.mask != nullptr;
#pragma unroll
  for (int n = 0; n < kSBlocks; ++n) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int h = e / 2;
      float v = s[n][e] * p.scale_log2;
      if (need_mask) {
        const int key = tile + n * 8 + 2 * t + (e % 2);
        bool blocked = !r.valid[h] || key >= r.visible_end[h] || key >= p.seq_k;
        if (!blocked && p.mask != nullptr) blocked = p.mask[r.pos[h] * p.seq_k + key] != 0;
        if (blocked) v = -INFINITY;
      }
      s[n][e] = v;
    }
  }
  float rescale[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float tile_max = -INFINITY;
#pragma unroll
    for (int n = 0; n < kSBlocks; ++n)
      tile_max = fmaxf(tile_max, fmaxf(s[n][2 * h], s[n][2 * h + 1]));
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
    const float m_new = fmaxf(m[h], tile_max);
    const float m_use = m_new == -INFINITY ? 0.f : m_new;
    rescale[h] = exp2f(m[h] - m_use);  // m[h] = -inf -> 0 (O and l are 0 anyway)
    float row_sum = 0.f;
#pragma unroll
    for (int n = 0; n < kSBlocks; ++n) {
      s[n][2 * h] = exp2f(s[n][2 * h] - m_use);  // -inf -> 0
      s[n][2 * h + 1] = exp2f(s[n][2 * h + 1] - m_use);
      row_sum += s[n][2 * h] + s[n][2 * h + 1];
    }
    row_sum += __shfl_xor_sync(0xffffffffu, row_sum, 1);
    row_sum += __shfl_xor_sync(0xffffffffu, row_sum, 2);
    l[h] = l[h] * rescale[h] + row_sum;
    m[h] = m_new;
  }
#pragma unroll
  for (int n = 0; n < kOBlocks; ++n) {
    o[n][0] *= rescale[0];
    o[n][1] *= rescale[0];
    o[n][2] *= rescale[1];
    o[n][3] *= rescale[1];
  }
}

// The thread's two rows of the result: unnormalised partials for attention_merge_kernel when the
// keys are split, else O / l in T (l == 0: every key blocked -> NaN, documented).
template <typename T, int D>
__device__ __forceinline__ void tc_write_rows(const Params<T>& p, const TcRows& r, int kv_head,
                                              int64_t batch, int split, int t,
                                              const float (&o)[D / 8][4], const float (&m)[2],
                                              const float (&l)[2]) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    if (!r.valid[h]) continue;
    const int64_t row = r.first + 8 * h;
    if (p.num_splits > 1) {
      const int64_t slot = ((batch * gridDim.y + kv_head) * p.rows + row) * p.num_splits + split;
#pragma unroll
      for (int n = 0; n < D / 8; ++n) {
        p.partial_acc[slot * D + n * 8 + 2 * t] = o[n][2 * h];
        p.partial_acc[slot * D + n * 8 + 2 * t + 1] = o[n][2 * h + 1];
      }
      if (t == 0) {
        p.partial_ml[slot * 2] = m[h];
        p.partial_ml[slot * 2 + 1] = l[h];
      }
      continue;
    }
    const int64_t head = static_cast<int64_t>(kv_head) * p.group + row / p.seq_q;
    T* out = p.out + batch * p.o_stride[0] + head * p.o_stride[1] + r.pos[h] * p.o_stride[2];
    const float inv_l = l[h] > 0.f ? 1.f / l[h] : NAN;
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      out[n * 8 + 2 * t] = from_float<T>(o[n][2 * h] * inv_l);
      out[n * 8 + 2 * t + 1] = from_float<T>(o[n][2 * h + 1] * inv_l);
    }
  }
}

template <typename T, int D>
__global__ void __launch_bounds__(kThreads) attention_tc_kernel(const Params<T> p) {
  static_assert(D % 32 == 0, "head_dim must be a multiple of 32");
  using L = TcLayout<D>;
  constexpr int kChunks = D / 8;     // 16-byte chunks per row
  constexpr int kKSteps = D / 16;    // k-steps of S = Q K^T
  constexpr int kSBlocks = kTcKeys / 8;  // n-blocks of S (8 keys each)
  constexpr int kOBlocks = D / 8;    // n-blocks of O (8 dims each)
  extern __shared__ __align__(128) unsigned char smem[];
  T* q_s = reinterpret_cast<T*>(smem + L::kQ);
  T* k_s = reinterpret_cast<T*>(smem + L::kK);  // stage s at + s * kTcKeys * kLd
  T* v_s = reinterpret_cast<T*>(smem + L::kV);

  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int g = lane / 4;  // accumulator row within the warp's 16 (and g + 8)
  const int t = lane % 4;  // accumulator column pair
  const int kv_head = blockIdx.y;
  const int64_t batch = blockIdx.z;
  const int split = blockIdx.x % p.num_splits;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x / p.num_splits) * kTcRows;

  const KeyRange keys = block_key_range<kTcRows>(p, row0, split);
  const int key_begin = keys.begin, key_end = keys.end;

  const T* k_base = p.k + batch * p.k_stride[0] + kv_head * p.k_stride[1];
  const T* v_base = p.v + batch * p.v_stride[0] + kv_head * p.v_stride[1];
  auto load_kv_tile = [&](int tile, int stage) {
    T* k_dst = k_s + stage * kTcKeys * L::kLd;
    T* v_dst = v_s + stage * kTcKeys * L::kLd;
    for (int idx = threadIdx.x; idx < kTcKeys * kChunks; idx += kThreads) {
      const int j = idx / kChunks, c = idx % kChunks;
      const int key = tile + j;
      const bool valid = key < p.seq_k;
      const int64_t src_key = valid ? key : 0;
      cp_async_16(k_dst + j * L::kLd + c * 8, k_base + src_key * p.k_stride[2] + c * 8, valid);
      cp_async_16(v_dst + j * L::kLd + c * 8, v_base + src_key * p.v_stride[2] + c * 8, valid);
    }
  };

  // Group 0: the query rows (zero past the end) and the first K/V tile.
  for (int idx = threadIdx.x; idx < kTcRows * kChunks; idx += kThreads) {
    const int r = idx / kChunks, c = idx % kChunks;
    const int64_t row = row0 + r;
    const bool valid = row < p.rows;
    const int64_t head = valid ? static_cast<int64_t>(kv_head) * p.group + row / p.seq_q : 0;
    const int64_t pos = valid ? row % p.seq_q : 0;
    cp_async_16(q_s + r * L::kLd + c * 8,
                p.q + batch * p.q_stride[0] + head * p.q_stride[1] + pos * p.q_stride[2] + c * 8,
                valid);
  }
  if (key_begin < key_end) load_kv_tile(key_begin, 0);
  cp_async_commit();

  const TcRows rows = tc_rows(p, row0 + warp * 16 + g);
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
  float o[kOBlocks][4];
#pragma unroll
  for (int n = 0; n < kOBlocks; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  uint32_t q_frag[kKSteps][4];

  int stage = 0;
  bool first = true;
  for (int tile = key_begin; tile < key_end; tile += kTcKeys, stage ^= 1) {
    // Prefetch the next tile into the other stage, then wait for this one.
    const int next = tile + kTcKeys;
    if (next < key_end) load_kv_tile(next, stage ^ 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    if (first) {
      // ldmatrix x4 of a 16x16 A tile: lanes 0-15 address rows 0-15 (cols +0), 16-31 cols +8.
#pragma unroll
      for (int ks = 0; ks < kKSteps; ++ks) {
        ldmatrix_x4(q_frag[ks],
                    q_s + (warp * 16 + (lane % 16)) * L::kLd + ks * 16 + (lane / 16) * 8);
      }
      first = false;
    }
    const T* k_tile = k_s + stage * kTcKeys * L::kLd;
    const T* v_tile = v_s + stage * kTcKeys * L::kLd;

    // S = Q K^T.
    float s[kSBlocks][4];
#pragma unroll
    for (int n = 0; n < kSBlocks; ++n) {
      s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
#pragma unroll
      for (int ks = 0; ks < kKSteps; ks += 2) {
        // Matrices: keys n*8 + (lane % 8), dims ks*16 + (lane / 8) * 8 -> b0, b1 of k-step ks
        // and b0, b1 of k-step ks + 1.
        uint32_t b[4];
        ldmatrix_x4(b, k_tile + (n * 8 + (lane % 8)) * L::kLd + ks * 16 + (lane / 8) * 8);
        mma_16816<T>(s[n], q_frag[ks], b[0], b[1]);
        mma_16816<T>(s[n], q_frag[ks + 1], b[2], b[3]);
      }
    }

    tc_softmax_tile(p, tile, t, keys.min_visible, rows, s, o, m, l);

    // O += P V, one k-step per 16 keys (S n-blocks 2j and 2j + 1).
#pragma unroll
    for (int j = 0; j < kTcKeys / 16; ++j) {
      uint32_t a[4];
      a[0] = pack2<T>(s[2 * j][0], s[2 * j][1]);
      a[1] = pack2<T>(s[2 * j][2], s[2 * j][3]);
      a[2] = pack2<T>(s[2 * j + 1][0], s[2 * j + 1][1]);
      a[3] = pack2<T>(s[2 * j + 1][2], s[2 * j + 1][3]);
#pragma unroll
      for (int n = 0; n < kOBlocks; n += 2) {
        // Matrices (transposed): keys j*16 + (lane % 16), dims n*8 + (lane / 16) * 8 ->
        // b0, b1 of O n-block n and b0, b1 of n-block n + 1.
        uint32_t b[4];
        ldmatrix_x4_trans(b, v_tile + (j * 16 + (lane % 16)) * L::kLd + n * 8 + (lane / 16) * 8);
        mma_16816<T>(o[n], a, b[0], b[1]);
        mma_16816<T>(o[n + 1], a, b[2], b[3]);
      }
    }
    __syncthreads();  // this stage is refilled by the prefetch two iterations from now
  }
  cp_async_wait<0>();
  tc_write_rows<T, D>(p, rows, kv_head, batch, split, t, o, m, l);
}

// ---------------------------------------------------------------------------------------------
// TF32 tensor-core variant for F32 inputs, when the caller allows TF32 (AttentionOptions::
// allow_tf32; the same trade as cuBLAS's TF32 GEMMs: 10-bit mantissa products, fp32 sums).
//
// The structure of attention_tc_kernel, with mma.sync m16n8k8 on tf32 operands and fp32 tiles
// in shared memory (rows padded by 4 floats):
//   - Q fragments (A, 16 x 8 per k-step) and K fragments (B) are read with ldmatrix, which moves
//     32-bit elements correctly when each 8x8 "b16" matrix is seen as 8 rows of 4 floats;
//   - P never leaves registers: the S accumulator of an 8-key n-block holds, per thread, keys
//     2t and 2t + 1 of rows g and g + 8. The P V k-step over those 8 keys uses them as A columns
//     t and t + 4, i.e. keys are visited in the order (0, 2, 4, 6, 1, 3, 5, 7); V's B fragment
//     is read in the same order (rows 2t and 2t + 1) with plain 32-bit shared loads, which the
//     68-float row stride keeps free of bank conflicts. A permutation of the keys inside a
//     k-step leaves the sum unchanged.
// Every operand is rounded to tf32 (cvt.rna) as it enters a fragment.
template <int D>
struct Tf32Layout {
  static constexpr int kLd = D + 4;  // floats per shared row
  static constexpr size_t kTileBytes = size_t{kTcKeys} * kLd * 4;
  static constexpr size_t kQ = 0;
  static constexpr size_t kK = size_t{kTcRows} * kLd * 4;
  static constexpr size_t kV = kK + 2 * kTileBytes;
  static constexpr size_t kBytes = kV + 2 * kTileBytes;
};

__device__ __forceinline__ uint32_t to_tf32(float x) {
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
  return r;
}

__device__ __forceinline__ void mma_1688_tf32(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                              uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

template <int D>
__global__ void __launch_bounds__(kThreads) attention_tf32_kernel(const Params<float> p) {
  static_assert(D % 32 == 0, "head_dim must be a multiple of 32");
  using L = Tf32Layout<D>;
  constexpr int kChunks = D / 4;         // 16-byte chunks per row
  constexpr int kKSteps = D / 8;         // k-steps of S = Q K^T
  constexpr int kSBlocks = kTcKeys / 8;  // n-blocks of S (8 keys each) = k-steps of P V
  constexpr int kOBlocks = D / 8;        // n-blocks of O
  extern __shared__ __align__(128) unsigned char smem[];
  float* q_s = reinterpret_cast<float*>(smem + L::kQ);
  float* k_s = reinterpret_cast<float*>(smem + L::kK);
  float* v_s = reinterpret_cast<float*>(smem + L::kV);

  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int g = lane / 4;
  const int t = lane % 4;
  const int kv_head = blockIdx.y;
  const int64_t batch = blockIdx.z;
  const int split = blockIdx.x % p.num_splits;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x / p.num_splits) * kTcRows;

  const KeyRange keys = block_key_range<kTcRows>(p, row0, split);
  const int key_begin = keys.begin, key_end = keys.end;

  const float* k_base = p.k + batch * p.k_stride[0] + kv_head * p.k_stride[1];
  const float* v_base = p.v + batch * p.v_stride[0] + kv_head * p.v_stride[1];
  auto load_kv_tile = [&](int tile, int stage) {
    float* k_dst = k_s + stage * kTcKeys * L::kLd;
    float* v_dst = v_s + stage * kTcKeys * L::kLd;
    for (int idx = threadIdx.x; idx < kTcKeys * kChunks; idx += kThreads) {
      const int j = idx / kChunks, c = idx % kChunks;
      const int key = tile + j;
      const bool valid = key < p.seq_k;
      const int64_t src_key = valid ? key : 0;
      cp_async_16(k_dst + j * L::kLd + c * 4, k_base + src_key * p.k_stride[2] + c * 4, valid);
      cp_async_16(v_dst + j * L::kLd + c * 4, v_base + src_key * p.v_stride[2] + c * 4, valid);
    }
  };
  for (int idx = threadIdx.x; idx < kTcRows * kChunks; idx += kThreads) {
    const int r = idx / kChunks, c = idx % kChunks;
    const int64_t row = row0 + r;
    const bool valid = row < p.rows;
    const int64_t head = valid ? static_cast<int64_t>(kv_head) * p.group + row / p.seq_q : 0;
    const int64_t pos = valid ? row % p.seq_q : 0;
    cp_async_16(q_s + r * L::kLd + c * 4,
                p.q + batch * p.q_stride[0] + head * p.q_stride[1] + pos * p.q_stride[2] + c * 4,
                valid);
  }
  if (key_begin < key_end) load_kv_tile(key_begin, 0);
  cp_async_commit();

  const TcRows rows = tc_rows(p, row0 + warp * 16 + g);
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
  float o[kOBlocks][4];
#pragma unroll
  for (int n = 0; n < kOBlocks; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  uint32_t q_frag[kKSteps][4];

  int stage = 0;
  bool first = true;
  for (int tile = key_begin; tile < key_end; tile += kTcKeys, stage ^= 1) {
    const int next = tile + kTcKeys;
    if (next < key_end) load_kv_tile(next, stage ^ 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    if (first) {
      // Matrices 0-3: rows 0-7 / 8-15 of the warp's 16, floats [k0, k0+4) / [k0+4, k0+8).
#pragma unroll
      for (int ks = 0; ks < kKSteps; ++ks) {
        uint32_t r[4];
        ldmatrix_x4(r, q_s + (warp * 16 + (lane % 8) + ((lane / 8) % 2) * 8) * L::kLd + ks * 8 +
                           (lane / 16) * 4);
#pragma unroll
        for (int e = 0; e < 4; ++e) q_frag[ks][e] = to_tf32(__uint_as_float(r[e]));
      }
      first = false;
    }
    const float* k_tile = k_s + stage * kTcKeys * L::kLd;
    const float* v_tile = v_s + stage * kTcKeys * L::kLd;

    float s[kSBlocks][4];
#pragma unroll
    for (int n = 0; n < kSBlocks; ++n) {
      s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
#pragma unroll
      for (int ks = 0; ks < kKSteps; ks += 2) {
        // Keys n*8 + (lane % 8); floats ks*8 + (lane / 8) * 4: b0, b1 of k-steps ks and ks + 1.
        uint32_t b[4];
        ldmatrix_x4(b, k_tile + (n * 8 + (lane % 8)) * L::kLd + ks * 8 + (lane / 8) * 4);
        mma_1688_tf32(s[n], q_frag[ks], to_tf32(__uint_as_float(b[0])),
                      to_tf32(__uint_as_float(b[1])));
        mma_1688_tf32(s[n], q_frag[ks + 1], to_tf32(__uint_as_float(b[2])),
                      to_tf32(__uint_as_float(b[3])));
      }
    }

    tc_softmax_tile(p, tile, t, keys.min_visible, rows, s, o, m, l);

    // O += P V, one k-step per 8 keys in the order (0, 2, 4, 6, 1, 3, 5, 7) (see above).
#pragma unroll
    for (int j = 0; j < kSBlocks; ++j) {
      const uint32_t a[4] = {to_tf32(s[j][0]), to_tf32(s[j][2]), to_tf32(s[j][1]),
                             to_tf32(s[j][3])};
      const float* v_even = v_tile + (j * 8 + 2 * t) * L::kLd + g;
#pragma unroll
      for (int n = 0; n < kOBlocks; ++n) {
        mma_1688_tf32(o[n], a, to_tf32(v_even[n * 8]), to_tf32(v_even[L::kLd + n * 8]));
      }
    }
    __syncthreads();
  }
  cp_async_wait<0>();
  tc_write_rows<float, D>(p, rows, kv_head, batch, split, t, o, m, l);
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

// How many key chunks: forced by the caller, or enough to give the GPU `blocks_per_sm` blocks
// per SM when the plain grid is smaller than that, with chunks of at least 64 keys. (The PETR
// cross-attention, 1156 queries x 8 heads over 9600 keys, is 152 tensor-core blocks unsplit:
// one 4-warp block per SM leaves the tensor cores waiting on memory and exp.)
int choose_splits(const AttentionDims& dims, int64_t base_blocks, int blocks_per_sm) {
  if (dims.kv_splits > 0) return dims.kv_splits;
  const int64_t want_blocks = int64_t{blocks_per_sm} * sm_count();
  if (base_blocks >= want_blocks / 2 || dims.seq_k < 256) return 1;
  const int64_t by_grid = (want_blocks + base_blocks - 1) / base_blocks;
  const int64_t by_keys = dims.seq_k / 64;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>({by_grid, by_keys, 64})));
}

// Whether every row (head_dim elements) of a [B, H, S, D] view starts on a 16-byte boundary.
bool rows_16byte_aligned(const Tensor& t) {
  if (reinterpret_cast<uintptr_t>(t.raw()) % 16 != 0) return false;
  const int64_t per_chunk = 16 / static_cast<int64_t>(dtype_nbytes(t.dtype(), 1));
  for (int i = 0; i < 3; ++i) {
    if (t.dim(i) > 1 && t.strides()[i] % per_chunk != 0) return false;
  }
  return t.dim(3) % per_chunk == 0;
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

  // Tensor cores for F16/BF16 when there are enough rows to fill their 64-row blocks and every
  // row can be copied in 16-byte chunks.
  // F32 inputs use the tensor cores only in TF32 mode (allow_tf32).
  const bool tc_dtype = !std::is_same_v<T, float> || dims.allow_tf32;
  OMNIRT_CHECK(tc_dtype || dims.kernel != AttentionKernel::TensorCore,
               "attention (CUDA): the tensor-core kernel needs F16 or BF16 inputs, or F32 with "
               "allow_tf32");
  const bool aligned = rows_16byte_aligned(q) && rows_16byte_aligned(k) && rows_16byte_aligned(v);
  OMNIRT_CHECK(aligned || dims.kernel != AttentionKernel::TensorCore,
               "attention (CUDA): the tensor-core kernel needs 16-byte aligned rows (base "
               "pointers 16-byte aligned, batch/head/sequence strides multiples of 16 bytes)");
  const bool use_tc = tc_dtype && (dims.kernel == AttentionKernel::TensorCore ||
                                   (dims.kernel == AttentionKernel::Auto && p.rows >= 32 && aligned));
  const int rows_per_block = use_tc ? kTcRows : kRowsPerBlock;
  const int key_tile = use_tc ? kTcKeys : kKeyTile;

  const int64_t row_blocks = (p.rows + rows_per_block - 1) / rows_per_block;
  const int64_t base_blocks = row_blocks * dims.heads_kv * dims.batch;
  // Resident blocks per SM: the tensor-core kernel fits 3 (136 registers x 128 threads, 46 KB
  // of shared memory at D = 64); the SIMT kernel is sized for 2.
  int splits = choose_splits(dims, base_blocks, use_tc ? 3 : 2);
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
      } else {
        constexpr size_t smem = Tf32Layout<D>::kBytes;
        OMNIRT_CUDA_CHECK(cudaFuncSetAttribute(attention_tf32_kernel<D>,
                                               cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               static_cast<int>(smem)));
        attention_tf32_kernel<D><<<grid, kThreads, smem, stream>>>(p);
        OMNIRT_CUDA_CHECK_LAUNCH("attention_tf32_kernel");
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
