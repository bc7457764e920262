// Cast kernel: elementwise In -> float32 -> Out (float32 holds f16/bf16 values exactly, so the
// only rounding is the final one, to nearest even).
#include "ops/cuda/cast.h"

#include "ops/cuda/common.cuh"

namespace omnirt::ops::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kCastVec = 4;  // 4 elements per access: 16 bytes of float, 8 of half

template <typename In, typename Out, int kVec>
__global__ void cast_kernel(const In* x, Out* out, int64_t num_vecs) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < num_vecs;
       i += int64_t(gridDim.x) * blockDim.x) {
    const Vec<In, kVec> v = load_vec<kVec>(x + i * kVec);
    Vec<Out, kVec> y;
    for (int k = 0; k < kVec; ++k) y.v[k] = from_float<Out>(to_float(v.v[k]));
    store_vec(out + i * kVec, y);
  }
}

}  // namespace

void cast(const Tensor& x, Tensor& out) {
  if (x.dtype() == out.dtype()) {
    if (x.raw() != out.raw())
      OMNIRT_CUDA_CHECK(cudaMemcpyAsync(out.raw(), x.raw(), x.nbytes(), cudaMemcpyDeviceToDevice,
                                        current_stream()));
    return;
  }
  dispatch_float(x.dtype(), "ops::cast", [&](auto in_tag) {
    using In = decltype(in_tag);
    dispatch_float(out.dtype(), "ops::cast", [&](auto out_tag) {
      using Out = decltype(out_tag);
      const int64_t n = x.numel();
      const bool wide = n % kCastVec == 0 && is_aligned(x.raw(), kCastVec * sizeof(In)) &&
                        is_aligned(out.raw(), kCastVec * sizeof(Out));
      const int64_t num_vecs = wide ? n / kCastVec : n;
      const unsigned grid = grid_for(num_vecs, kThreads);
      cudaStream_t stream = current_stream();
      if (wide) {
        cast_kernel<In, Out, kCastVec>
            <<<grid, kThreads, 0, stream>>>(x.data<In>(), out.data<Out>(), num_vecs);
      } else {
        cast_kernel<In, Out, 1>
            <<<grid, kThreads, 0, stream>>>(x.data<In>(), out.data<Out>(), num_vecs);
      }
      OMNIRT_CUDA_CHECK_LAUNCH("cast_kernel");
    });
  });
}

}  // namespace omnirt::ops::cuda
