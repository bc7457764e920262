// Softmax: one thread block per row, three passes over the row (max, sum of exponentials,
// normalise), reductions by warp shuffles. Safe in place (each thread re-reads only its own
// elements before writing them).
#include "ops/cuda/softmax.h"

#include "ops/check.h"
#include "ops/cuda/common.cuh"

namespace omnirt::ops::cuda {

namespace {

template <typename T, int kVec>
__global__ void softmax_kernel(const T* x, T* out, int64_t features) {
  const T* x_row = x + blockIdx.x * features;
  T* out_row = out + blockIdx.x * features;
  const int64_t num_vecs = features / kVec;

  float max = -INFINITY;
  for (int64_t i = threadIdx.x; i < num_vecs; i += blockDim.x) {
    const Vec<T, kVec> v = load_vec<kVec>(x_row + i * kVec);
    for (int k = 0; k < kVec; ++k) max = fmaxf(max, to_float(v.v[k]));
  }
  max = block_max(max);

  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < num_vecs; i += blockDim.x) {
    const Vec<T, kVec> v = load_vec<kVec>(x_row + i * kVec);
    for (int k = 0; k < kVec; ++k) sum += expf(to_float(v.v[k]) - max);
  }
  const float inv_sum = 1.0f / block_sum(sum);

  for (int64_t i = threadIdx.x; i < num_vecs; i += blockDim.x) {
    const Vec<T, kVec> v = load_vec<kVec>(x_row + i * kVec);
    Vec<T, kVec> y;
    for (int k = 0; k < kVec; ++k) y.v[k] = from_float<T>(expf(to_float(v.v[k]) - max) * inv_sum);
    store_vec(out_row + i * kVec, y);
  }
}

}  // namespace

void softmax(const Tensor& x, Tensor& out) {
  const int64_t features = x.dim(-1);
  const unsigned rows = static_cast<unsigned>(detail::rows_of(x));
  dispatch_float(x.dtype(), "ops::softmax", [&](auto tag) {
    using T = decltype(tag);
    constexpr int kWide = kVec16<T>;
    const bool wide = features % kWide == 0 && is_aligned(x.raw(), 16) && is_aligned(out.raw(), 16);
    const int threads = row_block_threads(wide ? features / kWide : features);
    cudaStream_t stream = current_stream();
    if (wide) {
      softmax_kernel<T, kWide><<<rows, threads, 0, stream>>>(x.data<T>(), out.data<T>(), features);
    } else {
      softmax_kernel<T, 1><<<rows, threads, 0, stream>>>(x.data<T>(), out.data<T>(), features);
    }
    OMNIRT_CUDA_CHECK_LAUNCH("softmax_kernel");
  });
}

}  // namespace omnirt::ops::cuda
