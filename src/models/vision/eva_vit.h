// EVA-02 ViT backbone (OmniDrive `img_backbone`), spec/omnidrive_model.md §2.
//
//   img [N, 3, H, W] -> patch embed (16x16 conv as im2col + GEMM) + bicubic-resized abs pos
//   -> 12 pre-norm blocks: x += proj(attn(rope(q), rope(k), v)); x += w3(ffn_ln(silu(w1 x) * w2 x))
//      window blocks: LN, zero-pad to a multiple of the window (not masked), attend per window
//      (GEMMs run on the real tokens only; the padded window layout exists only as the
//      attention input, built by ops::qkv_rope_heads, padded q/k/v = the biases)
//      global blocks: attend over the whole grid, RoPE positions scaled to the pre-training grid
//   -> features [N, gh, gw, C] (NHWC; token order camera, row, column as the heads expect)
//
// Weights are converted once at load: q/k/v fused into one [3C, C] GEMM with bias
// [q_bias, 0, v_bias] (k has no bias), w1/w2 fused into one [2*hidden, C] GEMM followed by
// SwiGLU, the abs pos embedding resized once, the RoPE tables built once.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "models/vision/vision_config.h"
#include "ops/gemm.h"

namespace omnirt::vision {

// Returns the host tensor stored under `name` in the checkpoint (original OmniDrive key names),
// or throws an omnirt::Error naming it.
using WeightGetter = std::function<Tensor(const std::string& name)>;

struct EvaBlockWeights {
  Tensor norm1_w, norm1_b, norm2_w, norm2_b;
  Tensor qkv_w, qkv_b;  // [3C, C], [3C]
  Tensor proj_w, proj_b;
  Tensor w12_w, w12_b;  // [2*hidden, C], [2*hidden]: rows 0..hidden-1 = w1 (gate), then w2 (up)
  Tensor ffn_ln_w, ffn_ln_b;
  Tensor w3_w, w3_b;
  bool window = false;
};

class EvaVit {
 public:
  // `dtype`: F32 on the CPU; F32, F16 or BF16 on CUDA. `tf32` lets fp32 GEMMs use TF32.
  EvaVit(const VisionConfig& cfg, const WeightGetter& get, Device device, DType dtype,
         bool tf32 = false);

  // img [N, 3, H, W] in `dtype` on `device` -> [N, gh, gw, C]. `taps`, when given, receives
  // "patch_embed", "block{i}" outputs (copies) for parity tests.
  Tensor forward(const Tensor& img, std::map<std::string, Tensor>* taps = nullptr);

  const Tensor& abs_pos() const { return abs_pos_; }  // [gh, gw, C]

 private:
  void attention_block(const Tensor& qkv, int layer, Tensor& merged);
  Tensor& buffer(const std::string& name, const Shape& shape);

  VisionConfig cfg_;
  Device device_;
  DType dtype_;
  ops::GemmOptions gemm_;
  Tensor patch_w_, patch_b_;  // [C, 3*p*p], [C]
  Tensor abs_pos_;            // [gh, gw, C]
  Tensor rope_win_cos_, rope_win_sin_, rope_glb_cos_, rope_glb_sin_;  // [S, head_dim]
  std::vector<EvaBlockWeights> blocks_;
  std::map<std::string, Tensor> buffers_;  // activations, reused across frames of one shape
};

// PyTorch F.interpolate(mode="bicubic", align_corners=False) of an [H, W, C] float32 grid to
// [out_h, out_w, C] (A = -0.75, border indices clamped) — host reference, used at load.
Tensor bicubic_resize_hwc(const Tensor& grid, int out_h, int out_w);

}  // namespace omnirt::vision
