#pragma once

#include "core/tensor.h"

namespace omnirt::ops::cuda {

void swiglu_layernorm(const Tensor& gate_up, const Tensor& weight, const Tensor& bias, float eps,
                      Tensor& out);
void qkv_rope_heads(const Tensor& qkv, const Tensor& qkv_bias, const Tensor& cos, const Tensor& sin,
                    int window, Tensor& out);

}  // namespace omnirt::ops::cuda
