// CUDA backend of ops::attention: a fused flash-style kernel (online softmax, K/V tiles in
// shared memory, fp32 math). Compiled only with OMNIRT_WITH_CUDA; arguments are validated by
// src/ops/attention.cpp. Runs on omnirt::cuda::current_stream().
#pragma once

#include "ops/attention.h"

namespace omnirt::ops::cuda {

// q, k, v, out: F32, F16 or BF16 (one dtype), innermost stride 1, head_dim 32, 64 or 128.
// mask: undefined or contiguous [Sq, Sk] of 1-byte elements (nonzero = blocked).
void attention(const AttentionDims& dims, const Tensor& q, const Tensor& k, const Tensor& v,
               Tensor& out, const Tensor& mask);

}  // namespace omnirt::ops::cuda
