// Binary elementwise ops with broadcasting of the second operand over leading dimensions.
//
// b's shape (leading 1s aside) must be a suffix of a's shape: b of a's full shape is plain
// elementwise, b [F] or [1, F] with a [..., F] is a bias add / per-feature scale, b of shape []
// or [1] is a scalar. out has a's shape. out may alias a (in place), and b when b has a's size.
// CPU: float32. CUDA: float32, float16, bfloat16 (math in float32, one rounding at the end).
#pragma once

#include "core/tensor.h"

namespace omnirt::ops {

// out = a + b
void add(const Tensor& a, const Tensor& b, Tensor& out);
// out = a + scale * b
void add_scaled(const Tensor& a, const Tensor& b, float scale, Tensor& out);
// out = a * b
void mul(const Tensor& a, const Tensor& b, Tensor& out);

}  // namespace omnirt::ops
