// Scaled dot-product attention: out = softmax(scale * q k^T + mask) v, per (batch, head).
//
//   q   [B, Hq,  Sq, D]      k, v [B, Hkv, Sk, D]      out [B, Hq, Sq, D]
//
// Layout: the last dimension (D) of q, k, v and out must be contiguous (stride 1); the other
// three dimensions may have any strides, so permuted views such as q from a fused QKV
// projection ([B, S, H, D] viewed as [B, H, S, D]) are accepted without a copy.
// GQA/MQA: Hq must be a multiple of Hkv; query head h reads kv head h / (Hq / Hkv).
// Causal: query i sees keys j <= i + (Sk - Sq), i.e. the query block is aligned to the *end*
// of the keys (decode and chunked prefill: the Sq new tokens are the last Sq positions).
// Causal with Sq > Sk is rejected (the first rows would see no key at all).
// Mask: optional [Sq, Sk] of U8 or Bool, contiguous, on the same device; nonzero = blocked
// (PyTorch's boolean attn_mask convention for nn.MultiheadAttention). Mask and causal combine.
// Fully blocked rows: a query row whose every key is blocked by the mask has an undefined
// softmax; like PyTorch (nn.MultiheadAttention / the math SDPA path) its output row is NaN.
// It is documented behaviour, not an accident: both backends write NaN explicitly.
// Dtypes: CPU float32 only; CUDA F32, F16, BF16 (all of q, k, v, out the same) with fp32 math,
// head_dim D in {32, 64, 128}. All tensors on one device.
#pragma once

#include <optional>

#include "core/tensor.h"

namespace omnirt::ops {

// Which CUDA kernel runs (tests and tuning; results agree up to rounding).
//   Auto: tensor cores for F16/BF16 (and F32 with allow_tf32) when a (batch, kv head) has >= 32
//         query rows (Hq/Hkv * Sq) and every row starts on a 16-byte boundary, else the SIMT
//         kernel (decode). TensorCore: F16/BF16, or F32 with allow_tf32. Simt: any dtype.
enum class AttentionKernel { Auto, Simt, TensorCore };

struct AttentionOptions {
  std::optional<float> scale;  // default 1 / sqrt(D)
  bool causal = false;
  Tensor mask;  // undefined = no mask; else [Sq, Sk] U8/Bool, nonzero = blocked
  // CUDA only, for tests and tuning: split the keys into this many chunks processed by separate
  // blocks and merged afterwards (flash-decoding). 0 = automatic (split when the grid would
  // leave most SMs idle, e.g. decode), 1 = never split. Results are the same up to rounding.
  int cuda_kv_splits = 0;
  AttentionKernel cuda_kernel = AttentionKernel::Auto;
  // CUDA, F32 inputs: let the products run on TF32 tensor cores (10-bit mantissa operands, fp32
  // sums; ~1e-3 relative error), like GemmOptions' Fp32Compute::TF32. Off: exact fp32 (SIMT).
  bool allow_tf32 = false;
};

void attention(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out,
               const AttentionOptions& options = {});

// Resolved sizes, handed to the backends by the dispatcher.
struct AttentionDims {
  int64_t batch = 0, heads_q = 0, heads_kv = 0, seq_q = 0, seq_k = 0, head_dim = 0;
  float scale = 1.f;
  bool causal = false;
  int kv_splits = 0;  // AttentionOptions::cuda_kv_splits
  AttentionKernel kernel = AttentionKernel::Auto;
  bool allow_tf32 = false;
};

}  // namespace omnirt::ops
