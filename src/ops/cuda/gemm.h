// CUDA (cuBLASLt) backends of ops::linear / ops::gemm. Compiled only with OMNIRT_WITH_CUDA;
// arguments are validated by src/ops/gemm.cpp. Runs on omnirt::cuda::current_stream().
#pragma once

#include "ops/fp8.h"
#include "ops/gemm.h"

namespace omnirt::ops::cuda {

// c = act(alpha * op(a) op(b) + beta * c + bias); a, b, c, bias share one dtype
// (F32, F16 or BF16), all contiguous and on the GPU.
void gemm(const GemmDims& dims, const Tensor& a, const Tensor& b, Tensor& c, bool trans_a,
          bool trans_b, float alpha, float beta, const Tensor& bias, const GemmOptions& options);

// ops::linear_fp8: out = act(x_scale * w_scale * (x_q w_q^T) + bias + beta * out), E4M3 inputs,
// F16/BF16 out and bias, fp32 accumulation, through the same plan cache.
void linear_fp8(const GemmDims& dims, const Tensor& x_q, const Tensor& x_scale,
                const Tensor& w_q, const Tensor& w_scale, const Tensor& bias, Tensor& out,
                float beta, const Fp8GemmOptions& options);

}  // namespace omnirt::ops::cuda
