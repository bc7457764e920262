// Softmax over the last dimension, numerically stable (the row maximum is subtracted first).
// CPU: float32. CUDA: float32, float16, bfloat16 (math in float32). `out` may alias `x`.
#pragma once

#include "core/tensor.h"

namespace omnirt::ops {

void softmax(const Tensor& x, Tensor& out);

}  // namespace omnirt::ops
