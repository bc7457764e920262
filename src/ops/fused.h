// Fused ops of the ViT (EVA-02) backbone: each replaces a chain of separate kernels whose
// intermediate tensors would otherwise make a round trip through memory.
// CPU: float32 (the reference: plain loops). CUDA: float32, float16, bfloat16 (math in float32).
#pragma once

#include "core/tensor.h"

namespace omnirt::ops {

// out = layernorm(swiglu_concat(gate_up), weight, bias, eps): EVA's SwiGLU MLP middle
// (ffn_ln(silu(w1 x) * w2 x)) in one pass.
//   gate_up [..., 2H]: gate in [..., :H], up in [..., H:];  weight, bias [H] (each optional);
//   out [..., H], must not overlap gate_up.
// Rounding as the unfused ops in the dtype (PyTorch fp16 evaluation): silu(gate) and the
// product are rounded to the dtype, then normalised in float32 (biased variance, two-pass).
void swiglu_layernorm(const Tensor& gate_up, const Tensor& weight, const Tensor& bias, float eps,
                      Tensor& out);

// The attention input of an EVA block from its fused q/k/v projection, in one pass: head split,
// window partition with zero padding (window blocks), and 2-D RoPE on q and k.
//   qkv      [N, gh, gw, 3E]: the projection of the real tokens, [q | k | v] with E = heads * D.
//   qkv_bias [3E]: what a padded token's projection is. EVA pads the map with zeros after norm1
//            and does not mask them, so a padded token's q/k/v are exactly the biases.
//   cos, sin float32 [S, D] (ops::eva_rope_tables of the window, or of the whole grid).
//   window   > 0: the map is zero-padded at the bottom/right to multiples of `window` and cut
//            into B = N * ceil(gh/window) * ceil(gw/window) windows (row-major, as
//            ops::window_partition), S = window^2 tokens each (row-major inside the window).
//            == 0: one "window" per image: B = N, S = gh * gw.
//   out      [3, B, heads, S, D] contiguous: out[0] = rope(q), out[1] = rope(k), out[2] = v,
//            i.e. ops::attention's q, k, v as out.select(0, i). Must not overlap the inputs.
// RoPE is rope_eva2d's (interleaved pairs, table row = token index inside the window). D even.
// Equals window_partition + linear + permute + rope_eva2d of the unfused path exactly.
void qkv_rope_heads(const Tensor& qkv, const Tensor& qkv_bias, const Tensor& cos, const Tensor& sin,
                    int window, Tensor& out);

}  // namespace omnirt::ops
