// Materialised permutation: out = x.permute(dims) written densely.
//   x contiguous, 0..6-D, any non-packed dtype (a pure data move, so not limited to floats);
//   out contiguous with shape[i] = x.shape[dims[i]], same dtype and device; out must not overlap x.
//   dims is a permutation of 0..ndim-1 (negative entries count from the back).
#pragma once

#include <vector>

#include "core/tensor.h"

namespace omnirt::ops {

constexpr int kMaxPermuteDims = 6;

void permute(const Tensor& x, const std::vector<int>& dims, Tensor& out);

}  // namespace omnirt::ops
