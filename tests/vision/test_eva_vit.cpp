#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "common/test_util.h"
#include "core/error.h"
#include "models/vision/eva_vit.h"

using namespace omnirt;
using omnirt::vision::EvaVit;
using omnirt::vision::VisionConfig;

namespace {

// The tiny architecture of python/omnidrive_ref/config.py OmniDriveConfig.tiny().
VisionConfig tiny_config() {
  VisionConfig c;
  c.num_cams = 2;
  c.img_h = c.img_w = 80;
  c.embed_dim = 64;
  c.depth = 4;
  c.heads = 2;
  c.window_size = 4;
  c.window_block_indexes = {0, 2};
  c.mlp_hidden = 170;
  c.pretrain_grid = 3;
  c.pt_hw_seq_len = 4;
  return c;
}

// Random backbone weights with realistic scales (LayerNorms near 1, q/k scaled up so attention
// is far from uniform and RoPE matters).
std::map<std::string, Tensor> random_backbone(const VisionConfig& c, std::mt19937_64& rng) {
  std::map<std::string, Tensor> w;
  const int64_t C = c.embed_dim, H = c.mlp_hidden, P = c.patch, g = c.pretrain_grid;
  auto rnd = [&](const Shape& s, float scale, float offset = 0.f) {
    Tensor t = omnirt::testing::random_tensor(s, rng, -scale, scale);
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] += offset;
    return t;
  };
  const std::string p = "img_backbone.";
  w[p + "patch_embed.proj.weight"] = rnd({C, 3, P, P}, 0.05f);
  w[p + "patch_embed.proj.bias"] = rnd({C}, 0.1f);
  w[p + "pos_embed"] = rnd({1, g * g + 1, C}, 0.5f);
  for (int i = 0; i < c.depth; ++i) {
    const std::string b = p + "blocks." + std::to_string(i) + ".";
    for (const char* n : {"norm1", "norm2"}) {
      w[b + n + ".weight"] = rnd({C}, 0.2f, 1.f);
      w[b + n + ".bias"] = rnd({C}, 0.1f);
    }
    w[b + "attn.q_proj.weight"] = rnd({C, C}, 3.f / std::sqrt(float(C)));
    w[b + "attn.k_proj.weight"] = rnd({C, C}, 3.f / std::sqrt(float(C)));
    w[b + "attn.v_proj.weight"] = rnd({C, C}, 1.f / std::sqrt(float(C)));
    w[b + "attn.q_bias"] = rnd({C}, 0.2f);
    w[b + "attn.v_bias"] = rnd({C}, 0.2f);
    w[b + "attn.proj.weight"] = rnd({C, C}, 1.f / std::sqrt(float(C)));
    w[b + "attn.proj.bias"] = rnd({C}, 0.1f);
    w[b + "mlp.w1.weight"] = rnd({H, C}, 1.f / std::sqrt(float(C)));
    w[b + "mlp.w1.bias"] = rnd({H}, 0.1f);
    w[b + "mlp.w2.weight"] = rnd({H, C}, 1.f / std::sqrt(float(C)));
    w[b + "mlp.w2.bias"] = rnd({H}, 0.1f);
    w[b + "mlp.ffn_ln.weight"] = rnd({H}, 0.2f, 1.f);
    w[b + "mlp.ffn_ln.bias"] = rnd({H}, 0.1f);
    w[b + "mlp.w3.weight"] = rnd({C, H}, 1.f / std::sqrt(float(H)));
    w[b + "mlp.w3.bias"] = rnd({C}, 0.1f);
  }
  return w;
}

vision::WeightGetter getter(const std::map<std::string, Tensor>& w) {
  return [&w](const std::string& name) {
    auto it = w.find(name);
    OMNIRT_CHECK(it != w.end(), "missing tensor '", name, "'");
    return it->second;
  };
}

}  // namespace

TEST(EvaVit, BicubicResizeMatchesPyTorch) {
  // Expected values printed by PyTorch 2.x (not by our code):
  //   F.interpolate(torch.arange(12.).view(1,1,3,4), size=(5,7), mode="bicubic",
  //                 align_corners=False)[0,0]
  const float expected[5][7] = {
      {-0.48321646f, -0.10475475f, 0.51259243f, 1.11600053f, 1.71940899f, 2.33675432f, 2.71521688f},
      {1.16478598f, 1.54324687f, 2.16059375f, 2.76400185f, 3.36741042f, 3.98475575f, 4.36321783f},
      {3.90078545f, 4.27924490f, 4.89659166f, 5.5f, 6.10340881f, 6.72075367f, 7.09921646f},
      {6.63678694f, 7.01524448f, 7.63259172f, 8.23600006f, 8.83941078f, 9.45675373f, 9.83521652f},
      {8.28478909f, 8.66324615f, 9.28059196f, 9.88400078f, 10.48741245f, 11.10475445f, 11.48321915f}};
  Tensor g = Tensor::empty({3, 4, 1}, DType::F32);
  for (int i = 0; i < 12; ++i) g.data<float>()[i] = float(i);
  Tensor r = vision::bicubic_resize_hwc(g, 5, 7);
  for (int y = 0; y < 5; ++y)
    for (int x = 0; x < 7; ++x) EXPECT_NEAR(r.data<float>()[y * 7 + x], expected[y][x], 2e-5);
}

TEST(EvaVit, MissingOrMisshapedWeightIsNamed) {
  std::mt19937_64 rng(omnirt::testing::test_seed());
  VisionConfig c = tiny_config();
  auto w = random_backbone(c, rng);
  w.erase("img_backbone.blocks.2.attn.v_bias");
  try {
    EvaVit vit(c, getter(w), Device::CPU, DType::F32);
    FAIL() << "expected an error";
  } catch (const omnirt::Error& e) {
    EXPECT_NE(std::string(e.what()).find("blocks.2.attn.v_bias"), std::string::npos) << e.what();
  }
  auto w2 = random_backbone(c, rng);
  w2["img_backbone.blocks.1.mlp.w3.weight"] = Tensor::zeros({64, 7}, DType::F32);
  try {
    EvaVit vit(c, getter(w2), Device::CPU, DType::F32);
    FAIL() << "expected an error";
  } catch (const omnirt::Error& e) {
    EXPECT_NE(std::string(e.what()).find("blocks.1.mlp.w3.weight"), std::string::npos) << e.what();
  }
}

TEST(EvaVit, CudaMatchesCpu) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(omnirt::testing::test_seed());
  VisionConfig c = tiny_config();
  auto w = random_backbone(c, rng);
  Tensor img = omnirt::testing::random_tensor({c.num_cams, 3, c.img_h, c.img_w}, rng, -2.f, 2.f);
  EvaVit cpu(c, getter(w), Device::CPU, DType::F32);
  Tensor ref = cpu.forward(img).clone();
  struct Case { DType dt; double tol; };
  for (Case cs : {Case{DType::F32, 1e-4}, Case{DType::F16, 1e-2}, Case{DType::BF16, 3e-2}}) {
    EvaVit gpu(c, getter(w), Device::CUDA, cs.dt);
    Tensor out = gpu.forward(img.to_dtype(cs.dt).to(Device::CUDA));
    EXPECT_LE(omnirt::testing::rel_error(out, ref), cs.tol) << dtype_name(cs.dt);
  }
}

// A mid-size geometry for the fused CUDA path: head_dim 64 (the real one: 16-byte vectors in
// qkv_rope_heads), a 10x10 grid padded to 12x12 by window 4 (partial windows on two
// sides), global blocks between, mlp_hidden 516 (fp16 rows not a multiple of 8: the scalar
// swiglu_layernorm path; fp32 the vector one), and the TF32 engine as well.
TEST(EvaVit, CudaMatchesCpuHeadDim64AndTf32) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(omnirt::testing::test_seed());
  VisionConfig c = tiny_config();
  c.num_cams = 3;
  c.img_h = c.img_w = 160;
  c.embed_dim = 192;
  c.heads = 3;
  c.depth = 3;
  c.window_size = 4;
  c.window_block_indexes = {0, 2};
  c.mlp_hidden = 516;
  c.pretrain_grid = 4;
  c.pt_hw_seq_len = 4;
  auto w = random_backbone(c, rng);
  Tensor img = omnirt::testing::random_tensor({c.num_cams, 3, c.img_h, c.img_w}, rng, -2.f, 2.f);
  EvaVit cpu(c, getter(w), Device::CPU, DType::F32);
  Tensor ref = cpu.forward(img).clone();
  struct Case { DType dt; bool tf32; double tol; };
  for (Case cs : {Case{DType::F32, false, 1e-4}, Case{DType::F32, true, 1e-2},
                  Case{DType::F16, false, 1e-2}, Case{DType::BF16, false, 3e-2}}) {
    EvaVit gpu(c, getter(w), Device::CUDA, cs.dt, cs.tf32);
    for (int frame = 0; frame < 2; ++frame) {  // the second frame reuses buffers and tuned plans
      Tensor out = gpu.forward(img.to_dtype(cs.dt).to(Device::CUDA));
      EXPECT_LE(omnirt::testing::rel_error(out, ref), cs.tol)
          << dtype_name(cs.dt) << (cs.tf32 ? " tf32" : "") << " frame " << frame;
    }
  }
}
