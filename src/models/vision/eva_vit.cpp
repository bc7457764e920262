#include "models/vision/eva_vit.h"

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/log.h"
#include "ops/attention.h"
#include "core/stage_timer.h"
#include "ops/elementwise.h"
#include "ops/fused.h"
#include "ops/norm.h"
#include "ops/permute.h"
#include "ops/rope.h"
#include "ops/window.h"

namespace omnirt::vision {

namespace {

// Host float32 copy of a checkpoint tensor with an expected shape (clear error otherwise).
Tensor host_weight(const WeightGetter& get, const std::string& name, const Shape& shape) {
  Tensor t = get(name);
  expect_shape(t, shape, "img_backbone weight '" + name + "'");
  return t.dtype() == DType::F32 ? t.contiguous() : t.to_dtype(DType::F32);
}

Tensor concat_rows(const std::vector<Tensor>& parts) {
  int64_t rows = 0;
  for (const auto& p : parts) rows += p.dim(0);
  Shape shape = parts[0].shape();
  shape[0] = rows;
  Tensor out = Tensor::empty(shape, DType::F32);
  char* dst = static_cast<char*>(out.raw());
  for (const auto& p : parts) {
    std::memcpy(dst, p.raw(), p.nbytes());
    dst += p.nbytes();
  }
  return out;
}

double cubic1(double x, double a) { return ((a + 2) * x - (a + 3)) * x * x + 1; }
double cubic2(double x, double a) { return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a; }

}  // namespace

Tensor bicubic_resize_hwc(const Tensor& grid, int out_h, int out_w) {
  OMNIRT_CHECK(grid.ndim() == 3 && grid.dtype() == DType::F32, "bicubic_resize_hwc: expected F32 "
               "[H, W, C], got ", grid.describe());
  const int64_t in_h = grid.dim(0), in_w = grid.dim(1), c = grid.dim(2);
  Tensor src = grid.contiguous();
  Tensor out = Tensor::empty({out_h, out_w, c}, DType::F32);
  const float* in = src.data<float>();
  float* o = out.data<float>();
  constexpr float kA = -0.75f;
  // PyTorch (align_corners=False, cubic): src = scale * (dst + 0.5) - 0.5, not clamped at 0;
  // the four taps are clamped to the border. Scale is in/out as float.
  const float scale_h = static_cast<float>(in_h) / out_h, scale_w = static_cast<float>(in_w) / out_w;
  for (int y = 0; y < out_h; ++y) {
    const float ry = scale_h * (y + 0.5f) - 0.5f;
    const int iy = static_cast<int>(std::floor(ry));
    const float ty = ry - iy;
    const float wy[4] = {float(cubic2(ty + 1.0, kA)), float(cubic1(ty, kA)),
                         float(cubic1(1.0 - ty, kA)), float(cubic2(2.0 - ty, kA))};
    for (int x = 0; x < out_w; ++x) {
      const float rx = scale_w * (x + 0.5f) - 0.5f;
      const int ix = static_cast<int>(std::floor(rx));
      const float tx = rx - ix;
      const float wx[4] = {float(cubic2(tx + 1.0, kA)), float(cubic1(tx, kA)),
                           float(cubic1(1.0 - tx, kA)), float(cubic2(2.0 - tx, kA))};
      for (int64_t ch = 0; ch < c; ++ch) {
        float acc = 0.f;
        for (int j = 0; j < 4; ++j) {
          const int64_t yy = std::clamp<int64_t>(iy - 1 + j, 0, in_h - 1);
          float row = 0.f;
          for (int i = 0; i < 4; ++i) {
            const int64_t xx = std::clamp<int64_t>(ix - 1 + i, 0, in_w - 1);
            row += in[(yy * in_w + xx) * c + ch] * wx[i];
          }
          acc += row * wy[j];
        }
        o[(int64_t(y) * out_w + x) * c + ch] = acc;
      }
    }
  }
  return out;
}

EvaVit::EvaVit(const VisionConfig& cfg, const WeightGetter& get, Device device, DType dtype,
               bool tf32, const Fp8Calibration* fp8)
    : cfg_(cfg), device_(device), dtype_(dtype) {
  if (dtype == DType::F8E4M3) {
    OMNIRT_CHECK(fp8 != nullptr, "EvaVit: the FP8 backbone needs activation scales, and none were "
                 "given: calibrate first (vision::calibrate_fp8 / VisionEngine::calibrate_fp8 on "
                 "sample frames) or load a saved calibration (Fp8Calibration::load), and pass it "
                 "as VisionEngineOptions::fp8_calibration (CLI: --fp8-calibration FILE)");
    fp8->check_matches(cfg, "EvaVit (FP8 backbone)");
    fp8_ = true;
    // Everything that is not a GEMM: F16 on the GPU, the float32 reference on the CPU.
    dtype_ = device == Device::CUDA ? DType::F16 : DType::F32;
  }
  OMNIRT_CHECK(device == Device::CUDA || dtype_ == DType::F32,
               "EvaVit: the CPU backend runs float32 (or the FP8 reference) only");
  OMNIRT_CHECK(dtype_ == DType::F32 || dtype_ == DType::F16 || dtype_ == DType::BF16,
               "EvaVit: unsupported dtype ", dtype_name(dtype));
  dtype = dtype_;
  gemm_.fp32_compute = tf32 ? ops::Fp32Compute::TF32 : ops::Fp32Compute::Exact;
  // The backbone's few large GEMM shapes run every frame: time cuBLASLt's candidates once each.
  gemm_.autotune = device == Device::CUDA;
  fp8_gemm_.autotune = device == Device::CUDA;
  const int64_t C = cfg.embed_dim, P = cfg.patch, H = cfg.mlp_hidden;
  auto place = [&](const Tensor& host) {
    Tensor t = dtype == DType::F32 ? host : host.to_dtype(dtype);
    return device == Device::CPU ? t.clone() : t.to(device);
  };
  const std::string pre = "img_backbone.";
  const Tensor patch_w = host_weight(get, pre + "patch_embed.proj.weight", {C, 3, P, P}).reshape({C, 3 * P * P});
  if (fp8_) patch_f8_ = make_fp8(patch_w, "patch_embed", *fp8);
  // An FP8 layer keeps no half copy of its weight.
  auto place_unless = [&](const Fp8Linear& f, const Tensor& host) { return f.on ? Tensor() : place(host); };
  patch_w_ = place_unless(patch_f8_, patch_w);
  patch_b_ = place(host_weight(get, pre + "patch_embed.proj.bias", {C}));

  const int64_t g = cfg.pretrain_grid;
  Tensor pos = host_weight(get, pre + "pos_embed", {1, g * g + 1, C});
  Tensor grid = pos.reshape({g * g + 1, C}).slice(0, 1, g * g + 1).reshape({g, g, C});
  abs_pos_ = place((g == cfg.grid_h() && g == cfg.grid_w()) ? grid.clone()
                                                             : bicubic_resize_hwc(grid, cfg.grid_h(), cfg.grid_w()));

  // RoPE tables stay float32 whatever the compute dtype (EVA keeps them as float32 buffers).
  auto to_dev = [&](const Tensor& t) { return device == Device::CPU ? t : t.to(device); };
  const int half_head = cfg.vit_head_dim() / 2;
  ops::RopeTables win = ops::eva_rope_tables(cfg.window_size, cfg.pt_hw_seq_len, half_head, cfg.rope_theta);
  ops::RopeTables glb = ops::eva_rope_tables(cfg.grid_h(), cfg.pt_hw_seq_len, half_head, cfg.rope_theta);
  rope_win_cos_ = to_dev(win.cos);
  rope_win_sin_ = to_dev(win.sin);
  rope_glb_cos_ = to_dev(glb.cos);
  rope_glb_sin_ = to_dev(glb.sin);

  for (int i = 0; i < cfg.depth; ++i) {
    const std::string b = pre + "blocks." + std::to_string(i) + ".";
    EvaBlockWeights w;
    w.window = cfg.is_window_block(i);
    w.norm1_w = place(host_weight(get, b + "norm1.weight", {C}));
    w.norm1_b = place(host_weight(get, b + "norm1.bias", {C}));
    w.norm2_w = place(host_weight(get, b + "norm2.weight", {C}));
    w.norm2_b = place(host_weight(get, b + "norm2.bias", {C}));
    const std::string in = "blocks." + std::to_string(i) + ".";
    const Tensor qkv_w = concat_rows({host_weight(get, b + "attn.q_proj.weight", {C, C}),
                                      host_weight(get, b + "attn.k_proj.weight", {C, C}),
                                      host_weight(get, b + "attn.v_proj.weight", {C, C})});
    const Tensor proj_w = host_weight(get, b + "attn.proj.weight", {C, C});
    const Tensor w12_w = concat_rows({host_weight(get, b + "mlp.w1.weight", {H, C}),
                                      host_weight(get, b + "mlp.w2.weight", {H, C})});
    const Tensor w3_w = host_weight(get, b + "mlp.w3.weight", {C, H});
    if (fp8_) {
      w.qkv_f8 = make_fp8(qkv_w, in + "qkv", *fp8);
      w.proj_f8 = make_fp8(proj_w, in + "proj", *fp8);
      w.w12_f8 = make_fp8(w12_w, in + "w12", *fp8);
      w.w3_f8 = make_fp8(w3_w, in + "w3", *fp8);
    }
    w.qkv_w = place_unless(w.qkv_f8, qkv_w);
    w.qkv_b = place(concat_rows({host_weight(get, b + "attn.q_bias", {C}), Tensor::zeros({C}, DType::F32),
                                 host_weight(get, b + "attn.v_bias", {C})}));
    w.proj_w = place_unless(w.proj_f8, proj_w);
    w.proj_b = place(host_weight(get, b + "attn.proj.bias", {C}));
    w.w12_w = place_unless(w.w12_f8, w12_w);
    w.w12_b = place(concat_rows({host_weight(get, b + "mlp.w1.bias", {H}),
                                 host_weight(get, b + "mlp.w2.bias", {H})}));
    w.ffn_ln_w = place(host_weight(get, b + "mlp.ffn_ln.weight", {H}));
    w.ffn_ln_b = place(host_weight(get, b + "mlp.ffn_ln.bias", {H}));
    w.w3_w = place_unless(w.w3_f8, w3_w);
    w.w3_b = place(host_weight(get, b + "mlp.w3.bias", {C}));
    blocks_.push_back(std::move(w));
  }
}

Tensor& EvaVit::buffer(const std::string& name, const Shape& shape, DType dtype) {
  auto it = buffers_.find(name);
  if (it == buffers_.end() || it->second.shape() != shape || it->second.dtype() != dtype)
    it = buffers_.insert_or_assign(name, Tensor::empty(shape, dtype, device_)).first;
  return it->second;
}

int EvaVit::fp8_layers() const {
  int n = patch_f8_.on ? 1 : 0;
  for (const EvaBlockWeights& w : blocks_)
    for (const Fp8Linear* f : {&w.qkv_f8, &w.proj_f8, &w.w12_f8, &w.w3_f8}) n += f->on ? 1 : 0;
  return n;
}

Fp8Linear EvaVit::make_fp8(const Tensor& weight, const std::string& input_name,
                           const Fp8Calibration& calibration) const {
  Fp8Linear f;
  const int64_t n = weight.dim(0);
  f.k = weight.dim(1);
  f.k_padded = (f.k + 15) / 16 * 16;
  const float x_amax = calibration.amax(input_name);  // checked before: every name is there
  if (n % 16 != 0) {
    LOG_INFO("FP8 backbone: ", input_name, " (N = ", n, ", not a multiple of 16) stays in ",
             dtype_name(dtype_));
    return f;
  }
  f.on = true;
  auto to_device = [&](const Tensor& host) { return device_ == Device::CPU ? host : host.to(device_); };
  Tensor amax = Tensor::zeros({1}, DType::F32);
  ops::amax(weight, amax);
  Tensor w_scale = Tensor::from_vector({ops::fp8_scale_for_amax(amax.data<float>()[0])}, {1});
  Tensor w_q = Tensor::empty({n, f.k_padded}, DType::F8E4M3);
  ops::quantize_fp8(weight, w_scale, w_q);  // the K padding is zeros
  f.w_q = to_device(w_q);
  f.w_scale = to_device(w_scale);
  f.x_scale = to_device(Tensor::from_vector({ops::fp8_scale_for_amax(x_amax)}, {1}));
  return f;
}

void EvaVit::project(const std::string& input_name, const Tensor& x_rows, const Tensor& w,
                     const Tensor& b, const Fp8Linear& f, Tensor& out_rows, bool residual) {
  if (amax_recorder_) {
    Tensor& a = (*amax_recorder_)[input_name];
    if (!a.defined()) a = Tensor::zeros({1}, DType::F32, device_);
    ops::amax(x_rows, a, /*accumulate=*/true);
  }
  if (f.on) {
    Tensor& xq = buffer("fp8_input." + std::to_string(f.k_padded),
                        {x_rows.dim(0), f.k_padded}, DType::F8E4M3);
    ops::quantize_fp8(x_rows, f.x_scale, xq);
    ops::linear_fp8(xq, f.x_scale, f.w_q, f.w_scale, b, out_rows, residual ? 1.f : 0.f, fp8_gemm_);
  } else if (residual) {
    ops::gemm(x_rows, w, out_rows, /*trans_a=*/false, /*trans_b=*/true, 1.0f, 1.0f, b, gemm_);
  } else {
    ops::linear(x_rows, w, b, out_rows, gemm_);
  }
}

// qkv [N, gh, gw, 3C] (the projection of the real tokens) -> merged [T, C]: attention output in
// token order, heads concatenated (the proj GEMM's input). Window blocks attend in the
// zero-padded window layout; only this step needs it, so the GEMMs before and after run on the
// T real tokens and qkv_rope_heads builds the padded layout (padded tokens: q/k/v = biases).
void EvaVit::attention_block(const Tensor& qkv, int layer, Tensor& merged) {
  const EvaBlockWeights& w = blocks_[layer];
  const int64_t N = cfg_.num_cams, gh = cfg_.grid_h(), gw = cfg_.grid_w(), C = cfg_.embed_dim;
  const int64_t nh = cfg_.heads, hd = cfg_.vit_head_dim();
  const int ws = w.window ? cfg_.window_size : 0;
  const int64_t B = w.window ? N * ((gh + ws - 1) / ws) * ((gw + ws - 1) / ws) : N;
  const int64_t S = w.window ? int64_t(ws) * ws : gh * gw;
  const std::string k = w.window ? "win." : "glb.";
  Tensor& heads = buffer(k + "heads", {3, B, nh, S, hd});
  ops::qkv_rope_heads(qkv, w.qkv_b, w.window ? rope_win_cos_ : rope_glb_cos_,
                      w.window ? rope_win_sin_ : rope_glb_sin_, ws, heads);
  ops::AttentionOptions opt;
  opt.scale = 1.0f / std::sqrt(static_cast<float>(hd));
  opt.allow_tf32 = gemm_.fp32_compute == ops::Fp32Compute::TF32;  // the engine's tf32 option
  // The kernel writes [B, S, heads, D] (heads concatenated per token) through a permuted view:
  // no separate head-merge copy.
  Tensor& attn = w.window ? buffer("win.attn", {B, S, C}) : merged;
  Tensor attn_view = attn.reshape({B, S, nh, hd}).permute({0, 2, 1, 3});
  StageTimer::mark("backbone: GEMMs + pointwise");
  ops::attention(heads.select(0, 0), heads.select(0, 1), heads.select(0, 2), attn_view, opt);
  StageTimer::mark("backbone: attention kernel");
  if (w.window) {
    Tensor merged_grid = merged.reshape({N, gh, gw, C});
    ops::window_unpartition(attn, ws, merged_grid);  // drops the padded tokens
  }
}

Tensor EvaVit::forward(const Tensor& img, std::map<std::string, Tensor>* taps) {
  const int64_t N = cfg_.num_cams, P = cfg_.patch, gh = cfg_.grid_h(), gw = cfg_.grid_w();
  const int64_t C = cfg_.embed_dim, H = cfg_.mlp_hidden, T = N * gh * gw;
  expect_shape(img, {N, 3, cfg_.img_h, cfg_.img_w}, "EVA input images");
  OMNIRT_CHECK(img.device() == device_ && img.dtype() == dtype_, "EVA input images: expected ",
               dtype_name(dtype_), " on ", device_name(device_), ", got ", img.describe());

  // Patch embedding: a stride-16 16x16 conv is a GEMM over non-overlapping patches.
  Tensor& patches = buffer("patches", {N, gh, gw, 3, P, P});
  ops::permute(img.contiguous().reshape({N, 3, gh, P, gw, P}), {0, 2, 4, 1, 3, 5}, patches);
  Tensor& x = buffer("x", {N, gh, gw, C});
  Tensor x_rows = x.reshape({T, C});
  project("patch_embed", patches.reshape({T, 3 * P * P}), patch_w_, patch_b_, patch_f8_, x_rows,
          /*residual=*/false);
  if (taps) (*taps)["patch_embed"] = x.clone();
  ops::add(x, abs_pos_, x);

  // Per block (T real tokens; see attention_block for the padded window layout):
  //   xn = LN1(x); qkv = xn Wqkv^T + b; attention; x += merged Wproj^T + b (residual as the GEMM's
  //   C operand, beta = 1); xn = LN2(x); gate_up = xn W12^T + b; hidden = ffn_ln(swiglu) (one
  //   kernel); x += hidden W3^T + b (again beta = 1).
  Tensor& xn = buffer("xn", {N, gh, gw, C});
  Tensor& qkv = buffer("qkv", {N, gh, gw, 3 * C});
  Tensor& merged = buffer("merged", {T, C});
  Tensor& gate_up = buffer("gate_up", {T, 2 * H});
  Tensor& hidden_n = buffer("hidden_n", {T, H});
  Tensor qkv_rows = qkv.reshape({T, 3 * C});
  Tensor xn_rows = xn.reshape({T, C});
  for (int i = 0; i < cfg_.depth; ++i) {
    const EvaBlockWeights& w = blocks_[i];
    const std::string in = "blocks." + std::to_string(i) + ".";
    ops::layernorm(x, w.norm1_w, w.norm1_b, cfg_.vit_ln_eps, xn);
    project(in + "qkv", xn_rows, w.qkv_w, w.qkv_b, w.qkv_f8, qkv_rows, /*residual=*/false);
    attention_block(qkv, i, merged);
    project(in + "proj", merged, w.proj_w, w.proj_b, w.proj_f8, x_rows, /*residual=*/true);
    ops::layernorm(x, w.norm2_w, w.norm2_b, cfg_.vit_ln_eps, xn);
    project(in + "w12", xn_rows, w.w12_w, w.w12_b, w.w12_f8, gate_up, /*residual=*/false);
    ops::swiglu_layernorm(gate_up, w.ffn_ln_w, w.ffn_ln_b, cfg_.vit_ln_eps, hidden_n);
    project(in + "w3", hidden_n, w.w3_w, w.w3_b, w.w3_f8, x_rows, /*residual=*/true);
    if (taps) (*taps)["block" + std::to_string(i)] = x.clone();
  }
  StageTimer::mark("backbone: GEMMs + pointwise");
  return x;
}

}  // namespace omnirt::vision

namespace omnirt::vision {

Fp8Calibration calibrate_fp8(const VisionConfig& cfg, const WeightGetter& get, Device device,
                             const std::vector<Tensor>& frames, const std::string& source) {
  OMNIRT_CHECK(!frames.empty(), "FP8 calibration (", source, "): no calibration frames");
  const DType dtype = device == Device::CUDA ? DType::F16 : DType::F32;
  EvaVit vit(cfg, get, device, dtype);
  std::map<std::string, Tensor> recorded;
  vit.set_amax_recorder(&recorded);
  for (size_t i = 0; i < frames.size(); ++i) {
    Tensor host = frames[i].device() == Device::CPU ? frames[i] : frames[i].to(Device::CPU);
    expect_shape(host, {cfg.num_cams, 3, cfg.img_h, cfg.img_w},
                 "FP8 calibration frame " + std::to_string(i));
    OMNIRT_CHECK(host.dtype() == DType::F32, "FP8 calibration frame ", i, ": expected F32, got ",
                 host.describe());
    if (dtype != DType::F32) host = host.to_dtype(dtype);
    (void)vit.forward(device == Device::CPU ? host.contiguous() : host.to(device));
  }
  Fp8Calibration c;
  c.frames = static_cast<int>(frames.size());
  c.source = source;
  c.embed_dim = cfg.embed_dim;
  c.depth = cfg.depth;
  for (const auto& [name, amax] : recorded) c.input_amax[name] = amax.to(Device::CPU).data<float>()[0];
  c.check_matches(cfg, "FP8 calibration (" + source + ")");  // e.g. NaN in a frame
  return c;
}

}  // namespace omnirt::vision
