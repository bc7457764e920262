// Fused ViT kernels (ops/fused.h).
//
// swiglu_layernorm: one thread block per row, like the norm kernels. Pass 1 computes the SwiGLU
//   values, writes them (rounded to T) to the output row and sums them; passes 2 and 3 re-read
//   that row (each thread only its own elements, so no barrier is needed between its write and
//   read; the row is a few KB and stays in L1/L2) for the variance and the normalisation.
//   Versus swiglu_concat + layernorm this saves writing and re-reading the hidden tensor in DRAM
//   and one launch.
// qkv_rope_heads: threads walk vectors of the output ([3, B, heads, S, D], written densely and
//   so coalesced); each vector gathers D-contiguous input elements of one token (or of the bias
//   for a padded token) and rotates pairs with the float32 tables.
#include "ops/cuda/fused.h"

#include <algorithm>
#include <initializer_list>

#include "ops/check.h"
#include "ops/cuda/common.cuh"

namespace omnirt::ops::cuda {

namespace {

__device__ __forceinline__ float silu(float x) { return x / (1.0f + expf(-x)); }

template <typename T, int kVec>
__global__ void swiglu_layernorm_kernel(const T* gate_up, const T* weight, const T* bias, T* out,
                                        int64_t hidden, float eps) {
  const int64_t row = blockIdx.x;
  const T* gate = gate_up + row * 2 * hidden;
  const T* up = gate + hidden;
  T* out_row = out + row * hidden;
  const int64_t num_vecs = hidden / kVec;

  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < num_vecs; i += blockDim.x) {
    const Vec<T, kVec> g = load_vec<kVec>(gate + i * kVec);
    const Vec<T, kVec> u = load_vec<kVec>(up + i * kVec);
    Vec<T, kVec> y;
    for (int k = 0; k < kVec; ++k) {
      // As swiglu_concat: silu(gate) rounded to T, the product rounded at the store.
      y.v[k] = from_float<T>(round_to<T>(silu(to_float(g.v[k]))) * to_float(u.v[k]));
      sum += to_float(y.v[k]);
    }
    store_vec(out_row + i * kVec, y);
  }
  const float mean = block_sum(sum) / hidden;

  float sq = 0.0f;
  for (int64_t i = threadIdx.x; i < num_vecs; i += blockDim.x) {
    const Vec<T, kVec> v = load_vec<kVec>(out_row + i * kVec);
    for (int k = 0; k < kVec; ++k) {
      const float d = to_float(v.v[k]) - mean;
      sq += d * d;
    }
  }
  const float rstd = rsqrtf(block_sum(sq) / hidden + eps);

  for (int64_t i = threadIdx.x; i < num_vecs; i += blockDim.x) {
    const Vec<T, kVec> v = load_vec<kVec>(out_row + i * kVec);
    Vec<T, kVec> w, b, y;
    if (weight) w = load_vec<kVec>(weight + i * kVec);
    if (bias) b = load_vec<kVec>(bias + i * kVec);
    for (int k = 0; k < kVec; ++k) {
      float value = (to_float(v.v[k]) - mean) * rstd;
      if (weight) value *= to_float(w.v[k]);
      if (bias) value += to_float(b.v[k]);
      y.v[k] = from_float<T>(value);
    }
    store_vec(out_row + i * kVec, y);
  }
}

// Geometry of the (padded) window layout; wh = gh and ww = gw for global attention. 32-bit: the
// index math runs per 16-byte vector and 64-bit division would cost more than the memory access.
struct WindowGeometry {
  int gh, gw;    // real grid
  int wh, ww;    // window height / width
  int nwh, nww;  // windows per column / row
  int batch, heads, head_dim;
};

// Grid: y walks the output rows' groups (which, b, h) -- uniform per block, so the window and
// head offsets are computed once per group -- and x the S * D / kVec vectors of one group.
// kVec is even (whole RoPE pairs): 16-byte vectors when D and the pointers allow, else 2.
template <typename T, int kVec>
__global__ void qkv_rope_heads_kernel(const T* qkv, const T* bias, const float* cos,
                                      const float* sin, T* out, WindowGeometry g) {
  const int seq = g.wh * g.ww;
  const int d = g.head_dim;
  const int64_t e = int64_t(g.heads) * d;
  const int vecs_per_row = d / kVec;
  const int group_vecs = seq * vecs_per_row;
  const int64_t groups = 3 * int64_t(g.batch) * g.heads;
  for (int64_t group = blockIdx.y; group < groups; group += gridDim.y) {
    const int h = static_cast<int>(group % g.heads);
    const int b = static_cast<int>((group / g.heads) % g.batch);
    const int which = static_cast<int>(group / (int64_t(g.heads) * g.batch));  // 0 q, 1 k, 2 v
    const int img = b / (g.nwh * g.nww), wy = (b / g.nww) % g.nwh, wx = b % g.nww;
    const int64_t feature0 = which * e + int64_t(h) * d;
    const T* img_base = qkv + int64_t(img) * g.gh * g.gw * 3 * e + feature0;
    T* out_group = out + group * seq * d;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < group_vecs;
         i += gridDim.x * blockDim.x) {
      const int t = i / vecs_per_row;
      const int j = (i - t * vecs_per_row) * kVec;  // first element inside the head row
      const int ty = t / g.ww;
      const int row = wy * g.wh + ty, col = wx * g.ww + (t - ty * g.ww);
      const T* src = (row < g.gh && col < g.gw)
                         ? img_base + (int64_t(row) * g.gw + col) * 3 * e + j
                         : bias + feature0 + j;  // padded token: its projection is the bias
      Vec<T, kVec> x = load_vec<kVec>(src);
      if (which < 2) {
        const float* c = cos + t * d + j;
        const float* s = sin + t * d + j;
        Vec<T, kVec> y;
        for (int k = 0; k < kVec; k += 2) {
          const float x0 = to_float(x.v[k]), x1 = to_float(x.v[k + 1]);
          y.v[k] = from_float<T>(x0 * c[k] - x1 * s[k]);
          y.v[k + 1] = from_float<T>(x1 * c[k + 1] + x0 * s[k + 1]);
        }
        x = y;
      }
      store_vec(out_group + int64_t(t) * d + j, x);
    }
  }
}

constexpr int kThreads = 256;

}  // namespace

void swiglu_layernorm(const Tensor& gate_up, const Tensor& weight, const Tensor& bias, float eps,
                      Tensor& out) {
  const int64_t hidden = out.dim(-1);
  const unsigned rows = static_cast<unsigned>(detail::rows_of(out));
  dispatch_float(gate_up.dtype(), "ops::swiglu_layernorm", [&](auto tag) {
    using T = decltype(tag);
    constexpr int kWide = kVec16<T>;
    const T* w = weight.defined() ? weight.data<T>() : nullptr;
    const T* b = bias.defined() ? bias.data<T>() : nullptr;
    // hidden % kWide == 0 keeps the up half and every row 16-byte aligned too.
    bool wide = hidden % kWide == 0;
    for (const void* p : std::initializer_list<const void*>{gate_up.raw(), out.raw(), w, b})
      if (p && !is_aligned(p, 16)) wide = false;
    const int vec = wide ? kWide : 1;
    const int threads = row_block_threads(hidden / vec);
    cudaStream_t stream = current_stream();
    if (wide) {
      swiglu_layernorm_kernel<T, kWide>
          <<<rows, threads, 0, stream>>>(gate_up.data<T>(), w, b, out.data<T>(), hidden, eps);
    } else {
      swiglu_layernorm_kernel<T, 1>
          <<<rows, threads, 0, stream>>>(gate_up.data<T>(), w, b, out.data<T>(), hidden, eps);
    }
    OMNIRT_CUDA_CHECK_LAUNCH("swiglu_layernorm_kernel");
  });
}

void qkv_rope_heads(const Tensor& qkv, const Tensor& qkv_bias, const Tensor& cos, const Tensor& sin,
                    int window, Tensor& out) {
  const int64_t gh = qkv.dim(1), gw = qkv.dim(2);
  const int64_t wh = window > 0 ? window : gh, ww = window > 0 ? window : gw;
  OMNIRT_CHECK(wh * ww * out.dim(4) < (int64_t{1} << 31) && out.dim(1) < (int64_t{1} << 31) &&
                   gh * gw < (int64_t{1} << 31),
               "ops::qkv_rope_heads (CUDA): sizes beyond 32-bit indexing: ", out.describe());
  WindowGeometry g;
  g.gh = static_cast<int>(gh);
  g.gw = static_cast<int>(gw);
  g.wh = static_cast<int>(wh);
  g.ww = static_cast<int>(ww);
  g.nwh = static_cast<int>(ceil_div(gh, wh));
  g.nww = static_cast<int>(ceil_div(gw, ww));
  g.batch = static_cast<int>(out.dim(1));
  g.heads = static_cast<int>(out.dim(2));
  g.head_dim = static_cast<int>(out.dim(4));
  const int64_t groups = 3 * out.dim(1) * out.dim(2);
  dispatch_float(qkv.dtype(), "ops::qkv_rope_heads", [&](auto tag) {
    using T = decltype(tag);
    constexpr int kWide = kVec16<T>;
    // Every gathered vector starts at a multiple of its width when D is one (3E = 3 heads D).
    const bool wide = g.head_dim % kWide == 0 && is_aligned(qkv.raw(), 16) &&
                      is_aligned(qkv_bias.raw(), 16) && is_aligned(out.raw(), 16);
    if (!wide) {
      for (const void* p : std::initializer_list<const void*>{qkv.raw(), qkv_bias.raw(), out.raw()})
        OMNIRT_CHECK(is_aligned(p, 2 * sizeof(T)), "ops::qkv_rope_heads: tensors must start on a ",
                     2 * sizeof(T), "-byte boundary (whole RoPE pairs)");
    }
    const int vec = wide ? kWide : 2;
    const int64_t group_vecs = wh * ww * g.head_dim / vec;
    const dim3 grid(static_cast<unsigned>(std::min<int64_t>(ceil_div(group_vecs, kThreads), 1024)),
                    static_cast<unsigned>(std::min<int64_t>(groups, 65535)));
    cudaStream_t stream = current_stream();
    if (wide) {
      qkv_rope_heads_kernel<T, kWide>
          <<<grid, kThreads, 0, stream>>>(qkv.data<T>(), qkv_bias.data<T>(), cos.data<float>(),
                                          sin.data<float>(), out.data<T>(), g);
    } else {
      qkv_rope_heads_kernel<T, 2>
          <<<grid, kThreads, 0, stream>>>(qkv.data<T>(), qkv_bias.data<T>(), cos.data<float>(),
                                          sin.data<float>(), out.data<T>(), g);
    }
    OMNIRT_CUDA_CHECK_LAUNCH("qkv_rope_heads_kernel");
  });
}

}  // namespace omnirt::ops::cuda
