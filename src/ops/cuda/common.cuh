// Building blocks shared by the CUDA kernels of the op layer.
//
// - Element types: a tensor's DType maps to float, __half or __nv_bfloat16. Kernels load
//   elements with to_float(), do all arithmetic in float32 and store with from_float<T>().
// - Vectors: Vec<T, N> is N elements loaded/stored as one 16-byte (or smaller) access. A kernel
//   takes the vector width as a template parameter; the host picks the widest width the data
//   allows (size divisible, pointers aligned) and falls back to 1.
// - Reductions: warp_sum/warp_max (shuffles) and block_sum/block_max (one value per warp through
//   shared memory; every thread receives the result).
// - dispatch_float(): calls a generic lambda with the element type of a DType.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "core/cuda_check.h"
#include "core/dtype.h"
#include "core/error.h"

namespace omnirt::ops::cuda {

// Every op launches on the thread's current stream (core/cuda_check.h).
using omnirt::cuda::current_stream;

// ---- element conversions -----------------------------------------------------------------

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// `v` rounded to T's precision (identity for float). Used where the PyTorch reference stores an
// intermediate result in the tensor dtype, so that we round at the same points it does.
template <typename T>
__device__ __forceinline__ float round_to(float v) {
  return to_float(from_float<T>(v));
}

// ---- vector access ---------------------------------------------------------------------------

template <typename T, int N>
struct alignas(sizeof(T) * N) Vec {
  T v[N];
};

// Elements per 16-byte access: 4 floats or 8 halves.
template <typename T>
constexpr int kVec16 = 16 / sizeof(T);

template <int N, typename T>
__device__ __forceinline__ Vec<T, N> load_vec(const T* p) {
  return *reinterpret_cast<const Vec<T, N>*>(p);
}
template <int N, typename T>
__device__ __forceinline__ void store_vec(T* p, const Vec<T, N>& v) {
  *reinterpret_cast<Vec<T, N>*>(p) = v;
}

inline bool is_aligned(const void* p, size_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

// ---- reductions ------------------------------------------------------------------------------

__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int offset = 16; offset > 0; offset /= 2)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// Reduces `v` over the block; every thread gets the result. blockDim.x must be a multiple of 32
// and every thread of the block must call it (it synchronises).
template <bool kMax>
__device__ __forceinline__ float block_reduce(float v) {
  __shared__ float per_warp[32];
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  v = kMax ? warp_max(v) : warp_sum(v);
  __syncthreads();  // a previous call may still be reading per_warp
  if (lane == 0) per_warp[warp] = v;
  __syncthreads();
  const int num_warps = blockDim.x / 32;
  const float identity = kMax ? -INFINITY : 0.0f;
  v = lane < num_warps ? per_warp[lane] : identity;
  return kMax ? warp_max(v) : warp_sum(v);
}
__device__ __forceinline__ float block_sum(float v) { return block_reduce<false>(v); }
__device__ __forceinline__ float block_max(float v) { return block_reduce<true>(v); }

// ---- launch helpers --------------------------------------------------------------------------

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Threads for a one-block-per-row kernel that walks `items` items per row: enough to give every
// thread about one item, a multiple of 32, between 32 and 1024.
inline int row_block_threads(int64_t items) {
  const int64_t t = ceil_div(items, 32) * 32;
  return static_cast<int>(t < 32 ? 32 : (t > 1024 ? 1024 : t));
}

// Grid for a grid-stride loop over `items` items with `threads` threads per block. The cap keeps
// the grid legal for huge tensors; the loop covers the rest.
inline unsigned grid_for(int64_t items, int threads) {
  const int64_t blocks = ceil_div(items, threads);
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > 65535 * 4 ? 65535 * 4 : blocks));
}

// Calls f(T{}) where T is the CUDA element type of `dtype`:
//   dispatch_float(x.dtype(), "ops::relu", [&](auto tag) { using T = decltype(tag); ... });
template <typename F>
void dispatch_float(DType dtype, const char* op, F&& f) {
  switch (dtype) {
    case DType::F32:
      f(float{});
      break;
    case DType::F16:
      f(__half{});
      break;
    case DType::BF16:
      f(__nv_bfloat16{});
      break;
    default:
      OMNIRT_FAIL(op, ": the CUDA kernels support F32, F16 and BF16, got ", dtype_name(dtype));
  }
}

}  // namespace omnirt::ops::cuda
