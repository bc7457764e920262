// CUDA sampler vs the CPU reference: same logits, history, seed and step -> the same token.
#include <gtest/gtest.h>

#include <random>

#include "common/test_util.h"
#include "models/llm/sampler.h"

#if defined(OMNIRT_WITH_CUDA)
#include <cuda_runtime.h>

#include "core/cuda_check.h"

namespace omnirt::llm {
namespace {

std::vector<float> normal_logits(int n, std::mt19937_64& rng, float scale) {
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// Device copy of `values` in `dtype`; `seen` gets the exact values the GPU will read.
Tensor upload(const std::vector<float>& values, DType dtype, std::vector<float>& seen) {
  Tensor host = Tensor::from_vector(values, {static_cast<int64_t>(values.size())});
  if (dtype != DType::F32) host = host.to_dtype(dtype);
  seen = host.to_float_vector();
  return host.to(Device::CUDA);
}

std::vector<SamplingConfig> configs() {
  std::vector<SamplingConfig> out;
  out.push_back(SamplingConfig::greedy());
  out.push_back(SamplingConfig::omnidrive_planning(7));
  SamplingConfig c;
  c.seed = 11;
  out.push_back(c);  // plain T = 1 over the whole vocabulary
  c.top_p = 0.75f;   // top-p without top-k
  out.push_back(c);
  c.top_p = 1.0f;
  c.top_k = 50;
  c.temperature = 0.7f;
  out.push_back(c);
  c.top_k = 1;
  out.push_back(c);
  c.top_k = 2000;
  c.top_p = 0.9f;
  c.temperature = 1.3f;
  out.push_back(c);
  c.top_k = 0;
  c.top_p = 0.95f;
  c.temperature = 1.0f;
  c.repetition_penalty = 1.3f;
  out.push_back(c);
  SamplingConfig g = SamplingConfig::greedy();
  g.repetition_penalty = 1.5f;
  out.push_back(g);
  return out;
}

TEST(CudaSampler, MatchesCpuOnRandomLogits) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(omnirt::testing::test_seed());
  int mismatches = 0, draws = 0;
  // 60001: past the shared-memory working copy (192 KB): the global-memory path.
  for (int vocab : {7, 1000, 32000, 32001, 60001}) {
    for (DType dtype : {DType::F32, DType::F16}) {
      for (const SamplingConfig& cfg : configs()) {
        CudaSampler gpu(vocab, cfg);
        Sampler cpu(cfg);
        std::vector<int32_t> history;
        for (int k = 0; k < 20; ++k) history.push_back(static_cast<int32_t>(rng() % vocab));
        history.push_back(-200);  // the image placeholder is ignored by both
        const uint64_t first_step = rng() % 1000;
        gpu.reset(history, first_step);
        cpu.reset(history, first_step);
        for (int step = 0; step < 6; ++step) {
          // Scale 3 spreads T = 1 over many tokens; fp16 rounding makes exact ties common.
          const float scale = (step % 2) ? 3.0f : 0.5f;
          std::vector<float> exact;
          Tensor dev = upload(normal_logits(vocab, rng, scale), dtype, exact);
          gpu.sample(dev, nullptr);
          const int32_t want = cpu.sample(exact);
          const int32_t got = gpu.token_host();
          ++draws;
          if (got != want) {
            ++mismatches;
            ADD_FAILURE() << "vocab " << vocab << " " << dtype_name(dtype) << " " << cfg.describe()
                          << " step " << step << ": cuda " << got << " cpu " << want;
          }
        }
        EXPECT_EQ(gpu.step_host(), first_step + 6);
      }
    }
  }
  EXPECT_EQ(mismatches, 0) << "of " << draws << " draws";
}

TEST(CudaSampler, GreedyTiesAndBadLogits) {
  OMNIRT_REQUIRE_CUDA();
  std::vector<float> l(3001, -1.0f);
  l[2999] = 5.0f;
  l[1234] = 5.0f;
  l[3000] = 5.0f;
  std::vector<float> exact;
  CudaSampler gpu(3001, SamplingConfig::greedy());
  gpu.sample(upload(l, DType::F32, exact), nullptr);
  EXPECT_EQ(gpu.token_host(), 1234);
  EXPECT_EQ(gpu.step_host(), 1u);
  l[17] = NAN;
  gpu.sample(upload(l, DType::F32, exact), nullptr);
  EXPECT_EQ(gpu.token_host(), -1);
  EXPECT_EQ(gpu.step_host(), 1u);
  l[17] = INFINITY;
  CudaSampler s2(3001, SamplingConfig::omnidrive_planning());
  s2.sample(upload(l, DType::F32, exact), nullptr);
  EXPECT_EQ(s2.token_host(), -1);
  std::vector<float> masked(3001, -INFINITY);
  s2.sample(upload(masked, DType::F32, exact), nullptr);
  EXPECT_EQ(s2.token_host(), -1);
  // Wrong size / dtype are host-side errors.
  Tensor small = upload(std::vector<float>(10, 0.f), DType::F32, exact);
  EXPECT_THROW(s2.sample(small, nullptr), Error);
}

// The step captured once in a CUDA graph and replayed: the device-side step counter and history
// advance, and every replay matches the CPU sampler's sequence.
TEST(CudaSampler, CudaGraphReplayMatchesCpu) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(omnirt::testing::test_seed());
  const int vocab = 32000;
  SamplingConfig cfg = SamplingConfig::omnidrive_planning(99);
  cfg.temperature = 0.8f;
  cfg.repetition_penalty = 1.2f;
  CudaSampler gpu(vocab, cfg);
  Sampler cpu(cfg);
  std::vector<int32_t> prompt = {1, 319, 13563, 1546};
  gpu.reset(prompt, 0);
  cpu.reset(prompt, 0);

  std::vector<float> exact;
  Tensor logits = upload(normal_logits(vocab, rng, 2.0f), DType::F16, exact);
  cudaStream_t stream;
  OMNIRT_CUDA_CHECK(cudaStreamCreate(&stream));
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  OMNIRT_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  gpu.sample(logits, stream);
  OMNIRT_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  OMNIRT_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  EXPECT_EQ(gpu.step_host(), 0u);  // capture does not run the kernel

  for (int step = 0; step < 16; ++step) {
    std::vector<float> values = normal_logits(vocab, rng, 2.0f);
    // Make an already-generated token attractive so the penalty matters.
    if (!cpu.history().empty()) values[cpu.history().back()] += 3.0f;
    Tensor host = Tensor::from_vector(values, {vocab}).to_dtype(DType::F16);
    exact = host.to_float_vector();
    logits.copy_from(host);
    OMNIRT_CUDA_CHECK(cudaGraphLaunch(exec, stream));
    OMNIRT_CUDA_CHECK(cudaStreamSynchronize(stream));
    EXPECT_EQ(gpu.token_host(), cpu.sample(exact)) << "replay " << step;
  }
  EXPECT_EQ(gpu.step_host(), 16u);
  OMNIRT_CUDA_CHECK(cudaGraphExecDestroy(exec));
  OMNIRT_CUDA_CHECK(cudaGraphDestroy(graph));
  OMNIRT_CUDA_CHECK(cudaStreamDestroy(stream));
}

}  // namespace
}  // namespace omnirt::llm

#else
TEST(CudaSampler, MatchesCpuOnRandomLogits) { GTEST_SKIP() << "skipped: built without CUDA"; }
#endif
