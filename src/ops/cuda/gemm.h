// CUDA (cuBLASLt) backends of ops::linear / ops::gemm. Compiled only with OMNIRT_WITH_CUDA;
// arguments are validated by src/ops/gemm.cpp. Runs on omnirt::cuda::current_stream().
#pragma once

#include "ops/gemm.h"

namespace omnirt::ops::cuda {

// c = act(alpha * op(a) op(b) + beta * c + bias); a, b, c, bias share one dtype
// (F32, F16 or BF16), all contiguous and on the GPU.
void gemm(const GemmDims& dims, const Tensor& a, const Tensor& b, Tensor& c, bool trans_a,
          bool trans_b, float alpha, float beta, const Tensor& bias, const GemmOptions& options);

}  // namespace omnirt::ops::cuda
