// CPU implementation of ops/permute.h; arguments validated by the dispatcher (dims normalised to
// 0..ndim-1).
#pragma once

#include <vector>

#include "core/tensor.h"

namespace omnirt::ops::cpu {
void permute(const Tensor& x, const std::vector<int>& dims, Tensor& out);
}
