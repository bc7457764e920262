// The LLM engine with weight-only quantised decoder linears (LlmEngineOptions::weight_format) on
// the tiny checkpoint, teacher-forced: a prompt prefill, then a fixed token sequence decoded one
// by one, logits compared at every step.
//
// Bounds:
// - CUDA quantised vs CPU quantised (the CPU engine computes with dequant(W), the exact weights
//   the CUDA decode GEMVs read as 4-bit codes and scales): 1e-2, the fp16 engine's CUDA-vs-CPU
//   tolerance (LlmEngineCuda): only the fp16 activations/KV cache differ, not the weights.
// - CUDA quantised vs CUDA fp16 (the quantisation error the issue asks to report): by the
//   triangle inequality through the two CPU engines it is at most the CPU quantisation error
//   (dense F32 vs quantised F32 engine, computed here on the same inputs) + 2 x 1e-2; and the CPU
//   quantisation error itself must stay below 0.35 (INT4 per channel, the coarsest format here:
//   each weight moves by up to max|row| / 14, ~7% of a uniform row's RMS; measured on the CPU for
//   this checkpoint and prompt: printed by the test).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "models/llm/llm_engine.h"

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

std::unique_ptr<LlmEngine> engine(Device dev, DType dt, const std::string& fmt) {
  LlmEngineOptions o;
  o.device = dev;
  o.dtype = dt;
  o.all_logits = true;
  o.max_context = 64;
  o.weight_format = fmt;
  return LlmEngine::from_folder(kTiny, o);
}

const char* const kFormats[] = {"int4", "int4-g32", "nvfp4"};

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

TEST(LlmQuantEngine, CudaDecodeMatchesCpuAndFp16WithinQuantisationError) {
  OMNIRT_REQUIRE_CUDA_LLM(kTiny);
  std::mt19937_64 rng(omnirt::testing::test_seed());
  auto cpu_dense = engine(Device::CPU, DType::F32, "");
  auto gpu_dense = engine(Device::CUDA, DType::F16, "");
  const int64_t V = cpu_dense->config().vocab_size, L = 20;
  const Tensor prompt = omnirt::testing::random_tensor({L, cpu_dense->config().hidden_size}, rng);
  const std::vector<float> cd = decode_part(teacher_forced(*cpu_dense, prompt), L, V);
  const std::vector<float> gd = decode_part(teacher_forced(*gpu_dense, prompt), L, V);
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
    EXPECT_LE(e_kernel, 1e-2);
    EXPECT_LE(e_prefill, 1e-2);
    EXPECT_LE(e_gpu_q, e_cpu_q + 2e-2);
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

}  // namespace
}  // namespace omnirt::llm
