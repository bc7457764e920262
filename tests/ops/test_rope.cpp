// rope_llama / rope_eva2d / eva_rope_tables: CPU against float64 formulas, CUDA against CPU.
#include <gtest/gtest.h>

#include <cmath>

#include "ops/rope.h"
#include "ops_test_util.h"

using namespace omnirt;
using namespace omnirt::testing;

namespace {
Tensor make_positions(const std::vector<int32_t>& v) {
  Tensor t = Tensor::empty({static_cast<int64_t>(v.size())}, DType::I32);
  for (size_t i = 0; i < v.size(); ++i) t.data<int32_t>()[i] = v[i];
  return t;
}

std::vector<int32_t> random_positions(int64_t n, std::mt19937_64& rng) {
  std::uniform_int_distribution<int32_t> d(0, 2047);
  std::vector<int32_t> v(n);
  for (auto& p : v) p = d(rng);
  v[0] = 0;
  return v;
}

// HF rotate_half RoPE in float64 (angles from double inv_freq: differs from the float32 angle by
// ~pos * 1e-7 rad, well inside the tolerance).
std::vector<float> rope_llama_f64(const Tensor& x, const std::vector<int32_t>& pos, double theta) {
  const int64_t tokens = x.dim(0), heads = x.dim(1), d = x.dim(2), half = d / 2;
  std::vector<float> y(x.numel());
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < half; ++i) {
        const double angle = pos[t] / std::pow(theta, double(2 * i) / d);
        const int64_t base = (t * heads + h) * d;
        const double x1 = x.data<float>()[base + i], x2 = x.data<float>()[base + i + half];
        y[base + i] = static_cast<float>(x1 * std::cos(angle) - x2 * std::sin(angle));
        y[base + i + half] = static_cast<float>(x2 * std::cos(angle) + x1 * std::sin(angle));
      }
  return y;
}

std::vector<float> rope_eva_f64(const Tensor& x, const Tensor& cos, const Tensor& sin) {
  const int64_t tokens = x.dim(2), d = x.dim(3);
  std::vector<float> y(x.numel());
  for (int64_t r = 0; r < x.numel() / d; ++r) {
    const int64_t t = r % tokens;
    for (int64_t j = 0; j < d; j += 2) {
      const double x0 = x.data<float>()[r * d + j], x1 = x.data<float>()[r * d + j + 1];
      const float* c = cos.data<float>() + t * d;
      const float* s = sin.data<float>() + t * d;
      y[r * d + j] = static_cast<float>(x0 * c[j] - x1 * s[j]);
      y[r * d + j + 1] = static_cast<float>(x1 * c[j + 1] + x0 * s[j + 1]);
    }
  }
  return y;
}
}  // namespace

TEST(RopeLlamaCpu, MatchesFloat64) {
  std::mt19937_64 rng(test_seed());
  for (int64_t head_dim : {2, 8, 64, 128}) {
    for (int64_t tokens : {1, 7, 33}) {
      Tensor x = random_tensor({tokens, 3, head_dim}, rng);
      const std::vector<int32_t> pos = random_positions(tokens, rng);
      Tensor out = Tensor::empty(x.shape(), DType::F32);
      ops::rope_llama(x, make_positions(pos), 10000.0f, out);
      // Angles reach ~2000 rad, where float32 rounding of the angle is ~1e-4 rad: that, not the
      // rotation, limits agreement with float64.
      expect_close(out.to_float_vector(), rope_llama_f64(x, pos, 10000.0), 5e-4,
                   shape_str(x.shape()));
      const std::vector<float> expected = out.to_float_vector();
      ops::rope_llama(x, make_positions(pos), 10000.0f, x);  // in place
      EXPECT_EQ(x.to_float_vector(), expected);
    }
  }
  // Position 0 is the identity.
  Tensor x = random_tensor({1, 2, 64}, rng);
  Tensor out = Tensor::empty(x.shape(), DType::F32);
  ops::rope_llama(x, make_positions({0}), 10000.0f, out);
  EXPECT_EQ(out.to_float_vector(), x.to_float_vector());
}

TEST(RopeEvaCpu, TablesMatchSpecAndRotationMatchesFloat64) {
  // Tables: spec §2.2 (dim 32 per axis, pt 16, ft 16 or 40).
  for (int64_t ft : {16, 40}) {
    ops::RopeTables tables = ops::eva_rope_tables(ft);
    ASSERT_EQ(tables.cos.shape(), (Shape{ft * ft, 64}));
    for (int64_t r = 0; r < ft; ++r) {
      for (int64_t c = 0; c < ft; ++c) {
        const double tr = double(r) * 16 / ft, tc = double(c) * 16 / ft;
        for (int64_t i = 0; i < 16; ++i) {
          const double f = std::pow(10000.0, -2.0 * i / 32);
          const int64_t row = (r * ft + c) * 64;
          for (int64_t rep = 0; rep < 2; ++rep) {
            // float32 positions/frequencies: agreement to ~1e-6 absolute (angles <= 16 rad).
            ASSERT_NEAR(tables.cos.data<float>()[row + 2 * i + rep], std::cos(tr * f), 3e-6);
            ASSERT_NEAR(tables.sin.data<float>()[row + 2 * i + rep], std::sin(tr * f), 3e-6);
            ASSERT_NEAR(tables.cos.data<float>()[row + 32 + 2 * i + rep], std::cos(tc * f), 3e-6);
            ASSERT_NEAR(tables.sin.data<float>()[row + 32 + 2 * i + rep], std::sin(tc * f), 3e-6);
          }
        }
      }
    }
  }
  // Global positions are compressed to the 16-grid: token (r=1, c=0) of ft=40 has t_r = 0.4.
  ops::RopeTables g = ops::eva_rope_tables(40);
  EXPECT_NEAR(g.sin.data<float>()[40 * 64 + 0], std::sin(0.4), 1e-7);
  EXPECT_FLOAT_EQ(g.cos.data<float>()[40 * 64 + 32], 1.0f);  // column 0: angle 0

  std::mt19937_64 rng(test_seed());
  for (const Shape& s : {Shape{1, 1, 1, 64}, Shape{2, 3, 256, 64}, Shape{1, 2, 7, 6}}) {
    Tensor x = random_tensor(s, rng);
    Tensor cos = random_tensor({s[2], s[3]}, rng), sin = random_tensor({s[2], s[3]}, rng);
    Tensor out = Tensor::empty(s, DType::F32);
    ops::rope_eva2d(x, cos, sin, out);
    expect_close(out.to_float_vector(), rope_eva_f64(x, cos, sin), 1e-6, shape_str(s));
  }
}

TEST(RopeArgs, BadArgumentsAreClearErrors) {
  std::mt19937_64 rng(test_seed());
  Tensor x = random_tensor({4, 2, 8}, rng);
  Tensor out = Tensor::empty({4, 2, 8}, DType::F32);
  expect_error(
      [&] {
        ops::rope_llama(x, make_positions({0, 1, 2}), 1e4f, out);
      },
      {"ops::rope_llama", "positions", "[4]", "[3]"});
  Tensor pos64 = Tensor::zeros({4}, DType::I64);
  expect_error([&] { ops::rope_llama(x, pos64, 1e4f, out); },
               {"ops::rope_llama", "positions", "I32"});
  Tensor odd = random_tensor({4, 2, 7}, rng);
  Tensor odd_out = Tensor::empty({4, 2, 7}, DType::F32);
  expect_error(
      [&] {
        ops::rope_llama(odd, make_positions({0, 1, 2, 3}), 1e4f, odd_out);
      },
      {"ops::rope_llama", "even"});
  Tensor pos_gpu = fake_cuda(make_positions({0, 1, 2, 3}));
  expect_error([&] { ops::rope_llama(x, pos_gpu, 1e4f, out); },
               {"ops::rope_llama", "positions", "device"});

  Tensor xe = random_tensor({1, 2, 5, 64}, rng);
  Tensor oute = Tensor::empty({1, 2, 5, 64}, DType::F32);
  Tensor cos = random_tensor({5, 64}, rng), sin_bad = random_tensor({4, 64}, rng);
  expect_error([&] { ops::rope_eva2d(xe, cos, sin_bad, oute); },
               {"ops::rope_eva2d", "sin", "[5, 64]", "[4, 64]"});
  Tensor cos16 = cos.to_dtype(DType::F16);
  expect_error([&] { ops::rope_eva2d(xe, cos16, cos, oute); }, {"ops::rope_eva2d", "cos", "F32"});
  expect_error([&] { ops::rope_eva2d(x, cos, cos, out); }, {"ops::rope_eva2d", "x", "4-D"});
  expect_error([&] { ops::eva_rope_tables(0); }, {"ops::eva_rope_tables"});
}

TEST(RopeLlamaCuda, MatchesCpuAllDtypes) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(test_seed());
  for (DType dt : cuda_dtypes()) {
    for (int64_t head_dim : {2, 6, 64, 128}) {
      for (int64_t tokens : {1, 7, 33, 577}) {
        const std::string c = dtype_case(dt, {tokens, 5, head_dim});
        Tensor x = rounded_to(random_tensor({tokens, 5, head_dim}, rng), dt);
        Tensor pos = make_positions(random_positions(tokens, rng));
        Tensor expected = Tensor::empty(x.shape(), DType::F32);
        ops::rope_llama(x, pos, 10000.0f, expected);
        Tensor out = poisoned_cuda(x.shape(), dt);
        Tensor posg = pos.to(Device::CUDA);
        ops::rope_llama(to_cuda(x, dt), posg, 10000.0f, out);
        // f32: GPU and CPU cosf/sinf of the same float32 angle differ by an ulp or two.
        expect_close(out, expected, dt == DType::F32 ? 2e-5 : 1e-2, c);
        Tensor xg = to_cuda(x, dt);  // in place
        ops::rope_llama(xg, posg, 10000.0f, xg);
        expect_close(xg, expected, dt == DType::F32 ? 2e-5 : 1e-2, "in place " + c);
      }
    }
  }
}

TEST(RopeEvaCuda, MatchesCpuAllDtypes) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(test_seed());
  ops::RopeTables win = ops::eva_rope_tables(16);
  for (DType dt : cuda_dtypes()) {
    for (const Shape& s : {Shape{1, 1, 1, 64}, Shape{3, 12, 256, 64}, Shape{2, 3, 7, 6}}) {
      Tensor x = rounded_to(random_tensor(s, rng), dt);
      // The EVA window table where it fits, random tables otherwise.
      Tensor cos = s[2] == 256 && s[3] == 64 ? win.cos : random_tensor({s[2], s[3]}, rng);
      Tensor sin = s[2] == 256 && s[3] == 64 ? win.sin : random_tensor({s[2], s[3]}, rng);
      Tensor expected = Tensor::empty(s, DType::F32);
      ops::rope_eva2d(x, cos, sin, expected);
      Tensor out = poisoned_cuda(s, dt);
      Tensor cg = cos.to(Device::CUDA), sg = sin.to(Device::CUDA);
      ops::rope_eva2d(to_cuda(x, dt), cg, sg, out);
      expect_close(out, expected, cuda_tolerance(dt), dtype_case(dt, s));
      Tensor xg = to_cuda(x, dt);
      ops::rope_eva2d(xg, cg, sg, xg);
      expect_close(xg, expected, cuda_tolerance(dt), "in place " + dtype_case(dt, s));
    }
  }
}
