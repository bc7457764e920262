// FP8 (E4M3) per-row weight quantisation (quant/fp8_weight.h): a hand-quantised row, an all-zero
// row, the round-trip error bound of 3 mantissa bits on random data (float64 check), the row
// maximum landing on 448 * scale, and bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "common/test_util.h"
#include "core/error.h"
#include "quant/fp8_weight.h"

namespace omnirt {
namespace {

using namespace quant;

TEST(Fp8Weight, HandQuantisedRows) {
  // Row 0: amax 896 -> scale 2; 896/2 = 448 = 0x7E, -1/2 = -0.5 = S.0110.000 = 0xB0,
  // 3/2 = 1.5 = 0.0111.100 = 0x3C, 2^-10 / 2 = 2^-11 is below half the smallest subnormal (2^-9)
  // -> 0. Row 1: all zeros -> scale 1, codes 0.
  Tensor w = Tensor::from_vector({896.f, -1.f, 3.f, 0.0009765625f, 0.f, 0.f, 0.f, 0.f}, {2, 4});
  const Fp8Weight q = quantize_fp8_rows(w, "w");
  ASSERT_EQ(q.codes.shape(), (Shape{2, 4}));
  ASSERT_EQ(q.scales.shape(), (Shape{2}));
  EXPECT_EQ(q.scales.data<float>()[0], 2.f);
  EXPECT_EQ(q.scales.data<float>()[1], 1.f);
  const uint8_t want[8] = {0x7E, 0xB0, 0x3C, 0x00, 0, 0, 0, 0};
  for (int i = 0; i < 8; ++i) EXPECT_EQ(q.codes.data<uint8_t>()[i], want[i]) << i;
  const std::vector<float> d = dequantize_fp8_rows(q.codes, q.scales, "w").to_float_vector();
  const float want_d[8] = {896.f, -1.f, 3.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  for (int i = 0; i < 8; ++i) EXPECT_EQ(d[i], want_d[i]) << i;
}

TEST(Fp8Weight, RoundTripErrorWithinHalfAnE4m3Step) {
  std::mt19937_64 rng(omnirt::testing::test_seed());
  const int64_t n = 37, k = 131;
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> v(n * k);
  for (int64_t r = 0; r < n; ++r) {
    const float row_scale =
        std::exp2(static_cast<float>(r % 9) - 4.f);  // rows of very different size
    for (int64_t i = 0; i < k; ++i) v[r * k + i] = nd(rng) * row_scale;
  }
  const Fp8Weight q = quantize_fp8_rows(Tensor::from_vector(v, {n, k}), "w");
  const std::vector<float> d = dequantize_fp8_rows(q.codes, q.scales, "w").to_float_vector();
  for (int64_t r = 0; r < n; ++r) {
    double amax = 0;
    for (int64_t i = 0; i < k; ++i)
      amax = std::max(amax, std::fabs(static_cast<double>(v[r * k + i])));
    const double s = q.scales.data<float>()[r];
    EXPECT_NEAR(s, amax / 448.0, 1e-6 * amax / 448.0) << "row " << r;
    for (int64_t i = 0; i < k; ++i) {
      const double x = v[r * k + i], y = d[r * k + i];
      // Normal range: half a step of a 3-bit mantissa (2^-4 relative); subnormal range (|x|/s
      // below 2^-6): half the subnormal spacing 2^-9 times s. Plus float rounding of x / s.
      const double bound = std::max(std::fabs(x) * 0.0625, s * std::exp2(-10)) * (1 + 1e-6);
      ASSERT_LE(std::fabs(y - x), bound) << "[" << r << ", " << i << "] " << x << " -> " << y;
      if (std::fabs(x) == amax) EXPECT_NEAR(std::fabs(y), amax, 1e-6 * amax);
    }
  }
}

TEST(Fp8Weight, BadInput) {
  EXPECT_THROW(quantize_fp8_rows(Tensor::from_vector({1.f, 2.f}, {2}), "w"), Error);
  EXPECT_THROW(quantize_fp8_rows(Tensor::from_vector({1.f, NAN}, {1, 2}), "w"), Error);
  const Fp8Weight q = quantize_fp8_rows(Tensor::from_vector({1.f, 2.f, 3.f, 4.f}, {2, 2}), "w");
  EXPECT_THROW(dequantize_fp8_rows(q.codes, Tensor::zeros({3}, DType::F32), "w"), Error);
  EXPECT_THROW(dequantize_fp8_rows(q.codes, Tensor::zeros({2}, DType::F16), "w"), Error);
  EXPECT_THROW(dequantize_fp8_rows(q.scales, q.scales, "w"), Error);
  try {
    check_fp8_rows(q.codes, Tensor::zeros({5}, DType::F32), "layer 3 wo");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layer 3 wo.scales"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace omnirt
