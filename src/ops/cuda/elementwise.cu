// Binary elementwise kernel: grid-stride loop over vectors of kVec elements of a; b is read at
// (element index mod b's size), which is how a suffix-shaped b broadcasts over a's leading dims.
// With kVec > 1 the host has checked that b's size is a multiple of kVec, so a vector of a maps
// onto one whole vector of b.
#include "ops/cuda/elementwise.h"

#include "ops/check.h"
#include "ops/cuda/common.cuh"

namespace omnirt::ops::cuda {

namespace {

constexpr int kThreads = 256;

enum class BinaryOp { AddScaled, Mul };

template <typename T, int kVec>
__global__ void binary_kernel(const T* a, const T* b, T* out, int64_t num_vecs, int64_t b_numel,
                              BinaryOp op, float scale) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < num_vecs;
       i += int64_t(gridDim.x) * blockDim.x) {
    const Vec<T, kVec> va = load_vec<kVec>(a + i * kVec);
    const Vec<T, kVec> vb = load_vec<kVec>(b + (i * kVec) % b_numel);
    Vec<T, kVec> y;
    for (int k = 0; k < kVec; ++k) {
      const float x = to_float(va.v[k]), z = to_float(vb.v[k]);
      y.v[k] = from_float<T>(op == BinaryOp::AddScaled ? x + scale * z : x * z);
    }
    store_vec(out + i * kVec, y);
  }
}

void launch_binary(const Tensor& a, const Tensor& b, Tensor& out, BinaryOp op, float scale,
                   const char* name) {
  dispatch_float(a.dtype(), name, [&](auto tag) {
    using T = decltype(tag);
    constexpr int kWide = kVec16<T>;
    const int64_t n = a.numel(), nb = b.numel();
    const bool wide = nb % kWide == 0 && is_aligned(a.raw(), 16) && is_aligned(b.raw(), 16) &&
                      is_aligned(out.raw(), 16);
    const int64_t num_vecs = wide ? n / kWide : n;
    const unsigned grid = grid_for(num_vecs, kThreads);
    cudaStream_t stream = current_stream();
    if (wide) {
      binary_kernel<T, kWide><<<grid, kThreads, 0, stream>>>(
          a.data<T>(), b.data<T>(), out.data<T>(), num_vecs, nb, op, scale);
    } else {
      binary_kernel<T, 1><<<grid, kThreads, 0, stream>>>(a.data<T>(), b.data<T>(), out.data<T>(),
                                                         num_vecs, nb, op, scale);
    }
    OMNIRT_CUDA_CHECK_LAUNCH("binary_kernel");
  });
}

}  // namespace

void add_scaled(const Tensor& a, const Tensor& b, float scale, Tensor& out) {
  launch_binary(a, b, out, BinaryOp::AddScaled, scale, "ops::add");
}

void mul(const Tensor& a, const Tensor& b, Tensor& out) {
  launch_binary(a, b, out, BinaryOp::Mul, 1.0f, "ops::mul");
}

}  // namespace omnirt::ops::cuda
