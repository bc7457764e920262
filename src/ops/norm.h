// Normalisations over the last dimension ("features"); all leading dimensions are rows.
// CPU: float32. CUDA: float32, float16, bfloat16 (all tensors the same dtype; math in float32).
// `out` may alias `x` (in-place).
#pragma once

#include "core/tensor.h"

namespace omnirt::ops {

// out = (x - mean) / sqrt(var + eps) * weight + bias, with the biased variance (PyTorch
// LayerNorm). weight [F] and bias [F] are each optional: pass Tensor() to skip (MLN uses a
// LayerNorm without affine).
void layernorm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps, Tensor& out);

// LLaMA RMSNorm (HF LlamaRMSNorm order): in float32 compute x * rsqrt(mean(x^2) + eps), round to
// the input dtype, then multiply by weight [F] (the product rounded to the dtype again).
void rmsnorm(const Tensor& x, const Tensor& weight, float eps, Tensor& out);

// The decoder-layer pattern of the LLM, fused:
//   residual_out = x + residual          (rounded to the dtype, like PyTorch's fp16 add)
//   out          = rmsnorm(residual_out, weight, eps)
// residual_out may alias x or residual; out may alias x or residual, but not residual_out.
void add_rmsnorm(const Tensor& x, const Tensor& residual, const Tensor& weight, float eps,
                 Tensor& out, Tensor& residual_out);

}  // namespace omnirt::ops
