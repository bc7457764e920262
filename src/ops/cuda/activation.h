// CUDA implementations of ops/activation.h; arguments validated by the dispatcher.
#pragma once

#include "core/tensor.h"
#include "ops/activation.h"

namespace omnirt::ops::cuda {

void activation(const Tensor& x, Act act, Tensor& out);
void swiglu(const Tensor& gate, const Tensor& up, Tensor& out);
void swiglu_concat(const Tensor& gate_up, Tensor& out);

}  // namespace omnirt::ops::cuda
