// cast: CPU against rounding written here (frexp/nearbyint in double), CUDA bit-exact against CPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "ops/cast.h"
#include "ops_test_util.h"

using namespace omnirt;
using namespace omnirt::testing;

namespace {
// Round a normal-range value to `bits` significant bits, ties to even (an independent model of
// f16 (11 bits) and bf16 (8 bits) rounding; valid away from subnormals and overflow).
float round_significand(float x, int bits) {
  int e = 0;
  const double m = std::frexp(double(x), &e);  // x = m 2^e, 0.5 <= |m| < 1
  return static_cast<float>(std::ldexp(std::nearbyint(std::ldexp(m, bits)), e - bits));
}

std::vector<uint16_t> raw16(const Tensor& t) {
  Tensor h = t.to(Device::CPU);
  std::vector<uint16_t> v(h.numel());
  std::memcpy(v.data(), h.raw(), h.nbytes());
  return v;
}
}  // namespace

TEST(CastCpu, RoundsToNearestEvenLikeAnIndependentModel) {
  std::mt19937_64 rng(test_seed());
  Tensor x = random_tensor({33, 65}, rng, -100.0f, 100.0f);
  for (auto [dt, bits] : {std::pair{DType::F16, 11}, std::pair{DType::BF16, 8}}) {
    Tensor y = Tensor::empty(x.shape(), dt);
    ops::cast(x, y);
    Tensor back = Tensor::empty(x.shape(), DType::F32);
    ops::cast(y, back);
    for (int64_t i = 0; i < x.numel(); ++i) {
      const float v = x.data<float>()[i];
      if (std::fabs(v) < 1e-3f) continue;  // keep to the normal range of f16
      ASSERT_EQ(back.data<float>()[i], round_significand(v, bits))
          << dtype_name(dt) << " at " << i << " value " << v;
    }
  }
  // f16 <-> bf16 goes through float32 exactly.
  Tensor h = Tensor::empty({33, 65}, DType::F16), b = Tensor::empty({33, 65}, DType::BF16);
  ops::cast(x, h);
  ops::cast(h, b);
  for (int64_t i = 0; i < x.numel(); ++i)
    ASSERT_EQ(b.to_float_vector()[i], round_significand(h.to_float_vector()[i], 8));
}

TEST(CastArgs, BadArgumentsAreClearErrors) {
  Tensor x = Tensor::zeros({4, 8}, DType::F32);
  Tensor out_i32 = Tensor::empty({4, 8}, DType::I32);
  expect_error([&] { ops::cast(x, out_i32); }, {"ops::cast", "out", "I32"});
  Tensor out_shape = Tensor::empty({8, 4}, DType::F16);
  expect_error([&] { ops::cast(x, out_shape); }, {"ops::cast", "out", "[8, 4]"});
  Tensor out_gpu = fake_cuda(Tensor::empty({4, 8}, DType::F16));
  expect_error([&] { ops::cast(x, out_gpu); }, {"ops::cast", "out", "device"});
}

TEST(CastCuda, BitExactAgainstCpuAllPairs) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(test_seed());
  // Random values plus edge cases: f16 overflow (65520 -> inf, 65519 -> 65504), f16 subnormals,
  // exact ties, infinities, signed zero.
  std::vector<float> special = {65520.f, 65519.f,       -65520.f,       1e-6f,    -3e-7f,
                                6e-8f,   1.0009765625f, 1.00048828125f, INFINITY, -INFINITY,
                                0.0f,    -0.0f,         3.4e38f};
  for (int64_t n : {1, 3, 13, 1000, 4099, 8192}) {
    std::vector<float> v = random_tensor({n}, rng, -300.0f, 300.0f).to_float_vector();
    for (size_t i = 0; i < special.size() && i < v.size(); ++i) v[i] = special[i];
    Tensor x32 = Tensor::from_vector(v, {n});
    for (DType from : cuda_dtypes()) {
      Tensor x = x32.to_dtype(from);  // host tensor in `from`
      for (DType to : cuda_dtypes()) {
        Tensor expected = Tensor::empty({n}, to);
        ops::cast(x, expected);
        Tensor out = poisoned_cuda({n}, to);
        ops::cast(x.to(Device::CUDA), out);
        const std::string c = std::string(dtype_name(from)) + "->" + std::string(dtype_name(to)) +
                              " n=" + std::to_string(n);
        if (to == DType::F32) {
          EXPECT_EQ(out.to_float_vector(), expected.to_float_vector()) << c;
        } else {
          EXPECT_EQ(raw16(out), raw16(expected)) << c;
        }
      }
    }
  }
}
