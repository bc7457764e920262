// CUDA implementations of ops/elementwise.h; arguments validated by the dispatcher.
#pragma once

#include "core/tensor.h"

namespace omnirt::ops::cuda {

void add_scaled(const Tensor& a, const Tensor& b, float scale, Tensor& out);
void mul(const Tensor& a, const Tensor& b, Tensor& out);

}  // namespace omnirt::ops::cuda
