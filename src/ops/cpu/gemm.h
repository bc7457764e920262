// CPU (float32) backends of ops::linear / ops::gemm. Arguments are validated by src/ops/gemm.cpp.
#pragma once

#include "ops/gemm.h"

namespace omnirt::ops::cpu {

// c = act(alpha * op(a) op(b) + beta * c + bias) on contiguous float32 tensors.
void gemm(const GemmDims& dims, const Tensor& a, const Tensor& b, Tensor& c, bool trans_a,
          bool trans_b, float alpha, float beta, const Tensor& bias, const GemmOptions& options);

}  // namespace omnirt::ops::cpu
