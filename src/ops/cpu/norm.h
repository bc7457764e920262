// CPU (float32 reference) implementations of ops/norm.h. Arguments are validated by the
// dispatcher; tensors are contiguous float32.
#pragma once

#include "core/tensor.h"

namespace omnirt::ops::cpu {

void layernorm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps, Tensor& out);
void rmsnorm(const Tensor& x, const Tensor& weight, float eps, Tensor& out);
void add_rmsnorm(const Tensor& x, const Tensor& residual, const Tensor& weight, float eps,
                 Tensor& out, Tensor& residual_out);

}  // namespace omnirt::ops::cpu
