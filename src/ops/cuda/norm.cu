// Norm kernels: one thread block per row. Each thread walks the row in vectors of kVec elements
// (stride blockDim.x vectors); statistics are reduced with warp shuffles + one shared-memory step.
// Rows are re-read from global memory for each pass; a row is at most a few KB and stays in L1/L2.
//
// Aliasing (out == x, residual_out == x, ...) is safe because every pass of a thread touches the
// same elements, and an element is read before it is written by the same thread.
#include "ops/cuda/norm.h"

#include "ops/check.h"
#include "ops/cuda/common.cuh"

namespace omnirt::ops::cuda {

namespace {

// weight/bias may be null (no affine).
template <typename T, int kVec>
__global__ void layernorm_kernel(const T* x, const T* weight, const T* bias, T* out,
                                 int64_t features, float eps) {
  const T* x_row = x + blockIdx.x * features;
  T* out_row = out + blockIdx.x * features;
  const int64_t num_vecs = features / kVec;

  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < num_vecs; i += blockDim.x) {
    const Vec<T, kVec> v = load_vec<kVec>(x_row + i * kVec);
    for (int k = 0; k < kVec; ++k) sum += to_float(v.v[k]);
  }
  const float mean = block_sum(sum) / features;

  // Second pass for the variance around the mean: no catastrophic cancellation.
  float sq = 0.0f;
  for (int64_t i = threadIdx.x; i < num_vecs; i += blockDim.x) {
    const Vec<T, kVec> v = load_vec<kVec>(x_row + i * kVec);
    for (int k = 0; k < kVec; ++k) {
      const float d = to_float(v.v[k]) - mean;
      sq += d * d;
    }
  }
  const float rstd = rsqrtf(block_sum(sq) / features + eps);

  for (int64_t i = threadIdx.x; i < num_vecs; i += blockDim.x) {
    const Vec<T, kVec> v = load_vec<kVec>(x_row + i * kVec);
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

// residual may be null (plain rmsnorm). With a residual, the row is first replaced by
// x + residual (rounded to T, written to residual_out) and that sum is normalised.
template <typename T, int kVec>
__global__ void rmsnorm_kernel(const T* x, const T* residual, const T* weight, T* out,
                               T* residual_out, int64_t features, float eps) {
  const int64_t row_offset = blockIdx.x * features;
  const int64_t num_vecs = features / kVec;
  // The row being normalised: x itself, or residual_out once pass 1 has written it.
  const T* source = residual ? residual_out + row_offset : x + row_offset;

  float sq = 0.0f;
  for (int64_t i = threadIdx.x; i < num_vecs; i += blockDim.x) {
    Vec<T, kVec> v = load_vec<kVec>(x + row_offset + i * kVec);
    if (residual) {
      const Vec<T, kVec> r = load_vec<kVec>(residual + row_offset + i * kVec);
      for (int k = 0; k < kVec; ++k) v.v[k] = from_float<T>(to_float(v.v[k]) + to_float(r.v[k]));
      store_vec(residual_out + row_offset + i * kVec, v);
    }
    for (int k = 0; k < kVec; ++k) sq += to_float(v.v[k]) * to_float(v.v[k]);
  }
  const float rstd = rsqrtf(block_sum(sq) / features + eps);

  for (int64_t i = threadIdx.x; i < num_vecs; i += blockDim.x) {
    const Vec<T, kVec> v = load_vec<kVec>(source + i * kVec);
    const Vec<T, kVec> w = load_vec<kVec>(weight + i * kVec);
    Vec<T, kVec> y;
    for (int k = 0; k < kVec; ++k) {
      // HF: weight * (x * rsqrt(var + eps)).to(input_dtype)
      const float normed = round_to<T>(to_float(v.v[k]) * rstd);
      y.v[k] = from_float<T>(to_float(w.v[k]) * normed);
    }
    store_vec(out + row_offset + i * kVec, y);
  }
}

// The widest vector width usable for rows of `features` elements of T at these pointers.
template <typename T>
int row_vec_width(int64_t features, std::initializer_list<const void*> ptrs) {
  constexpr int kWide = kVec16<T>;
  if (features % kWide != 0) return 1;
  for (const void* p : ptrs)
    if (p && !is_aligned(p, 16)) return 1;
  return kWide;
}

}  // namespace

void layernorm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps, Tensor& out) {
  const int64_t features = x.dim(-1);
  const unsigned rows = static_cast<unsigned>(detail::rows_of(x));
  dispatch_float(x.dtype(), "ops::layernorm", [&](auto tag) {
    using T = decltype(tag);
    const T* w = weight.defined() ? weight.data<T>() : nullptr;
    const T* b = bias.defined() ? bias.data<T>() : nullptr;
    const int vec = row_vec_width<T>(features, {x.raw(), out.raw(), w, b});
    const int threads = row_block_threads(features / vec);
    cudaStream_t stream = current_stream();
    if (vec > 1) {
      layernorm_kernel<T, kVec16<T>>
          <<<rows, threads, 0, stream>>>(x.data<T>(), w, b, out.data<T>(), features, eps);
    } else {
      layernorm_kernel<T, 1>
          <<<rows, threads, 0, stream>>>(x.data<T>(), w, b, out.data<T>(), features, eps);
    }
    OMNIRT_CUDA_CHECK_LAUNCH("layernorm_kernel");
  });
}

namespace {
void launch_rmsnorm(const Tensor& x, const Tensor* residual, const Tensor& weight, float eps,
                    Tensor& out, Tensor* residual_out, const char* op) {
  const int64_t features = x.dim(-1);
  const unsigned rows = static_cast<unsigned>(detail::rows_of(x));
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    const T* r = residual ? residual->data<T>() : nullptr;
    T* r_out = residual_out ? residual_out->data<T>() : nullptr;
    const int vec = row_vec_width<T>(features, {x.raw(), weight.raw(), out.raw(), r, r_out});
    const int threads = row_block_threads(features / vec);
    cudaStream_t stream = current_stream();
    if (vec > 1) {
      rmsnorm_kernel<T, kVec16<T>><<<rows, threads, 0, stream>>>(
          x.data<T>(), r, weight.data<T>(), out.data<T>(), r_out, features, eps);
    } else {
      rmsnorm_kernel<T, 1><<<rows, threads, 0, stream>>>(x.data<T>(), r, weight.data<T>(),
                                                         out.data<T>(), r_out, features, eps);
    }
    OMNIRT_CUDA_CHECK_LAUNCH("rmsnorm_kernel");
  });
}
}  // namespace

void rmsnorm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) {
  launch_rmsnorm(x, nullptr, weight, eps, out, nullptr, "ops::rmsnorm");
}

void add_rmsnorm(const Tensor& x, const Tensor& residual, const Tensor& weight, float eps,
                 Tensor& out, Tensor& residual_out) {
  launch_rmsnorm(x, &residual, weight, eps, out, &residual_out, "ops::add_rmsnorm");
}

}  // namespace omnirt::ops::cuda
