// activation / swiglu / swiglu_concat: CPU against float64 formulas, CUDA against CPU.
#include <gtest/gtest.h>

#include <cmath>

#include "ops/activation.h"
#include "ops_test_util.h"

using namespace omnirt;
using namespace omnirt::testing;

namespace {
const ops::Act kActs[] = {ops::Act::Gelu, ops::Act::Silu, ops::Act::Relu, ops::Act::Sigmoid};

double act_f64(ops::Act act, double x) {
  switch (act) {
    case ops::Act::Gelu:
      return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
    case ops::Act::Silu:
      return x / (1.0 + std::exp(-x));
    case ops::Act::Relu:
      return x > 0 ? x : 0.0;
    case ops::Act::Sigmoid:
      return 1.0 / (1.0 + std::exp(-x));
  }
  return NAN;
}

std::vector<float> act_f64(ops::Act act, const Tensor& x) {
  std::vector<float> y(x.numel());
  for (int64_t i = 0; i < x.numel(); ++i)
    y[i] = static_cast<float>(act_f64(act, x.data<float>()[i]));
  return y;
}

// silu(gate) * up from [rows, H] gate and up given by element accessors.
std::vector<float> swiglu_f64(const float* gate, const float* up, int64_t stride, int64_t rows,
                              int64_t hidden) {
  std::vector<float> y(rows * hidden);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < hidden; ++j)
      y[r * hidden + j] = static_cast<float>(act_f64(ops::Act::Silu, gate[r * stride + j]) *
                                             double(up[r * stride + j]));
  return y;
}

const std::vector<Shape>& awkward_shapes() {
  static const std::vector<Shape> kShapes = {{1},          {3},      {7, 65},   {33, 257},
                                             {2, 3, 2049}, {4, 768}, {5, 2048}, {1, 8}};
  return kShapes;
}
}  // namespace

TEST(ActivationCpu, MatchesFloat64) {
  std::mt19937_64 rng(test_seed());
  for (ops::Act act : kActs) {
    for (const Shape& s : awkward_shapes()) {
      Tensor x = random_tensor(s, rng, -8.0f, 8.0f);
      Tensor out = Tensor::empty(s, DType::F32);
      ops::activation(x, act, out);
      expect_close(out.to_float_vector(), act_f64(act, x), 1e-5,
                   std::string(ops::act_name(act)) + shape_str(s));
    }
  }
  // Known values pin the definitions (exact GELU, not the tanh approximation: 0.841192 there).
  Tensor x = Tensor::from_vector({-1.0f, 0.0f, 1.0f, 2.0f}, {4});
  Tensor y = Tensor::empty({4}, DType::F32);
  ops::activation(x, ops::Act::Gelu, y);
  EXPECT_NEAR(y.data<float>()[2], 0.8413447f, 1e-6f);
  EXPECT_NEAR(y.data<float>()[0], -0.1586553f, 1e-6f);
  ops::activation(x, ops::Act::Sigmoid, y);
  EXPECT_NEAR(y.data<float>()[3], 0.8807971f, 1e-6f);
  ops::activation(x, ops::Act::Relu, x);  // in place
  EXPECT_EQ(x.to_float_vector(), (std::vector<float>{0.0f, 0.0f, 1.0f, 2.0f}));
}

TEST(SwigluCpu, MatchesFloat64SeparateAndConcat) {
  std::mt19937_64 rng(test_seed());
  for (int64_t rows : awkward_rows()) {
    for (int64_t h : {1, 3, 64, 65, 2048, 2049}) {
      Tensor gate = random_tensor({rows, h}, rng, -6.0f, 6.0f);
      Tensor up = random_tensor({rows, h}, rng, -2.0f, 2.0f);
      Tensor out = Tensor::empty({rows, h}, DType::F32);
      ops::swiglu(gate, up, out);
      expect_close(out.to_float_vector(),
                   swiglu_f64(gate.data<float>(), up.data<float>(), h, rows, h), 1e-5,
                   "separate " + shape_str(gate.shape()));

      Tensor gate_up = random_tensor({rows, 2 * h}, rng, -6.0f, 6.0f);
      ops::swiglu_concat(gate_up, out);
      const float* g = gate_up.data<float>();
      expect_close(out.to_float_vector(), swiglu_f64(g, g + h, 2 * h, rows, h), 1e-5,
                   "concat " + shape_str(gate_up.shape()));
    }
  }
}

TEST(ActivationArgs, BadArgumentsAreClearErrors) {
  std::mt19937_64 rng(test_seed());
  Tensor x = random_tensor({4, 8}, rng);
  Tensor out_bad = Tensor::empty({4, 7}, DType::F32);
  expect_error([&] { ops::activation(x, ops::Act::Silu, out_bad); },
               {"ops::activation", "out", "[4, 7]"});
  expect_error([&] { ops::activation(x, static_cast<ops::Act>(42), x); }, {"activation"});
  Tensor up = random_tensor({4, 9}, rng);
  Tensor out = Tensor::empty({4, 8}, DType::F32);
  expect_error([&] { ops::swiglu(x, up, out); }, {"ops::swiglu", "up", "[4, 8]", "[4, 9]"});
  Tensor up16 = x.to_dtype(DType::BF16);
  expect_error([&] { ops::swiglu(x, up16, out); }, {"ops::swiglu", "up", "BF16"});
  Tensor up_gpu = fake_cuda(x);
  expect_error([&] { ops::swiglu(x, up_gpu, out); }, {"ops::swiglu", "up", "device"});
  Tensor odd = random_tensor({4, 7}, rng);
  expect_error([&] { ops::swiglu_concat(odd, out); }, {"ops::swiglu_concat", "gate_up", "even"});
  Tensor out4 = Tensor::empty({4, 4}, DType::F32);
  expect_error([&] { ops::swiglu_concat(x, out); }, {"ops::swiglu_concat", "out", "[4, 4]"});
  Tensor alias = x.reshape({4, 2, 4}).select(1, 0);  // strided view: rejected as non-contiguous
  expect_error([&] { ops::swiglu_concat(x, alias); }, {"ops::swiglu_concat", "out", "contiguous"});
  (void)out4;
}

TEST(ActivationCuda, MatchesCpuAllDtypes) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(test_seed());
  for (DType dt : cuda_dtypes()) {
    for (ops::Act act : kActs) {
      for (const Shape& s : awkward_shapes()) {
        Tensor x = rounded_to(random_tensor(s, rng, -8.0f, 8.0f), dt);
        Tensor expected = Tensor::empty(s, DType::F32);
        ops::activation(x, act, expected);
        Tensor out = poisoned_cuda(s, dt);
        ops::activation(to_cuda(x, dt), act, out);
        expect_close(out, expected, cuda_tolerance(dt),
                     std::string(ops::act_name(act)) + " " + dtype_case(dt, s));
        Tensor xg = to_cuda(x, dt);  // in place
        ops::activation(xg, act, xg);
        expect_close(xg, expected, cuda_tolerance(dt), "in place " + dtype_case(dt, s));
      }
    }
  }
}

TEST(SwigluCuda, MatchesCpuAllDtypes) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(test_seed());
  for (DType dt : cuda_dtypes()) {
    for (int64_t rows : awkward_rows()) {
      for (int64_t h : {1, 3, 64, 65, 2048, 2049, 5632}) {
        const std::string c = dtype_case(dt, {rows, h});
        Tensor gate = rounded_to(random_tensor({rows, h}, rng, -6.0f, 6.0f), dt);
        Tensor up = rounded_to(random_tensor({rows, h}, rng, -2.0f, 2.0f), dt);
        Tensor expected = Tensor::empty({rows, h}, DType::F32);
        ops::swiglu(gate, up, expected);
        Tensor out = poisoned_cuda({rows, h}, dt);
        ops::swiglu(to_cuda(gate, dt), to_cuda(up, dt), out);
        expect_close(out, expected, cuda_tolerance(dt), "separate " + c);

        Tensor gate_up = rounded_to(random_tensor({rows, 2 * h}, rng, -6.0f, 6.0f), dt);
        ops::swiglu_concat(gate_up, expected);
        Tensor out2 = poisoned_cuda({rows, h}, dt);
        ops::swiglu_concat(to_cuda(gate_up, dt), out2);
        expect_close(out2, expected, cuda_tolerance(dt), "concat " + c);
      }
    }
  }
}
