// Benchmarks of one next-token sampling step over TinyLlama's 32000-token vocabulary.
//
// GPU: CudaSampler::sample (one kernel, one block), cudaEvent time around a batch of launches.
// CPU: the reference sample_token, wall time (for scale only; the runtime samples on the GPU).
#include <benchmark/benchmark.h>

#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/tensor.h"
#include "models/llm/sampler.h"

#ifdef OMNIRT_WITH_CUDA
#include <cuda_runtime.h>

#include "core/cuda_check.h"
#endif

namespace {

using omnirt::Device;
using omnirt::DType;
using omnirt::Tensor;
using omnirt::llm::SamplingConfig;

constexpr int kVocab = 32000;

std::vector<float> random_logits(std::mt19937_64& rng) {
  std::normal_distribution<float> d(0.f, 2.f);
  std::vector<float> v(kVocab);
  for (float& x : v) x = d(rng);
  return v;
}

struct Named {
  const char* name;
  SamplingConfig config;
};

std::vector<Named> configs() {
  SamplingConfig top_p_only;
  top_p_only.top_p = 0.75f;
  SamplingConfig top_k_only;
  top_k_only.top_k = 50;
  SamplingConfig penalty = SamplingConfig::omnidrive_planning();
  penalty.repetition_penalty = 1.2f;
  return {{"greedy", SamplingConfig::greedy()},
          {"omnidrive(T0.1,k50,p0.75)", SamplingConfig::omnidrive_planning()},
          {"top_p0.75_only(T1)", top_p_only},
          {"top_k50_only(T1)", top_k_only},
          {"omnidrive+penalty1.2", penalty}};
}

void bench_cpu(benchmark::State& state, SamplingConfig config) {
  std::mt19937_64 rng(1);
  const std::vector<float> logits = random_logits(rng);
  uint64_t step = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(omnirt::llm::sample_token(logits, config, {}, step++));
  }
}

#ifdef OMNIRT_WITH_CUDA
void bench_cuda(benchmark::State& state, SamplingConfig config, DType dtype) {
  std::mt19937_64 rng(1);
  Tensor logits =
      Tensor::from_vector(random_logits(rng), {kVocab}).to_dtype(dtype).to(Device::CUDA);
  omnirt::llm::CudaSampler sampler(kVocab, config);
  sampler.reset({1, 319, 13563}, 0);
  cudaStream_t stream = omnirt::cuda::current_stream();
  cudaEvent_t start, stop;
  OMNIRT_CUDA_CHECK(cudaEventCreate(&start));
  OMNIRT_CUDA_CHECK(cudaEventCreate(&stop));
  for (int i = 0; i < 3; ++i) sampler.sample(logits, stream);
  OMNIRT_CUDA_CHECK(cudaStreamSynchronize(stream));
  constexpr int inner = 20;
  double total_s = 0;
  int64_t calls = 0;
  for (auto _ : state) {
    OMNIRT_CUDA_CHECK(cudaEventRecord(start, stream));
    for (int i = 0; i < inner; ++i) sampler.sample(logits, stream);
    OMNIRT_CUDA_CHECK(cudaEventRecord(stop, stream));
    OMNIRT_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    OMNIRT_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    state.SetIterationTime(ms * 1e-3 / inner);
    total_s += ms * 1e-3;
    calls += inner;
  }
  OMNIRT_CUDA_CHECK(cudaEventDestroy(start));
  OMNIRT_CUDA_CHECK(cudaEventDestroy(stop));
  state.counters["us"] = total_s / static_cast<double>(calls) * 1e6;
  if (sampler.token_host() < 0) state.SkipWithError("sampler returned -1");
}
#endif

void register_all() {
  for (const Named& n : configs()) {
    benchmark::RegisterBenchmark((std::string("sampler_cpu/") + n.name).c_str(), bench_cpu,
                                 n.config)
        ->Unit(benchmark::kMicrosecond);
  }
#ifdef OMNIRT_WITH_CUDA
  if (!omnirt::cuda_available()) {
    std::printf("bench_sampler: no CUDA device: CPU reference only\n");
    return;
  }
  std::printf("device: %s\n", omnirt::cuda_device_description().c_str());
  for (const Named& n : configs()) {
    for (auto [dname, dtype] : {std::pair{"fp16", DType::F16}, std::pair{"fp32", DType::F32}}) {
      benchmark::RegisterBenchmark((std::string("sampler_cuda/") + n.name + "/" + dname).c_str(),
                                   bench_cuda, n.config, dtype)
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond);
    }
  }
#endif
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
