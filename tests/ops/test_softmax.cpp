// softmax: CPU against a float64 loop, CUDA against CPU.
#include <gtest/gtest.h>

#include <cmath>

#include "ops/softmax.h"
#include "ops_test_util.h"

using namespace omnirt;
using namespace omnirt::testing;

namespace {
std::vector<float> softmax_f64(const Tensor& x) {
  const int64_t f = x.dim(-1), rows = x.numel() / f;
  const float* p = x.data<float>();
  std::vector<float> y(x.numel());
  for (int64_t r = 0; r < rows; ++r) {
    double max = -INFINITY, sum = 0;
    for (int64_t i = 0; i < f; ++i) max = std::max(max, double(p[r * f + i]));
    for (int64_t i = 0; i < f; ++i) sum += std::exp(p[r * f + i] - max);
    for (int64_t i = 0; i < f; ++i)
      y[r * f + i] = static_cast<float>(std::exp(p[r * f + i] - max) / sum);
  }
  return y;
}
}  // namespace

TEST(SoftmaxCpu, MatchesFloat64IncludingLargeLogits) {
  std::mt19937_64 rng(test_seed());
  for (int64_t rows : awkward_rows()) {
    for (int64_t f : awkward_features()) {
      // Logits up to +-80: exp without max subtraction would overflow float32.
      Tensor x = random_tensor({rows, f}, rng, -80.0f, 80.0f);
      Tensor out = Tensor::empty(x.shape(), DType::F32);
      ops::softmax(x, out);
      expect_close(out.to_float_vector(), softmax_f64(x), 1e-5, shape_str(x.shape()));
    }
  }
  // In place, 3-D.
  Tensor x = random_tensor({2, 3, 17}, rng, -5.0f, 5.0f);
  const std::vector<float> expected = softmax_f64(x);
  ops::softmax(x, x);
  expect_close(x.to_float_vector(), expected, 1e-5, "in place");
}

TEST(SoftmaxArgs, BadArgumentsAreClearErrors) {
  std::mt19937_64 rng(test_seed());
  Tensor x = random_tensor({4, 8}, rng);
  Tensor out = Tensor::empty({8, 4}, DType::F32);
  expect_error([&] { ops::softmax(x, out); }, {"ops::softmax", "out", "[4, 8]", "[8, 4]"});
  Tensor out16 = Tensor::empty({4, 8}, DType::F16);
  expect_error([&] { ops::softmax(x, out16); }, {"ops::softmax", "out", "F16"});
  Tensor out_gpu = fake_cuda(Tensor::empty({4, 8}, DType::F32));
  expect_error([&] { ops::softmax(x, out_gpu); }, {"ops::softmax", "out", "device"});
  Tensor empty_features = Tensor::empty({4, 0}, DType::F32);
  expect_error([&] { ops::softmax(empty_features, empty_features); }, {"ops::softmax", "x"});
}

TEST(SoftmaxCuda, MatchesCpuAllDtypes) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(test_seed());
  for (DType dt : cuda_dtypes()) {
    for (int64_t rows : awkward_rows()) {
      for (int64_t f : awkward_features()) {
        Tensor x = rounded_to(random_tensor({rows, f}, rng, -20.0f, 20.0f), dt);
        Tensor expected = Tensor::empty(x.shape(), DType::F32);
        ops::softmax(x, expected);
        Tensor out = poisoned_cuda(x.shape(), dt);
        ops::softmax(to_cuda(x, dt), out);
        expect_close(out, expected, cuda_tolerance(dt), dtype_case(dt, x.shape()));
      }
    }
  }
}

TEST(SoftmaxCuda, InPlace) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(test_seed());
  Tensor x = random_tensor({9, 1600}, rng, -10.0f, 10.0f);
  Tensor expected = Tensor::empty(x.shape(), DType::F32);
  ops::softmax(x, expected);
  Tensor xg = to_cuda(x, DType::F32);
  ops::softmax(xg, xg);
  expect_close(xg, expected, 1e-5, "in place");
}
