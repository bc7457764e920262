// RoPE kernels: one thread per rotated pair; a thread reads both elements of its pair before
// writing them, so out may alias x.
#include "ops/cuda/rope.h"

#include <vector>

#include "ops/cpu/rope.h"
#include "ops/cuda/common.cuh"

namespace omnirt::ops::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kMaxHalfDim = 128;  // head_dim <= 256 (checked by the dispatcher)

// The float32 inverse frequencies, computed on the host (cpu::rope_inv_freq) so both backends
// use identical values, and passed by value as a kernel argument (512 bytes).
struct InvFreq {
  float v[kMaxHalfDim];
};

// LLaMA half-split rotation of x [tokens, heads, head_dim]. Thread = (token, head, i < half).
template <typename T>
__global__ void rope_llama_kernel(const T* x, const int32_t* positions, T* out, int64_t heads,
                                  int64_t half, int64_t num_pairs, InvFreq inv_freq) {
  for (int64_t p = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; p < num_pairs;
       p += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = p % half;
    const int64_t row = p / half;  // token * heads + head
    const int64_t token = row / heads;
    const float angle = static_cast<float>(positions[token]) * inv_freq.v[i];
    // HF casts cos/sin to the activation dtype and multiplies in it: round where it rounds.
    const float c = round_to<T>(cosf(angle));
    const float s = round_to<T>(sinf(angle));
    const int64_t base = row * 2 * half;
    const float x1 = to_float(x[base + i]);
    const float x2 = to_float(x[base + i + half]);
    out[base + i] = from_float<T>(round_to<T>(x1 * c) - round_to<T>(x2 * s));
    out[base + i + half] = from_float<T>(round_to<T>(x2 * c) + round_to<T>(x1 * s));
  }
}

// EVA interleaved rotation of x [batch, heads, tokens, dim] with float32 tables [tokens, dim].
// Thread = one adjacent pair (2j, 2j+1) of one row.
template <typename T>
__global__ void rope_eva2d_kernel(const T* x, const float* cos, const float* sin, T* out,
                                  int64_t tokens, int64_t dim, int64_t num_pairs) {
  const int64_t pairs_per_row = dim / 2;
  for (int64_t p = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; p < num_pairs;
       p += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = p / pairs_per_row;  // (batch * heads + head) * tokens + token
    const int64_t j = 2 * (p % pairs_per_row);
    const int64_t t = row % tokens;
    const float* c = cos + t * dim;
    const float* s = sin + t * dim;
    const float x0 = to_float(x[row * dim + j]);
    const float x1 = to_float(x[row * dim + j + 1]);
    out[row * dim + j] = from_float<T>(x0 * c[j] - x1 * s[j]);
    out[row * dim + j + 1] = from_float<T>(x1 * c[j + 1] + x0 * s[j + 1]);
  }
}

}  // namespace

void rope_llama(const Tensor& x, const Tensor& positions, float theta, Tensor& out) {
  const int64_t heads = x.dim(1), head_dim = x.dim(2), half = head_dim / 2;
  InvFreq inv_freq{};
  const std::vector<float> host = cpu::rope_inv_freq(head_dim, theta);
  for (int64_t i = 0; i < half; ++i) inv_freq.v[i] = host[i];
  const int64_t num_pairs = x.numel() / 2;
  dispatch_float(x.dtype(), "ops::rope_llama", [&](auto tag) {
    using T = decltype(tag);
    rope_llama_kernel<T><<<grid_for(num_pairs, kThreads), kThreads, 0, current_stream()>>>(
        x.data<T>(), positions.data<int32_t>(), out.data<T>(), heads, half, num_pairs, inv_freq);
    OMNIRT_CUDA_CHECK_LAUNCH("rope_llama_kernel");
  });
}

void rope_eva2d(const Tensor& x, const Tensor& cos, const Tensor& sin, Tensor& out) {
  const int64_t tokens = x.dim(2), dim = x.dim(3);
  const int64_t num_pairs = x.numel() / 2;
  dispatch_float(x.dtype(), "ops::rope_eva2d", [&](auto tag) {
    using T = decltype(tag);
    rope_eva2d_kernel<T><<<grid_for(num_pairs, kThreads), kThreads, 0, current_stream()>>>(
        x.data<T>(), cos.data<float>(), sin.data<float>(), out.data<T>(), tokens, dim, num_pairs);
    OMNIRT_CUDA_CHECK_LAUNCH("rope_eva2d_kernel");
  });
}

}  // namespace omnirt::ops::cuda
