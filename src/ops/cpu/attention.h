// CPU (float32) backend of ops::attention. Arguments are validated by src/ops/attention.cpp.
#pragma once

#include "ops/attention.h"

namespace omnirt::ops::cpu {

// mask: undefined or contiguous [Sq, Sk] of 1-byte elements (nonzero = blocked).
void attention(const AttentionDims& dims, const Tensor& q, const Tensor& k, const Tensor& v,
               Tensor& out, const Tensor& mask);

}  // namespace omnirt::ops::cpu
