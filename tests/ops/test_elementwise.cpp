// add / add_scaled / mul with suffix broadcasting: CPU against float64 loops, CUDA against CPU.
#include <gtest/gtest.h>

#include "ops/elementwise.h"
#include "ops_test_util.h"

using namespace omnirt;
using namespace omnirt::testing;

namespace {
enum class Op { Add, AddScaled, Mul };
constexpr float kScale = -0.37f;

std::vector<float> binary_f64(Op op, const Tensor& a, const Tensor& b) {
  std::vector<float> y(a.numel());
  const int64_t nb = b.numel();
  for (int64_t i = 0; i < a.numel(); ++i) {
    const double x = a.data<float>()[i], z = b.data<float>()[i % nb];
    y[i] = static_cast<float>(op == Op::Add ? x + z : op == Op::AddScaled ? x + kScale * z : x * z);
  }
  return y;
}

void run(Op op, const Tensor& a, const Tensor& b, Tensor& out) {
  if (op == Op::Add) ops::add(a, b, out);
  if (op == Op::AddScaled) ops::add_scaled(a, b, kScale, out);
  if (op == Op::Mul) ops::mul(a, b, out);
}

// (a shape, b shape) pairs: full shape, bias over rows, scalar, middle suffixes, awkward sizes.
const std::vector<std::pair<Shape, Shape>>& cases() {
  static const std::vector<std::pair<Shape, Shape>> kCases = {
      {{1}, {1}},        {{7}, {7}},        {{33, 65}, {33, 65}},      {{33, 65}, {65}},
      {{7, 257}, {257}}, {{4, 768}, {768}}, {{3, 5, 2049}, {5, 2049}}, {{6, 2048}, {}},
      {{9, 3}, {1, 3}},  {{2, 3, 8}, {8}},  {{5, 4096}, {5, 4096}}};
  return kCases;
}
}  // namespace

TEST(ElementwiseCpu, MatchesFloat64WithBroadcast) {
  std::mt19937_64 rng(test_seed());
  for (Op op : {Op::Add, Op::AddScaled, Op::Mul}) {
    for (const auto& [sa, sb] : cases()) {
      Tensor a = random_tensor(sa, rng, -3.0f, 3.0f);
      Tensor b = random_tensor(sb, rng, -3.0f, 3.0f);
      Tensor out = Tensor::empty(sa, DType::F32);
      run(op, a, b, out);
      expect_close(out.to_float_vector(), binary_f64(op, a, b), 1e-6,
                   std::to_string(int(op)) + " " + shape_str(sa) + " by " + shape_str(sb));
      const std::vector<float> expected = binary_f64(op, a, b);
      run(op, a, b, a);  // in place on a
      expect_close(a.to_float_vector(), expected, 1e-6, "in place " + shape_str(sa));
    }
  }
}

TEST(ElementwiseArgs, BadArgumentsAreClearErrors) {
  std::mt19937_64 rng(test_seed());
  Tensor a = random_tensor({4, 8}, rng);
  Tensor b_bad = random_tensor({4}, rng);
  Tensor out = Tensor::empty({4, 8}, DType::F32);
  expect_error([&] { ops::add(a, b_bad, out); }, {"ops::add", "b", "suffix", "[4]"});
  Tensor b_long = random_tensor({2, 4, 8}, rng);
  expect_error([&] { ops::mul(a, b_long, out); }, {"ops::mul", "b", "[2, 4, 8]"});
  Tensor b16 = random_tensor({8}, rng).to_dtype(DType::F16);
  expect_error([&] { ops::add(a, b16, out); }, {"ops::add", "b", "F16"});
  Tensor b_gpu = fake_cuda(random_tensor({8}, rng));
  expect_error([&] { ops::mul(a, b_gpu, out); }, {"ops::mul", "b", "device", "cuda"});
  Tensor out_bad = Tensor::empty({8}, DType::F32);
  expect_error([&] { ops::add(a, out_bad, out_bad); }, {"ops::add", "out"});
  Tensor b = random_tensor({8}, rng);
  expect_error([&] { ops::add_scaled(a, b, NAN, out); }, {"ops::add", "scale"});
}

TEST(ElementwiseCuda, MatchesCpuAllDtypes) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(test_seed());
  for (DType dt : cuda_dtypes()) {
    for (Op op : {Op::Add, Op::AddScaled, Op::Mul}) {
      for (const auto& [sa, sb] : cases()) {
        const std::string c =
            std::to_string(int(op)) + " " + dtype_case(dt, sa) + " by " + shape_str(sb);
        Tensor a = rounded_to(random_tensor(sa, rng, -3.0f, 3.0f), dt);
        Tensor b = rounded_to(random_tensor(sb, rng, -3.0f, 3.0f), dt);
        Tensor expected = Tensor::empty(sa, DType::F32);
        run(op, a, b, expected);
        Tensor out = poisoned_cuda(sa, dt);
        Tensor ag = to_cuda(a, dt), bg = to_cuda(b, dt);
        run(op, ag, bg, out);
        expect_close(out, expected, cuda_tolerance(dt), c);
        run(op, ag, bg, ag);  // in place on a
        expect_close(ag, expected, cuda_tolerance(dt), "in place " + c);
      }
    }
  }
}
