// The LLM engine with weight-only quantised decoder linears (LlmEngineOptions::weight_format:
// int4, int4-g32, nvfp4, fp8) on the tiny checkpoint, teacher-forced: a prompt prefill, then a
// fixed token sequence decoded one by one, logits compared at every step.
//
// Bounds:
// - CUDA quantised vs CPU quantised (the CPU engine computes with dequant(W), the exact weights
//   the CUDA decode GEMVs read as 4-bit codes and scales): only the fp16 activations / KV cache
//   (and, in prefill, the fp16 rounding of the dequantised weights) differ, exactly as between
//   the dense fp16 CUDA engine and the dense CPU engine. So the bound is that drift measured on
//   the same checkpoint and prompt, x 2 (two independent rounding patterns of the same size), at
//   least 1e-2 (LlmEngineCuda's fp16 tolerance). This holds only if both engines really have the
//   same codes: until issue #8 the F16 engine quantised its F16-rounded copy of the checkpoint
//   (a few INT4 codes flipped by a whole step, dequantised weights 0.73% apart instead of 0.02%)
//   and the H200 run at 201e038 measured 1.0-1.6e-2 against a dense drift of 0.8-1.6e-3; now
//   both quantise the float32 checkpoint (F16EngineQuantisesTheFloat32Checkpoint, CPU).
// - CUDA quantised vs CUDA fp16 (the quantisation error the issue asks to report): by the
//   triangle inequality through the two CPU engines it is at most the CPU quantisation error
//   (dense F32 vs quantised F32 engine, computed here on the same inputs) + the two CUDA-vs-CPU
//   drifts (+ 1e-3 for the differing norms of the relative errors); and the CPU
//   quantisation error itself must stay below 0.35 (INT4 per channel, the coarsest format here:
//   each weight moves by up to max|row| / 14, ~7% of a uniform row's RMS; measured on the CPU for
//   this checkpoint and prompt: printed by the test).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include "common/test_util.h"
#include "io/safetensors.h"
#include "models/llm/llm_engine.h"
#include "quant/engine.h"
#include "quant/llm_quant.h"

namespace omnirt::llm {
namespace {

using omnirt::testing::rel_error;

const std::string kTiny = std::string(OMNIRT_TEST_DATA_DIR) + "/tiny_ckpt";
const std::vector<int32_t> kForced = {5, 17, 300, 3, 250, 42, 1, 77};

// Prompt logits (all positions) then the logits after each forced token, concatenated.
std::vector<float> teacher_forced(LlmEngine& e, const Tensor& prompt) {
  std::vector<float> out = e.prefill_all_logits(prompt).to_float_vector();
  for (int32_t t : kForced) {
    const std::vector<float> lg = e.decode(t).to(Device::CPU).to_float_vector();
    out.insert(out.end(), lg.begin(), lg.end());
  }
  return out;
}
// Only the decode steps (the part the quantised GEMVs compute).
std::vector<float> decode_part(const std::vector<float>& all, int64_t prompt_len, int64_t vocab) {
  return std::vector<float>(all.begin() + prompt_len * vocab, all.end());
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
std::unique_ptr<LlmEngine> engine(Device dev, DType dt, const std::string& fmt) {
  return engine_at(kTiny, dev, dt, fmt);
}

const char* const kFormats[] = {"int4", "int4-g32", "nvfp4", "fp8"};

TEST(LlmQuantEngine, CpuQuantisationErrorOfTheTinyModel) {
  std::mt19937_64 rng(omnirt::testing::test_seed());
  auto dense = engine(Device::CPU, DType::F32, "");
  const int64_t V = dense->config().vocab_size, L = 20;
  const Tensor prompt = omnirt::testing::random_tensor({L, dense->config().hidden_size}, rng);
  const std::vector<float> ref = teacher_forced(*dense, prompt);
  for (const char* fmt : kFormats) {
    auto q = engine(Device::CPU, DType::F32, fmt);
    EXPECT_EQ(q->weight_format(), fmt);
    EXPECT_LT(q->decode_weight_bytes(), dense->decode_weight_bytes());
    const std::vector<float> got = teacher_forced(*q, prompt);
    const double e_all = rel_error(got, ref);
    const double e_dec = rel_error(decode_part(got, L, V), decode_part(ref, L, V));
    std::printf("[ quant   ] CPU %s vs dense F32: logits rel. error %.4f (all), %.4f (decode)\n",
                fmt, e_all, e_dec);
    EXPECT_GT(e_dec, 1e-4) << fmt << ": the weights were not quantised";
    EXPECT_LE(e_dec, 0.35) << fmt;
    EXPECT_LE(e_all, 0.35) << fmt;
  }
}

// Issue #8: the F16 (CUDA) engine must quantise the checkpoint's float32 values, not its F16 copy,
// or its INT4 / NVFP4 codes differ from the F32 CPU reference's (on the tiny checkpoint 44 of 86016
// per-channel INT4 codes flipped by a whole step, i.e. dequantised weights 0.73% apart where F16
// rounding alone moves them 0.02%: the CUDA-vs-CPU logits drift was 10x the dense fp16 one).
// Checked on the CPU with F16 weights: same codes / scales as the F32 load, dense copy =
// F16(dequant). The last check shows the comparison can fail: quantising the F16 copy does differ.
TEST(LlmQuantEngine, F16EngineQuantisesTheFloat32Checkpoint) {
  const LlamaConfig cfg = LlamaConfig::from_folder(kTiny);
  const WeightStore ck = WeightStore::open(kTiny + "/llm.safetensors");
  const TensorLookup lookup = [&](const std::string& n) {
    return ck.contains(n) ? ck.get(n) : Tensor();
  };
  const auto codes_of = [](const LlamaWeights& w) {
    std::vector<const QuantLinear*> q;
    for (const auto& l : w.layers)
      for (const QuantLinear* x : {&l.q_wqkv, &l.q_wo, &l.q_gate_up, &l.q_down}) q.push_back(x);
    return q;
  };
  int differs_when_quantising_f16 = 0;
  for (const char* fmt : kFormats) {
    SCOPED_TRACE(fmt);
    const LlamaWeights ref = quant::load_quantised_llama_weights(cfg, lookup, Device::CPU,
                                                                    DType::F32, fmt, false, kTiny);
    const LlamaWeights f16 = quant::load_quantised_llama_weights(cfg, lookup, Device::CPU,
                                                                    DType::F16, fmt, false, kTiny);
    EXPECT_EQ(f16.dtype, DType::F16);
    EXPECT_EQ(f16.quant_name, fmt);
    const auto a = codes_of(f16), b = codes_of(ref);
    for (size_t i = 0; i < a.size(); ++i) {
      ASSERT_TRUE(a[i]->defined() && b[i]->defined()) << "linear " << i;
      ASSERT_EQ(a[i]->codes.nbytes(), b[i]->codes.nbytes());
      EXPECT_EQ(std::memcmp(a[i]->codes.raw(), b[i]->codes.raw(), a[i]->codes.nbytes()), 0)
          << "linear " << i;
      ASSERT_EQ(a[i]->scales.nbytes(), b[i]->scales.nbytes());
      EXPECT_EQ(std::memcmp(a[i]->scales.raw(), b[i]->scales.raw(), a[i]->scales.nbytes()), 0)
          << "linear " << i;
      EXPECT_EQ(a[i]->global_scale, b[i]->global_scale) << "linear " << i;
    }
    // The dense (prefill) copy is the F32 dequantised weight rounded once to F16.
    for (size_t l = 0; l < ref.layers.size(); ++l)
      for (auto [x, y] : {std::pair{&f16.layers[l].wqkv, &ref.layers[l].wqkv},
                          std::pair{&f16.layers[l].w_down, &ref.layers[l].w_down}})
        EXPECT_EQ(x->to_float_vector(), y->to_dtype(DType::F16).to_float_vector()) << "layer " << l;
    // What the F16 engine did before: quantise its own F16 copy.
    LlamaWeights old = load_llama_weights(cfg, lookup, Device::CPU, DType::F16, kTiny);
    quant::quantize_llama_weights(old, fmt);
    const auto c = codes_of(old);
    for (size_t i = 0; i < c.size(); ++i)
      differs_when_quantising_f16 +=
          std::memcmp(c[i]->codes.raw(), b[i]->codes.raw(), c[i]->codes.nbytes()) != 0;
  }
  EXPECT_GT(differs_when_quantising_f16, 0);
}

TEST(LlmQuantEngine, CudaDecodeMatchesCpuAndFp16WithinQuantisationError) {
  OMNIRT_REQUIRE_CUDA_LLM(kTiny);
  std::mt19937_64 rng(omnirt::testing::test_seed());
  auto cpu_dense = engine(Device::CPU, DType::F32, "");
  auto gpu_dense = engine(Device::CUDA, DType::F16, "");
  const int64_t V = cpu_dense->config().vocab_size, L = 20;
  const Tensor prompt = omnirt::testing::random_tensor({L, cpu_dense->config().hidden_size}, rng);
  const std::vector<float> cda = teacher_forced(*cpu_dense, prompt);
  const std::vector<float> gda = teacher_forced(*gpu_dense, prompt);
  const std::vector<float> cd = decode_part(cda, L, V), gd = decode_part(gda, L, V);
  // The dense fp16 engine's own drift from the CPU on this checkpoint and prompt.
  const double fp16_dec = rel_error(gd, cd);
  const double fp16_pre = rel_error(std::vector<float>(gda.begin(), gda.begin() + L * V),
                                    std::vector<float>(cda.begin(), cda.begin() + L * V));
  std::printf("[ quant   ] dense fp16 CUDA vs CPU: %.2e (decode), %.2e (prefill)\n", fp16_dec,
              fp16_pre);
  const double tol_dec = std::max(1e-2, 2 * fp16_dec), tol_pre = std::max(1e-2, 2 * fp16_pre);
  for (const char* fmt : kFormats) {
    SCOPED_TRACE(fmt);
    auto cq = engine(Device::CPU, DType::F32, fmt);
    auto gq = engine(Device::CUDA, DType::F16, fmt);
    const std::vector<float> cqa = teacher_forced(*cq, prompt), gqa = teacher_forced(*gq, prompt);
    const std::vector<float> cqd = decode_part(cqa, L, V), gqd = decode_part(gqa, L, V);
    const double e_kernel = rel_error(gqd, cqd);  // CUDA quantised vs its CPU reference
    const double e_prefill = rel_error(std::vector<float>(gqa.begin(), gqa.begin() + L * V),
                                       std::vector<float>(cqa.begin(), cqa.begin() + L * V));
    const double e_cpu_q = rel_error(cqd, cd);    // the model's quantisation error (CPU)
    const double e_gpu_q = rel_error(gqd, gd);    // the same measured on the GPU engines
    std::printf("[ quant   ] %s: CUDA vs CPU quantised %.2e (decode), %.2e (prefill); vs fp16 "
                "engine %.4f (CPU quantisation error %.4f)\n",
                fmt, e_kernel, e_prefill, e_gpu_q, e_cpu_q);
    EXPECT_LE(e_kernel, tol_dec);
    EXPECT_LE(e_prefill, tol_pre);
    EXPECT_LE(e_gpu_q, e_cpu_q + e_kernel + fp16_dec + 1e-3);
    EXPECT_GT(e_gpu_q, 1e-4) << "the CUDA decode did not use the quantised weights";
    // Greedy tokens from the quantised CUDA engine's decode logits agree with its CPU reference
    // (one near-tie may flip).
    int same = 0;
    for (size_t st = 0; st < kForced.size(); ++st) {
      const auto row = [&](const std::vector<float>& v) {
        const auto b = v.begin() + (L + static_cast<int64_t>(st)) * V;
        return std::max_element(b, b + V) - b;
      };
      same += row(gqa) == row(cqa);
    }
    EXPECT_GE(same, static_cast<int>(kForced.size()) - 1);
  }
}

// An `omnirt build --llm int4-g32` engine folder loads with its INT4 codes as they are: the same
// codes and scales as quantising the checkpoint at load (both quantise each row on its own), and
// the same logits up to the engine folder's F16 embeddings / norms / lm_head.
std::string build_int4_engine(const std::string& name) {
  const std::string out = (std::filesystem::temp_directory_path() /
                           ("omnirt_quant_engine_" + name + "_" + std::to_string(getpid())))
                              .string();
  quant::BuildOptions b;
  b.model_dir = kTiny;
  b.out_dir = out;
  b.llm_precision = "int4-g32";
  b.gpu_arch = cuda_available() ? "sm_" + std::to_string(cuda_compute_capability()) : "sm_90";
  quant::build_engine(b);
  return out;
}

TEST(LlmQuantEngine, Int4EngineFolderLoadsItsCodes) {
  const std::string dir = build_int4_engine("cpu");
  auto from_engine = engine_at(dir, Device::CPU, DType::F32, "");
  auto at_load = engine(Device::CPU, DType::F32, "int4-g32");
  EXPECT_EQ(from_engine->weight_format(), "int4-g32");
  std::mt19937_64 rng(omnirt::testing::test_seed());
  const Tensor prompt =
      omnirt::testing::random_tensor({12, at_load->config().hidden_size}, rng);
  const double e = rel_error(teacher_forced(*from_engine, prompt), teacher_forced(*at_load, prompt));
  std::printf("[ quant   ] engine folder vs quantised at load (CPU): %.2e\n", e);
  EXPECT_LE(e, 1e-2);  // F16 rounding of embeddings, norms and lm_head (2^-11 each)
  // The codes themselves: byte-identical to quantising the checkpoint at load.
  const WeightStore store = WeightStore::open(dir + "/llm.safetensors");
  const LlamaConfig cfg = LlamaConfig::from_folder(dir);
  const LlamaWeights ew = quant::load_int4_engine_weights(
      cfg, [&](const std::string& n) { return store.contains(n) ? store.get(n) : Tensor(); },
      Device::CPU, DType::F32, "int4-g32", dir);
  const WeightStore ck = WeightStore::open(kTiny + "/llm.safetensors");
  LlamaWeights lw = load_llama_weights(
      cfg, [&](const std::string& n) { return ck.contains(n) ? ck.get(n) : Tensor(); },
      Device::CPU, DType::F32, kTiny);
  quant::quantize_llama_weights(lw, "int4-g32");
  for (size_t l = 0; l < ew.layers.size(); ++l) {
    for (auto [a, b] : {std::pair{&ew.layers[l].q_wqkv, &lw.layers[l].q_wqkv},
                        std::pair{&ew.layers[l].q_gate_up, &lw.layers[l].q_gate_up},
                        std::pair{&ew.layers[l].q_down, &lw.layers[l].q_down}}) {
      ASSERT_TRUE(a->defined());
      ASSERT_EQ(a->codes.shape(), b->codes.shape());
      EXPECT_EQ(std::memcmp(a->codes.raw(), b->codes.raw(), a->codes.nbytes()), 0) << "layer " << l;
      EXPECT_EQ(a->scales.to_float_vector(), b->scales.to_float_vector()) << "layer " << l;
    }
  }
  EXPECT_FALSE(ew.q_lm_head.defined());
  std::filesystem::remove_all(dir);
}

TEST(LlmQuantEngine, Int4EngineFolderDecodesOnCuda) {
  OMNIRT_REQUIRE_CUDA_LLM(kTiny);
  const std::string dir = build_int4_engine("cuda");
  auto cpu = engine_at(dir, Device::CPU, DType::F32, "");
  auto gpu = engine_at(dir, Device::CUDA, DType::F16, "");
  std::mt19937_64 rng(omnirt::testing::test_seed());
  const Tensor prompt = omnirt::testing::random_tensor({12, cpu->config().hidden_size}, rng);
  const int64_t V = cpu->config().vocab_size;
  const double e = rel_error(decode_part(teacher_forced(*gpu, prompt), 12, V),
                             decode_part(teacher_forced(*cpu, prompt), 12, V));
  // Yardstick as in CudaDecodeMatchesCpuAndFp16WithinQuantisationError: the dense fp16 engine's
  // drift on the same prompt (here from the checkpoint), x 2, at least 1e-2.
  auto cd = engine(Device::CPU, DType::F32, ""), gd = engine(Device::CUDA, DType::F16, "");
  const double fp16 = rel_error(decode_part(teacher_forced(*gd, prompt), 12, V),
                                decode_part(teacher_forced(*cd, prompt), 12, V));
  std::printf("[ quant   ] int4-g32 engine folder, CUDA vs CPU decode: %.2e (dense fp16: %.2e)\n",
              e, fp16);
  EXPECT_LE(e, std::max(1e-2, 2 * fp16));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace omnirt::llm
