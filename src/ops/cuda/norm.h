// CUDA implementations of ops/norm.h (compiled only with OMNIRT_WITH_CUDA). Arguments are
// validated by the dispatcher; tensors are contiguous, on the GPU, all of one dtype.
#pragma once

#include "core/tensor.h"

namespace omnirt::ops::cuda {

void layernorm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps, Tensor& out);
void rmsnorm(const Tensor& x, const Tensor& weight, float eps, Tensor& out);
void add_rmsnorm(const Tensor& x, const Tensor& residual, const Tensor& weight, float eps,
                 Tensor& out, Tensor& residual_out);

}  // namespace omnirt::ops::cuda
