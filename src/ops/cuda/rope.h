// CUDA implementations of ops/rope.h; arguments validated by the dispatcher.
#pragma once

#include "core/tensor.h"

namespace omnirt::ops::cuda {

void rope_llama(const Tensor& x, const Tensor& positions, float theta, Tensor& out);
void rope_eva2d(const Tensor& x, const Tensor& cos, const Tensor& sin, Tensor& out);

}  // namespace omnirt::ops::cuda
