// Shared helpers for the GoogleTest suites: seeded random tensors, error norms, CUDA skips.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/device.h"
#include "core/tensor.h"
#include "models/llm/llama.h"

namespace omnirt::testing {

// Fresh random data every test (seeded from the test name so a failure is reproducible).
inline uint64_t test_seed() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = info ? std::string(info->test_suite_name()) + "." + info->name() : "x";
  return std::hash<std::string>{}(name);
}

inline Tensor random_tensor(const Shape& shape, std::mt19937_64& rng, float lo = -1.f,
                            float hi = 1.f) {
  std::uniform_real_distribution<float> dist(lo, hi);
  Tensor t = Tensor::empty(shape, DType::F32);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = dist(rng);
  return t;
}

// ||a - b|| / ||b|| over float vectors (b is the reference).
inline double rel_error(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    double d = static_cast<double>(a[i]) - b[i];
    num += d * d;
    den += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
}

inline double rel_error(const Tensor& a, const Tensor& b) {
  return rel_error(a.to_float_vector(), b.to_float_vector());
}

}  // namespace omnirt::testing

// GPU tests run whenever a GPU is present and say so clearly when they are skipped.
#define OMNIRT_REQUIRE_CUDA()                                   \
  do {                                                          \
    if (!::omnirt::cuda_available()) {                          \
      GTEST_SKIP() << "skipped: no CUDA device";                \
    }                                                           \
  } while (0)

// The CUDA LLM engine handles head_dim 32, 64 and 128 (its prefill and decode attention kernels).
// CUDA tests of the planner on a checkpoint it cannot run skip with this reason instead of
// failing on the engine's refusal. (The tiny checkpoint's planner has head_dim 32 since
// 2026-11-30 so that they run on it; before, with 16, they could only run at full size.)
#define OMNIRT_REQUIRE_CUDA_LLM(checkpoint_dir)                                                  \
  do {                                                                                          \
    OMNIRT_REQUIRE_CUDA();                                                                      \
    const int64_t omnirt_hd_ = ::omnirt::llm::LlamaConfig::from_folder(checkpoint_dir).head_dim; \
    if (omnirt_hd_ != 32 && omnirt_hd_ != 64 && omnirt_hd_ != 128) {                            \
      GTEST_SKIP() << "skipped: the CUDA LLM engine needs head_dim 32/64/128; " << (checkpoint_dir) \
                   << " has " << omnirt_hd_;                                                    \
    }                                                                                           \
  } while (0)

