// `omnirt build --llm nvfp4` engine folders (quant/engine.h, quant/nvfp4_engine.h) on the tiny
// checkpoint: the folder holds each decoder linear's E2M1 codes, E4M3 block scales and fp32
// global scale as the NVFP4 GEMV reads them, and loads into the same engine weights as quantising
// the checkpoint at load (LlmEngineOptions::weight_format = "nvfp4"): codes, scales and global
// scales byte-identical, logits bit-identical (CPU; CUDA with a GPU). Corrupt folders fail with
// errors naming the tensor.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include "common/test_util.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "models/llm/llm_engine.h"
#include "quant/engine.h"
#include "quant/llm_quant.h"
#include "quant/nvfp4.h"
#include "quant/nvfp4_engine.h"

namespace omnirt::llm {
namespace {

namespace fs = std::filesystem;
using omnirt::testing::rel_error;

const std::string kTiny = std::string(OMNIRT_TEST_DATA_DIR) + "/tiny_ckpt";
const std::vector<int32_t> kForced = {5, 17, 300, 3, 250, 42, 1, 77};

std::vector<float> teacher_forced(LlmEngine& e, const Tensor& prompt) {
  std::vector<float> out = e.prefill_all_logits(prompt).to(Device::CPU).to_float_vector();
  for (int32_t t : kForced) {
    const std::vector<float> lg = e.decode(t).to(Device::CPU).to_float_vector();
    out.insert(out.end(), lg.begin(), lg.end());
  }
  return out;
}

std::unique_ptr<LlmEngine> engine_at(const std::string& dir, Device dev, DType dt,
                                     const std::string& fmt) {
  LlmEngineOptions o;
  o.device = dev;
  o.dtype = dt;
  o.all_logits = true;
  o.max_context = 64;
  o.weight_format = fmt;
  return LlmEngine::from_folder(dir, o);
}

std::string build_nvfp4_engine(const std::string& name, const std::string& arch = "") {
  const std::string out =
      (fs::temp_directory_path() / ("omnirt_nvfp4_engine_" + name + "_" + std::to_string(getpid())))
          .string();
  quant::BuildOptions b;
  b.model_dir = kTiny;
  b.out_dir = out;
  b.llm_precision = "nvfp4";
  b.gpu_arch = !arch.empty()      ? arch
               : cuda_available() ? "sm_" + std::to_string(cuda_compute_capability())
                                  : "sm_90";
  quant::build_engine(b);
  return out;
}

void expect_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one containing " << parts[0];
  } catch (const Error& e) {
    for (const std::string& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos)
          << "message lacks \"" << p << "\": " << e.what();
  }
}

TEST(LlmNvfp4Engine, BuildWritesKernelLayoutAndManifest) {
  const std::string dir = build_nvfp4_engine("layout");
  const quant::EngineManifest m = quant::load_engine_manifest(dir, quant::RuntimeCaps{});
  EXPECT_EQ(m.llm_precision, "nvfp4");
  EXPECT_EQ(m.group_size, 0);
  EXPECT_EQ(m.llm_other_dtype, "F32");  // the tiny checkpoint's dtype, copied unconverted
  const SafetensorsFile f = SafetensorsFile::open(dir + "/llm.safetensors");
  const LlamaConfig cfg = LlamaConfig::from_folder(dir);
  const int64_t H = cfg.hidden_size, I = cfg.intermediate_size;
  const std::string p = "model.layers.1.mlp.down_proj";
  EXPECT_FALSE(f.contains(p + ".weight"));
  EXPECT_EQ(f.info(p + ".qweight").dtype, DType::U8);
  EXPECT_EQ(f.info(p + ".qweight").shape, (Shape{H, I / 2}));
  EXPECT_EQ(f.info(p + ".scales").dtype, DType::U8);
  EXPECT_EQ(f.info(p + ".scales").shape, (Shape{H, I / quant::kNvfp4Block}));
  EXPECT_EQ(f.info(p + ".global_scale").dtype, DType::F32);
  EXPECT_EQ(f.info(p + ".global_scale").shape, (Shape{1}));
  EXPECT_EQ(f.info("lm_head.weight").dtype, DType::F32);  // lm_head stays dense
  // The stored codes are quantize_nvfp4 of the checkpoint's weight (down_proj is not fused, so
  // its global scale is its own max|W| / (6 * 448)).
  const SafetensorsFile ck = SafetensorsFile::open(kTiny + "/llm.safetensors");
  const quant::Nvfp4Weight ref = quant::quantize_nvfp4(ck.get(p + ".weight"), p);
  const Tensor codes = f.get(p + ".qweight"), scales = f.get(p + ".scales");
  EXPECT_EQ(std::memcmp(codes.raw(), ref.codes.raw(), ref.codes.nbytes()), 0);
  EXPECT_EQ(std::memcmp(scales.raw(), ref.scales.raw(), ref.scales.nbytes()), 0);
  EXPECT_EQ(f.get(p + ".global_scale").to_float_vector()[0], ref.global_scale);
  fs::remove_all(dir);
}

// Bit-identical to quantising the same checkpoint at load, on the CPU.
TEST(LlmNvfp4Engine, CpuLogitsBitIdenticalToLoadTimeQuantisation) {
  const std::string dir = build_nvfp4_engine("cpu");
  auto from_engine = engine_at(dir, Device::CPU, DType::F32, "");
  auto at_load = engine_at(kTiny, Device::CPU, DType::F32, "nvfp4");
  auto dense = engine_at(kTiny, Device::CPU, DType::F32, "");
  EXPECT_EQ(from_engine->weight_format(), "nvfp4");
  std::mt19937_64 rng(omnirt::testing::test_seed());
  const Tensor prompt = omnirt::testing::random_tensor({12, at_load->config().hidden_size}, rng);
  const std::vector<float> a = teacher_forced(*from_engine, prompt);
  const std::vector<float> b = teacher_forced(*at_load, prompt);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0)
      << "engine folder vs load-time NVFP4 differ by " << rel_error(a, b);
  // Not vacuous: NVFP4 really changed the logits relative to the dense model.
  const double q_err = rel_error(a, teacher_forced(*dense, prompt));
  std::printf("[ nvfp4   ] engine folder == load-time quantisation (CPU); vs dense %.2e\n", q_err);
  EXPECT_GT(q_err, 1e-4);
  EXPECT_LT(q_err, 0.35);
  fs::remove_all(dir);
}

// The half-precision weights the CUDA engine uploads (checked on the CPU): the engine folder's
// dense linears are dequantised straight to F16 / BF16; they must equal load-time quantisation's
// dequant-then-round, and the codes / scales / global scales must be the same bytes.
TEST(LlmNvfp4Engine, HalfWeightsIdenticalToLoadTimeQuantisation) {
  const std::string dir = build_nvfp4_engine("half");
  const WeightStore es = WeightStore::open(dir + "/llm.safetensors");
  const WeightStore cs = WeightStore::open(kTiny + "/llm.safetensors");
  const LlamaConfig cfg = LlamaConfig::from_folder(kTiny);
  auto lookup = [](const WeightStore& st) {
    return [&st](const std::string& n) { return st.contains(n) ? st.get(n) : Tensor(); };
  };
  for (DType dt : {DType::F16, DType::BF16}) {
    const LlamaWeights a = quant::load_nvfp4_engine_weights(cfg, lookup(es), Device::CPU, dt, dir);
    const LlamaWeights b = quant::load_quantised_llama_weights(cfg, lookup(cs), Device::CPU, dt,
                                                               "nvfp4", false, kTiny);
    auto same = [](const Tensor& x, const Tensor& y) {
      return x.dtype() == y.dtype() && x.shape() == y.shape() &&
             std::memcmp(x.raw(), y.raw(), x.nbytes()) == 0;
    };
    EXPECT_EQ(a.quant_name, b.quant_name);
    for (size_t l = 0; l < a.layers.size(); ++l) {
      const auto& x = a.layers[l];
      const auto& y = b.layers[l];
      EXPECT_TRUE(same(x.wqkv, y.wqkv) && same(x.wo, y.wo) && same(x.w_gate_up, y.w_gate_up) &&
                  same(x.w_down, y.w_down))
          << "layer " << l << " " << dtype_name(dt);
      for (auto [p, q] : {std::pair{&x.q_wqkv, &y.q_wqkv}, std::pair{&x.q_wo, &y.q_wo},
                          std::pair{&x.q_gate_up, &y.q_gate_up}, std::pair{&x.q_down, &y.q_down}}) {
        EXPECT_TRUE(same(p->codes, q->codes) && same(p->scales, q->scales)) << "layer " << l;
        EXPECT_EQ(p->global_scale, q->global_scale) << "layer " << l;
      }
    }
    EXPECT_TRUE(same(a.embed, b.embed) && same(a.lm_head, b.lm_head));
  }
  fs::remove_all(dir);
}

TEST(LlmNvfp4Engine, CudaLogitsBitIdenticalToLoadTimeQuantisation) {
  OMNIRT_REQUIRE_CUDA_LLM(kTiny);
  const std::string dir = build_nvfp4_engine("cuda");
  auto from_engine = engine_at(dir, Device::CUDA, DType::F16, "");
  auto at_load = engine_at(kTiny, Device::CUDA, DType::F16, "nvfp4");
  auto cpu = engine_at(dir, Device::CPU, DType::F32, "");
  std::mt19937_64 rng(omnirt::testing::test_seed());
  const Tensor prompt = omnirt::testing::random_tensor({12, at_load->config().hidden_size}, rng);
  const std::vector<float> a = teacher_forced(*from_engine, prompt);
  const std::vector<float> b = teacher_forced(*at_load, prompt);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0)
      << "engine folder vs load-time NVFP4 on CUDA differ by " << rel_error(a, b);
  // And the CUDA NVFP4 engine computes the model: within the dense fp16 engine's drift from the
  // CPU on the same prompt, x 2, at least 1e-2 (the yardstick of test_llm_quant_engine.cpp).
  const double e = rel_error(a, teacher_forced(*cpu, prompt));
  auto cd = engine_at(kTiny, Device::CPU, DType::F32, ""),
       gd = engine_at(kTiny, Device::CUDA, DType::F16, "");
  const double fp16 = rel_error(teacher_forced(*gd, prompt), teacher_forced(*cd, prompt));
  std::printf("[ nvfp4   ] engine folder CUDA fp16 vs CPU f32: %.2e (dense fp16: %.2e)\n", e, fp16);
  EXPECT_LE(e, std::max(1e-2, 2 * fp16));
  fs::remove_all(dir);
}

TEST(LlmNvfp4Engine, FastDequantisationMatchesTheReference) {
  std::mt19937_64 rng(omnirt::testing::test_seed());
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto [n, k] : {std::pair<int64_t, int64_t>{3, 16}, {37, 208}, {1031, 2064}}) {
    Tensor codes = Tensor::empty({n, k / 2}, DType::U8);
    Tensor scales = Tensor::empty({n, k / 16}, DType::U8);
    for (int64_t i = 0; i < codes.numel(); ++i) codes.data<uint8_t>()[i] = byte(rng);
    for (int64_t i = 0; i < scales.numel(); ++i) scales.data<uint8_t>()[i] = byte(rng) & 0x7E;
    const float g = 3.7e-4f * (1 + byte(rng));
    const Tensor ref = quant::dequantize_nvfp4(codes, scales, g, "w");
    for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
      const Tensor want = dt == DType::F32 ? ref : ref.to_dtype(dt);
      const Tensor fast = quant::dequantize_nvfp4_fast(codes, scales, g, "w", dt);
      ASSERT_EQ(fast.shape(), want.shape());
      ASSERT_EQ(fast.dtype(), dt);
      EXPECT_EQ(std::memcmp(fast.raw(), want.raw(), want.nbytes()), 0)
          << n << "x" << k << " " << dtype_name(dt);
    }
  }
}

// Corrupt tensors: each error names the tensor and says what was expected.
TEST(LlmNvfp4Engine, CorruptTensorsGiveClearErrors) {
  const std::string dir = build_nvfp4_engine("corrupt");
  const WeightStore store = WeightStore::open(dir + "/llm.safetensors");
  const LlamaConfig cfg = LlamaConfig::from_folder(dir);
  const std::string k = "model.layers.0.self_attn.k_proj";
  auto load_with = [&](const std::string& name, const Tensor& replacement) {
    return [&, name, replacement] {
      quant::load_nvfp4_engine_weights(
          cfg,
          [&](const std::string& n) {
            if (n == name) return replacement;
            return store.contains(n) ? store.get(n) : Tensor();
          },
          Device::CPU, DType::F32, dir);
    };
  };
  auto scalar = [](float v, DType dt = DType::F32) {
    Tensor t = Tensor::empty({1}, DType::F32);
    t.data<float>()[0] = v;
    return dt == DType::F32 ? t : t.to_dtype(dt);
  };
  EXPECT_NO_THROW(load_with("none", Tensor())());
  expect_error(load_with(k + ".global_scale", Tensor()), {"\"" + k + ".global_scale\" is missing"});
  expect_error(load_with(k + ".global_scale", scalar(NAN)),
               {"\"" + k + ".global_scale\" is nan", "finite"});
  expect_error(load_with(k + ".global_scale", scalar(std::numeric_limits<float>::infinity())),
               {"\"" + k + ".global_scale\" is inf", "finite"});
  expect_error(load_with(k + ".global_scale", scalar(-1.f)), {k + ".global_scale", ">= 0"});
  expect_error(load_with(k + ".global_scale", scalar(1e-3f, DType::F16)),
               {k + ".global_scale", "expected F32 [1]", "F16"});
  expect_error(
      load_with(k + ".global_scale", scalar(1e-3f)),
      {k + ".global_scale", "differs from", "model.layers.0.self_attn.q_proj.global_scale"});
  const Tensor s = store.get(k + ".scales");
  expect_error(load_with(k + ".scales", s.slice(1, 0, s.dim(1) - 1).contiguous()),
               {k + ".scales: expected U8 [" + std::to_string(s.dim(0)) + ", " +
                std::to_string(s.dim(1)) + "]"});
  expect_error(load_with(k + ".scales", s.to_dtype(DType::F32)), {k + ".scales", "F32"});
  expect_error(load_with(k + ".qweight", store.get(k + ".qweight").to_dtype(DType::F32)),
               {k + ".qweight", "expected U8"});
  fs::remove_all(dir);
}

// The same through LlmEngine::from_folder on a rewritten llm.safetensors (manifest sizes updated,
// so the tensor check, not the file-size check, catches it).
TEST(LlmNvfp4Engine, FromFolderNamesAMissingGlobalScale) {
  const std::string dir = build_nvfp4_engine("missing");
  const std::string file = dir + "/llm.safetensors";
  const std::string drop = "model.layers.1.mlp.up_proj.global_scale";
  {
    const SafetensorsFile f = SafetensorsFile::open(file);
    std::vector<std::pair<std::string, Tensor>> tensors;
    for (const std::string& n : f.names())
      if (n != drop) tensors.emplace_back(n, f.get(n).clone());
    write_safetensors(file + ".new", tensors, {});
  }
  fs::rename(file + ".new", file);
  nlohmann::json j;
  std::ifstream(dir + "/manifest.json") >> j;
  j["files"]["llm.safetensors"] = fs::file_size(file);
  std::ofstream(dir + "/manifest.json") << j.dump(2);
  expect_error([&] { engine_at(dir, Device::CPU, DType::F32, ""); },
               {dir, "\"" + drop + "\" is missing", "rebuild"});
  fs::remove_all(dir);
}

// An engine built for another GPU architecture: the manifest check refuses it on CUDA (before any
// weight is read) and the CPU path runs it.
TEST(LlmNvfp4Engine, ArchMismatchIsRefusedOnCuda) {
  const std::string dir = build_nvfp4_engine("arch", "sm_100");
  expect_error(
      [&] {
        quant::load_engine_manifest(dir, quant::RuntimeCaps{Device::CUDA, 90});
      },
      {"built for sm_100; this GPU is sm_90", "--llm nvfp4", "--arch sm_90"});
  EXPECT_NO_THROW(engine_at(dir, Device::CPU, DType::F32, ""));
  if (cuda_available() && cuda_compute_capability() != 100)
    expect_error([&] { engine_at(dir, Device::CUDA, DType::F16, ""); },
                 {"built for sm_100", "--llm nvfp4"});
  fs::remove_all(dir);
}

}  // namespace
}  // namespace omnirt::llm
