// Dtype conversion between float32, float16 and bfloat16 (round to nearest even; overflow to
// inf). out's dtype is the target; shapes equal; same device. Supported on CPU (through the core
// scalar conversions) and CUDA. Casting to the same dtype is a copy.
#pragma once

#include "core/tensor.h"

namespace omnirt::ops {

void cast(const Tensor& x, Tensor& out);

}  // namespace omnirt::ops
