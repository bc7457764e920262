// Internal to src/quant: the float32 host view every CPU quantiser and reference works on.
#pragma once

#include <string>

#include "core/tensor.h"

namespace omnirt::quant::detail {

// Float32, CPU, contiguous copy-or-view of `t` (copies from the GPU, converts F16/BF16/F64).
// Errors name `what` when `t` is undefined or not a float tensor.
Tensor as_f32_cpu(const Tensor& t, const std::string& what);

}  // namespace omnirt::quant::detail
