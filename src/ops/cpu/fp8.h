// CPU reference of ops/fp8.h (float32, plain loops). Arguments validated by src/ops/fp8.cpp.
#pragma once

#include "ops/fp8.h"

namespace omnirt::ops::cpu {

void quantize_fp8(const Tensor& x, float scale, Tensor& out);
float amax(const Tensor& x);  // NaN if any element is NaN
// out = act(alpha * (decode(x_q) decode(w_q)^T) + bias + beta * out), out F32.
void linear_fp8(const GemmDims& dims, const Tensor& x_q, const Tensor& w_q, float alpha,
                const Tensor& bias, Tensor& out, float beta, const Fp8GemmOptions& options);

}  // namespace omnirt::ops::cpu
