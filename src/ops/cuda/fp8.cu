// FP8 quantisation and amax kernels.
//
// quantize: q = e4m3(x / scale) with the hardware conversion (cvt.rn.satfinite.e4m3x2.f32 on
// sm_89+: round to nearest even, out-of-range and +-inf saturate to +-448, NaN -> NaN), after an
// IEEE division (__fdiv_rn: correctly rounded whatever the compiler flags), so the result equals
// the CPU encoder's bit for bit (tests/ops/test_fp8.cpp checks that).
//
// amax: max |x| as a max over the float bit patterns with the sign cleared: for non-negative
// floats the unsigned order is the float order, and every NaN pattern is above +inf, so a NaN
// wins and the result is NaN, as on the CPU. One atomicMax per block on the output's bits.
#include <cuda_fp8.h>

#include <algorithm>

#include "ops/cuda/common.cuh"
#include "ops/cuda/fp8.h"

namespace omnirt::ops::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kQuantVec = 4;  // elements per thread step of the unpadded kernel

__device__ __forceinline__ uint8_t encode_e4m3(float v, float scale) {
  return static_cast<uint8_t>(
      __nv_cvt_float_to_fp8(__fdiv_rn(v, scale), __NV_SATFINITE, __NV_E4M3));
}

// Unpadded: out has x's shape; kVec consecutive elements per step.
template <typename T, int kVec>
__global__ void quantize_kernel(const T* __restrict__ x, const float* __restrict__ scale,
                                uint8_t* __restrict__ out, int64_t num_vecs) {
  const float s = *scale;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < num_vecs;
       i += int64_t(gridDim.x) * blockDim.x) {
    const Vec<T, kVec> v = load_vec<kVec>(x + i * kVec);
    Vec<uint8_t, kVec> q;
#pragma unroll
    for (int j = 0; j < kVec; ++j) q.v[j] = encode_e4m3(to_float(v.v[j]), s);
    store_vec(out + i * kVec, q);
  }
}

// Padded: x [rows, k] -> out [rows, k_out], columns k..k_out-1 zero.
template <typename T>
__global__ void quantize_padded_kernel(const T* __restrict__ x, const float* __restrict__ scale,
                                       uint8_t* __restrict__ out, int64_t rows, int64_t k,
                                       int64_t k_out) {
  const float s = *scale;
  const int64_t total = rows * k_out;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / k_out, c = i - r * k_out;
    out[i] = c < k ? encode_e4m3(to_float(x[r * k + c]), s) : uint8_t{0};
  }
}

template <typename T>
__global__ void amax_kernel(const T* __restrict__ x, int64_t n, unsigned int* __restrict__ out) {
  unsigned int m = 0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    m = max(m, __float_as_uint(to_float(x[i])) & 0x7FFFFFFFu);
  m = __reduce_max_sync(0xffffffffu, m);
  __shared__ unsigned int per_warp[kThreads / 32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) per_warp[warp] = m;
  __syncthreads();
  if (warp == 0) {
    m = lane < kThreads / 32 ? per_warp[lane] : 0u;
    m = __reduce_max_sync(0xffffffffu, m);
    if (lane == 0) atomicMax(out, m);
  }
}

}  // namespace

void quantize_fp8(const Tensor& x, const Tensor& scale, Tensor& out) {
  dispatch_float(x.dtype(), "ops::quantize_fp8", [&](auto tag) {
    using T = decltype(tag);
    cudaStream_t stream = current_stream();
    const int64_t k = x.dim(-1), k_out = out.dim(-1);
    const float* s = scale.data<float>();
    uint8_t* q = out.data<uint8_t>();
    if (k == k_out) {
      const int64_t n = x.numel();
      const bool wide = n % kQuantVec == 0 && is_aligned(x.raw(), kQuantVec * sizeof(T)) &&
                        is_aligned(out.raw(), kQuantVec);
      const int64_t num_vecs = wide ? n / kQuantVec : n;
      const unsigned grid = grid_for(num_vecs, kThreads);
      if (wide) {
        quantize_kernel<T, kQuantVec><<<grid, kThreads, 0, stream>>>(x.data<T>(), s, q, num_vecs);
      } else {
        quantize_kernel<T, 1><<<grid, kThreads, 0, stream>>>(x.data<T>(), s, q, num_vecs);
      }
      OMNIRT_CUDA_CHECK_LAUNCH("quantize_fp8 kernel");
    } else {
      const int64_t rows = k == 0 ? out.numel() / k_out : x.numel() / k;
      quantize_padded_kernel<T><<<grid_for(rows * k_out, kThreads), kThreads, 0, stream>>>(
          x.data<T>(), s, q, rows, k, k_out);
      OMNIRT_CUDA_CHECK_LAUNCH("quantize_fp8 padded kernel");
    }
  });
}

void amax(const Tensor& x, Tensor& out, bool accumulate) {
  cudaStream_t stream = current_stream();
  if (!accumulate) OMNIRT_CUDA_CHECK(cudaMemsetAsync(out.raw(), 0, sizeof(float), stream));
  if (x.numel() == 0) return;
  dispatch_float(x.dtype(), "ops::amax", [&](auto tag) {
    using T = decltype(tag);
    // Enough blocks to fill the GPU; each thread strides over the rest.
    const unsigned grid = std::min<unsigned>(grid_for(x.numel(), kThreads), 1024u);
    amax_kernel<T><<<grid, kThreads, 0, stream>>>(x.data<T>(), x.numel(),
                                                  static_cast<unsigned int*>(out.raw()));
    OMNIRT_CUDA_CHECK_LAUNCH("amax kernel");
  });
}

}  // namespace omnirt::ops::cuda
