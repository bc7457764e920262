// Rotary position embeddings.
// CPU: float32. CUDA: float32, float16, bfloat16 (math in float32). `out` may alias `x`.
#pragma once

#include "core/tensor.h"

namespace omnirt::ops {

// LLaMA / HF RoPE ("rotate_half" convention, as in HF LlamaRotaryEmbedding without scaling).
//   x [tokens, heads, head_dim] (head_dim even, <= 256), positions I32 [tokens] on x's device.
//   inv_freq[i] = 1 / theta^(2i / head_dim) and angle = position * inv_freq[i], both float32;
//   c = cos(angle), s = sin(angle); with h = head_dim / 2, for i < h:
//     out[i]     = x[i] * c - x[i + h] * s
//     out[i + h] = x[i + h] * c + x[i] * s
//   On CUDA in f16/bf16, like HF's fp16 evaluation, cos/sin and the two products are rounded to
//   the dtype before the final sum (float32: no effect).
void rope_llama(const Tensor& x, const Tensor& positions, float theta, Tensor& out);

// EVA-02 2-D RoPE (VisionRotaryEmbeddingFast), interleaved adjacent pairs:
//   x [batch, heads, tokens, D] (D even), cos/sin [tokens, D] float32 tables on x's device
//   (float32 whatever x's dtype: EVA keeps them as float32 buffers). For each pair j:
//     out[2j]   = x[2j] * cos[t, 2j]     - x[2j+1] * sin[t, 2j]
//     out[2j+1] = x[2j+1] * cos[t, 2j+1] + x[2j]   * sin[t, 2j+1]
void rope_eva2d(const Tensor& x, const Tensor& cos, const Tensor& sin, Tensor& out);

// EVA's tables (spec/omnidrive_model.md §2.2), built on the CPU in float32 exactly as the
// reference module does:
//   f_i = 1 / theta^(2i / dim), i < dim/2;  t_k = (k / ft_seq_len) * pt_seq_len, k < ft_seq_len
//   (float32, divide first: for ft = 40 that is 0, 0.4, ..., 15.6);
//   row of token (r, c), token index r * ft + c: [t_r f_0, t_r f_0, t_r f_1, t_r f_1, ...,
//   t_c f_0, t_c f_0, ...] (2 * dim values: the first dim rotate with the row, the rest with
//   the column); cos/sin of that.
// Returns CPU F32 tensors [ft_seq_len^2, 2 * dim]. EVA-02-B: dim 32, pt 16, ft 16 (window
// blocks) or 40 (global blocks).
struct RopeTables {
  Tensor cos, sin;
};
RopeTables eva_rope_tables(int64_t ft_seq_len, int64_t pt_seq_len = 16, int64_t dim = 32,
                           float theta = 10000.0f);

}  // namespace omnirt::ops
