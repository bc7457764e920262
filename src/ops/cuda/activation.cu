// Elementwise activation kernels: a grid-stride loop over vectors of kVec elements (16-byte
// accesses when the size and alignment allow, else single elements).
#include "ops/cuda/activation.h"

#include "ops/check.h"
#include "ops/cuda/common.cuh"

namespace omnirt::ops::cuda {

namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float silu(float x) { return x / (1.0f + expf(-x)); }

__device__ __forceinline__ float apply_act(Act act, float x) {
  switch (act) {
    case Act::Gelu:
      return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case Act::Silu:
      return silu(x);
    case Act::Relu:
      return fmaxf(x, 0.0f);
    case Act::Sigmoid:
      return 1.0f / (1.0f + expf(-x));
  }
  return x;
}

// `act` is the same for every thread, so the switch does not diverge.
template <typename T, int kVec>
__global__ void activation_kernel(const T* x, T* out, int64_t num_vecs, Act act) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < num_vecs;
       i += int64_t(gridDim.x) * blockDim.x) {
    Vec<T, kVec> v = load_vec<kVec>(x + i * kVec);
    for (int k = 0; k < kVec; ++k) v.v[k] = from_float<T>(apply_act(act, to_float(v.v[k])));
    store_vec(out + i * kVec, v);
  }
}

// Rows of `hidden` outputs; the gate and up rows start every `in_row_stride` elements (hidden for
// separate tensors, 2*hidden for the packed [gate | up] layout). Works on vectors of kVec
// elements; the host only picks kVec > 1 when it divides hidden.
template <typename T, int kVec>
__global__ void swiglu_kernel(const T* gate, const T* up, int64_t in_row_stride, T* out,
                              int64_t rows, int64_t hidden) {
  const int64_t vecs_per_row = hidden / kVec;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < rows * vecs_per_row;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = i / vecs_per_row;
    const int64_t col = (i % vecs_per_row) * kVec;
    const Vec<T, kVec> g = load_vec<kVec>(gate + row * in_row_stride + col);
    const Vec<T, kVec> u = load_vec<kVec>(up + row * in_row_stride + col);
    Vec<T, kVec> y;
    for (int k = 0; k < kVec; ++k)
      y.v[k] = from_float<T>(round_to<T>(silu(to_float(g.v[k]))) * to_float(u.v[k]));
    store_vec(out + row * hidden + col, y);
  }
}

template <typename T>
void launch_swiglu(const T* gate, const T* up, int64_t in_row_stride, T* out, int64_t rows,
                   int64_t hidden) {
  constexpr int kWide = kVec16<T>;
  // in_row_stride is hidden or 2*hidden, so it stays a multiple of kWide when hidden is.
  const bool wide =
      hidden % kWide == 0 && is_aligned(gate, 16) && is_aligned(up, 16) && is_aligned(out, 16);
  const int vec = wide ? kWide : 1;
  const unsigned grid = grid_for(rows * hidden / vec, kThreads);
  cudaStream_t stream = current_stream();
  if (wide) {
    swiglu_kernel<T, kWide>
        <<<grid, kThreads, 0, stream>>>(gate, up, in_row_stride, out, rows, hidden);
  } else {
    swiglu_kernel<T, 1><<<grid, kThreads, 0, stream>>>(gate, up, in_row_stride, out, rows, hidden);
  }
  OMNIRT_CUDA_CHECK_LAUNCH("swiglu_kernel");
}

}  // namespace

void activation(const Tensor& x, Act act, Tensor& out) {
  dispatch_float(x.dtype(), "ops::activation", [&](auto tag) {
    using T = decltype(tag);
    constexpr int kWide = kVec16<T>;
    const int64_t n = x.numel();
    const bool wide = n % kWide == 0 && is_aligned(x.raw(), 16) && is_aligned(out.raw(), 16);
    const int64_t num_vecs = wide ? n / kWide : n;
    const unsigned grid = grid_for(num_vecs, kThreads);
    cudaStream_t stream = current_stream();
    if (wide) {
      activation_kernel<T, kWide>
          <<<grid, kThreads, 0, stream>>>(x.data<T>(), out.data<T>(), num_vecs, act);
    } else {
      activation_kernel<T, 1>
          <<<grid, kThreads, 0, stream>>>(x.data<T>(), out.data<T>(), num_vecs, act);
    }
    OMNIRT_CUDA_CHECK_LAUNCH("activation_kernel");
  });
}

void swiglu(const Tensor& gate, const Tensor& up, Tensor& out) {
  const int64_t hidden = gate.ndim() == 0 ? 1 : gate.dim(-1);
  dispatch_float(gate.dtype(), "ops::swiglu", [&](auto tag) {
    using T = decltype(tag);
    launch_swiglu<T>(gate.data<T>(), up.data<T>(), hidden, out.data<T>(), gate.numel() / hidden,
                     hidden);
  });
}

void swiglu_concat(const Tensor& gate_up, Tensor& out) {
  const int64_t hidden = out.dim(-1);
  dispatch_float(gate_up.dtype(), "ops::swiglu_concat", [&](auto tag) {
    using T = decltype(tag);
    const T* gate = gate_up.data<T>();
    launch_swiglu<T>(gate, gate + hidden, 2 * hidden, out.data<T>(), out.numel() / hidden, hidden);
  });
}

}  // namespace omnirt::ops::cuda
