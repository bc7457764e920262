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
#include "models/vision/fp8_calibration.h"
#include "models/vision/vision_config.h"
#include "ops/fp8.h"
#include "ops/gemm.h"

namespace omnirt::vision {

// Returns the host tensor stored under `name` in the checkpoint (original OmniDrive key names),
// or throws an omnirt::Error naming it.
using WeightGetter = std::function<Tensor(const std::string& name)>;

// One linear layer of the FP8 backbone: E4M3 weight with a per-tensor scale (amax / 448 of the
// float32 weight, at load), the input's per-tensor scale (from the calibration), both F32 [1] on
// the device. K is zero-padded to a multiple of 16 (the input is quantised into a padded buffer);
// a layer whose N is not a multiple of 16 cannot run in FP8 and stays in the activation dtype
// (`on` false; the tiny test checkpoint's w12, N = 340).
struct Fp8Linear {
  bool on = false;
  int64_t k = 0, k_padded = 0;
  Tensor w_q;  // [N, k_padded] F8E4M3
  Tensor w_scale, x_scale;
};

struct EvaBlockWeights {
  Tensor norm1_w, norm1_b, norm2_w, norm2_b;
  Tensor qkv_w, qkv_b;  // [3C, C], [3C]
  Tensor proj_w, proj_b;
  Tensor w12_w, w12_b;  // [2*hidden, C], [2*hidden]: rows 0..hidden-1 = w1 (gate), then w2 (up)
  Tensor ffn_ln_w, ffn_ln_b;
  Tensor w3_w, w3_b;
  bool window = false;
  Fp8Linear qkv_f8, proj_f8, w12_f8, w3_f8;  // FP8 backbone only
};

class EvaVit {
 public:
  // `dtype`: F32 on the CPU; F32, F16 or BF16 on CUDA. `tf32` lets fp32 GEMMs use TF32.
  // dtype F8E4M3 = the FP8 backbone: the linear layers (patch embed, qkv, proj, w12, w3) as
  // E4M3 GEMMs with per-tensor scales, everything else in F16 on CUDA or F32 on the CPU (where
  // the GEMMs are ops::linear_fp8's reference); needs `fp8` (the activation calibration, checked
  // against this config; an error names what is missing).
  EvaVit(const VisionConfig& cfg, const WeightGetter& get, Device device, DType dtype,
         bool tf32 = false, const Fp8Calibration* fp8 = nullptr);

  // img [N, 3, H, W] in `dtype` on `device` -> [N, gh, gw, C]. `taps`, when given, receives
  // "patch_embed", "block{i}" outputs (copies) for parity tests.
  Tensor forward(const Tensor& img, std::map<std::string, Tensor>* taps = nullptr);

  const Tensor& abs_pos() const { return abs_pos_; }  // [gh, gw, C]
  // The dtype of the input images, activations and output (F16/F32 for the FP8 backbone).
  DType activation_dtype() const { return dtype_; }
  bool fp8() const { return fp8_; }
  // Number of linear layers that run in FP8 (the rest fall back; see Fp8Linear).
  int fp8_layers() const;

  // Calibration: while set, every GEMM input's max |x| is accumulated (ops::amax, on the device,
  // no sync) into (*recorder)[name] (an F32 [1] tensor, created as 0 on first use). Names as in
  // Fp8Calibration::gemm_inputs. nullptr stops recording.
  void set_amax_recorder(std::map<std::string, Tensor>* recorder) { amax_recorder_ = recorder; }

 private:
  void attention_block(const Tensor& qkv, int layer, Tensor& merged);
  Tensor& buffer(const std::string& name, const Shape& shape, DType dtype);
  Tensor& buffer(const std::string& name, const Shape& shape) { return buffer(name, shape, dtype_); }
  Fp8Linear make_fp8(const Tensor& host_weight, const std::string& input_name,
                     const Fp8Calibration& calibration) const;
  // out_rows = x_rows W^T + b (+ out_rows when `residual`): through `f` in FP8 when it is on,
  // else in the activation dtype with `w`.
  void project(const std::string& input_name, const Tensor& x_rows, const Tensor& w,
               const Tensor& b, const Fp8Linear& f, Tensor& out_rows, bool residual);

  VisionConfig cfg_;
  Device device_;
  DType dtype_;  // activations
  bool fp8_ = false;
  ops::GemmOptions gemm_;
  ops::Fp8GemmOptions fp8_gemm_;
  Fp8Linear patch_f8_;
  std::map<std::string, Tensor>* amax_recorder_ = nullptr;
  Tensor patch_w_, patch_b_;  // [C, 3*p*p], [C]
  Tensor abs_pos_;            // [gh, gw, C]
  Tensor rope_win_cos_, rope_win_sin_, rope_glb_cos_, rope_glb_sin_;  // [S, head_dim]
  std::vector<EvaBlockWeights> blocks_;
  std::map<std::string, Tensor> buffers_;  // activations, reused across frames of one shape
};

// The calibration pass: runs the backbone (F16 on CUDA, F32 on the CPU) over `frames` (each
// [N, 3, H, W] normalised float32, host or device) and records every GEMM input's max |x|.
// `source` says what the frames were (stored in the result, shown in messages).
Fp8Calibration calibrate_fp8(const VisionConfig& cfg, const WeightGetter& get, Device device,
                             const std::vector<Tensor>& frames, const std::string& source);

// PyTorch F.interpolate(mode="bicubic", align_corners=False) of an [H, W, C] float32 grid to
// [out_h, out_w, C] (A = -0.75, border indices clamped) — host reference, used at load.
Tensor bicubic_resize_hwc(const Tensor& grid, int out_h, int out_w);

}  // namespace omnirt::vision
